//! `cmi bench`: each bench prints our figures beside a named peer's, measured in the same run, and the ratio.

pub(crate) mod engine;
pub(crate) mod server;
pub(crate) mod templates;
pub(crate) mod upload;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::ctx::Ctx;

/// Arguments of `cmi bench`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Chat-template rendering: the conformance corpus, cmi vs transformers.
    Templates(templates::Args),
    /// Inference engine: prompt and decode speed, concurrency and memory vs llama.cpp and transformers.
    Engine(engine::Args),
    /// Local Bedrock server: per-request overhead, S3 throughput, concurrent streams.
    Server(server::Args),
    /// Upload of a model folder: cmi vs `aws s3 sync`, and preflight on a 16 GB folder.
    Upload(upload::Args),
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    match args.bench {
        Bench::Templates(a) => templates::run(a, ctx).await,
        Bench::Engine(a) => engine::run(a, ctx).await,
        Bench::Server(a) => server::run(a, ctx).await,
        Bench::Upload(a) => upload::run(a, ctx).await,
    }
}

//! One module per subcommand; each has an `Args` (clap derive) and `run(args, ctx) -> ExitCode`.

pub(crate) mod bench;
pub(crate) mod chat;
pub(crate) mod convert;
pub(crate) mod dev;
pub(crate) mod import;
pub(crate) mod models;
pub(crate) mod quickstart;
pub(crate) mod serve;
pub(crate) mod template;

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

use crate::ctx::Ctx;

/// The subcommands, in the order a new user meets them.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Demo model → local Bedrock → import → tool-using chat, in one go.
    Quickstart(quickstart::Args),
    /// Run the local Bedrock (S3, model import jobs, runtime APIs) on loopback.
    Serve(serve::Args),
    /// Import a Hugging Face model into Bedrock (AWS or local).
    Import(import::Args),
    /// The model registry: foundation models and your imported models.
    Models(models::Args),
    /// Chat with a model, with tools.
    Chat(chat::Args),
    /// Render, check and repair chat templates.
    Template(template::Args),
    /// Convert model files (GGUF → Hugging Face folder).
    Convert(convert::Args),
    /// Developer tools (tiny test models).
    Dev(dev::Args),
    /// Benchmarks against named peers, measured in the same run.
    Bench(bench::Args),
}

pub(crate) async fn run(command: Command, ctx: &Ctx) -> Result<ExitCode> {
    match command {
        Command::Quickstart(args) => quickstart::run(args, ctx).await,
        Command::Serve(args) => serve::run(args, ctx).await,
        Command::Import(args) => import::run(args, ctx).await,
        Command::Models(args) => models::run(args, ctx).await,
        Command::Chat(args) => chat::run(args, ctx).await,
        Command::Template(args) => template::run(args, ctx).await,
        Command::Convert(args) => convert::run(args, ctx).await,
        Command::Dev(args) => dev::run(args, ctx).await,
        Command::Bench(args) => bench::run(args, ctx).await,
    }
}

//! `cmi bench`: each bench prints our figures beside a named peer's, measured in the same run, and the ratio.

pub(crate) mod engine;
pub(crate) mod server;
pub(crate) mod templates;
pub(crate) mod upload;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, Result, bail};
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
    /// Inference engine: cold start, prefill, decode, streams, second turn and memory vs llama.cpp and transformers.
    Engine(Box<engine::Args>),
    /// Local Bedrock server: per-request overhead, S3 throughput, concurrent streams.
    Server(server::Args),
    /// Upload of a model folder: cmi vs `aws s3 sync`, and preflight on a 16 GB folder.
    Upload(upload::Args),
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    match args.bench {
        Bench::Templates(a) => templates::run(a, ctx).await,
        Bench::Engine(a) => engine::run(*a, ctx).await,
        Bench::Server(a) => server::run(a, ctx).await,
        Bench::Upload(a) => upload::run(a, ctx).await,
    }
}

/// The Python of the venv `venv`, created with `packages` from PyPI unless it already imports `modules`
/// (comma separated). `note` tells what the first install costs.
pub(crate) fn ensure_venv(venv: &Path, modules: &str, packages: &[&str], note: &str) -> Result<PathBuf> {
    let python = venv.join("bin/python");
    let works = |p: &Path| {
        Command::new(p)
            .args(["-c", &format!("import {modules}")])
            .env("TRANSFORMERS_VERBOSITY", "error")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if python.is_file() && works(&python) {
        return Ok(python);
    }
    eprintln!(
        "setting up {} (pip install {}{note})...",
        venv.display(),
        packages.join(" ")
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(venv)
        .status()
        .context("run python3 -m venv (is python3 installed?)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet"])
        .args(packages)
        .status()
        .context("run pip")?;
    if !status.success() || !works(&python) {
        bail!(
            "pip install {} into {} failed\n\nhint: needs python3 with venv and access to PyPI",
            packages.join(" "),
            venv.display()
        );
    }
    Ok(python)
}

/// The middle value (the upper middle of an even count) of non-empty measurements.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

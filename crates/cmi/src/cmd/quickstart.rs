//! `cmi quickstart` (being built: see ARCHITECTURE.md).

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::ctx::Ctx;

/// Arguments of `cmi quickstart`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    bail!("`cmi quickstart` is not available in this build yet")
}

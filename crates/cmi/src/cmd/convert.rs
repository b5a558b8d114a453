//! `cmi convert` (being built: see ARCHITECTURE.md).

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::ctx::Ctx;

/// Arguments of `cmi convert`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    bail!("`cmi convert` is not available in this build yet")
}

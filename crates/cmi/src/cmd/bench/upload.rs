//! `cmi bench upload` (being built: see ARCHITECTURE.md).

use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::ctx::Ctx;

/// Arguments of `cmi bench upload`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    bail!("`cmi bench upload` is not available in this build yet")
}

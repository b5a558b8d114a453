//! The `cmi` command: argument parsing, configuration and dispatch to the library crates.

mod alloc;
mod cmd;
mod ctx;
mod env;

use std::process::ExitCode;

use clap::Parser;

use crate::ctx::{Ctx, GlobalArgs};

#[global_allocator]
static ALLOC: alloc::MiAlloc = alloc::MiAlloc;

/// Hugging Face model → Amazon Bedrock Custom Model Import → tool-using chat, against AWS or a local Bedrock.
#[derive(Debug, Parser)]
#[command(name = "cmi", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: cmd::Command,
}

fn main() -> ExitCode {
    alloc::tune_allocator();
    // SAFETY: first thing in main, before any thread starts.
    #[allow(unsafe_code)]
    unsafe {
        infer_engine::pin_thread_count()
    };
    let cli = Cli::parse();
    ctx::init_tracing(&cli.global);
    if let Some(value) = std::env::var_os(env::CMI_SIMD) {
        let value = value.to_string_lossy();
        if let Err(expected) = infer_engine::cap_simd(&value) {
            eprintln!(
                "error: {}={value:?} is not an instruction-set cap: expected {expected}",
                env::CMI_SIMD
            );
            return ExitCode::from(2);
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        let ctx = Ctx::new(cli.global)?;
        cmd::run(cli.command, &ctx).await
    });
    match result {
        Ok(code) => code,
        Err(err) => report(&err),
    }
}

/// Prints an error the way STYLE.md asks (`error:` then `Caused by:` lines) and picks the exit code.
fn report(err: &anyhow::Error) -> ExitCode {
    for cause in err.chain() {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return ExitCode::SUCCESS;
        }
    }
    eprintln!("error: {err}");
    for cause in err.chain().skip(1) {
        eprintln!("  Caused by: {cause}");
    }
    ExitCode::from(2)
}

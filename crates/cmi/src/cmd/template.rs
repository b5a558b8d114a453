//! `cmi template`: render a model folder's chat template exactly like transformers, check whether it lets the
//! Converse API work (with tools), and repair it (`fix`, `fix --undo`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use chat_template::chrono;
use chat_template::{ChatTemplate, Family, FixOptions, RenderRequest};
use clap::Subcommand;

use crate::ctx::Ctx;

/// Arguments of `cmi template`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Print the rendered prompt (exact bytes, nothing added) for a request.
    Render(RenderArgs),
    /// Say whether the template lets Converse work, with and without tools, and why not (exit 1 if not).
    Check(CheckArgs),
    /// Install the Converse-ready template for the model's family into tokenizer_config.json.
    Fix(FixArgs),
}

#[derive(Debug, clap::Args)]
struct RenderArgs {
    /// Model folder (tokenizer_config.json, optionally chat_template.jinja / .json).
    model_dir: PathBuf,
    /// JSON file with `messages`, `tools`, `add_generation_prompt`, `template_kwargs` (`-` for stdin).
    #[arg(long)]
    request: PathBuf,
    /// Fix the clock `strftime_now` reads, e.g. 2025-01-15T12:00:00.
    #[arg(long)]
    now: Option<String>,
}

#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// Model folder.
    dir: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
struct FixArgs {
    /// Model folder.
    dir: PathBuf,
    /// Install this family's template (llama3.1, llama3.2, qwen2, qwen3, mistral-v0.3, mistral-nemo, chatml, ...).
    #[arg(long)]
    family: Option<Family>,
    /// Show the diff, write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Restore the original template recorded by an earlier fix.
    #[arg(long, conflicts_with = "family")]
    undo: bool,
}

pub(crate) async fn run(args: Args, _ctx: &Ctx) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Render(a) => render(a),
        Cmd::Check(a) => check(a),
        Cmd::Fix(a) => fix(a),
    }
}

fn parse_now(s: &str) -> Result<chrono::NaiveDateTime> {
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, fmt) {
            return Ok(t);
        }
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.naive_local());
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_time(chrono::NaiveTime::MIN));
    }
    bail!("--now {s:?}: expected a date-time like 2025-01-15T12:00:00 (or RFC 3339)")
}

fn render(a: RenderArgs) -> Result<ExitCode> {
    let text = if a.request.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("read the request from stdin")?
    } else {
        std::fs::read_to_string(&a.request).with_context(|| format!("read {}", a.request.display()))?
    };
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", a.request.display()))?;
    let mut req = RenderRequest::from_json(&json).with_context(|| format!("{}", a.request.display()))?;
    req.now = a.now.as_deref().map(parse_now).transpose()?;
    let template = ChatTemplate::from_model_dir(&a.model_dir)?;
    match template.render(&req) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

fn check(a: CheckArgs) -> Result<ExitCode> {
    let r = chat_template::check(&a.dir)?;
    let ok = r.support.converse && r.support.tools;
    if a.json {
        let v = serde_json::json!({
            "dir": a.dir,
            "family": r.family.name(),
            "template_found": r.template_found,
            "tool_syntax": r.tool_syntax.name(),
            "converse": r.support.converse,
            "tools": r.support.tools,
            "reasons": r.support.reasons,
            "fix_family": r.fix_family.map(Family::name),
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        let yes_no = |b: bool| if b { "yes" } else { "no" };
        println!("{}", a.dir.display());
        println!("  family:            {}", r.family);
        println!(
            "  chat template:     {}",
            if r.template_found { "found" } else { "missing" }
        );
        println!("  tool-call syntax:  {}", r.tool_syntax);
        println!("  Converse:          {}", yes_no(r.support.converse));
        println!("  Converse + tools:  {}", yes_no(r.support.tools));
        for reason in &r.support.reasons {
            println!("    - {reason}");
        }
        match r.fix_family {
            Some(f) => println!(
                "  fix: `cmi template fix {}` installs the {f} template",
                a.dir.display()
            ),
            None if !ok => println!("  fix: no ready-made template for this family; pass --family to choose one"),
            None => {}
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn fix(a: FixArgs) -> Result<ExitCode> {
    let out = if a.undo {
        chat_template::undo(&a.dir, a.dry_run)?
    } else {
        chat_template::fix(
            &a.dir,
            &FixOptions {
                family: a.family,
                dry_run: a.dry_run,
            },
        )?
    };
    print!("{}", out.diff);
    for (from, to) in &out.moved {
        let verb = if a.dry_run { "would move" } else { "moved" };
        eprintln!("{verb} {} -> {}", from.display(), to.display());
    }
    eprintln!("{}", out.message);
    Ok(ExitCode::SUCCESS)
}

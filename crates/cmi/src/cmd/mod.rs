//! One module per subcommand; each has an `Args` (clap derive) and `run(args, ctx) -> ExitCode`.

pub(crate) mod bench;
pub(crate) mod chat;
pub(crate) mod convert;
pub(crate) mod dev;
pub(crate) mod import;
pub(crate) mod mcp;
pub(crate) mod models;
pub(crate) mod quickstart;
pub(crate) mod serve;
pub(crate) mod template;
pub(crate) mod ui;

use std::process::ExitCode;
use std::time::Duration;

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
    /// The web chat in the browser: models, chat and import (against AWS, or the local Bedrock).
    Ui(ui::Args),
    /// Serve the import pipeline as MCP tools on stdio (for Claude Desktop, Bedrock Engineer, any MCP client).
    Mcp(mcp::Args),
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
        Command::Ui(args) => ui::run(args, ctx).await,
        Command::Mcp(args) => mcp::run(args, ctx).await,
        Command::Template(args) => template::run(args, ctx).await,
        Command::Convert(args) => convert::run(args, ctx).await,
        Command::Dev(args) => dev::run(args, ctx).await,
        Command::Bench(args) => bench::run(args, ctx).await,
    }
}

/// The quantisations a model can run in on the local Bedrock, and `none` (the weights as stored): the engine's list.
pub(crate) const QUANTIZE_OR_NONE: [&str; 4] = infer_engine::Quantize::SETTINGS;

/// `--quantize Q` of `cmi serve` and `cmi quickstart`: a quantisation the engine runs, parsed at the edge.
pub(crate) fn quantize_parser() -> impl clap::builder::TypedValueParser<Value = infer_engine::Quantize> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(&QUANTIZE_OR_NONE[..3]).map(|q| {
        q.parse::<infer_engine::Quantize>()
            .expect("the engine's own names parse")
    })
}

/// A duration argument: `250ms`, `90s`, `5m`, `1h`, or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 90s, 10m or 1h"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("`{s}`: unknown unit `{unit}` (expected ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration(" 45 "), Ok(Duration::from_secs(45)));
        let e = parse_duration("10 minutes").expect_err("a space and a word");
        assert!(e.contains("10 minutes") && e.contains("expected ms, s, m or h"), "{e}");
        let e = parse_duration("soon").expect_err("no number");
        assert!(e.contains("`soon`"), "{e}");
    }
}

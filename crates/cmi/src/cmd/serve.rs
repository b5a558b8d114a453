//! `cmi serve`: run the local Bedrock (S3, model import jobs, runtime APIs) on loopback until interrupted.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};

use crate::ctx::Ctx;

/// Arguments of `cmi serve` (`--region` and `--data-dir` are the global options).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8777)]
    port: u16,
    /// Address to bind; anything but loopback exposes the server to the network.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Access key id to accept (default: the pair generated on first start, kept in the data directory).
    #[arg(long, requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// Secret access key to accept.
    #[arg(long, requires = "access_key_id")]
    secret_access_key: Option<String>,
    /// Load models at import and keep them loaded: no cold starts, no `ModelNotReadyException`.
    #[arg(long)]
    warm: bool,
    /// Unload a model after this long without requests (`90s`, `5m`, `1h`).
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    idle_unload: Duration,
    /// Quantise models at load (models imported with `cmi import --quantize` keep their own setting).
    #[arg(long, value_parser = super::quantize_parser())]
    quantize: Option<infer_engine::Quantize>,
    /// Per-model quantisation, `NAME=q4k` (`q8_0`, `q4k`, `q4_0`, or `none` for the weights as stored); wins over
    /// the model's import setting and `--quantize` (repeatable).
    #[arg(long = "model-quantize", value_name = "NAME=Q", value_parser = parse_model_quantize)]
    model_quantize: Vec<(String, Option<infer_engine::Quantize>)>,
    /// Per-model ConverseStream-with-tools switch, `NAME=false` to refuse streaming with tools (repeatable).
    #[arg(long = "model-stream-tools", value_name = "NAME=BOOL", value_parser = parse_model_flag)]
    model_stream_tools: Vec<(String, bool)>,
    /// MiB of past requests' keys and values each loaded model keeps, so that a prompt resending an earlier one (a
    /// conversation's history) is computed only from where it is new; least recently used blocks go first, 0 turns
    /// it off (default: an eighth of the memory available when the model loads, at most 4096).
    #[arg(long, value_name = "MB")]
    prefix_cache_mb: Option<u64>,
    /// Serve no web UI (by default it is on the same port, under `/ui/`, opened with the printed link's token).
    #[arg(long)]
    no_ui: bool,
    /// Directory the web chat's file tools and commands are confined to.
    #[arg(long, default_value = ".")]
    ui_workspace: PathBuf,
    /// Longest generation before `ModelTimeoutException`.
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    model_timeout: Duration,
}

fn parse_model_quantize(s: &str) -> Result<(String, Option<infer_engine::Quantize>), String> {
    let expected = super::QUANTIZE_OR_NONE.join(", ");
    let (name, q) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid {s:?}: expected NAME=Q with Q one of {expected}"))?;
    if name.trim().is_empty() {
        return Err(format!("invalid {s:?}: no model name before `=`"));
    }
    if !super::QUANTIZE_OR_NONE.contains(&q) {
        return Err(format!(
            "invalid quantisation {q:?} in {s:?}: expected one of {expected}"
        ));
    }
    let q = infer_engine::Quantize::parse_setting(q).map_err(|e| format!("invalid {s:?}: {e}"))?;
    Ok((name.to_string(), q))
}

fn parse_model_flag(s: &str) -> Result<(String, bool), String> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid {s:?}: expected NAME=true or NAME=false"))?;
    if name.trim().is_empty() {
        return Err(format!("invalid {s:?}: no model name before `=`"));
    }
    let on = match v {
        "true" | "on" | "yes" => true,
        "false" | "off" | "no" => false,
        _ => return Err(format!("invalid value {v:?} in {s:?}: expected true or false")),
    };
    Ok((name.to_string(), on))
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let data_dir = ctx.paths.data_dir.clone();
    if let Some(other) = bedrock_server::find_running(&data_dir).await {
        bail!(
            "a local Bedrock already serves {} at {}\n\nhint: stop it first, or pass another --data-dir",
            data_dir.display(),
            other.endpoint_url
        );
    }
    let mut config = bedrock_server::ServerConfig::new(data_dir.clone());
    config.bind = SocketAddr::new(args.bind, args.port);
    if let Some(r) = &ctx.global.region {
        config.region = r.clone();
    }
    if let (Some(ak), Some(sk)) = (args.access_key_id, args.secret_access_key) {
        config.credentials = Some(bedrock_server::Credentials {
            access_key_id: ak,
            secret_access_key: sk,
        });
    }
    config.warm = args.warm;
    config.idle_unload = args.idle_unload;
    config.quantize = args.quantize;
    config.model_stream_tools = args.model_stream_tools;
    config.model_quantize = args.model_quantize;
    config.prefix_cache_mb = args.prefix_cache_mb;
    config.model_timeout = Some(args.model_timeout);
    config.advertise = true;
    if !args.bind.is_loopback() {
        eprintln!(
            "warning: binding {} exposes the local Bedrock beyond this machine (requests still need SigV4)",
            args.bind
        );
    }
    let server = bedrock_server::start(config)
        .await
        .with_context(|| format!("starting the local Bedrock in {}", data_dir.display()))?;
    let url = server.endpoint_url();
    let ui_url = if args.no_ui {
        None
    } else {
        Some(super::ui::mount(&server, ctx, args.ui_workspace.clone())?)
    };
    let c = server.credentials();
    println!("Local Bedrock (S3 + Bedrock + Bedrock Runtime) listening on {url}");
    println!("region {}, data in {}", server.region(), data_dir.display());
    println!();
    println!("export AWS_ENDPOINT_URL={url}");
    println!("export AWS_REGION={}", server.region());
    println!("export AWS_ACCESS_KEY_ID={}", c.access_key_id);
    println!("export AWS_SECRET_ACCESS_KEY={}", c.secret_access_key);
    println!();
    println!("# The OpenAI SDKs (Chat Completions and Responses), with the server's Bedrock API key:");
    println!("export OPENAI_BASE_URL={url}/openai/v1");
    println!("export OPENAI_API_KEY={}", server.api_key());
    println!(
        "# The same key as a bearer token for the AWS SDKs: AWS_BEARER_TOKEN_BEDROCK={}",
        server.api_key()
    );
    println!();
    println!("aws --endpoint-url {url} s3 ls");
    println!("aws --endpoint-url {url} bedrock list-imported-models");
    println!();
    if let Some(u) = &ui_url {
        println!("# The web chat (models, chat, import); the link's token works once, then a cookie keeps you in:");
        println!("{u}");
        println!();
    }
    println!("Other cmi commands find this server by itself. Press Ctrl-C to stop.");
    wait_for_signal().await;
    eprintln!("stopping the local Bedrock");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::{parse_model_flag, parse_model_quantize};

    #[test]
    fn per_model_settings_parse_and_name_what_is_wrong() {
        for q in super::super::QUANTIZE_OR_NONE {
            assert_eq!(
                parse_model_quantize(&format!("tiny={q}")),
                Ok(("tiny".into(), infer_engine::Quantize::parse_setting(q).unwrap()))
            );
        }
        assert_eq!(parse_model_quantize("tiny=none"), Ok(("tiny".into(), None)));
        let e = parse_model_quantize("tiny=q5").expect_err("unknown");
        assert!(e.contains("\"q5\"") && e.contains("q8_0, q4k, q4_0, none"), "{e}");
        let e = parse_model_quantize("tiny").expect_err("no =");
        assert!(e.contains("\"tiny\"") && e.contains("NAME=Q"), "{e}");
        let e = parse_model_quantize("=q4k").expect_err("no name");
        assert!(e.contains("no model name"), "{e}");
        assert_eq!(parse_model_flag("tiny=false"), Ok(("tiny".into(), false)));
        assert!(parse_model_flag("=true").is_err());
        assert!(parse_model_flag("tiny=maybe").is_err());
    }
}

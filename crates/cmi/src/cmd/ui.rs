//! `cmi ui`: the web chat (models, chat, import) in the browser. With no AWS configured it runs on the local
//! Bedrock's own port when it starts one in this process, or on a port of its own beside a running `cmi serve`;
//! with AWS configured (or `--endpoint-url`) it serves the UI locally against that. `cmi serve` mounts the same UI
//! ([`mount`]). What the UI does is this binary's: agents as `cmi chat` makes them, imports as `cmi import` runs them.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use converse_agent::tools::{Approver, BoxFuture};

use crate::ctx::{Ctx, LocalEndpoint};

/// Arguments of `cmi ui`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Port of the UI when it is not served on the local Bedrock's own port (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Directory the chat's file tools and commands are confined to.
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// Print the URL without opening a browser.
    #[arg(long)]
    no_open: bool,
}

/// The UI's view of this binary: the context it targets and the chat's workspace.
pub(crate) struct CmiHost {
    ctx: Ctx,
    region: String,
    target: String,
    workspace: PathBuf,
}

impl CmiHost {
    /// A host on `ctx` (already pointed at its target), described as `target`.
    pub(crate) fn new(ctx: Ctx, region: String, target: String, workspace: PathBuf) -> Result<CmiHost> {
        let workspace = workspace
            .canonicalize()
            .with_context(|| format!("workspace directory {}", workspace.display()))?;
        Ok(CmiHost {
            ctx,
            region,
            target,
            workspace,
        })
    }
}

/// `{e:#}` with the hint lines the terminal shows.
fn message(e: anyhow::Error) -> String {
    format!("{e:#}")
}

impl web_ui::Host for CmiHost {
    fn registry_file(&self) -> PathBuf {
        self.ctx.paths.registry_file()
    }

    fn sessions_dir(&self) -> PathBuf {
        // Where `cmi chat` keeps them.
        self.ctx.paths.config_dir.join("sessions")
    }

    fn region(&self) -> String {
        self.region.clone()
    }

    fn target(&self) -> String {
        self.target.clone()
    }

    fn imported_models(&self) -> BoxFuture<'_, Result<Vec<web_ui::ImportedModel>, String>> {
        Box::pin(async move {
            let target = self.ctx.aws().await.map_err(message)?;
            let client = aws_sdk_bedrock::Client::new(&target.sdk);
            let mut pages = client.list_imported_models().into_paginator().send();
            let mut out = vec![];
            while let Some(page) = pages.next().await {
                let page = page
                    .map_err(|e| format!("ListImportedModels: {}", aws_sdk_bedrock::error::DisplayErrorContext(e)))?;
                out.extend(page.model_summaries().iter().map(|s| web_ui::ImportedModel {
                    name: s.model_name().to_string(),
                    arn: s.model_arn().to_string(),
                    instruct_supported: s.instruct_supported(),
                    architecture: s.model_architecture().map(str::to_string),
                }));
            }
            Ok(out)
        })
    }

    fn agent(&self, model: String, approver: Approver) -> BoxFuture<'_, Result<converse_agent::Agent, String>> {
        Box::pin(async move {
            super::chat::default_agent(&self.ctx, &model, &self.workspace, approver)
                .await
                .map_err(message)
        })
    }

    fn import(
        &self,
        request: web_ui::ImportRequest,
        progress: Arc<dyn bedrock_import::Progress>,
    ) -> BoxFuture<'_, Result<web_ui::ImportEnd, String>> {
        Box::pin(async move {
            super::import::web_import(&self.ctx, request, progress.as_ref())
                .await
                .map_err(message)
        })
    }
}

/// Mounts the UI on a local Bedrock running in this process and returns its tokened URL.
pub(crate) fn mount(server: &bedrock_server::RunningServer, ctx: &Ctx, workspace: PathBuf) -> Result<String> {
    let local = LocalEndpoint {
        endpoint_url: server.endpoint_url(),
        region: server.region().to_string(),
        credentials: server.credentials().clone(),
    };
    let target = format!("local Bedrock · {}", server.endpoint_url());
    let host = CmiHost::new(ctx.with_local(local), server.region().to_string(), target, workspace)?;
    let ui = web_ui::Ui::new(Arc::new(host), server.local_addr().port());
    server.mount(ui.router());
    Ok(ui.url(&server.endpoint_url()))
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let remote = ctx.global.endpoint_url.is_some() || crate::ctx::aws_credentials_configured();
    if !remote {
        let (local, server) = ctx.find_or_start_local(ctx.global.region.clone(), None).await?;
        if let Some(server) = server {
            // A local Bedrock of our own: the UI lives on its port, as with `cmi serve`.
            let url = mount(&server, ctx, args.workspace.clone())?;
            announce(
                &url,
                &format!("a local Bedrock in this process ({})", server.endpoint_url()),
                args.no_open,
            );
            super::serve::wait_for_signal().await;
            server.shutdown().await;
            return Ok(ExitCode::SUCCESS);
        }
        let target = format!("local Bedrock · {}", local.endpoint_url);
        let region = local.region.clone();
        return standalone(args, ctx.with_local(local), region, target).await;
    }
    let aws = ctx.aws().await?;
    let target = match &aws.endpoint_url {
        Some(url) => format!("{url} · {}", aws.region),
        None => format!("AWS · {}", aws.region),
    };
    let region = aws.region.clone();
    drop(aws);
    standalone(args, ctx.clone(), region, target).await
}

/// The UI on a port of its own.
async fn standalone(args: Args, ctx: Ctx, region: String, target: String) -> Result<ExitCode> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the web UI to {addr}"))?;
    let bound = listener.local_addr().context("the web UI's address")?;
    let host = CmiHost::new(ctx, region, target.clone(), args.workspace)?;
    let ui = web_ui::Ui::new(Arc::new(host), bound.port());
    let url = ui.url(&format!("http://{bound}"));
    announce(&url, &target, args.no_open);
    web_ui::serve(listener, &ui, super::serve::wait_for_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the URL (stdout: it is the command's data) and opens a browser on it unless told not to.
fn announce(url: &str, target: &str, no_open: bool) {
    eprintln!("web UI against {target}; open this link (its token works once) — Ctrl-C stops:");
    println!("{url}");
    if !no_open {
        let opened = std::process::Command::new("xdg-open")
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .is_ok();
        if !opened {
            tracing::debug!("no browser opened (xdg-open is not available)");
        }
    }
}

//! `cmi mcp`: the import pipeline as an MCP server on stdio (the official SDK, `rmcp`), for Claude Desktop, Bedrock
//! Engineer or any MCP client: check a model folder, repair its chat template, import it (with progress
//! notifications), an import job's status, the registry's models and their export.
//!
//! Each tool runs the `cmi` command it stands for (this same executable, with this process's global options), so a
//! tool does exactly what the command does, and stdout, which carries the protocol here, never sees the commands'
//! output: what a command prints on stdout is the tool's result (parsed as JSON where it is), what it prints on
//! stderr is its log, and each stderr line is a progress notification when the client asked for them.

use std::process::{ExitCode, Stdio};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt as _};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::ctx::Ctx;

/// Arguments of `cmi mcp`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {}

pub(crate) async fn run(_args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let exe = std::env::current_exe().context("finding the cmi executable")?;
    let g = &ctx.global;
    let mut global = Vec::new();
    for (flag, v) in [
        ("--endpoint-url", g.endpoint_url.clone()),
        ("--region", g.region.clone()),
        ("--profile", g.profile.clone()),
        ("--data-dir", g.data_dir.as_ref().map(|d| d.display().to_string())),
    ] {
        if let Some(v) = v {
            global.extend([flag.to_string(), v]);
        }
    }
    let server = CmiMcp(Arc::new(Inner { exe, global }));
    tracing::info!("MCP server on stdio");
    let running = server
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session on stdio")?;
    running.waiting().await.context("the MCP session")?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Clone)]
struct CmiMcp(Arc<Inner>);

struct Inner {
    exe: std::path::PathBuf,
    /// This process's global options, passed on to every command.
    global: Vec<String>,
}

/// A tool: its name, what it does, its input schema, and the command line for an input.
struct Spec {
    name: &'static str,
    description: &'static str,
    schema: Value,
}

fn specs() -> Vec<Spec> {
    let path = json!({"type": "string", "description": "A Hugging Face model folder (the one with config.json and *.safetensors), or a repo id `org/name`"});
    vec![
        Spec {
            name: "check_model_folder",
            description: "Preflight a Hugging Face model folder for Bedrock Custom Model Import (`cmi import check`): every finding with its severity and fix, the architecture, context length, and whether the chat template serves Converse with tools. Nothing is uploaded.",
            schema: json!({"type": "object", "properties": {"path": path}, "required": ["path"], "additionalProperties": false}),
        },
        Spec {
            name: "repair_template",
            description: "Install the Converse-ready chat template for the model's family into the folder's tokenizer_config.json (`cmi template fix`); the original is kept for undo. `dry_run` shows the diff only.",
            schema: json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "The model folder"},
                "family": {"type": "string", "description": "The template family to install (llama3.1, llama3.2, qwen2, qwen3, mistral-v0.3, mistral-nemo, chatml, ...); detected when not given"},
                "dry_run": {"type": "boolean", "description": "Show the diff, write nothing"},
                "undo": {"type": "boolean", "description": "Restore the template an earlier repair replaced"}},
                "required": ["path"], "additionalProperties": false}),
        },
        Spec {
            name: "import_model",
            description: "Import a model into Bedrock (`cmi import`): preflight, template repair in a staged copy, S3 upload, the Custom Model Import job, the registry entry. Against AWS when credentials are configured, else the local Bedrock. Sends progress notifications when asked. With `no_wait`, returns the job ARN at once (see import_job_status).",
            schema: json!({"type": "object", "properties": {
                "source": path,
                "name": {"type": "string", "description": "Name of the imported model (and its registry entry)"},
                "bucket": {"type": "string", "description": "S3 bucket (required for AWS; the local Bedrock has a default)"},
                "create_bucket": {"type": "boolean", "description": "Create the bucket when it does not exist"},
                "role_arn": {"type": "string", "description": "IAM role Bedrock assumes to read the bucket (required for AWS)"},
                "quantize": {"type": "string", "enum": super::QUANTIZE_OR_NONE, "description": "How the local Bedrock runs the model"},
                "no_wait": {"type": "boolean", "description": "Return once the job is created"}},
                "required": ["source", "name"], "additionalProperties": false}),
        },
        Spec {
            name: "import_job_status",
            description: "An import job's status (`cmi import status`), by ARN or name; a completed job started with no_wait is registered.",
            schema: json!({"type": "object", "properties": {"job": {"type": "string", "description": "Job ARN or name"}}, "required": ["job"], "additionalProperties": false}),
        },
        Spec {
            name: "list_import_jobs",
            description: "Import jobs, newest first (`cmi import list`).",
            schema: json!({"type": "object", "properties": {"limit": {"type": "integer", "minimum": 1, "description": "At most this many (default 50)"}}, "additionalProperties": false}),
        },
        Spec {
            name: "list_models",
            description: "The model registry (`cmi models list`): Bedrock foundation models and your imported models, in the fields Bedrock Engineer uses.",
            schema: json!({"type": "object", "properties": {"all": {"type": "boolean", "description": "Every profile, whatever the region"}}, "additionalProperties": false}),
        },
        Spec {
            name: "export_model",
            description: "A registry entry for another tool (`cmi models export`): the TypeScript object Bedrock Engineer's models.ts expects, or the registry's JSON.",
            schema: json!({"type": "object", "properties": {
                "name": {"type": "string", "description": "Name, model ID or ARN"},
                "format": {"type": "string", "enum": ["bedrock-engineer", "json"], "description": "Default bedrock-engineer"}},
                "required": ["name"], "additionalProperties": false}),
        },
    ]
}

/// A tool's arguments as the `cmi` command line that does it.
fn command_line(tool: &str, a: &JsonObject) -> Result<Vec<String>, String> {
    let s = |k: &str| -> Result<String, String> {
        a.get(k)
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| format!("missing string argument `{k}`"))
    };
    let opt = |k: &str| a.get(k).and_then(Value::as_str).map(String::from);
    let flag = |k: &str| a.get(k).and_then(Value::as_bool).unwrap_or(false);
    let mut v: Vec<String> = Vec::new();
    match tool {
        "check_model_folder" => v.extend(["import".into(), "check".into(), s("path")?, "--json".into()]),
        "repair_template" => {
            v.extend(["template".into(), "fix".into(), s("path")?]);
            if let Some(f) = opt("family") {
                v.extend(["--family".into(), f]);
            }
            if flag("dry_run") {
                v.push("--dry-run".into());
            }
            if flag("undo") {
                v.push("--undo".into());
            }
        }
        "import_model" => {
            v.extend(["import".into(), s("source")?, "--name".into(), s("name")?]);
            for (k, f) in [
                ("bucket", "--bucket"),
                ("role_arn", "--role-arn"),
                ("quantize", "--quantize"),
            ] {
                if let Some(x) = opt(k) {
                    v.extend([f.into(), x]);
                }
            }
            for (k, f) in [("create_bucket", "--create-bucket"), ("no_wait", "--no-wait")] {
                if flag(k) {
                    v.push(f.into());
                }
            }
        }
        "import_job_status" => v.extend(["import".into(), "status".into(), s("job")?, "--json".into()]),
        "list_import_jobs" => {
            v.extend(["import".into(), "list".into(), "--json".into()]);
            if let Some(n) = a.get("limit").and_then(Value::as_u64) {
                v.extend(["--limit".into(), n.to_string()]);
            }
        }
        "list_models" => {
            v.extend(["models".into(), "list".into(), "--json".into()]);
            if flag("all") {
                v.push("--all".into());
            }
        }
        "export_model" => {
            v.extend(["models".into(), "export".into(), s("name")?]);
            if let Some(f) = opt("format") {
                v.extend(["--format".into(), f]);
            }
        }
        other => return Err(format!("no tool named `{other}`")),
    }
    Ok(v)
}

impl CmiMcp {
    /// Runs `cmi ARGS`; stderr lines go to `progress` as they come. Returns the exit code, stdout and stderr.
    async fn run_cmi(
        &self,
        args: &[String],
        progress: impl Fn(String),
    ) -> std::io::Result<(Option<i32>, String, String)> {
        let mut child = tokio::process::Command::new(&self.0.exe)
            .args(&self.0.global)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("no stdout"))?;
        let stderr = child.stderr.take().ok_or_else(|| std::io::Error::other("no stderr"))?;
        let out = tokio::spawn(async move {
            let mut s = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s).await;
            s
        });
        let mut err = String::new();
        let mut lines = tokio::io::BufReader::new(stderr).lines();
        while let Some(line) = lines.next_line().await? {
            progress(line.clone());
            err.push_str(&line);
            err.push('\n');
        }
        let status = child.wait().await?;
        let out = out.await.unwrap_or_default();
        Ok((status.code(), out, err))
    }

    async fn call(&self, req: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let args = req.arguments.unwrap_or_default();
        let line = match command_line(&req.name, &args) {
            Ok(l) => l,
            Err(e) => return CallToolResult::error(vec![ContentBlock::text(e)]),
        };
        tracing::info!(tool = %req.name, "cmi {}", line.join(" "));
        let token = ctx.meta.get_progress_token();
        let peer = ctx.peer.clone();
        let count = std::sync::atomic::AtomicU32::new(0);
        let progress = |message: String| {
            let Some(token) = token.clone() else { return };
            let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            let peer = peer.clone();
            let mut p = ProgressNotificationParam::new(token, f64::from(n));
            p.message = Some(message);
            tokio::spawn(async move {
                let _ = peer.notify_progress(p).await;
            });
        };
        let (code, out, err) = match self.run_cmi(&line, progress).await {
            Ok(r) => r,
            Err(e) => return CallToolResult::error(vec![ContentBlock::text(format!("cannot run cmi: {e}"))]),
        };
        // Exit 1 is findings (a check with errors, a failed job): a result. 2 (or a signal) is a failure.
        if !matches!(code, Some(0 | 1)) {
            let tail: Vec<&str> = err
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return CallToolResult::error(vec![ContentBlock::text(format!(
                "`cmi {}` failed (exit {}):\n{}",
                line.join(" "),
                code.map(|c| c.to_string()).unwrap_or_else(|| "by a signal".into()),
                tail.join("\n")
            ))]);
        }
        let mut result = if req.name == "import_model" {
            // `cmi import` prints the model ARN (or, with no_wait, the job ARN) on stdout, its log on stderr.
            let arn = out.trim().to_string();
            let key = if args.get("no_wait").and_then(Value::as_bool) == Some(true) {
                "jobArn"
            } else {
                "modelArn"
            };
            let log: Vec<&str> = err.lines().collect();
            let v = json!({key: arn, "name": args.get("name"), "ok": code == Some(0), "log": log});
            let mut r = CallToolResult::success(vec![ContentBlock::text(v.to_string())]);
            r.structured_content = Some(v);
            r
        } else {
            let text = if out.trim().is_empty() {
                err.clone()
            } else {
                out.clone()
            };
            let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
            if let Ok(v) = serde_json::from_str::<Value>(&out)
                && v.is_object()
            {
                r.structured_content = Some(v);
            }
            r
        };
        if code == Some(1) && req.name == "import_model" {
            result.is_error = Some(true);
        }
        result
    }
}

impl ServerHandler for CmiMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("cmi", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Bedrock Custom Model Import: check a Hugging Face model folder, repair its chat template, import it \
                 (AWS when configured, else the local Bedrock), follow the job, and list or export the registry's models.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let tools = specs()
            .into_iter()
            .map(|s| {
                let schema = match s.schema {
                    Value::Object(m) => m,
                    _ => JsonObject::new(),
                };
                Tool::new(s.name, s.description, schema)
            })
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        Ok(self.call(request, context).await.into())
    }
}

#[cfg(test)]
mod tests {
    use super::{command_line, specs};
    use serde_json::json;

    #[test]
    fn every_tool_has_a_command_line() {
        let args = json!({"path": "/m", "source": "/m", "name": "n", "job": "j", "no_wait": true, "quantize": "q8_0"});
        let args = args.as_object().expect("object");
        for s in specs() {
            let line = command_line(s.name, args).unwrap_or_else(|e| panic!("{}: {e}", s.name));
            assert!(!line.is_empty());
        }
        assert_eq!(
            command_line("import_model", args).expect("import"),
            ["import", "/m", "--name", "n", "--quantize", "q8_0", "--no-wait"]
        );
        let e = command_line("import_model", json!({"source": "/m"}).as_object().expect("o")).expect_err("no name");
        assert_eq!(e, "missing string argument `name`");
    }
}

//! Connecting to the configured servers with `rmcp`, and their tools as agent [`Tool`]s: named
//! `<server>__<tool>` (sanitised to Bedrock's `[a-zA-Z0-9_-]{1,64}`), each call bounded by a timeout, a server that
//! exits or stops answering turned into a named error result for the model.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use converse_agent::tools::{BoxFuture, Tool};
use rmcp::model::{CallToolRequestParams, ContentBlock, ResourceContents};
use rmcp::service::RunningService;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceError, ServiceExt as _};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;

use crate::config::{McpConfig, ServerConfig, Transport};
use crate::{Error, sanitize};

/// How long to wait for servers.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// For a server to start and list its tools.
    pub connect: Duration,
    /// For one tool call.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            connect: Duration::from_secs(60),
            call: Duration::from_secs(120),
        }
    }
}

/// Lines of a server's stderr kept for error messages.
const STDERR_LINES: usize = 20;

/// One connected server.
struct Server {
    name: String,
    service: RunningService<RoleClient, ()>,
    /// The last lines the server wrote on stderr (stdio servers).
    stderr: Arc<Mutex<VecDeque<String>>>,
    timeouts: Timeouts,
}

impl Server {
    /// What the server last said on stderr, as a suffix for messages.
    fn last_words(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        match lines.back() {
            Some(l) => format!("; its last stderr line: {l}"),
            None => String::new(),
        }
    }
}

/// The servers that connected, with their tools; and the ones that did not, with why.
pub struct McpServers {
    servers: Vec<Arc<Server>>,
    tools: Vec<Arc<dyn Tool>>,
    /// Servers that could not be started or listed (name, message).
    pub failed: Vec<(String, String)>,
}

impl std::fmt::Debug for McpServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServers")
            .field("servers", &self.servers.iter().map(|s| &s.name).collect::<Vec<_>>())
            .field("tools", &self.tools.iter().map(|t| t.name()).collect::<Vec<_>>())
            .field("failed", &self.failed)
            .finish()
    }
}

impl McpServers {
    /// Connects to every server of `config` at once, each within `timeouts.connect`, and lists their tools.
    /// Tool names are prefixed with the server's and kept apart from `reserved` (the built-ins' names) and from each
    /// other. A server that fails is reported in [`McpServers::failed`]; the others are used.
    pub async fn connect(config: &McpConfig, timeouts: Timeouts, reserved: &[&str]) -> McpServers {
        let attempts = config.servers.iter().map(|s| async move {
            let r = tokio::time::timeout(timeouts.connect, connect_one(s, timeouts))
                .await
                .unwrap_or_else(|_| {
                    Err(Error::Connect {
                        server: s.name.clone(),
                        message: format!("did not start and list its tools within {:?}", timeouts.connect),
                    })
                });
            (s.name.clone(), r)
        });
        let results = futures::future::join_all(attempts).await;
        let mut taken: BTreeSet<String> = reserved.iter().map(|s| s.to_string()).collect();
        let mut out = McpServers {
            servers: Vec::new(),
            tools: Vec::new(),
            failed: Vec::new(),
        };
        for (name, r) in results {
            match r {
                Ok((server, listed)) => {
                    let server = Arc::new(server);
                    for t in listed {
                        let mut exposed = sanitize::tool_name(&server.name, &t.name);
                        let mut n = 2;
                        while taken.contains(&exposed) {
                            exposed = sanitize::with_suffix(&sanitize::tool_name(&server.name, &t.name), n);
                            n += 1;
                        }
                        taken.insert(exposed.clone());
                        let description = match t.description.as_deref() {
                            Some(d) if !d.trim().is_empty() => format!("{d} (MCP server `{}`)", server.name),
                            _ => format!("`{}` of the MCP server `{}`", t.name, server.name),
                        };
                        let mut schema = Value::Object((*t.input_schema).clone());
                        if schema.get("type").is_none() {
                            schema["type"] = json!("object");
                        }
                        out.tools.push(Arc::new(McpTool {
                            server: server.clone(),
                            remote: t.name.to_string(),
                            name: exposed,
                            description,
                            schema,
                        }));
                    }
                    out.servers.push(server);
                }
                Err(e) => out.failed.push((name, e.to_string())),
            }
        }
        out
    }

    /// The tools, to add to the agent's tool set.
    pub fn tools(&self) -> &[Arc<dyn Tool>] {
        &self.tools
    }

    /// The servers that connected, by name, with the number of tools each offers.
    pub fn connected(&self) -> Vec<(String, usize)> {
        self.servers
            .iter()
            .map(|s| {
                let n = self
                    .tools
                    .iter()
                    .filter(|t| t.name().starts_with(&sanitize::prefix(&s.name)))
                    .count();
                (s.name.clone(), n)
            })
            .collect()
    }

    /// Ends every server (stdio servers are killed if they do not leave).
    pub async fn shutdown(self) {
        // Tools hold the servers too; drop them first so each server is ours alone.
        drop(self.tools);
        for s in self.servers {
            if let Ok(s) = Arc::try_unwrap(s) {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.service.cancel()).await;
            }
        }
    }
}

async fn connect_one(s: &ServerConfig, timeouts: Timeouts) -> Result<(Server, Vec<rmcp::model::Tool>), Error> {
    let err = |message: String| Error::Connect {
        server: s.name.clone(),
        message,
    };
    let stderr = Arc::new(Mutex::new(VecDeque::new()));
    let service = match &s.transport {
        Transport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args).envs(env).kill_on_drop(true);
            if let Some(dir) = cwd {
                cmd.current_dir(dir);
            }
            let (transport, err_pipe) = TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| err(format!("cannot run `{command}`: {e}")))?;
            if let Some(pipe) = err_pipe {
                let (lines, name) = (stderr.clone(), s.name.clone());
                tokio::spawn(async move {
                    let mut rd = tokio::io::BufReader::new(pipe).lines();
                    while let Ok(Some(line)) = rd.next_line().await {
                        tracing::debug!(server = %name, "{line}");
                        let mut l = lines.lock().unwrap_or_else(|p| p.into_inner());
                        if l.len() == STDERR_LINES {
                            l.pop_front();
                        }
                        l.push_back(line);
                    }
                });
            }
            ().serve(transport).await.map_err(|e| {
                let last = stderr
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .back()
                    .map(|l| format!("; its last stderr line: {l}"))
                    .unwrap_or_default();
                err(format!("`{command}` did not start as an MCP server: {e}{last}"))
            })?
        }
        Transport::Http { url, headers } => {
            let mut custom = HashMap::new();
            for (k, v) in headers {
                let name = http::HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| err(format!("`{k}` is not a valid header name")))?;
                let value = http::HeaderValue::from_str(v)
                    .map_err(|_| err(format!("the value of header `{k}` is not valid")))?;
                custom.insert(name, value);
            }
            let config =
                rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .custom_headers(custom);
            let transport = StreamableHttpClientTransport::from_config(config);
            ().serve(transport)
                .await
                .map_err(|e| err(format!("cannot connect to {url}: {e}")))?
        }
    };
    let server = Server {
        name: s.name.clone(),
        service,
        stderr,
        timeouts,
    };
    let tools = server
        .service
        .list_all_tools()
        .await
        .map_err(|e| err(format!("could not list its tools: {e}{}", server.last_words())))?;
    tracing::info!(server = %s.name, tools = tools.len(), "MCP server connected");
    Ok((server, tools))
}

/// A server's tool, as the agent sees it.
struct McpTool {
    server: Arc<Server>,
    /// The server's own name for it.
    remote: String,
    /// The name offered to the model.
    name: String,
    description: String,
    schema: Value,
}

impl Tool for McpTool {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn input_schema(&self) -> Value {
        self.schema.clone()
    }
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let server = &self.server;
            let what = format!("MCP server `{}`", server.name);
            if server.service.is_transport_closed() {
                return Err(format!(
                    "{what} is not running any more (it exited or closed its connection){}; `{}` cannot be called",
                    server.last_words(),
                    self.remote
                ));
            }
            let mut params = CallToolRequestParams::new(self.remote.clone());
            params.arguments = match input {
                Value::Object(m) => Some(m.clone()),
                Value::Null => None,
                other => return Err(format!("the input must be a JSON object, not {other}")),
            };
            let call = server.service.call_tool(params);
            let result = match tokio::time::timeout(server.timeouts.call, call).await {
                Err(_) => {
                    return Err(format!(
                        "{what} did not answer the call of `{}` within {:?} (timed out)",
                        self.remote, server.timeouts.call
                    ));
                }
                Ok(Err(ServiceError::McpError(e))) => {
                    return Err(format!("{what} refused the call of `{}`: {}", self.remote, e.message));
                }
                Ok(Err(ServiceError::TransportClosed | ServiceError::TransportSend(_))) => {
                    return Err(format!(
                        "{what} exited or closed its connection during the call of `{}`{}",
                        self.remote,
                        server.last_words()
                    ));
                }
                Ok(Err(e)) => {
                    return Err(format!(
                        "{what} failed the call of `{}`: {e}{}",
                        self.remote,
                        server.last_words()
                    ));
                }
                Ok(Ok(r)) => r,
            };
            let mut text: Vec<String> = result.content.iter().map(content_text).collect();
            if text.is_empty()
                && let Some(s) = &result.structured_content
            {
                text.push(s.to_string());
            }
            let text = text.join("\n");
            if result.is_error == Some(true) {
                Err(if text.is_empty() {
                    format!("`{}` failed (no message from {what})", self.remote)
                } else {
                    text
                })
            } else {
                Ok(text)
            }
        })
    }
}

/// A content block as text for the model.
fn content_text(c: &ContentBlock) -> String {
    match c {
        ContentBlock::Text(t) => t.text.clone(),
        ContentBlock::Image(i) => format!("[image, {}, {} bytes of base64]", i.mime_type, i.data.len()),
        ContentBlock::Audio(a) => format!("[audio, {}]", a.mime_type),
        ContentBlock::Resource(r) => match &r.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => format!("[resource {uri}]\n{text}"),
            other => format!("[resource {}]", serde_json::to_string(other).unwrap_or_default()),
        },
        ContentBlock::ResourceLink(l) => format!("[resource link {}]", l.uri),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}

//! The `mcpServers` file Claude Desktop and Bedrock Engineer read: stdio servers (`command`, `args`, `env`, `cwd`)
//! and Streamable HTTP servers (`url`, `headers`), each error naming the bad value and the shape expected.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Error;

/// The servers of a config file, in the order it lists them (disabled ones left out).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpConfig {
    /// The servers.
    pub servers: Vec<ServerConfig>,
}

/// One server: its name (the key under `mcpServers`) and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The key under `mcpServers`.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
}

/// How a server is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// A child process speaking MCP on its stdin and stdout.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Variables added to the inherited environment.
        env: BTreeMap<String, String>,
        /// Working directory (the caller's when not given).
        cwd: Option<PathBuf>,
    },
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL (`http://` or `https://`).
        url: String,
        /// Headers sent with every request (e.g. `Authorization`).
        headers: BTreeMap<String, String>,
    },
}

/// What a config file looks like, for error messages.
pub const EXPECTED_SHAPE: &str = r#"{"mcpServers": {"NAME": {"command": "npx", "args": ["-y", "PACKAGE"], "env": {"KEY": "VALUE"}}, "OTHER": {"url": "https://HOST/mcp", "headers": {"Authorization": "Bearer TOKEN"}}}}"#;

impl McpConfig {
    /// Reads and parses `file`.
    pub fn load(file: &Path) -> Result<McpConfig, Error> {
        let text = std::fs::read_to_string(file).map_err(|source| Error::Read {
            file: file.to_path_buf(),
            source,
        })?;
        McpConfig::parse(&text, file)
    }

    /// Parses the text of `file` (named in errors).
    pub fn parse(text: &str, file: &Path) -> Result<McpConfig, Error> {
        let bad = |field: &str, message: String| Error::Config {
            file: file.to_path_buf(),
            field: field.to_string(),
            message,
        };
        let root: Value = serde_json::from_str(text).map_err(|e| {
            bad(
                "",
                format!(
                    "not JSON (line {}, column {}: {e}); expected {EXPECTED_SHAPE}",
                    e.line(),
                    e.column()
                ),
            )
        })?;
        let Some(obj) = root.as_object() else {
            return Err(bad(
                "",
                format!("is {}, expected an object {EXPECTED_SHAPE}", kind(&root)),
            ));
        };
        // `servers` is what VS Code calls the same map.
        let servers = match obj.get("mcpServers").or_else(|| obj.get("servers")) {
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(bad(
                    "mcpServers",
                    format!("is {}, expected an object of servers by name", kind(other)),
                ));
            }
            None => {
                return Err(bad("mcpServers", format!("is missing; expected {EXPECTED_SHAPE}")));
            }
        };
        let mut out = Vec::new();
        for (name, server) in servers {
            let at = format!("mcpServers.{name}");
            if name.is_empty() {
                return Err(bad(&at, "has an empty name; name each server".into()));
            }
            let Some(s) = server.as_object() else {
                return Err(bad(
                    &at,
                    format!(
                        "is {}, expected an object with `command` (stdio) or `url` (Streamable HTTP)",
                        kind(server)
                    ),
                ));
            };
            if s.get("disabled").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let ty = match s.get("type").or_else(|| s.get("transport")) {
                None => None,
                Some(Value::String(t)) => Some(t.as_str()),
                Some(other) => {
                    return Err(bad(
                        &format!("{at}.type"),
                        format!("is {}, expected \"stdio\" or \"http\"", kind(other)),
                    ));
                }
            };
            let transport = match (ty, s.get("command"), s.get("url")) {
                (Some("sse"), ..) => {
                    return Err(bad(
                        &format!("{at}.type"),
                        "is \"sse\", the transport MCP replaced; expected \"stdio\" or \"http\" (Streamable HTTP)"
                            .into(),
                    ));
                }
                (Some(t), ..) if !matches!(t, "stdio" | "http" | "streamable-http" | "streamableHttp") => {
                    return Err(bad(
                        &format!("{at}.type"),
                        format!("is \"{t}\", expected \"stdio\" or \"http\""),
                    ));
                }
                (_, Some(_), Some(_)) => {
                    return Err(bad(
                        &at,
                        "has both `command` and `url`; a server is either a command (stdio) or a URL".into(),
                    ));
                }
                (Some("stdio") | None, Some(command), None) => {
                    let command = match command {
                        Value::String(c) if !c.trim().is_empty() => c.clone(),
                        other => {
                            return Err(bad(
                                &format!("{at}.command"),
                                format!("is {}, expected the program to run, e.g. \"npx\"", kind(other)),
                            ));
                        }
                    };
                    let args = match s.get("args") {
                        None => Vec::new(),
                        Some(Value::Array(a)) => a
                            .iter()
                            .enumerate()
                            .map(|(i, v)| match v {
                                Value::String(s) => Ok(s.clone()),
                                other => Err(bad(
                                    &format!("{at}.args[{i}]"),
                                    format!("is {}, expected a string", kind(other)),
                                )),
                            })
                            .collect::<Result<_, _>>()?,
                        Some(other) => {
                            return Err(bad(
                                &format!("{at}.args"),
                                format!("is {}, expected an array of strings", kind(other)),
                            ));
                        }
                    };
                    let cwd = match s.get("cwd") {
                        None | Some(Value::Null) => None,
                        Some(Value::String(c)) => Some(PathBuf::from(c)),
                        Some(other) => {
                            return Err(bad(
                                &format!("{at}.cwd"),
                                format!("is {}, expected a directory path", kind(other)),
                            ));
                        }
                    };
                    Transport::Stdio {
                        command,
                        args,
                        env: string_map(s.get("env"), &format!("{at}.env"), &bad)?,
                        cwd,
                    }
                }
                (Some("stdio"), None, _) => {
                    return Err(bad(
                        &format!("{at}.command"),
                        "is missing; a stdio server needs the program to run".into(),
                    ));
                }
                (_, None, Some(url)) => {
                    let url = match url {
                        Value::String(u) if u.starts_with("http://") || u.starts_with("https://") => u.clone(),
                        other => {
                            return Err(bad(
                                &format!("{at}.url"),
                                format!(
                                    "is {}, expected an http:// or https:// URL of a Streamable HTTP endpoint",
                                    kind(other)
                                ),
                            ));
                        }
                    };
                    Transport::Http {
                        url,
                        headers: string_map(s.get("headers"), &format!("{at}.headers"), &bad)?,
                    }
                }
                (_, None, None) => {
                    return Err(bad(
                        &at,
                        "has neither `command` (a stdio server) nor `url` (a Streamable HTTP server)".into(),
                    ));
                }
                (Some(_), Some(_), None) => {
                    return Err(bad(
                        &format!("{at}.url"),
                        "is missing; an http server needs its URL, not a `command`".into(),
                    ));
                }
            };
            out.push(ServerConfig {
                name: name.clone(),
                transport,
            });
        }
        Ok(McpConfig { servers: out })
    }
}

fn string_map(
    v: Option<&Value>,
    at: &str,
    bad: &dyn Fn(&str, String) -> Error,
) -> Result<BTreeMap<String, String>, Error> {
    match v {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(bad(
                    &format!("{at}.{k}"),
                    format!("is {}, expected a string", kind(other)),
                )),
            })
            .collect(),
        Some(other) => Err(bad(at, format!("is {}, expected an object of strings", kind(other)))),
    }
}

/// `a number (3)`, `an array`, …: what a value is, for messages.
fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

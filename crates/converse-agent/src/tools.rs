//! Tools the model can call, and the built-ins: `read_file`, `list_files`, `write_file` (confined to a workspace
//! directory, symlink escapes included) and `run_command` (asks first unless allowed).

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

/// A boxed future, for object-safe async callbacks.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A tool the model can call. `call` returns the text sent back as the toolResult; `Err` is sent with status `error`.
pub trait Tool: Send + Sync {
    /// Name (`[a-zA-Z0-9_-]{1,64}`).
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of the input (an object).
    fn input_schema(&self) -> Value;
    /// Runs it.
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>>;
}

/// Asked before `run_command` runs something not allow-listed; resolves to whether to run it.
pub type Approver = Arc<dyn Fn(String) -> BoxFuture<'static, bool> + Send + Sync>;

/// The tools offered to the model.
#[derive(Clone, Default)]
pub struct ToolSet {
    tools: Vec<Arc<dyn Tool>>,
}

impl std::fmt::Debug for ToolSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.tools.iter().map(|t| t.name())).finish()
    }
}

impl ToolSet {
    /// No tools.
    pub fn new() -> ToolSet {
        ToolSet::default()
    }

    /// The built-ins, confined to `workspace`.
    pub fn builtin(workspace: Workspace, approver: Approver, allow: Vec<String>, yes: bool) -> ToolSet {
        let ws = Arc::new(workspace);
        let mut t = ToolSet::new();
        t.add(Arc::new(ReadFile(ws.clone())));
        t.add(Arc::new(ListFiles(ws.clone())));
        t.add(Arc::new(WriteFile(ws.clone())));
        t.add(Arc::new(RunCommand {
            ws,
            approver,
            allow,
            yes,
            timeout: Duration::from_secs(120),
        }));
        t
    }

    /// Adds a tool (replacing one of the same name).
    pub fn add(&mut self, tool: Arc<dyn Tool>) {
        self.tools.retain(|t| t.name() != tool.name());
        self.tools.push(tool);
    }

    /// The tools.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Tool>> {
        self.tools.iter()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// Runs the named tool; an unknown name is an error result, not a crash.
    pub async fn call(&self, name: &str, input: &Value) -> Result<String, String> {
        match self.tools.iter().find(|t| t.name() == name) {
            Some(t) => t.call(input).await,
            None => Err(format!(
                "no tool named `{name}`; available: {}",
                self.tools.iter().map(|t| t.name()).collect::<Vec<_>>().join(", ")
            )),
        }
    }

    /// The tools in the OpenAI / Hugging Face shape chat templates take.
    pub fn openai_specs(&self) -> Vec<Value> {
        self.tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name(), "description": t.description(), "parameters": t.input_schema()}})
            })
            .collect()
    }
}

/// A directory the file tools may not leave.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// Canonical root.
    root: PathBuf,
}

impl Workspace {
    /// Opens `dir` (it must exist).
    pub fn new(dir: &Path) -> std::io::Result<Workspace> {
        Ok(Workspace {
            root: dir.canonicalize()?,
        })
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a path the model gave to a path inside the workspace, or explains why not. Relative paths are taken
    /// from the root; absolute paths must lie inside it. Existing paths are canonicalised (following symlinks) and
    /// must stay inside; for a new file, its nearest existing ancestor must.
    pub fn resolve(&self, given: &str) -> Result<PathBuf, String> {
        let given_path = Path::new(given);
        let joined = if given_path.is_absolute() {
            given_path.to_path_buf()
        } else {
            self.root.join(given_path)
        };
        // Lexical normalisation first, so `a/../../x` is judged before anything touches the disk.
        let mut norm = PathBuf::new();
        for c in joined.components() {
            match c {
                Component::ParentDir => {
                    if !norm.pop() {
                        return Err(format!("`{given}` is outside the workspace"));
                    }
                }
                Component::CurDir => {}
                other => norm.push(other.as_os_str()),
            }
        }
        if !norm.starts_with(&self.root) {
            return Err(format!("`{given}` is outside the workspace {}", self.root.display()));
        }
        // Follow symlinks: the real location must also be inside.
        let mut existing = norm.as_path();
        let mut rest = vec![];
        loop {
            if existing.symlink_metadata().is_ok() {
                break;
            }
            match (existing.parent(), existing.file_name()) {
                (Some(p), Some(name)) => {
                    rest.push(name.to_os_string());
                    existing = p;
                }
                _ => return Err(format!("`{given}` is outside the workspace")),
            }
        }
        let real = existing.canonicalize().map_err(|e| format!("`{given}`: {e}"))?;
        if !real.starts_with(&self.root) {
            return Err(format!(
                "`{given}` leads outside the workspace (through a symlink to {})",
                real.display()
            ));
        }
        let mut out = real;
        for r in rest.into_iter().rev() {
            out.push(r);
        }
        Ok(out)
    }

    fn display(&self, p: &Path) -> String {
        p.strip_prefix(&self.root)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string())
    }
}

fn str_arg<'a>(input: &'a Value, key: &str) -> Result<&'a str, String> {
    input
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("missing string argument `{key}`"))
}

/// Longest file content returned to the model.
const MAX_READ: usize = 100_000;

struct ReadFile(Arc<Workspace>);

impl Tool for ReadFile {
    fn name(&self) -> &str {
        "read_file"
    }
    fn description(&self) -> &str {
        "Read a UTF-8 text file in the workspace. Paths are relative to the workspace root."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": {"path": {"type": "string", "description": "File path"}}, "required": ["path"]})
    }
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let p = self.0.resolve(str_arg(input, "path")?)?;
            let bytes = tokio::fs::read(&p)
                .await
                .map_err(|e| format!("cannot read {}: {e}", self.0.display(&p)))?;
            let mut s = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", self.0.display(&p)))?;
            if s.len() > MAX_READ {
                let mut cut = MAX_READ;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push_str("\n[truncated]");
            }
            Ok(s)
        })
    }
}

struct ListFiles(Arc<Workspace>);

impl Tool for ListFiles {
    fn name(&self) -> &str {
        "list_files"
    }
    fn description(&self) -> &str {
        "List files and directories in a workspace directory (directories end with /)."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": {
            "path": {"type": "string", "description": "Directory, relative to the workspace root (default: the root)"},
            "recursive": {"type": "boolean", "description": "List subdirectories too"}}})
    }
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let dir = self
                .0
                .resolve(input.get("path").and_then(Value::as_str).unwrap_or("."))?;
            let recursive = input.get("recursive").and_then(Value::as_bool).unwrap_or(false);
            let mut out = vec![];
            let mut stack = vec![dir.clone()];
            while let Some(d) = stack.pop() {
                let mut rd = tokio::fs::read_dir(&d)
                    .await
                    .map_err(|e| format!("cannot list {}: {e}", self.0.display(&d)))?;
                while let Some(e) = rd.next_entry().await.map_err(|e| e.to_string())? {
                    let p = e.path();
                    let is_dir = e.file_type().await.map(|t| t.is_dir()).unwrap_or(false);
                    let rel = p
                        .strip_prefix(&dir)
                        .map(|r| r.display().to_string())
                        .unwrap_or_default();
                    out.push(if is_dir { format!("{rel}/") } else { rel });
                    if is_dir && recursive && out.len() < 2000 {
                        stack.push(p);
                    }
                }
            }
            out.sort();
            Ok(if out.is_empty() {
                "(empty)".to_string()
            } else {
                out.join("\n")
            })
        })
    }
}

struct WriteFile(Arc<Workspace>);

impl Tool for WriteFile {
    fn name(&self) -> &str {
        "write_file"
    }
    fn description(&self) -> &str {
        "Create or overwrite a text file in the workspace (parent directories are created)."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": {
            "path": {"type": "string", "description": "File path, relative to the workspace root"},
            "content": {"type": "string", "description": "The whole new content"}}, "required": ["path", "content"]})
    }
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let p = self.0.resolve(str_arg(input, "path")?)?;
            let content = str_arg(input, "content")?;
            if let Some(parent) = p.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            // Re-check after creating directories: a racing symlink must not redirect the write.
            let p = self.0.resolve(&p.to_string_lossy())?;
            tokio::fs::write(&p, content)
                .await
                .map_err(|e| format!("cannot write {}: {e}", self.0.display(&p)))?;
            Ok(format!("wrote {} bytes to {}", content.len(), self.0.display(&p)))
        })
    }
}

struct RunCommand {
    ws: Arc<Workspace>,
    approver: Approver,
    /// Program names that run without asking.
    allow: Vec<String>,
    /// Run everything without asking (`--yes`).
    yes: bool,
    timeout: Duration,
}

/// Longest command output returned to the model.
const MAX_OUTPUT: usize = 20_000;

impl Tool for RunCommand {
    fn name(&self) -> &str {
        "run_command"
    }
    fn description(&self) -> &str {
        "Run a shell command in the workspace directory and return its exit status and output. The user may be asked to approve it."
    }
    fn input_schema(&self) -> Value {
        json!({"type": "object", "additionalProperties": false, "properties": {"command": {"type": "string", "description": "The shell command"}}, "required": ["command"]})
    }
    fn call<'a>(&'a self, input: &'a Value) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let command = str_arg(input, "command")?.to_string();
            let program = command.split_whitespace().next().unwrap_or_default();
            let allowed = self.yes || self.allow.iter().any(|a| a == program);
            if !allowed && !(self.approver)(command.clone()).await {
                return Err("the user declined to run this command".to_string());
            }
            let child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .current_dir(self.ws.root())
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .output();
            let out = tokio::time::timeout(self.timeout, child)
                .await
                .map_err(|_| format!("timed out after {:?}", self.timeout))?
                .map_err(|e| format!("cannot run: {e}"))?;
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            let err = String::from_utf8_lossy(&out.stderr);
            if !err.is_empty() {
                text.push_str("\n[stderr]\n");
                text.push_str(&err);
            }
            if text.len() > MAX_OUTPUT {
                let mut cut = MAX_OUTPUT;
                while !text.is_char_boundary(cut) {
                    cut -= 1;
                }
                text.truncate(cut);
                text.push_str("\n[truncated]");
            }
            let status = out
                .status
                .code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "signal".into());
            let body = format!("exit status: {status}\n{text}");
            if out.status.success() { Ok(body) } else { Err(body) }
        })
    }
}

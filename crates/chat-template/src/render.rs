//! Rendering a chat template with minijinja exactly like transformers' `apply_chat_template(..., tokenize=False)`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, Rest, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, State, UndefinedBehavior};
use serde_json::{Map, Value as Json};

use crate::load::{self, SpecialTokens, TemplateSource};
use crate::pyjson::{self, DumpOptions};
use crate::tree::{JsonTree, PairMap, TreePool};
use crate::{Error, Family, ToolSyntax};

/// Resource limits that stop runaway templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// minijinja fuel: roughly the number of instructions one render may execute (`None` = unlimited).
    pub fuel: Option<u64>,
    /// Largest rendered output, in bytes.
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel: Some(20_000_000),
            max_output_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One render: the arguments of transformers' `apply_chat_template`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RenderRequest {
    /// OpenAI / Hugging Face shaped messages (`role`, `content`, `tool_calls`, ...). Key order is kept.
    pub messages: Vec<Json>,
    /// JSON-schema function tools (`{"type": "function", "function": {...}}`), or `None` for no tools.
    pub tools: Option<Vec<Json>>,
    /// Append the assistant header so the model answers next.
    pub add_generation_prompt: bool,
    /// Extra template variables (`enable_thinking`, `date_string`, ...); they override special tokens.
    pub template_kwargs: Map<String, Json>,
    /// The clock `strftime_now` reads; `None` = the local time now (like Python's `datetime.now()`).
    pub now: Option<chrono::NaiveDateTime>,
}

impl RenderRequest {
    /// Reads the conformance corpus's request shape: `{"messages", "tools", "add_generation_prompt",
    /// "template_kwargs"}` (other keys are ignored).
    pub fn from_json(v: &Json) -> Result<RenderRequest, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::Request("the request must be a JSON object".into()))?;
        let messages = match obj.get("messages") {
            Some(Json::Array(m)) => m.clone(),
            other => {
                return Err(Error::Request(format!(
                    "`messages` must be a list, found {}",
                    other.map_or_else(|| "nothing".to_string(), load::short)
                )));
            }
        };
        let tools = match obj.get("tools") {
            None | Some(Json::Null) => None,
            Some(Json::Array(t)) => Some(t.clone()),
            Some(other) => {
                return Err(Error::Request(format!(
                    "`tools` must be a list or null, found {}",
                    load::short(other)
                )));
            }
        };
        let add_generation_prompt = match obj.get("add_generation_prompt") {
            None | Some(Json::Null) => false,
            Some(Json::Bool(b)) => *b,
            Some(other) => {
                return Err(Error::Request(format!(
                    "`add_generation_prompt` must be a boolean, found {}",
                    load::short(other)
                )));
            }
        };
        let template_kwargs = match obj.get("template_kwargs") {
            None | Some(Json::Null) => Map::new(),
            Some(Json::Object(m)) => m.clone(),
            Some(other) => {
                return Err(Error::Request(format!(
                    "`template_kwargs` must be an object, found {}",
                    load::short(other)
                )));
            }
        };
        Ok(RenderRequest {
            messages,
            tools,
            add_generation_prompt,
            template_kwargs,
            now: None,
        })
    }
}

/// A compiled chat template (one or several named ones) plus the special tokens it is rendered with.
/// Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct ChatTemplate {
    inner: Arc<Inner>,
}

struct Inner {
    env: Environment<'static>,
    /// `(name, source)`; a single template is named `default`.
    templates: Vec<(String, String)>,
    single: bool,
    special: SpecialTokens,
    /// The special tokens as context entries, made once.
    special_values: Vec<(Value, Value)>,
    limits: Limits,
    /// Emptied trees whose buffers later renders reuse.
    pool: TreePool,
    /// Whether any of the templates mentions `tools` (if none does, the variable is never read).
    reads_tools: bool,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("templates", &self.names().collect::<Vec<_>>())
            .field("special_tokens", &self.inner.special)
            .finish()
    }
}

/// Name of the hidden context variable that carries the fixed clock.
const NOW_VAR: &str = "__cmi_strftime_now__";

impl ChatTemplate {
    /// Loads a model folder's template: `chat_template.jinja` / `chat_template.json` win over the `chat_template`
    /// field of `tokenizer_config.json`; special tokens come from `tokenizer_config.json`.
    pub fn from_model_dir(dir: &Path) -> Result<ChatTemplate, Error> {
        let loaded = load::load_dir(dir)?;
        ChatTemplate::from_source(loaded.source, loaded.special, Limits::default())
    }

    /// Compiles one template string.
    pub fn new(source: &str, special_tokens: SpecialTokens) -> Result<ChatTemplate, Error> {
        ChatTemplate::from_source(
            TemplateSource::Single(source.to_owned()),
            special_tokens,
            Limits::default(),
        )
    }

    /// Compiles a single template or a set of named templates with explicit limits.
    pub fn from_source(
        source: TemplateSource,
        special_tokens: SpecialTokens,
        limits: Limits,
    ) -> Result<ChatTemplate, Error> {
        let (templates, single) = match source {
            TemplateSource::Single(s) => (vec![("default".to_owned(), s)], true),
            TemplateSource::Named(n) => (n, false),
        };
        let mut env = new_environment(limits);
        for (name, src) in &templates {
            env.add_template_owned(name.clone(), rewrite_generation_tags(src))
                .map_err(|e| map_error(e, name, Some(src)))?;
        }
        let reads_tools = templates.iter().any(|(_, src)| src.contains("tools"));
        Ok(ChatTemplate {
            inner: Arc::new(Inner {
                env,
                templates,
                single,
                special_values: special_tokens
                    .iter()
                    .map(|(name, tok)| (Value::from(name), Value::from(tok)))
                    .collect(),
                special: special_tokens,
                limits,
                pool: TreePool::default(),
                reads_tools,
            }),
        })
    }

    /// The same templates with different limits.
    pub fn with_limits(&self, limits: Limits) -> Result<ChatTemplate, Error> {
        let source = if self.inner.single {
            TemplateSource::Single(self.source().to_owned())
        } else {
            TemplateSource::Named(self.inner.templates.clone())
        };
        ChatTemplate::from_source(source, self.inner.special.clone(), limits)
    }

    /// The main template's source (the single template, or `default`, or the first named one).
    pub fn source(&self) -> &str {
        let t = &self.inner.templates;
        t.iter()
            .find(|(n, _)| n == "default")
            .or_else(|| t.first())
            .map_or("", |(_, s)| s.as_str())
    }

    /// The source of a named template.
    pub fn named_source(&self, name: &str) -> Option<&str> {
        self.inner
            .templates
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.as_str())
    }

    /// Names of the templates (`default` for a single one).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.inner.templates.iter().map(|(n, _)| n.as_str())
    }

    /// The special tokens the template is rendered with.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.inner.special
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// What a model prompted with this template writes for tool calls.
    pub fn tool_syntax(&self) -> ToolSyntax {
        let src = self.tools_source();
        ToolSyntax::from_template(src)
    }

    /// The family the template's own text points to.
    pub fn family(&self) -> Family {
        crate::detect_family(None, Some(self.source()))
    }

    /// The template used when tools are given (`tool_use` if present).
    pub(crate) fn tools_source(&self) -> &str {
        self.named_source("tool_use").unwrap_or_else(|| self.source())
    }

    /// Picks the template transformers would: `tool_use` when tools are given and it exists, else `default`.
    fn select(&self, has_tools: bool) -> Result<&str, Error> {
        if self.inner.single {
            return Ok("default");
        }
        if has_tools && self.named_source("tool_use").is_some() {
            return Ok("tool_use");
        }
        if self.named_source("default").is_some() {
            return Ok("default");
        }
        Err(Error::NoNamedTemplate {
            name: "default".into(),
            available: self.names().collect::<Vec<_>>().join(", "),
        })
    }

    /// Renders like `apply_chat_template(messages, tools=..., add_generation_prompt=..., tokenize=False,
    /// **template_kwargs)`: byte-identical output, or the template's own error.
    pub fn render(&self, req: &RenderRequest) -> Result<String, Error> {
        let name = self.select(req.tools.is_some())?;
        self.render_named(name, req)
    }

    /// Renders a specific named template.
    pub fn render_named(&self, name: &str, req: &RenderRequest) -> Result<String, Error> {
        let source = self.named_source(name).ok_or_else(|| Error::NoNamedTemplate {
            name: name.to_owned(),
            available: self.names().collect::<Vec<_>>().join(", "),
        })?;
        let tmpl = self
            .inner
            .env
            .get_template(name)
            .map_err(|e| map_error(e, name, Some(source)))?;
        let (ctx, tree) = self.context(req)?;
        let mut out = LimitedWriter {
            buf: Vec::with_capacity(4096),
            limit: self.inner.limits.max_output_bytes,
            exceeded: false,
        };
        let result = tmpl.render_captured_to(ctx, &mut out).map(drop);
        // Every value of the render is gone now: keep the tree's buffers for the next render.
        self.inner.pool.put(tree);
        match result {
            Ok(()) => {}
            Err(_) if out.exceeded => {
                return Err(Error::Limit {
                    what: "output size in bytes",
                    limit: self.inner.limits.max_output_bytes as u64,
                });
            }
            Err(e) => {
                return Err(match map_error(e, name, Some(source)) {
                    Error::Limit { what, .. } => Error::Limit {
                        what,
                        limit: self.inner.limits.fuel.unwrap_or(0),
                    },
                    other => other,
                });
            }
        }
        // The writer only ever receives whole UTF-8 strings from minijinja.
        String::from_utf8(out.buf).map_err(|e| Error::Render {
            message: format!("output is not UTF-8: {e}"),
            line: None,
        })
    }

    /// The render context, and the tree its JSON lives in (to recycle once the render is over).
    fn context(&self, req: &RenderRequest) -> Result<(Value, Arc<JsonTree>), Error> {
        if req.messages.is_empty() {
            return Err(Error::Request("the conversation has no messages".into()));
        }
        let mut tree = self.inner.pool.take();
        let messages = tree.push_messages(&req.messages)?;
        // A template whose text never names `tools` cannot read them: skip copying the schemas.
        let tools = match &req.tools {
            Some(t) if self.inner.reads_tools => Some(tree.push_seq(t.iter())),
            _ => None,
        };
        let mut kwargs = Vec::with_capacity(req.template_kwargs.len());
        for (k, v) in &req.template_kwargs {
            if matches!(k.as_str(), "messages" | "tools" | "documents" | "add_generation_prompt") {
                return Err(Error::Request(format!(
                    "template_kwargs may not set `{k}`: it is a render argument"
                )));
            }
            kwargs.push((k.as_str(), tree.push(v)));
        }
        let tree = Arc::new(tree);

        let mut ctx: Vec<(Value, Value)> = Vec::with_capacity(self.inner.special_values.len() + kwargs.len() + 5);
        ctx.push((Value::from("messages"), tree.value(messages)));
        ctx.push((
            Value::from("tools"),
            tools.map_or_else(|| Value::from(()), |t| tree.value(t)),
        ));
        ctx.push((Value::from("documents"), Value::from(())));
        ctx.push((
            Value::from("add_generation_prompt"),
            Value::from(req.add_generation_prompt),
        ));
        ctx.extend(self.inner.special_values.iter().cloned());
        let fixed = ctx.len();
        for (k, id) in kwargs {
            // A kwarg overrides a special token of the same name.
            let v = tree.value(id);
            match ctx[..fixed].iter_mut().find(|(name, _)| name.as_str() == Some(k)) {
                Some(slot) => slot.1 = v,
                None => ctx.push((Value::from(k), v)),
            }
        }
        ctx.push((
            Value::from(NOW_VAR),
            Value::from_object(FixedNow(req.now.unwrap_or_else(|| chrono::Local::now().naive_local()))),
        ));
        Ok((Value::from_object(PairMap(ctx)), tree))
    }
}

/// An output sink that refuses to grow past a limit (minijinja then stops rendering).
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("output limit exceeded"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The clock `strftime_now` reads, carried in the render context.
#[derive(Debug)]
struct FixedNow(chrono::NaiveDateTime);

impl Object for FixedNow {}

/// Marks an error raised by the template's own `raise_exception`.
#[derive(Debug)]
struct Raised(String);

impl fmt::Display for Raised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn new_environment(limits: Limits) -> Environment<'static> {
    let mut env = Environment::new();
    let mut syntax = minijinja::syntax::SyntaxConfig::builder();
    syntax
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(false);
    // The default delimiters always build.
    if let Ok(s) = syntax.build() {
        env.set_syntax(s);
    }
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // Debug mode (minijinja's default in debug builds) copies the template state into every error: slow, and our
    // errors carry line numbers without it.
    env.set_debug(false);
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_fuel(limits.fuel);
    env.set_recursion_limit(200);
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(python_methods);
    env.set_formatter(|out, _state, value| {
        if let Some(s) = value.as_str() {
            // Most output is strings: write them without going through `Display`.
            out.write_str(s)?;
        } else if value.kind() == ValueKind::Number && !value.is_integer() {
            let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
            out.write_str(&pyjson::float_repr(f, false))?;
        } else {
            fmt::Write::write_fmt(out, format_args!("{value}"))?;
        }
        Ok(())
    });
    env.add_filter("tojson", tojson);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env
}

fn raise_exception(message: Option<Value>) -> Result<Value, minijinja::Error> {
    let msg = message.map(|m| m.to_string()).unwrap_or_default();
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg.clone()).with_source(Raised(msg)))
}

fn strftime_now(state: &State, format: &str) -> Result<Value, minijinja::Error> {
    use chrono::format::{Item, StrftimeItems};
    let now = state
        .lookup(NOW_VAR)
        .and_then(|v| v.downcast_object_ref::<FixedNow>().map(|n| n.0))
        .unwrap_or_else(|| chrono::Local::now().naive_local());
    let items: Vec<Item<'_>> = StrftimeItems::new(format).collect();
    if items.iter().any(|i| matches!(i, Item::Error)) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: unsupported format string {format:?}"),
        ));
    }
    let mut s = String::new();
    fmt::Write::write_fmt(&mut s, format_args!("{}", now.format_with_items(items.into_iter()))).map_err(|_| {
        minijinja::Error::new(
            ErrorKind::InvalidOperation,
            format!("strftime_now: cannot format with {format:?}"),
        )
    })?;
    Ok(Value::from(s))
}

/// transformers' `tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)`.
fn tojson(value: &Value, args: Rest<Value>, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let mut opts = DumpOptions::default();
    if args.is_empty() && kwargs.args().next().is_none() {
        // `x | tojson`, by far the most common call.
        return pyjson::dumps_value(value, &opts);
    }
    let names = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > names.len() {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let get = |i: usize| -> Result<Option<Value>, minijinja::Error> {
        match args.get(i) {
            Some(v) => Ok(Some(v.clone())),
            None => kwargs.get::<Option<Value>>(names[i]),
        }
    };
    if let Some(v) = get(0)? {
        opts.ensure_ascii = v.is_true();
    }
    let indent = get(1)?;
    let separators = get(2)?;
    if let Some(v) = get(3)? {
        opts.sort_keys = v.is_true();
    }
    kwargs.assert_all_used()?;
    match indent {
        None => {}
        Some(v) if v.is_none() => {}
        Some(v) if v.kind() == ValueKind::String => opts.indent = Some(v.to_string()),
        Some(v) => {
            let n = i64::try_from(v.clone()).map_err(|_| {
                minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson: indent must be an integer or a string, not {}", v.kind()),
                )
            })?;
            opts.indent = Some(" ".repeat(n.max(0) as usize));
        }
    }
    if opts.indent.is_some() {
        opts.item_sep = ",".into();
    }
    if let Some(seps) = separators.filter(|s| !s.is_none()) {
        let parts: Vec<Value> = seps.try_iter()?.collect();
        if parts.len() != 2 {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair (item_separator, key_separator)",
            ));
        }
        opts.item_sep = parts[0].to_string();
        opts.key_sep = parts[1].to_string();
    }
    pyjson::dumps_value(value, &opts)
}

/// Python methods on strings, lists and dicts: minijinja-contrib's pycompat plus a few it lacks.
fn python_methods(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    if let Some(s) = value.as_str() {
        match (method, args) {
            ("rsplit", _) => return rsplit(s, args),
            ("removeprefix", [p]) => {
                let p = p.to_string();
                return Ok(Value::from(s.strip_prefix(p.as_str()).unwrap_or(s)));
            }
            ("removesuffix", [p]) => {
                let p = p.to_string();
                return Ok(Value::from(s.strip_suffix(p.as_str()).unwrap_or(s)));
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Python's `str.rsplit(sep=None, maxsplit=-1)`.
fn rsplit(s: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
    let sep = args.first().filter(|v| !v.is_none()).map(|v| v.to_string());
    let maxsplit = args.get(1).and_then(|v| i64::try_from(v.clone()).ok()).unwrap_or(-1);
    let mut parts: Vec<String> = match &sep {
        Some(sep) if sep.is_empty() => {
            return Err(minijinja::Error::new(ErrorKind::InvalidOperation, "empty separator"));
        }
        Some(sep) if maxsplit < 0 => s.rsplit(sep.as_str()).map(str::to_owned).collect(),
        Some(sep) => s
            .rsplitn(maxsplit as usize + 1, sep.as_str())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut rest = s.trim_end();
            let mut out = Vec::new();
            while !rest.is_empty() {
                if maxsplit >= 0 && out.len() as i64 == maxsplit {
                    out.push(rest.to_owned());
                    break;
                }
                match rest.rfind(char::is_whitespace) {
                    Some(i) => {
                        let w = rest[i..].chars().next().map_or(1, char::len_utf8);
                        out.push(rest[i + w..].to_owned());
                        rest = rest[..i].trim_end();
                    }
                    None => {
                        out.push(rest.to_owned());
                        rest = "";
                    }
                }
            }
            out
        }
    };
    parts.reverse();
    Ok(Value::from(parts))
}

/// Rewrites transformers' `{% generation %}` / `{% endgeneration %}` (assistant-mask markers that do not change the
/// output) into `{% if true %}` / `{% endif %}`, which have the same whitespace behaviour. Hand-rolled: minijinja has
/// no custom tags.
fn rewrite_generation_tags(src: &str) -> String {
    if !src.contains("generation") {
        return src.to_owned();
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let (lead, body) = match after.chars().next() {
            Some(c @ ('-' | '+')) => (c.to_string(), &after[1..]),
            _ => (String::new(), after),
        };
        let trimmed = body.trim_start();
        let word_end = trimmed
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(trimmed.len());
        let word = &trimmed[..word_end];
        if word == "generation" || word == "endgeneration" {
            let tail = trimmed[word_end..].trim_start();
            let (trail, close_len) = if tail.starts_with("-%}") || tail.starts_with("+%}") {
                (tail[..1].to_owned(), 3)
            } else if tail.starts_with("%}") {
                (String::new(), 2)
            } else {
                out.push_str("{%");
                rest = after;
                continue;
            };
            let replacement = if word == "generation" { "if true" } else { "endif" };
            out.push_str(&format!("{{%{lead} {replacement} {trail}%}}"));
            rest = &tail[close_len..];
        } else {
            out.push_str("{%");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Turns a minijinja error into ours, keeping the template's own `raise_exception` message intact.
pub(crate) fn map_error(e: minijinja::Error, name: &str, source: Option<&str>) -> Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Raised>() {
            return Error::Raised { message: r.0.clone() };
        }
        cur = err.source();
    }
    match e.kind() {
        ErrorKind::SyntaxError => {
            let line = e.line().unwrap_or(1);
            let column = match (e.range(), source) {
                (Some(r), Some(src)) => {
                    let src = rewrite_generation_tags(src);
                    let start = r.start.min(src.len());
                    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
                    src.get(line_start..start).map_or(1, |s| s.chars().count() + 1)
                }
                _ => 1,
            };
            Error::Syntax {
                name: name.to_owned(),
                line,
                column,
                message: e.detail().unwrap_or("syntax error").to_owned(),
            }
        }
        ErrorKind::OutOfFuel => Error::Limit {
            what: "fuel (instructions executed)",
            limit: 0,
        },
        _ => Error::Render {
            message: match e.detail() {
                Some(d) => format!("{}: {d}", e.kind()),
                None => e.kind().to_string(),
            },
            line: e.line(),
        },
    }
}

#[cfg(test)]
mod tests;

//! `check` / `fix` / `undo`: make a model folder's chat template work with the Bedrock Converse API (with tools),
//! editing `tokenizer_config.json` in place: only the `chat_template` value changes (every other byte, field and
//! order is kept), the original is recorded beside it under `cmi_original_chat_template`, writes are atomic and
//! fixing twice changes nothing.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::load::{self, SpecialTokens};
use crate::{ChatTemplate, ConverseSupport, Error, Family, ToolSyntax, converse_support, detect_family};

/// Key under which the original `chat_template` value (or `null` when there was none) is kept.
pub const ORIGINAL_KEY: &str = "cmi_original_chat_template";
/// Suffix given to a `chat_template.jinja` / `.json` moved aside so the fixed embedded template takes effect.
pub const MOVED_SUFFIX: &str = ".cmi-orig";

const LLAMA31: &str = crate::templates::LLAMA_3_1;
const LLAMA32: &str = include_str!("templates/llama-3.2-3b-instruct.jinja");
const QWEN25: &str = crate::templates::QWEN_2_5;
const QWEN3: &str = crate::templates::QWEN_3;
const MISTRAL_V3: &str = crate::templates::MISTRAL_V3;
const NEMO: &str = include_str!("templates/mistral-nemo-instruct-2407.jinja");
const CHATML_TOOLS: &str = include_str!("templates/chatml-tools.jinja");
// Families without a native tool format: their own prompt format, byte-for-byte for plain chats, plus Hermes tools.
const LLAMA2_TOOLS: &str = include_str!("templates/llama-2-chat-tools.jinja");
const CODELLAMA_TOOLS: &str = include_str!("templates/codellama-instruct-tools.jinja");
const STARCODER2_TOOLS: &str = include_str!("templates/starcoder2-instruct-tools.jinja");

/// The Converse-ready (tool-capable) template for a family, or `None` when there is none. For ChatML the default
/// system prompt of `original` (e.g. SmolLM2's) is kept. Llama 2, CodeLlama and StarCoder2 have no tool format of
/// their own: their templates keep the family's prompt format and teach Hermes `<tool_call>` calls, with tool
/// definitions in the system part and tool results as `<tool_response>` in a user (instruction) turn.
pub fn template_for_family(family: Family, original: Option<&str>) -> Option<String> {
    Some(match family {
        Family::Llama3 | Family::Llama31 | Family::DeepSeekR1DistillLlama => LLAMA31.to_owned(),
        Family::Llama32 => LLAMA32.to_owned(),
        Family::Qwen2 | Family::DeepSeekR1DistillQwen => QWEN25.to_owned(),
        Family::Qwen3 => QWEN3.to_owned(),
        Family::Mistral | Family::MistralV3 | Family::Mixtral => MISTRAL_V3.to_owned(),
        Family::MistralNemo => NEMO.to_owned(),
        Family::Llama2 => LLAMA2_TOOLS.to_owned(),
        Family::CodeLlama => CODELLAMA_TOOLS.to_owned(),
        Family::StarCoder2 => STARCODER2_TOOLS.to_owned(),
        Family::ChatMl => {
            let literal = match original.and_then(chatml_default_system) {
                Some(s) => jinja_string_literal(&s),
                None => "none".to_owned(),
            };
            CHATML_TOOLS.replacen("__CMI_DEFAULT_SYSTEM__", &literal, 1)
        }
        _ => return None,
    })
}

/// Finds the default system prompt a ChatML template prints when the conversation has none, by rendering it.
fn chatml_default_system(src: &str) -> Option<String> {
    let t = ChatTemplate::new(src, SpecialTokens::default()).ok()?;
    let req = crate::RenderRequest {
        messages: vec![serde_json::json!({"role": "user", "content": "cmi-probe"})],
        ..crate::RenderRequest::default()
    };
    let out = t.render(&req).ok()?;
    let rest = out.strip_prefix("<|im_start|>system\n")?;
    let end = rest.find("<|im_end|>")?;
    let s = &rest[..end];
    (!s.is_empty()).then(|| s.to_owned())
}

fn jinja_string_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// What `check` found.
#[derive(Debug, Clone)]
pub struct CheckReport {
    /// Detected family.
    pub family: Family,
    /// Whether a template was found at all.
    pub template_found: bool,
    /// The tool-call syntax the current template teaches.
    pub tool_syntax: ToolSyntax,
    /// Converse / tools prediction (both false without a template).
    pub support: ConverseSupport,
    /// The family whose template `fix` would install (`None`: nothing to do or nothing known).
    pub fix_family: Option<Family>,
}

/// Says whether the folder's template lets Converse work, with and without tools, and why not.
pub fn check(dir: &Path) -> Result<CheckReport, Error> {
    let config = read_config_json(dir)?;
    let template = match ChatTemplate::from_model_dir(dir) {
        Ok(t) => Some(t),
        Err(Error::NoTemplate { .. }) => None,
        Err(e) => return Err(e),
    };
    // After a fix the template is the replacement's; the recorded original says more about the family.
    let original = recorded_original(dir)?;
    let family = detect_family(
        config.as_ref(),
        original.as_deref().or(template.as_ref().map(|t| t.source())),
    );
    let (support, tool_syntax) = match &template {
        Some(t) => (converse_support(t), t.tool_syntax()),
        None => (
            ConverseSupport {
                converse: false,
                tools: false,
                reasons: vec!["the model has no chat template (Custom Model Import applies none by default)".into()],
            },
            ToolSyntax::None,
        ),
    };
    let needs_fix = !(support.converse && support.tools);
    let fix_family = (needs_fix && template_for_family(family, None).is_some()).then_some(family);
    Ok(CheckReport {
        family,
        template_found: template.is_some(),
        tool_syntax,
        support,
        fix_family,
    })
}

/// Options of `fix`.
#[derive(Debug, Clone, Default)]
pub struct FixOptions {
    /// Install this family's template instead of the detected one's (and even if the current one works).
    pub family: Option<Family>,
    /// Compute the change and the diff, write nothing.
    pub dry_run: bool,
}

/// What `fix` / `undo` did (or would do with `dry_run`).
#[derive(Debug, Clone)]
pub struct FixOutcome {
    /// The edited `tokenizer_config.json`.
    pub path: PathBuf,
    /// The family whose template was installed (`fix`), or the detected family (`undo`).
    pub family: Family,
    /// Whether anything changed.
    pub changed: bool,
    /// Unified diff of `tokenizer_config.json` (empty when unchanged).
    pub diff: String,
    /// Files moved aside (or back): `(from, to)`.
    pub moved: Vec<(PathBuf, PathBuf)>,
    /// A one-line human summary.
    pub message: String,
}

fn read_config_json(dir: &Path) -> Result<Option<Json>, Error> {
    let p = dir.join("config.json");
    if p.is_file() {
        Ok(Some(load::read_json(&p)?))
    } else {
        Ok(None)
    }
}

/// The original template `fix` recorded in `tokenizer_config.json`, if any.
fn recorded_original(dir: &Path) -> Result<Option<String>, Error> {
    let p = dir.join("tokenizer_config.json");
    if !p.is_file() {
        return Ok(None);
    }
    let config = load::read_json(&p)?;
    Ok(config.get(ORIGINAL_KEY).and_then(Json::as_str).map(str::to_owned))
}

fn read_text(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|e| Error::io("read", path, e))
}

/// Installs the Converse-ready template for the model's family into `tokenizer_config.json`.
pub fn fix(dir: &Path, opts: &FixOptions) -> Result<FixOutcome, Error> {
    let path = dir.join("tokenizer_config.json");
    let text = read_text(&path)?;
    let config = load::parse_json(&path, &text)?;
    if !config.is_object() {
        return Err(Error::Field {
            path,
            field: "(top level)".into(),
            expected: "a JSON object",
            found: load::short(&config),
        });
    }
    let current = match ChatTemplate::from_model_dir(dir) {
        Ok(t) => Some(t),
        Err(Error::NoTemplate { .. }) => None,
        Err(e) => return Err(e),
    };
    let model_config = read_config_json(dir)?;
    let family = opts.family.unwrap_or_else(|| {
        // After an earlier fix the template is the replacement's; detect from the original when recorded.
        let original = config.get(ORIGINAL_KEY).and_then(Json::as_str);
        detect_family(model_config.as_ref(), original.or(current.as_ref().map(|t| t.source())))
    });
    let unchanged = |message: String| FixOutcome {
        path: path.clone(),
        family,
        changed: false,
        diff: String::new(),
        moved: Vec::new(),
        message,
    };
    if opts.family.is_none()
        && let Some(t) = &current
    {
        let s = converse_support(t);
        if s.converse && s.tools {
            return Ok(unchanged(format!(
                "the template already supports Converse with tools ({} tool calls); nothing to change",
                t.tool_syntax()
            )));
        }
    }
    let original_src = config
        .get(ORIGINAL_KEY)
        .and_then(Json::as_str)
        .or(current.as_ref().map(|t| t.source()));
    let target = template_for_family(family, original_src).ok_or_else(|| Error::NoTemplateForFamily {
        family: family.to_string(),
        known: Family::all()
            .filter(|f| template_for_family(*f, None).is_some())
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", "),
    })?;

    let members = json_members(&text).ok_or_else(|| Error::Field {
        path: path.clone(),
        field: "(top level)".into(),
        expected: "a JSON object",
        found: "unparseable layout".into(),
    })?;
    let new_value = serde_json::to_string(&target).unwrap_or_default();
    let mut new_text = set_member(&text, &members, "chat_template", &new_value);
    if config.get(ORIGINAL_KEY).is_none() {
        let original = config.get("chat_template").cloned().unwrap_or(Json::Null);
        let orig_json = serde_json::to_string(&original).unwrap_or_else(|_| "null".into());
        let members = json_members(&new_text).unwrap_or_default();
        new_text = insert_after(&new_text, &members, "chat_template", ORIGINAL_KEY, &orig_json);
    }
    let mut moved = Vec::new();
    for name in ["chat_template.jinja", "chat_template.json"] {
        let p = dir.join(name);
        if p.is_file() {
            moved.push((p.clone(), dir.join(format!("{name}{MOVED_SUFFIX}"))));
        }
    }
    if new_text == text && moved.is_empty() {
        return Ok(unchanged(format!(
            "the {family} template is already installed; nothing to change"
        )));
    }
    let diff = unified_diff(&path, &text, &new_text);
    if !opts.dry_run {
        if new_text != text {
            atomic_write(&path, &new_text)?;
        }
        for (from, to) in &moved {
            std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))?;
        }
    }
    let verb = if opts.dry_run { "would install" } else { "installed" };
    Ok(FixOutcome {
        path,
        family,
        changed: true,
        diff,
        moved,
        message: format!("{verb} the {family} chat template (original kept under `{ORIGINAL_KEY}`)"),
    })
}

/// Restores the template recorded by `fix` and removes the record.
pub fn undo(dir: &Path, dry_run: bool) -> Result<FixOutcome, Error> {
    let path = dir.join("tokenizer_config.json");
    let text = read_text(&path)?;
    let config = load::parse_json(&path, &text)?;
    let Some(original) = config.get(ORIGINAL_KEY) else {
        return Err(Error::NothingToUndo {
            path,
            key: ORIGINAL_KEY,
        });
    };
    let members = json_members(&text).ok_or_else(|| Error::Field {
        path: path.clone(),
        field: "(top level)".into(),
        expected: "a JSON object",
        found: "unparseable layout".into(),
    })?;
    let mut new_text = if original.is_null() {
        remove_member(&text, &members, "chat_template")
    } else {
        set_member(
            &text,
            &members,
            "chat_template",
            &serde_json::to_string(original).unwrap_or_default(),
        )
    };
    let members = json_members(&new_text).unwrap_or_default();
    new_text = remove_member(&new_text, &members, ORIGINAL_KEY);
    let mut moved = Vec::new();
    for name in ["chat_template.jinja", "chat_template.json"] {
        let aside = dir.join(format!("{name}{MOVED_SUFFIX}"));
        if aside.is_file() {
            moved.push((aside, dir.join(name)));
        }
    }
    let diff = unified_diff(&path, &text, &new_text);
    if !dry_run {
        atomic_write(&path, &new_text)?;
        for (from, to) in &moved {
            std::fs::rename(from, to).map_err(|e| Error::io("rename", from, e))?;
        }
    }
    let family = detect_family(read_config_json(dir)?.as_ref(), original.as_str());
    Ok(FixOutcome {
        path,
        family,
        changed: true,
        diff,
        moved,
        message: format!(
            "{} the original chat template",
            if dry_run { "would restore" } else { "restored" }
        ),
    })
}

fn unified_diff(path: &Path, old: &str, new: &str) -> String {
    let name = path
        .file_name()
        .map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
    similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{name}"), &format!("b/{name}"))
        .to_string()
}

/// Writes via a temporary file in the same folder, fsync, rename.
fn atomic_write(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let tmp = path.with_extension("json.cmi-tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    f.write_all(text.as_bytes()).map_err(|e| Error::io("write", &tmp, e))?;
    f.sync_all().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| Error::io("rename", &tmp, e))
}

/// Byte spans of one top-level member of a JSON object text.
#[derive(Debug, Clone)]
struct Member {
    key: String,
    key_start: usize,
    value_start: usize,
    value_end: usize,
}

/// Scans the top-level members of a JSON object, keeping byte positions so edits leave every other byte alone.
/// Hand-rolled: serde_json does not report spans. The text is already known to be valid JSON.
fn json_members(text: &str) -> Option<Vec<Member>> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    let mut out = Vec::new();
    loop {
        i = skip_ws(b, i);
        match b.get(i)? {
            b'}' => return Some(out),
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let key_start = i;
        let key_end = skip_string(b, i)?;
        let key: String = serde_json::from_str(&text[key_start..key_end]).ok()?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(b, i + 1);
        let value_end = skip_value(b, value_start)?;
        out.push(Member {
            key,
            key_start,
            value_start,
            value_end,
        });
        i = value_end;
    }
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn skip_string(b: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn skip_value(b: &[u8], start: usize) -> Option<usize> {
    match b.get(start)? {
        b'"' => skip_string(b, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let mut i = start;
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']') && !b[i].is_ascii_whitespace() {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The indentation used before a member's key (or two spaces).
fn indent_of(text: &str, m: &Member) -> String {
    let line_start = text[..m.key_start].rfind('\n').map_or(0, |i| i + 1);
    let ind = &text[line_start..m.key_start];
    if ind.chars().all(char::is_whitespace) {
        ind.to_owned()
    } else {
        "  ".to_owned()
    }
}

/// Replaces the value of `key`, or appends the member at the end of the object.
fn set_member(text: &str, members: &[Member], key: &str, value_json: &str) -> String {
    if let Some(m) = members.iter().find(|m| m.key == key) {
        return format!("{}{}{}", &text[..m.value_start], value_json, &text[m.value_end..]);
    }
    let key_json = serde_json::to_string(key).unwrap_or_default();
    match members.last() {
        Some(last) => {
            let ind = indent_of(text, last);
            format!(
                "{},\n{ind}{key_json}: {value_json}{}",
                &text[..last.value_end],
                &text[last.value_end..]
            )
        }
        None => {
            let close = text.rfind('}').unwrap_or(text.len());
            let open = text.find('{').map_or(0, |i| i + 1);
            format!("{}\n  {key_json}: {value_json}\n{}", &text[..open], &text[close..])
        }
    }
}

/// Inserts a member right after `after` (or at the end).
fn insert_after(text: &str, members: &[Member], after: &str, key: &str, value_json: &str) -> String {
    let key_json = serde_json::to_string(key).unwrap_or_default();
    match members.iter().find(|m| m.key == after) {
        Some(m) => {
            let ind = indent_of(text, m);
            format!(
                "{},\n{ind}{key_json}: {value_json}{}",
                &text[..m.value_end],
                &text[m.value_end..]
            )
        }
        None => set_member(text, members, key, value_json),
    }
}

/// Removes a member and its separating comma.
fn remove_member(text: &str, members: &[Member], key: &str) -> String {
    let Some(idx) = members.iter().position(|m| m.key == key) else {
        return text.to_owned();
    };
    let m = &members[idx];
    if idx > 0 {
        let prev = &members[idx - 1];
        format!("{}{}", &text[..prev.value_end], &text[m.value_end..])
    } else if let Some(next) = members.get(1) {
        format!("{}{}", &text[..m.key_start], &text[next.key_start..])
    } else {
        let open = text.find('{').map_or(0, |i| i + 1);
        let close = text.rfind('}').unwrap_or(text.len());
        format!("{}{}", &text[..open], &text[close..])
    }
}

#[cfg(test)]
mod tests;

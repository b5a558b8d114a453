//! Incremental parsing of what a model writes: plain text, `<think>` reasoning and tool calls in the syntax its
//! template taught ([`ToolSyntax`]). Feed decoded text as it arrives; a marker is never emitted as text while it
//! might still complete, so the parse does not depend on how the text is split into chunks. Malformed tool-call
//! JSON comes back as text (with a `tracing` warning), never a panic.
//!
//! Harmony output (GPT-OSS's channels) is read by [`harmony::HarmonyParser`], which this parser hands it to.
//!
//! This is the one `<think>` splitter: [`crate::think::ThinkSplitter`] is this parser reading no tool calls.
//!
//! Hand-rolled: the markers and their JSON payloads are family conventions no parsing library knows.

use serde_json::Value as Json;

use crate::ToolSyntax;
use harmony::HarmonyParser;

/// One piece of parsed model output.
#[derive(Debug, Clone, PartialEq)]
pub enum ParseEvent {
    /// Answer text.
    Text(String),
    /// Reasoning (inside `<think>…</think>`).
    Reasoning(String),
    /// A complete tool call; `arguments` is a JSON object (a JSON-encoded string is decoded).
    ToolCall {
        /// Function name.
        name: String,
        /// Arguments.
        arguments: Json,
    },
}

const THINK_OPEN: &str = "<think>";
const THINK_CLOSE: &str = "</think>";
const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const MISTRAL_OPEN: &str = "[TOOL_CALLS]";
const PYTHON_TAG: &str = "<|python_tag|>";
/// DeepSeek tool-call markers (fullwidth bars, U+2581 spaces).
pub const DS_CALLS_BEGIN: &str = "<｜tool▁calls▁begin｜>";
/// End of the DeepSeek tool-call block.
pub const DS_CALLS_END: &str = "<｜tool▁calls▁end｜>";
/// Start of one DeepSeek tool call.
pub const DS_CALL_BEGIN: &str = "<｜tool▁call▁begin｜>";
/// End of one DeepSeek tool call.
pub const DS_CALL_END: &str = "<｜tool▁call▁end｜>";
/// Separator between the call type and the function name.
pub const DS_SEP: &str = "<｜tool▁sep｜>";

/// Every marker that opens a tool call in one family's syntax or another (Hermes/Qwen, Mistral, Llama 3.1's
/// `<|python_tag|>`, DeepSeek's block and single call): what a family-agnostic reader of model output looks for.
pub const TOOL_CALL_OPENERS: [&str; 5] = [HERMES_OPEN, MISTRAL_OPEN, PYTHON_TAG, DS_CALLS_BEGIN, DS_CALL_BEGIN];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Llama 3 JSON: at the start of the answer (only whitespace so far), a `{` opens a candidate tool call.
    AtStart,
    /// Answer text.
    Text,
    /// Inside `<think>`.
    Reasoning,
    /// After a tool-call opener, collecting the payload; holds the opener that started it.
    Tool(Opener),
    /// Llama 3 JSON candidate starting with `{`.
    JsonCandidate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Hermes,
    Mistral,
    PythonTag,
    DeepSeekBlock,
    DeepSeekSingle,
}

impl Opener {
    fn marker(self) -> &'static str {
        match self {
            Opener::Hermes => HERMES_OPEN,
            Opener::Mistral => MISTRAL_OPEN,
            Opener::PythonTag => PYTHON_TAG,
            Opener::DeepSeekBlock => DS_CALLS_BEGIN,
            Opener::DeepSeekSingle => DS_CALL_BEGIN,
        }
    }
}

/// How a reader treats the text around `<think>` tags: the one place [`OutputParser`] and
/// [`crate::think::ThinkSplitter`] differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ThinkRules {
    /// Read tool calls in the parser's syntax (otherwise only `<think>` is a marker).
    pub(crate) tool_calls: bool,
    /// Drop the whitespace after `</think>`: the answer starts after it.
    pub(crate) trim_answer: bool,
    /// Drop a `</think>` met while answering (the prompt opened thinking unnoticed): what came before it was
    /// reasoning, but it has been shown already. Otherwise the tag is text.
    pub(crate) drop_stray_close: bool,
}

/// What [`OutputParser::step_text`] found first.
#[derive(Debug, Clone, Copy)]
enum Found {
    ThinkOpen,
    StrayClose,
    Tool(Opener),
}

/// Incremental parser for one model turn.
#[derive(Debug, Clone)]
pub struct OutputParser {
    syntax: ToolSyntax,
    rules: ThinkRules,
    mode: Mode,
    /// Text received but not yet emitted.
    buf: String,
    /// Whitespace held at the start (Llama 3 JSON) until we know whether a tool call follows.
    held: String,
    /// Whether a tool call was emitted (Llama 3 JSON drops whitespace between calls).
    saw_tool: bool,
    /// Drop whitespace at the start of the buffer (right after `</think>`).
    skip_ws: bool,
    /// Harmony output (GPT-OSS) has a reader of its own: channels, not tags.
    harmony: Option<HarmonyParser>,
}

impl OutputParser {
    /// A parser for a model that writes `syntax` tool calls; `thinking_open` when the prompt already opened
    /// `<think>` (DeepSeek-R1), so output starts as reasoning.
    pub fn new(syntax: ToolSyntax, thinking_open: bool) -> Self {
        let rules = ThinkRules {
            tool_calls: true,
            trim_answer: true,
            drop_stray_close: false,
        };
        Self::with_rules(syntax, thinking_open, rules)
    }

    pub(crate) fn with_rules(syntax: ToolSyntax, thinking_open: bool, rules: ThinkRules) -> Self {
        OutputParser {
            syntax,
            rules,
            mode: if thinking_open {
                Mode::Reasoning
            } else {
                Self::start_mode(syntax)
            },
            buf: String::new(),
            held: String::new(),
            saw_tool: false,
            skip_ws: false,
            harmony: (syntax == ToolSyntax::Harmony && rules.tool_calls).then(HarmonyParser::new),
        }
    }

    fn start_mode(syntax: ToolSyntax) -> Mode {
        if syntax == ToolSyntax::Llama3Json {
            Mode::AtStart
        } else {
            Mode::Text
        }
    }

    fn openers(&self) -> &'static [Opener] {
        if !self.rules.tool_calls {
            return &[];
        }
        match self.syntax {
            ToolSyntax::Hermes | ToolSyntax::None => &[Opener::Hermes],
            ToolSyntax::MistralToolCalls => &[Opener::Mistral],
            ToolSyntax::Llama3Json => &[Opener::PythonTag],
            ToolSyntax::DeepSeek => &[Opener::DeepSeekBlock, Opener::DeepSeekSingle],
            // Read by `HarmonyParser` instead.
            ToolSyntax::Harmony => &[],
        }
    }

    /// Feeds decoded text; returns the events it completes.
    pub fn feed(&mut self, text: &str) -> Vec<ParseEvent> {
        if let Some(h) = &mut self.harmony {
            return h.feed(text);
        }
        self.buf.push_str(text);
        let mut out = Vec::new();
        self.run(false, &mut out);
        merge(out)
    }

    /// Ends the turn: flushes held text and any unterminated tool call.
    pub fn finish(&mut self) -> Vec<ParseEvent> {
        if let Some(h) = &mut self.harmony {
            return h.finish();
        }
        let mut out = Vec::new();
        self.run(true, &mut out);
        merge(out)
    }

    fn run(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) {
        loop {
            if self.skip_ws {
                let t = self.buf.trim_start().len();
                let n = self.buf.len() - t;
                self.buf.drain(..n);
                if !self.buf.is_empty() {
                    self.skip_ws = false;
                }
            }
            let progressed = match self.mode {
                Mode::AtStart => self.step_at_start(at_end, out),
                Mode::Text => self.step_text(at_end, out),
                Mode::Reasoning => self.step_reasoning(at_end, out),
                Mode::Tool(op) => self.step_tool(op, at_end, out),
                Mode::JsonCandidate => self.step_json_candidate(at_end, out),
            };
            if !progressed {
                break;
            }
        }
    }

    fn step_at_start(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        let trimmed = self
            .buf
            .trim_start_matches(|c: char| c.is_whitespace() || (self.saw_tool && c == ';'));
        let ws_len = self.buf.len() - trimmed.len();
        self.held.extend(self.buf.drain(..ws_len));
        match self.buf.chars().next() {
            None => {
                if at_end && !self.saw_tool {
                    push(out, ParseEvent::Text(std::mem::take(&mut self.held)));
                }
                if at_end {
                    self.held.clear();
                }
                false
            }
            Some('{') => {
                self.mode = Mode::JsonCandidate;
                true
            }
            Some(_) => {
                if !self.saw_tool {
                    push(out, ParseEvent::Text(std::mem::take(&mut self.held)));
                }
                self.held.clear();
                self.mode = Mode::Text;
                true
            }
        }
    }

    fn step_json_candidate(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        match json_value_end(&self.buf) {
            Some(end) => {
                let raw: String = self.buf.drain(..end).collect();
                match tool_call_from_object(&raw, &["parameters", "arguments"]) {
                    Some(ev) => {
                        self.held.clear();
                        self.saw_tool = true;
                        push(out, ev);
                        self.mode = Mode::AtStart;
                    }
                    None => {
                        push(out, ParseEvent::Text(std::mem::take(&mut self.held) + &raw));
                        self.mode = Mode::Text;
                    }
                }
                true
            }
            None if at_end => {
                let raw = std::mem::take(&mut self.buf);
                tracing::warn!(text = %raw, "unterminated JSON tool call in model output; returned as text");
                push(out, ParseEvent::Text(std::mem::take(&mut self.held) + &raw));
                self.mode = Mode::Text;
                false
            }
            None => false,
        }
    }

    fn step_text(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        let mut best: Option<(usize, Found)> = None;
        let mut consider = |buf: &str, marker: &str, found: Found| {
            if let Some(i) = buf.find(marker)
                && best.is_none_or(|(b, _)| i < b)
            {
                best = Some((i, found));
            }
        };
        consider(&self.buf, THINK_OPEN, Found::ThinkOpen);
        if self.rules.drop_stray_close {
            consider(&self.buf, THINK_CLOSE, Found::StrayClose);
        }
        for op in self.openers() {
            consider(&self.buf, op.marker(), Found::Tool(*op));
        }
        match best {
            Some((i, which)) => {
                let before: String = self.buf.drain(..i).collect();
                push(out, ParseEvent::Text(before));
                match which {
                    Found::ThinkOpen => {
                        self.buf.drain(..THINK_OPEN.len());
                        self.mode = Mode::Reasoning;
                    }
                    Found::StrayClose => {
                        self.buf.drain(..THINK_CLOSE.len());
                    }
                    Found::Tool(op) => {
                        self.buf.drain(..op.marker().len());
                        self.mode = Mode::Tool(op);
                    }
                }
                true
            }
            None => {
                let mut markers: Vec<&str> = vec![THINK_OPEN];
                if self.rules.drop_stray_close {
                    markers.push(THINK_CLOSE);
                }
                markers.extend(self.openers().iter().map(|o| o.marker()));
                let keep = if at_end {
                    0
                } else {
                    partial_marker_len(&self.buf, &markers)
                };
                let emit_to = self.buf.len() - keep;
                let text: String = self.buf.drain(..emit_to).collect();
                push(out, ParseEvent::Text(text));
                false
            }
        }
    }

    fn step_reasoning(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        if let Some(i) = self.buf.find(THINK_CLOSE) {
            let r: String = self.buf.drain(..i).collect();
            self.buf.drain(..THINK_CLOSE.len());
            push(out, ParseEvent::Reasoning(r));
            self.mode = Self::start_mode(self.syntax);
            // The answer starts after the whitespace that follows </think>.
            self.skip_ws = self.rules.trim_answer;
            return true;
        }
        let keep = if at_end {
            0
        } else {
            partial_marker_len(&self.buf, &[THINK_CLOSE])
        };
        let emit_to = self.buf.len() - keep;
        let r: String = self.buf.drain(..emit_to).collect();
        push(out, ParseEvent::Reasoning(r));
        false
    }

    fn step_tool(&mut self, op: Opener, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        let done = match op {
            Opener::Hermes => self.take_until(HERMES_CLOSE, at_end).map(|(payload, closed)| {
                let raw = format!("{HERMES_OPEN}{payload}{}", if closed { HERMES_CLOSE } else { "" });
                (
                    tool_call_from_object(payload.trim(), &["arguments", "parameters"])
                        .into_iter()
                        .collect(),
                    raw,
                )
            }),
            Opener::DeepSeekBlock => self.take_until(DS_CALLS_END, at_end).map(|(payload, closed)| {
                let raw = format!("{DS_CALLS_BEGIN}{payload}{}", if closed { DS_CALLS_END } else { "" });
                (deepseek_calls(&payload), raw)
            }),
            Opener::DeepSeekSingle => self.take_until(DS_CALL_END, at_end).map(|(payload, closed)| {
                let raw = format!("{DS_CALL_BEGIN}{payload}{}", if closed { DS_CALL_END } else { "" });
                (deepseek_call(&payload).into_iter().collect(), raw)
            }),
            Opener::PythonTag => {
                if !at_end {
                    return false;
                }
                let payload = std::mem::take(&mut self.buf);
                let raw = format!("{PYTHON_TAG}{payload}");
                Some((json_calls(&payload, &["parameters", "arguments"]), raw))
            }
            Opener::Mistral => {
                let body = self.buf.trim_start();
                let lead = self.buf.len() - body.len();
                match body.chars().next() {
                    Some('[' | '{') => match json_value_end(body) {
                        Some(end) => {
                            let payload: String = self.buf.drain(..lead + end).collect();
                            let raw = format!("{MISTRAL_OPEN}{payload}");
                            Some((json_calls(&payload, &["arguments", "parameters"]), raw))
                        }
                        None if at_end => {
                            let payload = std::mem::take(&mut self.buf);
                            Some((Vec::new(), format!("{MISTRAL_OPEN}{payload}")))
                        }
                        None => None,
                    },
                    Some(_) => Some((Vec::new(), MISTRAL_OPEN.to_owned())),
                    None if at_end => Some((Vec::new(), MISTRAL_OPEN.to_owned())),
                    None => None,
                }
            }
        };
        let Some((calls, raw)) = done else {
            return false;
        };
        if calls.is_empty() {
            tracing::warn!(text = %raw, "malformed tool call in model output; returned as text");
            push(out, ParseEvent::Text(raw));
        } else {
            self.saw_tool = true;
            out.extend(calls);
        }
        self.mode = Self::start_mode(self.syntax);
        true
    }

    /// Takes the buffer up to `close` (dropping `close`); at the end of output, takes everything.
    fn take_until(&mut self, close: &str, at_end: bool) -> Option<(String, bool)> {
        if let Some(i) = self.buf.find(close) {
            let payload: String = self.buf.drain(..i).collect();
            self.buf.drain(..close.len());
            Some((payload, true))
        } else if at_end {
            Some((std::mem::take(&mut self.buf), false))
        } else {
            None
        }
    }
}

fn push(out: &mut Vec<ParseEvent>, ev: ParseEvent) {
    match &ev {
        ParseEvent::Text(t) | ParseEvent::Reasoning(t) if t.is_empty() => {}
        _ => out.push(ev),
    }
}

/// Joins adjacent text and adjacent reasoning pieces.
pub fn merge(events: Vec<ParseEvent>) -> Vec<ParseEvent> {
    let mut out: Vec<ParseEvent> = Vec::with_capacity(events.len());
    for ev in events {
        match (out.last_mut(), ev) {
            (_, ParseEvent::Text(t) | ParseEvent::Reasoning(t)) if t.is_empty() => {}
            (Some(ParseEvent::Text(a)), ParseEvent::Text(b)) => a.push_str(&b),
            (Some(ParseEvent::Reasoning(a)), ParseEvent::Reasoning(b)) => a.push_str(&b),
            (_, ev) => out.push(ev),
        }
    }
    out
}

/// Length of the longest proper prefix of any marker that the buffer ends with.
pub(crate) fn partial_marker_len(buf: &str, markers: &[&str]) -> usize {
    let b = buf.as_bytes();
    let mut best = 0;
    for m in markers {
        let m = m.as_bytes();
        for k in (1..m.len()).rev() {
            if k <= best {
                break;
            }
            if b.ends_with(&m[..k]) {
                best = k;
                break;
            }
        }
    }
    best
}

/// Byte index just after the JSON object/array `s` starts with, or `None` if it is not complete yet.
fn json_value_end(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    let mut in_str = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            match c {
                b'\\' => i += 1,
                b'"' => in_str = false,
                _ => {}
            }
        } else {
            match c {
                b'"' => in_str = true,
                b'{' | b'[' => depth += 1,
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                _ => {}
            }
        }
        i += 1;
    }
    None
}

pub(crate) fn decode_arguments(v: Json) -> Json {
    match v {
        Json::String(s) => serde_json::from_str::<Json>(&s).unwrap_or(Json::String(s)),
        other => other,
    }
}

fn call_from_value(v: &Json, arg_keys: &[&str]) -> Option<ParseEvent> {
    let obj = v.as_object()?;
    let name = obj.get("name")?.as_str()?.to_owned();
    let args = arg_keys.iter().find_map(|k| obj.get(*k))?.clone();
    Some(ParseEvent::ToolCall {
        name,
        arguments: decode_arguments(args),
    })
}

/// `{"name": .., "arguments"|"parameters": ..}`.
fn tool_call_from_object(raw: &str, arg_keys: &[&str]) -> Option<ParseEvent> {
    let v: Json = serde_json::from_str(raw).ok()?;
    call_from_value(&v, arg_keys)
}

/// One JSON object, a JSON array of them, or several separated by `;` (Llama). Empty when any part is malformed.
fn json_calls(payload: &str, arg_keys: &[&str]) -> Vec<ParseEvent> {
    let mut out = Vec::new();
    let mut rest = payload.trim();
    while !rest.is_empty() {
        let Some(end) = json_value_end(rest) else {
            return Vec::new();
        };
        let Ok(v) = serde_json::from_str::<Json>(&rest[..end]) else {
            return Vec::new();
        };
        match &v {
            Json::Array(items) => {
                for item in items {
                    match call_from_value(item, arg_keys) {
                        Some(ev) => out.push(ev),
                        None => return Vec::new(),
                    }
                }
            }
            _ => match call_from_value(&v, arg_keys) {
                Some(ev) => out.push(ev),
                None => return Vec::new(),
            },
        }
        rest = rest[end..].trim_start().trim_start_matches(';').trim_start();
    }
    out
}

/// `function<｜tool▁sep｜>NAME\n```json\n{..}\n```` (the text between call begin and end).
fn deepseek_call(body: &str) -> Option<ParseEvent> {
    let (_kind, rest) = body.split_once(DS_SEP)?;
    let (name, rest) = rest.split_once('\n')?;
    let rest = rest.trim();
    let rest = rest
        .strip_prefix("```json")
        .or_else(|| rest.strip_prefix("```"))
        .unwrap_or(rest);
    let rest = rest.trim_end();
    let rest = rest.strip_suffix("```").unwrap_or(rest);
    let args: Json = serde_json::from_str(rest.trim()).ok()?;
    Some(ParseEvent::ToolCall {
        name: name.trim().to_owned(),
        arguments: decode_arguments(args),
    })
}

/// The calls inside `<｜tool▁calls▁begin｜>…<｜tool▁calls▁end｜>`; empty when any is malformed.
fn deepseek_calls(block: &str) -> Vec<ParseEvent> {
    let mut out = Vec::new();
    let mut rest = block;
    while let Some(start) = rest.find(DS_CALL_BEGIN) {
        if !rest[..start].trim().is_empty() {
            return Vec::new();
        }
        let after = &rest[start + DS_CALL_BEGIN.len()..];
        let (body, tail) = match after.find(DS_CALL_END) {
            Some(e) => (&after[..e], &after[e + DS_CALL_END.len()..]),
            None => (after, ""),
        };
        match deepseek_call(body) {
            Some(ev) => out.push(ev),
            None => return Vec::new(),
        }
        rest = tail;
    }
    if !rest.trim().is_empty() {
        return Vec::new();
    }
    out
}

/// Whether a rendered prompt ends inside an open `<think>` (DeepSeek-R1 templates end with `<think>\n`), so the
/// model's output starts as reasoning.
pub fn prompt_opens_thinking(prompt: &str) -> bool {
    prompt.trim_end().ends_with(THINK_OPEN)
}

pub mod harmony;

#[cfg(test)]
mod tests;

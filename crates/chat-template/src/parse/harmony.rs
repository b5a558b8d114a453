//! OpenAI's harmony format (GPT-OSS), read incrementally: the analysis channel is reasoning, the final channel (and
//! commentary addressed to no one, a preamble) is answer text, and a message to `functions.NAME` is a tool call whose
//! body is its JSON arguments.
//!
//! A model turn is a run of messages, each `HEADER<|message|>BODY` ended by `<|end|>`, `<|call|>` or `<|return|>`;
//! a later message starts with `<|start|>`. The first header follows the prompt's `<|start|>assistant`, so output
//! opens on `<|channel|>…`. The recipient may be written after the channel (`<|channel|>commentary to=functions.f
//! <|constrain|>json`, as the model writes it) or before it (`to=functions.f<|channel|>commentary json`, as the
//! template renders history): both are read. `<|call|>` and `<|return|>` usually end generation (they are GPT-OSS's
//! eos tokens) and so never reach the text; the end of output then ends the message.
//!
//! Text split anywhere across chunks parses the same: a marker is held back while it may still complete. Output that
//! does not start like a harmony header is answer text, as written; a tool call whose body is not JSON comes back as
//! text (with a `tracing` warning).

use serde_json::Value as Json;

use crate::parse::ParseEvent;

/// Starts a message (role and header follow).
pub const START: &str = "<|start|>";
/// Opens the channel name in a header.
pub const CHANNEL: &str = "<|channel|>";
/// Ends a header; the body follows.
pub const MESSAGE: &str = "<|message|>";
/// Ends a message that the turn continues after.
pub const END: &str = "<|end|>";
/// Ends a tool-call message (an eos token of GPT-OSS).
pub const CALL: &str = "<|call|>";
/// Ends the turn (an eos token of GPT-OSS).
pub const RETURN: &str = "<|return|>";
/// Opens the content type of a message body (`<|constrain|>json`).
pub const CONSTRAIN: &str = "<|constrain|>";

/// The harmony control tokens the parser reads. The real tokenizer has them as special tokens, so an engine serving
/// a harmony model decodes them as their text (and lets a grammar's string literals match them).
pub const TOKENS: [&str; 7] = [START, CHANNEL, MESSAGE, END, CALL, RETURN, CONSTRAIN];

/// The namespace of the caller's functions in a recipient (`to=functions.NAME`).
pub const FUNCTIONS: &str = "functions.";

/// What a message body is, from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Body {
    /// The analysis channel.
    Reasoning,
    /// The final channel, or commentary to no recipient.
    Text,
    /// A message to a recipient: the function name (without `functions.`) and the header, for a call returned as text.
    Call { name: String, header: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// Reading a header up to `<|message|>`; `confirmed` once it followed a `<|start|>` or began like a header.
    Header { confirmed: bool },
    /// Reading a body.
    Body(Body),
    /// After a message's end, before the next `<|start|>`.
    Between,
}

/// Incremental parser for one harmony model turn.
#[derive(Debug, Clone)]
pub struct HarmonyParser {
    mode: Mode,
    /// Text received but not yet consumed.
    buf: String,
}

impl Default for HarmonyParser {
    fn default() -> Self {
        HarmonyParser::new()
    }
}

/// What an unconfirmed header may begin with (after the prompt's `<|start|>assistant`, or a role written again).
const HEADER_STARTS: [&str; 6] = [CHANNEL, CONSTRAIN, MESSAGE, " to=", "to=", "assistant"];

/// Markers that end a body.
const BODY_ENDS: [&str; 4] = [END, CALL, RETURN, START];

impl HarmonyParser {
    /// A parser for output that continues a prompt ending in `<|start|>assistant`.
    pub fn new() -> Self {
        HarmonyParser {
            mode: Mode::Header { confirmed: false },
            buf: String::new(),
        }
    }

    /// Feeds decoded text; returns the events it completes.
    pub fn feed(&mut self, text: &str) -> Vec<ParseEvent> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        while self.step(false, &mut out) {}
        crate::parse::merge(out)
    }

    /// Ends the turn: flushes held text and a tool call the end of output closes.
    pub fn finish(&mut self) -> Vec<ParseEvent> {
        let mut out = Vec::new();
        while self.step(true, &mut out) {}
        crate::parse::merge(out)
    }

    /// One step; returns whether it made progress.
    fn step(&mut self, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        match self.mode.clone() {
            Mode::Header { confirmed } => self.step_header(confirmed, at_end),
            Mode::Body(body) => self.step_body(body, at_end, out),
            Mode::Between => self.step_between(at_end),
        }
    }

    fn step_header(&mut self, confirmed: bool, at_end: bool) -> bool {
        // An unconfirmed header is judged by how it begins first, so the verdict does not depend on how much of it
        // has arrived.
        if !confirmed && !self.buf.is_empty() {
            let b = self.buf.as_str();
            if HEADER_STARTS.iter().any(|s| b.starts_with(s)) {
                self.mode = Mode::Header { confirmed: true };
                return true;
            }
            if !HEADER_STARTS.iter().any(|s| s.starts_with(b)) {
                // Not harmony: the answer as written.
                self.mode = Mode::Body(Body::Text);
                return true;
            }
            // A prefix of a header start: wait for more; at the end it was a short answer.
            if !at_end {
                return false;
            }
            self.mode = Mode::Body(Body::Text);
            return true;
        }
        if confirmed && let Some(i) = self.buf.find(MESSAGE) {
            let header: String = self.buf.drain(..i).collect();
            self.buf.drain(..MESSAGE.len());
            self.mode = Mode::Body(body_of(&header));
            return true;
        }
        if at_end && !self.buf.is_empty() {
            // A header the output cut off says nothing to return.
            tracing::warn!(header = %self.buf, "harmony header without a message at the end of output; dropped");
            self.buf.clear();
        }
        false
    }

    fn step_body(&mut self, body: Body, at_end: bool, out: &mut Vec<ParseEvent>) -> bool {
        let end = BODY_ENDS
            .iter()
            .filter_map(|m| self.buf.find(m).map(|i| (i, *m)))
            .min_by_key(|(i, _)| *i);
        match (&body, end) {
            (Body::Call { .. }, None) if !at_end => false,
            (Body::Call { name, header }, found) => {
                let upto = found.map_or(self.buf.len(), |(i, _)| i);
                let payload: String = self.buf.drain(..upto).collect();
                match serde_json::from_str::<Json>(payload.trim()) {
                    Ok(arguments) => out.push(ParseEvent::ToolCall {
                        name: name.clone(),
                        arguments: crate::parse::decode_arguments(arguments),
                    }),
                    Err(e) => {
                        let raw = format!("{header}{MESSAGE}{payload}");
                        tracing::warn!(text = %raw, error = %e, "harmony tool call without JSON arguments; returned as text");
                        out.push(ParseEvent::Text(raw));
                    }
                }
                self.end_message(found);
                true
            }
            (_, Some((i, marker))) => {
                let piece: String = self.buf.drain(..i).collect();
                push(out, &body, piece);
                self.end_message(Some((0, marker)));
                true
            }
            (_, None) => {
                let keep = if at_end {
                    0
                } else {
                    crate::parse::partial_marker_len(&self.buf, &BODY_ENDS)
                };
                let piece: String = self.buf.drain(..self.buf.len() - keep).collect();
                push(out, &body, piece);
                false
            }
        }
    }

    /// Consumes the marker that ended a message (at the start of the buffer once the body is drained).
    fn end_message(&mut self, found: Option<(usize, &str)>) {
        match found {
            Some((_, START)) => {
                self.buf.drain(..START.len());
                self.mode = Mode::Header { confirmed: true };
            }
            Some((_, marker)) => {
                self.buf.drain(..marker.len());
                self.mode = Mode::Between;
            }
            None => self.mode = Mode::Between,
        }
    }

    fn step_between(&mut self, at_end: bool) -> bool {
        if self.buf.starts_with(START) {
            self.buf.drain(..START.len());
            self.mode = Mode::Header { confirmed: true };
            return true;
        }
        if self.buf.is_empty() || (!at_end && START.starts_with(self.buf.as_str())) {
            return false;
        }
        // No `<|start|>`: read what follows as a header if it is one, else as text.
        self.mode = Mode::Header { confirmed: false };
        true
    }
}

fn push(out: &mut Vec<ParseEvent>, body: &Body, piece: String) {
    if piece.is_empty() {
        return;
    }
    out.push(match body {
        Body::Reasoning => ParseEvent::Reasoning(piece),
        _ => ParseEvent::Text(piece),
    });
}

/// The body a header announces: its recipient (`to=…`, before or after the channel) and channel.
fn body_of(header: &str) -> Body {
    let recipient = header.split("to=").nth(1).map(|r| {
        r.split(|c: char| c.is_whitespace() || c == '<')
            .next()
            .unwrap_or("")
            .to_owned()
    });
    let channel = header.split(CHANNEL).nth(1).map(|c| {
        c.split(|ch: char| ch.is_whitespace() || ch == '<')
            .next()
            .unwrap_or("")
            .to_owned()
    });
    match (recipient, channel.as_deref()) {
        // A message to the assistant is a tool's answer, not a call; to anyone else (`functions.f`, or a built-in
        // tool such as `browser.search`) it is a call.
        (Some(r), _) if !r.is_empty() && r != "assistant" => Body::Call {
            name: r.strip_prefix(FUNCTIONS).unwrap_or(&r).to_owned(),
            header: header.to_owned(),
        },
        (_, Some("analysis")) => Body::Reasoning,
        _ => Body::Text,
    }
}

#[cfg(test)]
mod tests;

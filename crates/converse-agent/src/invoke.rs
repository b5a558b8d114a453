//! The InvokeModel path, for imported models Bedrock serves without Converse (`instructSupported: false`, e.g.
//! Qwen3): the prompt is rendered with the model's own chat template (the `chat-template` crate, from the files the
//! import used), sent as a Bedrock completion body (`prompt` + `max_gen_len`), and the generation is parsed back
//! into text, reasoning and tool calls — so tools work on these models too.

use std::path::Path;
use std::sync::Arc;

use chat_template::{ChatTemplate, RenderRequest};
use serde_json::{Value, json};

use crate::events::Usage;
use crate::message::{Block, Message, Role};
use crate::{Piece, ThinkSplitter};

/// A piece of parsed model output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputPiece {
    /// Answer text.
    Text(String),
    /// Reasoning.
    Reasoning(String),
    /// A tool call.
    ToolCall {
        /// The tool.
        name: String,
        /// Its arguments.
        arguments: Value,
    },
}

/// Parses a complete generation; `thinking_open` says the prompt left the model inside `<think>`.
pub type OutputParse = Arc<dyn Fn(&str, bool) -> Vec<OutputPiece> + Send + Sync>;

/// The chat-template crate's parser for `syntax`: text, `<think>` reasoning and tool calls in the family's own form.
pub fn template_parser(syntax: chat_template::ToolSyntax) -> OutputParse {
    Arc::new(move |text: &str, thinking_open: bool| {
        let mut parser = chat_template::parse::OutputParser::new(syntax, thinking_open);
        let mut events = parser.feed(text);
        events.extend(parser.finish());
        events
            .into_iter()
            .map(|e| match e {
                chat_template::parse::ParseEvent::Text(t) => OutputPiece::Text(t),
                chat_template::parse::ParseEvent::Reasoning(r) => OutputPiece::Reasoning(r),
                chat_template::parse::ParseEvent::ToolCall { name, arguments } => {
                    OutputPiece::ToolCall { name, arguments }
                }
            })
            .collect()
    })
}

/// A parser that splits `<think>` reasoning and reads no tool calls: the fallback when the template teaches no
/// tool-call syntax.
pub fn think_only_parser() -> OutputParse {
    Arc::new(|text: &str, thinking_open: bool| {
        let mut s = ThinkSplitter::new(thinking_open);
        let mut pieces = s.feed(text);
        pieces.extend(s.finish());
        pieces
            .into_iter()
            .map(|p| match p {
                Piece::Text(t) => OutputPiece::Text(t),
                Piece::Reasoning(r) => OutputPiece::Reasoning(r),
            })
            .collect()
    })
}

/// What the InvokeModel path needs: the template and a parser for what the model writes.
#[derive(Clone)]
pub struct InvokeBackend {
    template: ChatTemplate,
    parse: OutputParse,
    /// Whether rendered prompts end inside `<think>` (decided on the first render).
    thinking_open: bool,
}

impl std::fmt::Debug for InvokeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InvokeBackend")
            .field("thinking_open", &self.thinking_open)
            .finish()
    }
}

/// A parsed InvokeModel response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct InvokeOutput {
    pub(crate) blocks: Vec<Block>,
    pub(crate) stop_reason: String,
    pub(crate) usage: Usage,
}

impl InvokeBackend {
    /// A backend from a template and a parser.
    pub fn new(template: ChatTemplate, parse: OutputParse) -> InvokeBackend {
        let probe = template.render(&RenderRequest {
            messages: vec![json!({"role": "user", "content": "hi"})],
            tools: None,
            add_generation_prompt: true,
            template_kwargs: Default::default(),
            now: None,
        });
        let thinking_open = probe.map(|p| prompt_opens_thinking(&p)).unwrap_or(false);
        InvokeBackend {
            template,
            parse,
            thinking_open,
        }
    }

    /// The template of the model folder the import used, with the parser for the tool-call syntax it teaches.
    pub fn from_model_dir(dir: &Path) -> Result<InvokeBackend, chat_template::Error> {
        let template = ChatTemplate::from_model_dir(dir)?;
        let parse = template_parser(template.tool_syntax());
        Ok(InvokeBackend::new(template, parse))
    }

    /// Whether the model's output starts as reasoning.
    pub fn starts_in_reasoning(&self) -> bool {
        self.thinking_open
    }

    /// The template.
    pub fn template(&self) -> &ChatTemplate {
        &self.template
    }

    /// Renders the conversation and builds the request body.
    pub(crate) fn request_body(
        &self,
        system: Option<&str>,
        msgs: &[Message],
        tools: &[Value],
        max_tokens: u32,
        temperature: Option<f32>,
    ) -> Result<Vec<u8>, String> {
        let prompt = self.render(system, msgs, tools)?;
        let mut body = json!({ "prompt": prompt, "max_gen_len": max_tokens });
        if let Some(t) = temperature {
            body["temperature"] = json!(t);
        }
        serde_json::to_vec(&body).map_err(|e| e.to_string())
    }

    /// The prompt for a conversation, as transformers' `apply_chat_template` would render it.
    pub fn render(&self, system: Option<&str>, msgs: &[Message], tools: &[Value]) -> Result<String, String> {
        let req = RenderRequest {
            messages: to_template_messages(system, msgs),
            tools: if tools.is_empty() { None } else { Some(tools.to_vec()) },
            add_generation_prompt: true,
            template_kwargs: Default::default(),
            now: None,
        };
        self.template
            .render(&req)
            .map_err(|e| format!("the chat template failed: {e}"))
    }

    /// Reads a response in any of the formats imported models answer in.
    pub(crate) fn parse_response(&self, body: &[u8], tools: bool) -> Result<InvokeOutput, String> {
        let v: Value = serde_json::from_slice(body).map_err(|e| format!("the response is not JSON: {e}"))?;
        let (text, stop, usage) = if let Some(g) = v.get("generation").and_then(Value::as_str) {
            let stop = v.get("stop_reason").and_then(Value::as_str).unwrap_or("stop");
            let i = v.get("prompt_token_count").and_then(Value::as_i64).unwrap_or(0);
            let o = v.get("generation_token_count").and_then(Value::as_i64).unwrap_or(0);
            (
                g.to_string(),
                stop.to_string(),
                Usage {
                    input_tokens: i,
                    output_tokens: o,
                    total_tokens: i + o,
                },
            )
        } else if let Some(c) = v.pointer("/choices/0/text").and_then(Value::as_str) {
            let stop = v
                .pointer("/choices/0/finish_reason")
                .and_then(Value::as_str)
                .unwrap_or("stop");
            let i = v.pointer("/usage/prompt_tokens").and_then(Value::as_i64).unwrap_or(0);
            let o = v
                .pointer("/usage/completion_tokens")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            (
                c.to_string(),
                stop.to_string(),
                Usage {
                    input_tokens: i,
                    output_tokens: o,
                    total_tokens: i + o,
                },
            )
        } else if let Some(c) = v.pointer("/outputs/0/text").and_then(Value::as_str) {
            let stop = v
                .pointer("/outputs/0/stop_reason")
                .and_then(Value::as_str)
                .unwrap_or("stop");
            (c.to_string(), stop.to_string(), Usage::default())
        } else {
            return Err(format!("unrecognised response: {}", truncate(&v.to_string(), 200)));
        };
        let mut blocks = vec![];
        let mut calls = 0;
        for p in (self.parse)(&text, self.thinking_open) {
            match p {
                OutputPiece::Text(t) => match blocks.last_mut() {
                    Some(Block::Text(prev)) => prev.push_str(&t),
                    _ => blocks.push(Block::Text(t)),
                },
                OutputPiece::Reasoning(r) => match blocks.last_mut() {
                    Some(Block::ReasoningContent { text, .. }) => text.push_str(&r),
                    _ => blocks.push(Block::ReasoningContent {
                        text: r,
                        signature: None,
                    }),
                },
                OutputPiece::ToolCall { name, arguments } if tools => {
                    calls += 1;
                    blocks.push(Block::ToolUse {
                        tool_use_id: new_tool_use_id(),
                        name,
                        input: arguments,
                    });
                }
                OutputPiece::ToolCall { name, arguments } => {
                    blocks.push(Block::Text(json!({"name": name, "arguments": arguments}).to_string()))
                }
            }
        }
        let stop_reason = match stop.as_str() {
            "length" | "max_tokens" => "max_tokens",
            _ if calls > 0 => "tool_use",
            _ => "end_turn",
        };
        Ok(InvokeOutput {
            blocks,
            stop_reason: stop_reason.into(),
            usage,
        })
    }
}

fn truncate(s: &str, n: usize) -> &str {
    let mut cut = n.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

/// Whether a rendered prompt ends inside an open `<think>` block.
fn prompt_opens_thinking(prompt: &str) -> bool {
    match (prompt.rfind("<think>"), prompt.rfind("</think>")) {
        (Some(o), Some(c)) => o > c,
        (Some(_), None) => true,
        _ => false,
    }
}

/// A toolUse ID in Bedrock's shape.
fn new_tool_use_id() -> String {
    use rand::Rng as _;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..22)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("tooluse_{tail}")
}

/// The conversation in the OpenAI / Hugging Face shape chat templates take: tool calls as `tool_calls` with object
/// arguments, results as `tool` messages, reasoning left out (templates drop it from history anyway).
pub fn to_template_messages(system: Option<&str>, msgs: &[Message]) -> Vec<Value> {
    let mut out = vec![];
    if let Some(s) = system.filter(|s| !s.trim().is_empty()) {
        out.push(json!({"role": "system", "content": s}));
    }
    let mut names: std::collections::HashMap<String, String> = Default::default();
    for m in msgs {
        match m.role {
            Role::Assistant => {
                let text = m.text();
                let calls: Vec<Value> = m
                    .tool_uses()
                    .map(|(id, name, input)| {
                        names.insert(id.to_string(), name.to_string());
                        json!({"id": id, "type": "function", "function": {"name": name, "arguments": input}})
                    })
                    .collect();
                let mut v = json!({"role": "assistant", "content": text});
                if !calls.is_empty() {
                    v["tool_calls"] = Value::Array(calls);
                }
                out.push(v);
            }
            Role::User => {
                for b in &m.content {
                    if let Block::ToolResult {
                        tool_use_id, content, ..
                    } = b
                    {
                        let name = names.get(tool_use_id).cloned().unwrap_or_default();
                        out.push(
                            json!({"role": "tool", "tool_call_id": tool_use_id, "name": name, "content": content}),
                        );
                    }
                }
                let text = m.text();
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
        }
    }
    out
}

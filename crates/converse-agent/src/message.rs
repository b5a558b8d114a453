//! The conversation as the agent keeps and saves it, its normalisation before sending (as Bedrock expects), history
//! trimming that keeps toolUse/toolResult pairs together, and conversion to and from the SDK types.

use aws_sdk_bedrockruntime::types as sdk;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::doc::{doc_to_json, json_to_doc};

/// Who said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (and tool results, which Converse carries in user messages).
    User,
    /// The model.
    Assistant,
}

/// One message: a role and content blocks, in the Converse JSON shape (camelCase) so sessions read like the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// What was said.
    pub content: Vec<Block>,
}

/// A content block.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Block {
    /// Text.
    Text(String),
    /// Reasoning (from `reasoningContent`, or split out of inline `<think>…</think>`).
    ReasoningContent {
        /// The reasoning text.
        text: String,
        /// The provider's signature, needed to send reasoning back; absent for split-out `<think>` text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A tool call.
    #[serde(rename_all = "camelCase")]
    ToolUse {
        /// Pairs the call with its result.
        tool_use_id: String,
        /// The tool.
        name: String,
        /// The arguments (an object).
        input: Value,
    },
    /// A tool's result.
    #[serde(rename_all = "camelCase")]
    ToolResult {
        /// The call this answers.
        tool_use_id: String,
        /// The result text.
        content: String,
        /// True when the tool failed (sent as `status: error`).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl Message {
    /// A user message with one text block.
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: vec![Block::Text(text.into())],
        }
    }

    /// The text blocks joined.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                Block::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The tool calls in this message.
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|b| match b {
            Block::ToolUse {
                tool_use_id,
                name,
                input,
            } => Some((tool_use_id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }

    fn has_tool_results(&self) -> bool {
        self.content.iter().any(|b| matches!(b, Block::ToolResult { .. }))
    }
}

/// Normalises a history for sending, as Bedrock expects:
/// - empty or blank text blocks are dropped (Bedrock rejects them: bedrock-engineer#8);
/// - tool input that is not an object becomes `{}`;
/// - reasoning without a signature (split-out `<think>` text, or from models that do not take it back) is dropped,
///   unless `keep_reasoning` (bedrock-engineer#239: unsigned reasoning fails the next turn);
/// - a toolUse with no toolResult in the next message (a cancelled or crashed turn) gets an error result;
/// - toolResults without their toolUse are dropped;
/// - consecutive messages of the same role are merged; the history starts with a user message; empty messages go.
pub fn normalize(history: &[Message], keep_reasoning: bool) -> Vec<Message> {
    let mut out: Vec<Message> = vec![];
    for (i, m) in history.iter().enumerate() {
        let mut content: Vec<Block> = vec![];
        for b in &m.content {
            match b {
                Block::Text(t) if t.trim().is_empty() => {}
                Block::ReasoningContent { signature, .. } if !(keep_reasoning && signature.is_some()) => {}
                Block::ReasoningContent { text, .. } if text.is_empty() => {}
                Block::ToolUse {
                    tool_use_id,
                    name,
                    input,
                } => content.push(Block::ToolUse {
                    tool_use_id: tool_use_id.clone(),
                    name: name.clone(),
                    input: if input.is_object() {
                        input.clone()
                    } else {
                        Value::Object(Default::default())
                    },
                }),
                other => content.push(other.clone()),
            }
        }
        // Drop results whose call is not in the previous (kept) assistant message.
        if m.role == Role::User {
            let calls: Vec<String> = out
                .last()
                .filter(|p| p.role == Role::Assistant)
                .map(|p| p.tool_uses().map(|(id, _, _)| id.to_string()).collect())
                .unwrap_or_default();
            content.retain(|b| match b {
                Block::ToolResult { tool_use_id, .. } => calls.contains(tool_use_id),
                _ => true,
            });
        }
        // Calls whose results never came: answer them so the pair stays whole.
        if m.role == Role::Assistant {
            let next = history.get(i + 1);
            let answered: Vec<&str> = next
                .filter(|n| n.role == Role::User)
                .map(|n| {
                    n.content
                        .iter()
                        .filter_map(|b| match b {
                            Block::ToolResult { tool_use_id, .. } => Some(tool_use_id.as_str()),
                            _ => None,
                        })
                        .collect()
                })
                .unwrap_or_default();
            let missing: Vec<Block> = content
                .iter()
                .filter_map(|b| match b {
                    Block::ToolUse { tool_use_id, .. } if !answered.contains(&tool_use_id.as_str()) => {
                        Some(Block::ToolResult {
                            tool_use_id: tool_use_id.clone(),
                            content: "the tool call was interrupted before it finished".into(),
                            is_error: true,
                        })
                    }
                    _ => None,
                })
                .collect();
            if content.is_empty() {
                continue;
            }
            push_merged(
                &mut out,
                Message {
                    role: Role::Assistant,
                    content,
                },
            );
            if !missing.is_empty() {
                // Results go first in the following user message, so merge them in front of it.
                out.push(Message {
                    role: Role::User,
                    content: missing,
                });
            }
            continue;
        }
        if content.is_empty() {
            continue;
        }
        push_merged(&mut out, Message { role: m.role, content });
    }
    while out
        .first()
        .is_some_and(|m| m.role != Role::User || m.has_tool_results())
    {
        out.remove(0);
    }
    out
}

fn push_merged(out: &mut Vec<Message>, m: Message) {
    match out.last_mut() {
        Some(last) if last.role == m.role => {
            // Tool results must come before text in a user message.
            let mut content = std::mem::take(&mut last.content);
            content.extend(m.content);
            content.sort_by_key(|b| !matches!(b, Block::ToolResult { .. }));
            last.content = content;
        }
        _ => out.push(m),
    }
}

/// A rough token count, used only to decide what to leave out; the model's own limit is enforced by Bedrock, and a
/// refusal teaches the agent a smaller budget. ASCII counts 4 bytes a token (the usual rule for English and code);
/// every other character counts a token of its own: Japanese and Chinese take about one token a character in the
/// vocabularies of imported models, and at 3 bytes a character the byte rule would count a quarter of that.
pub fn estimate_tokens(m: &Message) -> usize {
    let tokens: usize = m
        .content
        .iter()
        .map(|b| match b {
            Block::Text(t) => estimate_text(t),
            Block::ReasoningContent { text, .. } => estimate_text(text),
            Block::ToolUse { name, input, .. } => estimate_text(name) + estimate_text(&input.to_string()),
            Block::ToolResult { content, .. } => estimate_text(content),
        })
        .sum();
    tokens + 4
}

/// [`estimate_tokens`] of one text.
fn estimate_text(s: &str) -> usize {
    let ascii = s.bytes().filter(u8::is_ascii).count();
    let other = s.chars().filter(|c| !c.is_ascii()).count();
    ascii.div_ceil(4) + other
}

/// When an answer cut off at `max_tokens` is a tool call the model was still writing, the tool's name (empty if the
/// name itself did not arrive): text that opens with any family's tool-call marker, or with a JSON object whose first
/// key is `"name"` naming one of `tools` (Llama 3's form; an answer that merely is JSON with a `name` names no tool).
/// Imported models return such a cut-off call as plain text.
pub(crate) fn cut_off_tool_call(text: &str, tools: &[&str]) -> Option<String> {
    let t = text.trim_start();
    let marked = chat_template::parse::TOOL_CALL_OPENERS
        .iter()
        .find_map(|m| t.strip_prefix(m));
    let body = marked.unwrap_or(t).trim_start().trim_start_matches('[').trim_start();
    // The name as far as it arrived, and whether it is whole.
    let name = body
        .strip_prefix('{')
        .map(str::trim_start)
        .and_then(|b| b.strip_prefix("\"name\""))
        .and_then(|rest| rest.trim_start().strip_prefix(':'))
        .and_then(|rest| rest.trim_start().strip_prefix('"'))
        .map(|v| match v.split_once('"') {
            Some((name, _)) => (name, true),
            None => (v, false),
        });
    match (marked, name) {
        (Some(_), Some((name, true))) => Some(name.to_string()),
        (Some(_), _) => Some(String::new()),
        (None, Some((name, true))) => tools.contains(&name).then(|| name.to_string()),
        (None, Some((part, false))) => tools.iter().any(|t| t.starts_with(part)).then(String::new),
        (None, None) => None,
    }
}

/// Drops the oldest messages until the estimate fits `budget` tokens. Whole exchanges go together: the history
/// always restarts at a user message that is not a tool result, so a toolUse is never sent without its toolResult (or
/// the reverse). The latest user message is always kept, even if it alone is over budget.
pub fn trim_to_budget(history: &mut Vec<Message>, budget: usize) -> usize {
    let mut dropped = 0;
    let total = |h: &Vec<Message>| h.iter().map(estimate_tokens).sum::<usize>();
    while total(history) > budget && history.len() > 1 {
        // Find the next restart point after the first message.
        let next = history
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, m)| m.role == Role::User && !m.has_tool_results());
        match next {
            Some((i, _)) => {
                history.drain(..i);
                dropped += i;
            }
            None => break,
        }
    }
    dropped
}

/// Converts to the SDK message.
pub(crate) fn to_sdk(m: &Message) -> Result<sdk::Message, crate::Error> {
    let role = match m.role {
        Role::User => sdk::ConversationRole::User,
        Role::Assistant => sdk::ConversationRole::Assistant,
    };
    let mut b = sdk::Message::builder().role(role);
    for block in &m.content {
        let c = match block {
            Block::Text(t) => sdk::ContentBlock::Text(t.clone()),
            Block::ReasoningContent { text, signature } => {
                sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::ReasoningText(
                    sdk::ReasoningTextBlock::builder()
                        .text(text)
                        .set_signature(signature.clone())
                        .build()
                        .map_err(build)?,
                ))
            }
            Block::ToolUse {
                tool_use_id,
                name,
                input,
            } => sdk::ContentBlock::ToolUse(
                sdk::ToolUseBlock::builder()
                    .tool_use_id(tool_use_id)
                    .name(name)
                    .input(json_to_doc(input))
                    .build()
                    .map_err(build)?,
            ),
            Block::ToolResult {
                tool_use_id,
                content,
                is_error,
            } => sdk::ContentBlock::ToolResult(
                sdk::ToolResultBlock::builder()
                    .tool_use_id(tool_use_id)
                    .content(sdk::ToolResultContentBlock::Text(content.clone()))
                    .status(if *is_error {
                        sdk::ToolResultStatus::Error
                    } else {
                        sdk::ToolResultStatus::Success
                    })
                    .build()
                    .map_err(build)?,
            ),
        };
        b = b.content(c);
    }
    b.build().map_err(build)
}

fn build(e: aws_sdk_bedrockruntime::error::BuildError) -> crate::Error {
    crate::Error::Request { message: e.to_string() }
}

/// Converts an SDK content block (from a Converse response); unsupported kinds are skipped.
pub(crate) fn block_from_sdk(c: &sdk::ContentBlock) -> Option<Block> {
    Some(match c {
        sdk::ContentBlock::Text(t) => Block::Text(t.clone()),
        sdk::ContentBlock::ToolUse(t) => Block::ToolUse {
            tool_use_id: t.tool_use_id.clone(),
            name: t.name.clone(),
            input: doc_to_json(&t.input),
        },
        sdk::ContentBlock::ReasoningContent(sdk::ReasoningContentBlock::ReasoningText(r)) => Block::ReasoningContent {
            text: r.text.clone(),
            signature: r.signature.clone(),
        },
        _ => return None,
    })
}

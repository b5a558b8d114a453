//! [`StreamAssembler`]: one place that turns generated pieces into ConverseStream events *and* into the
//! non-streaming ConverseResponse, so that Converse and ConverseStream answer identically.
//!
//! Event sequence (what Bedrock sends for models with text, reasoning and tool use):
//! `messageStart{role: assistant}`, then per content block: text and reasoning blocks open with their first
//! `contentBlockDelta` (no `contentBlockStart`, as Bedrock does), a tool call is `contentBlockStart{start.toolUse}`,
//! one `contentBlockDelta{toolUse.input: "<json text>"}` and `contentBlockStop`; a block closes with
//! `contentBlockStop` when the kind of piece changes; finally `messageStop{stopReason}` and
//! `metadata{usage, metrics}`.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::WireError;
use crate::converse::{
    ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, Message, ReasoningContentBlock,
    ReasoningTextBlock, Role, StopReason, TokenUsage, ToolUseBlock,
};
use crate::stream::{
    ContentBlockDelta, ContentBlockDeltaEvent, ContentBlockStart, ContentBlockStartEvent, ContentBlockStopEvent,
    ConverseStreamEvent, MessageStartEvent, MessageStopEvent, MetadataEvent, ReasoningContentBlockDelta,
    ToolUseBlockDelta, ToolUseBlockStart,
};

/// A piece of generated output, as the output parser yields it.
#[derive(Debug, Clone, PartialEq)]
pub enum Piece {
    /// Visible text.
    Text(String),
    /// Reasoning ("thinking") text.
    Reasoning(String),
    /// A complete tool call.
    ToolCall {
        /// The `toolUseId` to report (unique within the conversation).
        id: String,
        /// The tool's name.
        name: String,
        /// The arguments (normally a JSON object).
        input: Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenKind {
    Text,
    Reasoning,
}

/// Builds the assistant message from pieces, emitting the matching ConverseStream events as it goes.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    /// `messageStart` has been emitted.
    started: bool,
    /// `messageStop` and `metadata` have been emitted; later pieces are ignored.
    finished: bool,
    /// The message content so far; an open text/reasoning block is the last one.
    blocks: Vec<ContentBlock>,
    /// The kind of the last block while it is still open.
    open: Option<OpenKind>,
    /// Whitespace-only text received while no text block is open. It opens a block only together with the next
    /// non-blank text: a blank text block (e.g. the `\n` between a tool call and the end of turn) would be refused
    /// by Converse ("The text field in the ContentBlock object … is blank") when the client sends the message back.
    pending_blank: String,
}

impl StreamAssembler {
    /// An assembler before any output.
    pub fn new() -> Self {
        StreamAssembler::default()
    }

    /// Returns `messageStart` the first time it is called (and nothing afterwards). [`StreamAssembler::push`] and
    /// [`StreamAssembler::finish`] call it themselves; call it directly to send `messageStart` before the first
    /// token.
    pub fn start(&mut self) -> Vec<ConverseStreamEvent> {
        if self.started {
            return Vec::new();
        }
        self.started = true;
        vec![ConverseStreamEvent::MessageStart(MessageStartEvent {
            role: Role::Assistant,
        })]
    }

    /// Adds a piece and returns the events it produces. Empty text and reasoning pieces produce nothing.
    pub fn push(&mut self, piece: Piece) -> Vec<ConverseStreamEvent> {
        if self.finished {
            tracing::warn!("piece pushed after the message finished; ignored");
            return Vec::new();
        }
        let mut events = self.start();
        match piece {
            Piece::Text(text) => self.push_text(OpenKind::Text, text, &mut events),
            Piece::Reasoning(text) => self.push_text(OpenKind::Reasoning, text, &mut events),
            Piece::ToolCall { id, name, input } => {
                self.close(&mut events);
                let index = self.next_index();
                events.push(ConverseStreamEvent::ContentBlockStart(ContentBlockStartEvent {
                    content_block_index: index,
                    start: ContentBlockStart::ToolUse(ToolUseBlockStart {
                        tool_use_id: id.clone(),
                        name: name.clone(),
                        kind: None,
                    }),
                }));
                events.push(ConverseStreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
                    content_block_index: index,
                    delta: ContentBlockDelta::ToolUse(ToolUseBlockDelta {
                        input: input.to_string(),
                    }),
                }));
                events.push(ConverseStreamEvent::ContentBlockStop(ContentBlockStopEvent {
                    content_block_index: index,
                }));
                self.blocks.push(ContentBlock::ToolUse(ToolUseBlock {
                    tool_use_id: id,
                    name,
                    input,
                    kind: None,
                }));
            }
        }
        events
    }

    /// Ends the message: closes the open block and returns `messageStop` and `metadata` (preceded by
    /// `messageStart` if nothing was pushed). See [`StreamAssembler::stop_reason`] for the reported reason.
    pub fn finish(&mut self, stop_reason: StopReason, usage: TokenUsage, latency_ms: u64) -> Vec<ConverseStreamEvent> {
        if self.finished {
            return Vec::new();
        }
        let mut events = self.start();
        self.close(&mut events);
        self.finished = true;
        events.push(ConverseStreamEvent::MessageStop(MessageStopEvent {
            stop_reason: self.stop_reason(stop_reason),
            additional_model_response_fields: None,
        }));
        events.push(ConverseStreamEvent::Metadata(MetadataEvent {
            usage,
            metrics: ConverseMetrics { latency_ms },
            trace: None,
            performance_config: None,
            service_tier: None,
        }));
        events
    }

    /// The non-streaming response for the pieces pushed so far (whether or not the events were sent).
    pub fn response(&self, stop_reason: StopReason, usage: TokenUsage, latency_ms: u64) -> ConverseResponse {
        ConverseResponse {
            output: ConverseOutput::Message(Message {
                role: Role::Assistant,
                content: self.blocks.clone(),
            }),
            stop_reason: self.stop_reason(stop_reason),
            usage,
            metrics: ConverseMetrics { latency_ms },
            additional_model_response_fields: None,
            trace: None,
            performance_config: None,
            service_tier: None,
        }
    }

    /// The stop reason to report: the engine's `end_turn` becomes `tool_use` when the message contains a tool call
    /// (clients run tools only on `tool_use`); every other reason is kept.
    pub fn stop_reason(&self, engine_reason: StopReason) -> StopReason {
        if engine_reason == StopReason::EndTurn && self.has_tool_use() {
            StopReason::ToolUse
        } else {
            engine_reason
        }
    }

    /// Whether a tool call has been pushed.
    pub fn has_tool_use(&self) -> bool {
        self.blocks.iter().any(|b| matches!(b, ContentBlock::ToolUse(_)))
    }

    /// The content blocks so far.
    pub fn content(&self) -> &[ContentBlock] {
        &self.blocks
    }

    fn next_index(&self) -> u32 {
        // A message never holds anywhere near u32::MAX blocks; saturate rather than wrap.
        u32::try_from(self.blocks.len()).unwrap_or(u32::MAX)
    }

    fn push_text(&mut self, kind: OpenKind, text: String, events: &mut Vec<ConverseStreamEvent>) {
        if text.is_empty() {
            return;
        }
        let mut text = text;
        if kind == OpenKind::Text && self.open != Some(OpenKind::Text) {
            if text.trim().is_empty() {
                self.pending_blank.push_str(&text);
                return;
            }
            text.insert_str(0, &std::mem::take(&mut self.pending_blank));
        }
        if self.open != Some(kind) {
            self.close(events);
            self.blocks.push(match kind {
                OpenKind::Text => ContentBlock::Text(String::new()),
                OpenKind::Reasoning => {
                    ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningTextBlock {
                        text: String::new(),
                        signature: None,
                    }))
                }
            });
            self.open = Some(kind);
        }
        let index = self.next_index() - 1;
        match self.blocks.last_mut() {
            Some(ContentBlock::Text(t)) => t.push_str(&text),
            Some(ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r))) => r.text.push_str(&text),
            // `open` is only set right after pushing a block of that kind.
            _ => unreachable!("open block is text or reasoning"),
        }
        let delta = match kind {
            OpenKind::Text => ContentBlockDelta::Text(text),
            OpenKind::Reasoning => ContentBlockDelta::ReasoningContent(ReasoningContentBlockDelta::Text(text)),
        };
        events.push(ConverseStreamEvent::ContentBlockDelta(ContentBlockDeltaEvent {
            content_block_index: index,
            delta,
        }));
    }

    fn close(&mut self, events: &mut Vec<ConverseStreamEvent>) {
        self.pending_blank.clear();
        if self.open.take().is_some() {
            events.push(ConverseStreamEvent::ContentBlockStop(ContentBlockStopEvent {
                content_block_index: self.next_index() - 1,
            }));
        }
    }
}

#[derive(Debug)]
enum Partial {
    Text(String),
    Reasoning { text: String, signature: Option<String> },
    ToolUse { id: String, name: String, input: String },
}

/// Folds a ConverseStream event sequence back into the ConverseResponse a client would build from it (what
/// boto3 users and the Bedrock Engineer fallback do). Tool inputs are the concatenated `toolUse.input` fragments
/// parsed as JSON (an empty input is `{}`).
pub fn fold_stream_events(events: &[ConverseStreamEvent]) -> Result<ConverseResponse, WireError> {
    let mut blocks: BTreeMap<u32, Partial> = BTreeMap::new();
    let mut stop_reason = None;
    let mut metadata = None;
    for event in events {
        match event {
            ConverseStreamEvent::MessageStart(_) | ConverseStreamEvent::ContentBlockStop(_) => {}
            ConverseStreamEvent::ContentBlockStart(e) => {
                if let ContentBlockStart::ToolUse(t) = &e.start {
                    blocks.insert(
                        e.content_block_index,
                        Partial::ToolUse {
                            id: t.tool_use_id.clone(),
                            name: t.name.clone(),
                            input: String::new(),
                        },
                    );
                }
            }
            ConverseStreamEvent::ContentBlockDelta(e) => {
                let field = format!("contentBlockDelta.{}", e.content_block_index);
                let entry = blocks.entry(e.content_block_index);
                match &e.delta {
                    ContentBlockDelta::Text(t) => match entry.or_insert_with(|| Partial::Text(String::new())) {
                        Partial::Text(acc) => acc.push_str(t),
                        _ => return Err(mixed(field)),
                    },
                    ContentBlockDelta::ReasoningContent(r) => {
                        match entry.or_insert_with(|| Partial::Reasoning {
                            text: String::new(),
                            signature: None,
                        }) {
                            Partial::Reasoning { text, signature } => match r {
                                ReasoningContentBlockDelta::Text(t) => text.push_str(t),
                                ReasoningContentBlockDelta::Signature(s) => {
                                    signature.get_or_insert_with(String::new).push_str(s)
                                }
                                ReasoningContentBlockDelta::RedactedContent(_) => {}
                            },
                            _ => return Err(mixed(field)),
                        }
                    }
                    ContentBlockDelta::ToolUse(t) => match entry {
                        std::collections::btree_map::Entry::Occupied(mut o) => match o.get_mut() {
                            Partial::ToolUse { input, .. } => input.push_str(&t.input),
                            _ => return Err(mixed(field)),
                        },
                        std::collections::btree_map::Entry::Vacant(_) => {
                            return Err(WireError::validation(
                                field,
                                "toolUse delta without a preceding toolUse contentBlockStart",
                            ));
                        }
                    },
                    _ => {}
                }
            }
            ConverseStreamEvent::MessageStop(e) => stop_reason = Some(e.stop_reason),
            ConverseStreamEvent::Metadata(e) => metadata = Some((e.usage, e.metrics)),
        }
    }
    let stop_reason =
        stop_reason.ok_or_else(|| WireError::validation("messageStop", "stream has no messageStop event"))?;
    let (usage, metrics) = metadata.ok_or_else(|| WireError::validation("metadata", "stream has no metadata event"))?;
    let mut content = Vec::with_capacity(blocks.len());
    for (index, partial) in blocks {
        content.push(match partial {
            Partial::Text(t) => ContentBlock::Text(t),
            Partial::Reasoning { text, signature } => {
                ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(ReasoningTextBlock {
                    text,
                    signature,
                }))
            }
            Partial::ToolUse { id, name, input } => {
                let input = if input.is_empty() {
                    Value::Object(serde_json::Map::new())
                } else {
                    serde_json::from_str(&input).map_err(|e| {
                        WireError::validation(
                            format!("contentBlockDelta.{index}.toolUse.input"),
                            format!("tool input is not JSON: {e}"),
                        )
                    })?
                };
                ContentBlock::ToolUse(ToolUseBlock {
                    tool_use_id: id,
                    name,
                    input,
                    kind: None,
                })
            }
        });
    }
    Ok(ConverseResponse {
        output: ConverseOutput::Message(Message {
            role: Role::Assistant,
            content,
        }),
        stop_reason,
        usage,
        metrics,
        additional_model_response_fields: None,
        trace: None,
        performance_config: None,
        service_tier: None,
    })
}

fn mixed(field: String) -> WireError {
    WireError::validation(field, "deltas of different kinds for one content block")
}

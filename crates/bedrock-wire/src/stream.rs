//! ConverseStream events (`ConverseStreamOutput` union members); each is one event-stream message whose
//! `:event-type` is the member name and whose payload is the member's JSON object.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::WireError;
use crate::converse::{ConverseMetrics, PerformanceConfig, Role, StopReason, TokenUsage};

/// One ConverseStream event. Serialized with serde it is the union form (`{"messageStart": {"role": …}}`), which
/// is also how boto3 shows events; on the wire use [`ConverseStreamEvent::event_type`] and
/// [`ConverseStreamEvent::payload`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConverseStreamEvent {
    /// The message starts.
    MessageStart(MessageStartEvent),
    /// A content block starts (sent for toolUse blocks; text and reasoning blocks start with their first delta).
    ContentBlockStart(ContentBlockStartEvent),
    /// A piece of a content block.
    ContentBlockDelta(ContentBlockDeltaEvent),
    /// A content block ends.
    ContentBlockStop(ContentBlockStopEvent),
    /// The message ends.
    MessageStop(MessageStopEvent),
    /// Usage and latency, after `messageStop`.
    Metadata(MetadataEvent),
}

impl ConverseStreamEvent {
    /// The `:event-type` header value (the union member name).
    pub fn event_type(&self) -> &'static str {
        match self {
            ConverseStreamEvent::MessageStart(_) => "messageStart",
            ConverseStreamEvent::ContentBlockStart(_) => "contentBlockStart",
            ConverseStreamEvent::ContentBlockDelta(_) => "contentBlockDelta",
            ConverseStreamEvent::ContentBlockStop(_) => "contentBlockStop",
            ConverseStreamEvent::MessageStop(_) => "messageStop",
            ConverseStreamEvent::Metadata(_) => "metadata",
        }
    }

    /// The event payload: the JSON object of the member structure.
    pub fn payload(&self) -> Result<Vec<u8>, WireError> {
        let result = match self {
            ConverseStreamEvent::MessageStart(e) => serde_json::to_vec(e),
            ConverseStreamEvent::ContentBlockStart(e) => serde_json::to_vec(e),
            ConverseStreamEvent::ContentBlockDelta(e) => serde_json::to_vec(e),
            ConverseStreamEvent::ContentBlockStop(e) => serde_json::to_vec(e),
            ConverseStreamEvent::MessageStop(e) => serde_json::to_vec(e),
            ConverseStreamEvent::Metadata(e) => serde_json::to_vec(e),
        };
        result.map_err(|source| WireError::Serialize {
            what: "converse stream event",
            source,
        })
    }

    /// Parses an event from its `:event-type` and payload. Returns `Ok(None)` for an event type this crate does
    /// not model (clients must ignore unknown events).
    pub fn from_parts(event_type: &str, payload: &[u8]) -> Result<Option<Self>, WireError> {
        use crate::converse::parse_json;
        Ok(Some(match event_type {
            "messageStart" => ConverseStreamEvent::MessageStart(parse_json(payload)?),
            "contentBlockStart" => ConverseStreamEvent::ContentBlockStart(parse_json(payload)?),
            "contentBlockDelta" => ConverseStreamEvent::ContentBlockDelta(parse_json(payload)?),
            "contentBlockStop" => ConverseStreamEvent::ContentBlockStop(parse_json(payload)?),
            "messageStop" => ConverseStreamEvent::MessageStop(parse_json(payload)?),
            "metadata" => ConverseStreamEvent::Metadata(parse_json(payload)?),
            _ => return Ok(None),
        }))
    }

    /// The complete event-stream frame for this event.
    pub fn to_frame(&self) -> Result<Bytes, WireError> {
        crate::eventstream::encode_event(self.event_type(), &self.payload()?)
    }
}

/// `MessageStartEvent`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStartEvent {
    /// Always `assistant` for generated messages.
    pub role: Role,
}

/// `ContentBlockStartEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStartEvent {
    /// Index of the block in the message's content.
    pub content_block_index: u32,
    /// What starts.
    pub start: ContentBlockStart,
}

/// `ContentBlockStart` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlockStart {
    /// A tool call starts.
    ToolUse(ToolUseBlockStart),
    /// A server-tool result starts; not produced here.
    ToolResult(Value),
    /// An image starts; not produced here.
    Image(Value),
}

/// `ToolUseBlockStart`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlockStart {
    /// The call's id.
    pub tool_use_id: String,
    /// The tool's name.
    pub name: String,
    /// `server_tool_use` for server tools.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// `ContentBlockDeltaEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockDeltaEvent {
    /// Index of the block in the message's content.
    pub content_block_index: u32,
    /// The piece.
    pub delta: ContentBlockDelta,
}

/// `ContentBlockDelta` union.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ContentBlockDelta {
    /// Text to append.
    Text(String),
    /// A fragment of the tool input's JSON text.
    ToolUse(ToolUseBlockDelta),
    /// Reasoning to append.
    ReasoningContent(ReasoningContentBlockDelta),
    /// Server-tool results; not produced here.
    ToolResult(Value),
    /// A citation; not produced here.
    Citation(Value),
    /// An image; not produced here.
    Image(Value),
}

/// `ToolUseBlockDelta`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ToolUseBlockDelta {
    /// A fragment of JSON text; the fragments of one block concatenate to the input document.
    pub input: String,
}

/// `ReasoningContentBlockDelta` union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningContentBlockDelta {
    /// Reasoning text to append.
    Text(String),
    /// Encrypted reasoning (base64 in JSON).
    RedactedContent(String),
    /// The reasoning's signature.
    Signature(String),
}

/// `ContentBlockStopEvent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContentBlockStopEvent {
    /// Index of the block that ends.
    pub content_block_index: u32,
}

/// `MessageStopEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStopEvent {
    /// Why generation stopped.
    pub stop_reason: StopReason,
    /// Model-specific response fields.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub additional_model_response_fields: Option<Value>,
}

/// `ConverseStreamMetadataEvent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetadataEvent {
    /// Token counts.
    pub usage: TokenUsage,
    /// Latency.
    pub metrics: ConverseMetrics,
    /// Guardrail / prompt-router trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<Value>,
    /// The performance configuration applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub performance_config: Option<PerformanceConfig>,
    /// The service tier applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<Value>,
}

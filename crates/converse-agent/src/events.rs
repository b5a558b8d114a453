//! What the agent reports while it works: ConverseStream-shaped events (also synthesised from non-streaming calls,
//! so a UI or `--json` sees one shape) and higher-level events a terminal renders.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::message::Message;

/// One ConverseStream event, serialised exactly as the service's JSON (`{"contentBlockDelta":{…}}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamEvent {
    /// The message begins.
    MessageStart {
        /// Always `assistant`.
        role: String,
    },
    /// A block begins (tool calls carry their ID and name here).
    #[serde(rename_all = "camelCase")]
    ContentBlockStart {
        /// Block index.
        content_block_index: usize,
        /// What starts.
        start: BlockStart,
    },
    /// A piece of a block.
    #[serde(rename_all = "camelCase")]
    ContentBlockDelta {
        /// Block index.
        content_block_index: usize,
        /// The piece.
        delta: Delta,
    },
    /// A block ends.
    #[serde(rename_all = "camelCase")]
    ContentBlockStop {
        /// Block index.
        content_block_index: usize,
    },
    /// The message ends.
    #[serde(rename_all = "camelCase")]
    MessageStop {
        /// `end_turn`, `tool_use`, `max_tokens`, …
        stop_reason: String,
    },
    /// Usage and latency.
    Metadata {
        /// Token counts.
        usage: Usage,
        /// Latency.
        metrics: Metrics,
    },
}

/// Start of a block.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BlockStart {
    /// A tool call.
    #[serde(rename_all = "camelCase")]
    ToolUse {
        /// Its ID.
        tool_use_id: String,
        /// The tool.
        name: String,
    },
}

/// A delta.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Delta {
    /// Answer text.
    Text(String),
    /// A fragment of a tool call's JSON input.
    ToolUse {
        /// The fragment.
        input: String,
    },
    /// Reasoning.
    ReasoningContent(ReasoningDelta),
}

/// A reasoning delta.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ReasoningDelta {
    /// Reasoning text.
    Text(String),
    /// The signature.
    Signature(String),
}

/// Token usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    /// Prompt tokens.
    pub input_tokens: i64,
    /// Generated tokens.
    pub output_tokens: i64,
    /// Both.
    pub total_tokens: i64,
}

/// Latency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    /// Milliseconds.
    pub latency_ms: i64,
}

/// Which API a step used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Api {
    /// ConverseStream.
    ConverseStream,
    /// Converse, presented as a stream.
    Converse,
    /// InvokeModel with the model's own chat template, presented as a stream.
    InvokeModel,
}

/// Something the agent reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AgentEvent {
    /// A model call starts.
    Request {
        /// The step number (1-based).
        step: usize,
        /// The API used.
        api: Api,
    },
    /// A ConverseStream event (real or synthesised).
    Stream(StreamEvent),
    /// Answer text to show.
    Text(String),
    /// Reasoning to show apart (dimmed).
    Reasoning(String),
    /// The model calls a tool.
    ToolUse {
        /// Its ID.
        id: String,
        /// The tool.
        name: String,
        /// The arguments.
        input: Value,
    },
    /// A tool finished.
    ToolResult {
        /// The call's ID.
        id: String,
        /// The tool.
        name: String,
        /// The output (or the error).
        output: String,
        /// Whether it failed.
        is_error: bool,
    },
    /// A message was added to the history (save it).
    Message(Message),
    /// The model is cold (`ModelNotReadyException`); the agent keeps retrying until the cold-start timeout.
    WarmingUp {
        /// Time since the first refusal.
        elapsed: Duration,
        /// The cold-start timeout.
        timeout: Duration,
        /// Attempts so far.
        attempt: u32,
    },
    /// A throttling or unavailable error; retrying after `delay`.
    Retrying {
        /// The error code.
        code: String,
        /// Attempt number of the retry.
        attempt: u32,
        /// Wait before it.
        delay: Duration,
    },
    /// ConverseStream refused tools; the agent now uses Converse for this model (and reports it to be remembered).
    SwitchedToNonStreaming {
        /// The service's message.
        reason: String,
    },
    /// A tool call was cut off at `max_tokens`; the model is asked to retry with smaller calls.
    TruncatedToolCall {
        /// The tool, if its name arrived.
        name: String,
    },
    /// The model refused the conversation as longer than its context, so the oldest exchanges are left out of what
    /// is sent from now on (the history keeps them).
    ContextTrimmed {
        /// Messages of the history no longer sent.
        left_out: usize,
    },
    /// This turn alone is longer than the model's context (older turns already left out): its messages are taken
    /// out of the history (and the session), so that later questions are not refused with it.
    Withdrawn {
        /// Messages taken out: the question, and any tool calls and results of the turn.
        messages: usize,
    },
    /// The turn ended.
    TurnEnd {
        /// The final stop reason.
        stop_reason: String,
        /// Model calls made.
        steps: usize,
    },
}

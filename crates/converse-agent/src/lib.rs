//! A tool-using chat agent over Amazon Bedrock's Converse API, that gets imported models right.
//!
//! - [`Agent::run_turn`] runs the tool loop and reports [`AgentEvent`]s; no terminal code here.
//! - Streaming decision: ConverseStream, except when tools are on and the model cannot stream with tools
//!   (`supportsStreamingToolUse: false`): then Converse, presented as the same stream of events ([`synthesize`]).
//!   A run-time refusal switches over and is reported to a callback so the registry remembers it.
//! - Reasoning arrives as `reasoningContent` or inline `<think>…</think>`; both come out as reasoning.
//! - [`RetryPolicy`]: cold models (`ModelNotReadyException`) are retried up to a cold-start timeout; throttling gets
//!   bounded retries with jitter; validation errors are explained.
//! - Models without Converse go through InvokeModel with their own chat template ([`invoke`]).
//! - Built-in tools confined to a workspace ([`tools`]); sessions saved as JSON lines ([`session`]).

#![warn(missing_docs)]

pub(crate) mod agent;
mod doc;
mod error;
mod events;
pub mod invoke;
pub mod message;
mod retry;
pub mod session;
pub mod tools;

pub use agent::{Agent, AgentConfig, StreamingRefused, TurnOutcome, synthesize};
/// Re-exported: the `<think>` splitter is `chat-template`'s, the same code that reads a local model's output.
pub use chat_template::think::{Piece, ThinkSplitter};
pub use error::Error;
pub use events::{AgentEvent, Api, BlockStart, Delta, Metrics, ReasoningDelta, StreamEvent, Usage};
pub use message::{Block, Message, Role};
pub use retry::RetryPolicy;

#[cfg(test)]
mod tests;

//! The Bedrock Runtime wire contract: JSON shapes, event-stream framing and the mapping to chat templates.
//!
//! This crate is pure (no IO, no async runtime). It holds:
//! - [`converse`]: serde types for Converse / ConverseStream requests and responses, with the member names the AWS
//!   SDKs send and parse (camelCase, per the Smithy model of `bedrock-runtime` 2023-09-30);
//! - [`stream`]: the ConverseStream events (`messageStart`, `contentBlockStart`, `contentBlockDelta`, …);
//! - [`invoke`]: InvokeModel / InvokeModelWithResponseStream bodies used by imported models;
//! - [`control`]: the import control plane's name, ARN, S3 URI and tag patterns, and the `cmi:*` model tags;
//! - [`exception`]: error types (`x-amzn-ErrorType` names, HTTP statuses, JSON bodies);
//! - [`eventstream`]: `application/vnd.amazon.eventstream` frames, encoded and decoded with `aws-smithy-eventstream`;
//! - [`structured`]: structured-output requests (`response_format`, `structured_outputs`, Converse `outputConfig`)
//!   and the OpenAI `tool_choice`;
//! - [`template`]: Converse messages and tools in the Hugging Face / OpenAI shape chat templates expect;
//! - [`assembler`]: [`StreamAssembler`], which turns generated pieces into the exact ConverseStream event sequence or
//!   into the equivalent non-streaming ConverseResponse;
//! - [`invoke_assembler`]: [`InvokeAssembler`], the same for InvokeModel's body formats (stream chunks or the whole
//!   body) and the OpenAI chat chunks.

pub mod assembler;
pub mod control;
pub mod converse;
mod error;
pub mod eventstream;
pub mod exception;
pub mod invoke;
pub mod invoke_assembler;
pub mod stream;
pub mod structured;
pub mod template;

pub use assembler::{Piece, StreamAssembler, fold_stream_events};
pub use converse::{
    ContentBlock, ConverseRequest, ConverseResponse, Message, Role, StopReason, TokenUsage, parse_converse_request,
};
pub use error::WireError;
pub use eventstream::{
    EventStreamDecoder, StreamMessage, decode_all, encode_chunk, encode_error, encode_event, encode_event_json,
    encode_exception, encode_exception_body,
};
pub use exception::{ErrorBody, ErrorType};
pub use invoke::{InvokeFormat, InvokeRequest, parse_invoke_request};
pub use invoke_assembler::{InvokeAssembler, InvokeFinish};
pub use stream::ConverseStreamEvent;
pub use structured::{StructuredOutput, ToolChoiceRequest, ToolRequirement};
pub use template::{TemplateInput, converse_to_template_input};

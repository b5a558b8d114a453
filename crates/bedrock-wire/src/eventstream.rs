//! `application/vnd.amazon.eventstream` framing for ConverseStream and InvokeModelWithResponseStream bodies.
//!
//! Frames are written and read by `aws-smithy-eventstream` (the codec the AWS SDKs use), so the CRCs and header
//! encoding are the SDK's own; this module only chooses the headers of each message kind (bedrock-cmi.md §3.5).

use aws_smithy_eventstream::frame::{DecodedFrame, MessageFrameDecoder, write_message_to};
use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use serde::Serialize;

use crate::WireError;
use crate::exception::ErrorBody;

/// The HTTP `Content-Type` of an event-stream response body.
pub const EVENT_STREAM_CONTENT_TYPE: &str = "application/vnd.amazon.eventstream";

/// The largest payload a service may send in one message (24 MiB, SM-ES).
pub const MAX_PAYLOAD_BYTES: usize = 25_165_824;

/// Encodes an event message: `:message-type: event`, `:event-type: <event_type>`, `:content-type:
/// application/json`, with `payload` (a JSON document) as the body.
pub fn encode_event(event_type: &str, payload: &[u8]) -> Result<Bytes, WireError> {
    encode(
        vec![
            string_header(":event-type", event_type),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "event"),
        ],
        payload,
    )
}

/// Serializes `payload` to JSON and encodes it as an event message.
pub fn encode_event_json<T: Serialize + ?Sized>(event_type: &str, payload: &T) -> Result<Bytes, WireError> {
    let json = serde_json::to_vec(payload).map_err(|source| WireError::Serialize {
        what: "event payload",
        source,
    })?;
    encode_event(event_type, &json)
}

/// Encodes a `chunk` event of InvokeModelWithResponseStream: payload `{"bytes": "<base64 of inner>"}`.
pub fn encode_chunk(inner: &[u8]) -> Result<Bytes, WireError> {
    let encoded = base64::engine::general_purpose::STANDARD.encode(inner);
    encode_event_json("chunk", &serde_json::json!({ "bytes": encoded }))
}

/// Encodes a modelled exception (`:message-type: exception`) whose body is `{"message": …}`. `exception_type` is
/// the stream union member name, e.g. `throttlingException` (see [`crate::ErrorType::stream_member`]).
pub fn encode_exception(exception_type: &str, message: &str) -> Result<Bytes, WireError> {
    encode_exception_body(exception_type, &ErrorBody::new(message))
}

/// Encodes a modelled exception with a full body (e.g. `modelStreamErrorException` with `originalStatusCode`).
pub fn encode_exception_body(exception_type: &str, body: &ErrorBody) -> Result<Bytes, WireError> {
    encode(
        vec![
            string_header(":exception-type", exception_type),
            string_header(":content-type", "application/json"),
            string_header(":message-type", "exception"),
        ],
        &body.to_json(),
    )
}

/// Encodes an unmodelled error (`:message-type: error`, `:error-code`, `:error-message`, empty payload). The message
/// is cut to the header value limit (32767 bytes) at a character boundary.
pub fn encode_error(code: &str, message: &str) -> Result<Bytes, WireError> {
    let mut cut = message.len().min(i16::MAX as usize);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    encode(
        vec![
            string_header(":error-code", code),
            string_header(":error-message", &message[..cut]),
            string_header(":message-type", "error"),
        ],
        &[],
    )
}

fn string_header(name: &'static str, value: &str) -> Header {
    Header::new(name, HeaderValue::String(value.to_owned().into()))
}

fn encode(headers: Vec<Header>, payload: &[u8]) -> Result<Bytes, WireError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(WireError::PayloadTooLarge {
            len: payload.len(),
            max: MAX_PAYLOAD_BYTES,
        });
    }
    let message = Message::new_from_parts(headers, Bytes::copy_from_slice(payload));
    let mut out = Vec::with_capacity(payload.len() + 128);
    write_message_to(&message, &mut out).map_err(WireError::Frame)?;
    Ok(Bytes::from(out))
}

/// A decoded event-stream message, classified by `:message-type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamMessage {
    /// `:message-type: event`.
    Event {
        /// `:event-type`.
        event_type: String,
        /// The payload (JSON for Bedrock events).
        payload: Bytes,
    },
    /// `:message-type: exception`.
    Exception {
        /// `:exception-type`, e.g. `throttlingException`.
        exception_type: String,
        /// The payload (`{"message": …}`).
        payload: Bytes,
    },
    /// `:message-type: error`.
    Error {
        /// `:error-code`.
        code: String,
        /// `:error-message`.
        message: String,
    },
}

impl StreamMessage {
    fn from_message(message: &Message) -> Result<Self, WireError> {
        let header = |name: &'static str| -> Result<String, WireError> {
            message
                .headers()
                .iter()
                .find(|h| h.name().as_str() == name)
                .and_then(|h| h.value().as_string().ok())
                .map(|s| s.as_str().to_owned())
                .ok_or(WireError::MissingHeader { name })
        };
        let kind = header(":message-type")?;
        match kind.as_str() {
            "event" => Ok(StreamMessage::Event {
                event_type: header(":event-type")?,
                payload: message.payload().clone(),
            }),
            "exception" => Ok(StreamMessage::Exception {
                exception_type: header(":exception-type")?,
                payload: message.payload().clone(),
            }),
            "error" => Ok(StreamMessage::Error {
                code: header(":error-code")?,
                message: header(":error-message").unwrap_or_default(),
            }),
            _ => Err(WireError::UnknownMessageType { value: kind }),
        }
    }

    /// The payload parsed as JSON (`Null` for an empty payload or an unmodelled error).
    pub fn payload_json(&self) -> Result<serde_json::Value, WireError> {
        match self {
            StreamMessage::Event { payload, .. } | StreamMessage::Exception { payload, .. } => {
                if payload.is_empty() {
                    Ok(serde_json::Value::Null)
                } else {
                    crate::converse::parse_json(payload)
                }
            }
            StreamMessage::Error { .. } => Ok(serde_json::Value::Null),
        }
    }
}

/// Incremental decoder: feed body chunks of any size as they arrive, get complete messages back.
#[derive(Debug, Default)]
pub struct EventStreamDecoder {
    buffer: BytesMut,
    decoder: MessageFrameDecoder,
    /// Bytes pushed so far.
    pushed: usize,
    /// Bytes belonging to complete messages.
    consumed: usize,
}

impl EventStreamDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        EventStreamDecoder::default()
    }

    /// Appends `data` and returns every message completed by it. A CRC or length error is fatal for the stream.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<StreamMessage>, WireError> {
        self.buffer.extend_from_slice(data);
        self.pushed += data.len();
        let mut out = Vec::new();
        loop {
            match self.decoder.decode_frame(&mut self.buffer).map_err(WireError::Frame)? {
                DecodedFrame::Complete(message) => {
                    self.consumed = self.pushed - self.buffer.remaining();
                    out.push(StreamMessage::from_message(&message)?);
                }
                DecodedFrame::Incomplete => return Ok(out),
            }
        }
    }

    /// Checks that the stream ended on a frame boundary.
    pub fn finish(self) -> Result<(), WireError> {
        match self.pushed - self.consumed {
            0 => Ok(()),
            remaining => Err(WireError::Truncated { remaining }),
        }
    }
}

/// Decodes a complete event-stream body.
pub fn decode_all(data: &[u8]) -> Result<Vec<StreamMessage>, WireError> {
    let mut decoder = EventStreamDecoder::new();
    let messages = decoder.push(data)?;
    decoder.finish()?;
    Ok(messages)
}

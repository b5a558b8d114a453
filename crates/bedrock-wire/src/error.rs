//! The crate's error type.

use crate::exception::ErrorType;

/// Everything that can go wrong while reading or writing the wire formats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The request is well-formed JSON but breaks a rule of the API. `message` is the text sent back to the client
    /// in a `ValidationException`; where Bedrock's own wording is known it is reproduced (capitalised, with a full
    /// stop), so that clients matching on it behave the same here as against AWS.
    #[error("{message}")]
    Validation {
        /// Dotted path of the offending member, e.g. `messages.2.content.0` (empty for request-wide rules).
        field: String,
        /// Client-facing message.
        message: String,
    },
    /// The body is not JSON of the expected shape.
    #[error("malformed request body at `{path}`: {reason}")]
    Json {
        /// Dotted path of the member that failed to parse (`.` for the top level).
        path: String,
        /// What serde expected and what it found.
        reason: String,
    },
    /// An event-stream frame could not be encoded or decoded (bad CRC, bad length, bad header).
    #[error("invalid event-stream frame: {0}")]
    Frame(#[source] aws_smithy_eventstream::error::Error),
    /// A payload is larger than the event-stream limit a service must enforce.
    #[error("event-stream payload of {len} bytes exceeds the limit of {max} bytes")]
    PayloadTooLarge {
        /// Payload size.
        len: usize,
        /// The limit (24 MiB).
        max: usize,
    },
    /// A decoded event-stream message lacks a header every message of its kind has.
    #[error("event-stream message has no string header `{name}`")]
    MissingHeader {
        /// The header name, e.g. `:message-type`.
        name: &'static str,
    },
    /// A decoded message has a `:message-type` other than `event`, `exception` or `error`.
    #[error("unknown event-stream `:message-type` `{value}`: expected event, exception or error")]
    UnknownMessageType {
        /// The value found.
        value: String,
    },
    /// The input ended in the middle of a frame.
    #[error("event stream ends inside a frame: {remaining} trailing bytes")]
    Truncated {
        /// Bytes left over after the last complete frame.
        remaining: usize,
    },
    /// A payload could not be serialized (only possible with non-string map keys or similar programming errors).
    #[error("cannot serialize {what}: {source}")]
    Serialize {
        /// What was being serialized.
        what: &'static str,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
}

impl WireError {
    /// Builds a [`WireError::Validation`].
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        WireError::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The Bedrock error type a server should answer with for this error.
    pub fn error_type(&self) -> ErrorType {
        match self {
            WireError::Validation { .. } | WireError::Json { .. } => ErrorType::Validation,
            _ => ErrorType::InternalServer,
        }
    }

    /// The message to put in the error body sent to a client.
    pub fn client_message(&self) -> String {
        match self {
            WireError::Validation { message, .. } => message.clone(),
            WireError::Json { path, reason } if path == "." => {
                format!("Malformed input request: {reason}, please reformat your input and try again.")
            }
            WireError::Json { path, reason } => {
                format!("Malformed input request: {path}: {reason}, please reformat your input and try again.")
            }
            other => other.to_string(),
        }
    }
}

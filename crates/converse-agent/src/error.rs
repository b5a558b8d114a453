//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was refused as invalid (not retried); `hint` says what to change.
    #[error("model `{model_id}` refused the request: {message}{}", hint.as_ref().map(|h| format!("\n\nhint: {h}")).unwrap_or_default())]
    Validation {
        /// The model ID.
        model_id: String,
        /// The service's message.
        message: String,
        /// What to do about it.
        hint: Option<String>,
    },
    /// The model stayed cold past the cold-start timeout.
    #[error(
        "model `{model_id}` was still not ready after {:.0?} ({attempts} attempts): {message}\n\nhint: imported models can take minutes to load after being idle; retry later or raise --cold-start-timeout",
        elapsed
    )]
    ColdStartTimeout {
        /// The model ID.
        model_id: String,
        /// How long the agent waited.
        elapsed: Duration,
        /// Attempts made.
        attempts: u32,
        /// The last message.
        message: String,
    },
    /// Throttling or unavailability outlasted the retries.
    #[error("model `{model_id}`: {code} after {attempts} attempts: {message}")]
    RetriesExhausted {
        /// The model ID.
        model_id: String,
        /// The error code.
        code: String,
        /// Attempts made.
        attempts: u32,
        /// The last message.
        message: String,
    },
    /// Any other service or transport error.
    #[error("model `{model_id}`: {code}: {message}")]
    Service {
        /// The model ID.
        model_id: String,
        /// Error code (or `transport`).
        code: String,
        /// The message.
        message: String,
    },
    /// A request could not be built (a bug or an invalid history).
    #[error("invalid request: {message}")]
    Request {
        /// What is wrong.
        message: String,
    },
    /// The turn used up its step limit.
    #[error("stopped after {steps} model calls (the step limit); the session is kept, ask the model to continue")]
    StepLimit {
        /// The limit.
        steps: usize,
    },
    /// Tool calls kept being cut off at max_tokens.
    #[error("the model's tool call{} was cut off at max_tokens ({max_tokens}) twice in a row", if name.is_empty() { String::new() } else { format!(" `{name}`") })]
    TruncatedToolCall {
        /// The tool.
        name: String,
        /// The limit.
        max_tokens: u32,
    },
    /// The InvokeModel path could not prepare or read a call.
    #[error("InvokeModel path for `{model_id}`: {message}")]
    Invoke {
        /// The model ID.
        model_id: String,
        /// What went wrong.
        message: String,
    },
    /// A session file could not be read or written.
    #[error("session {}: {source}", path.display())]
    Session {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A session line is not valid.
    #[error("session {}:{line}: {message}", path.display())]
    SessionFormat {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

impl Error {
    /// Whether the model refused the request as longer than its context (so older turns can be left out).
    pub fn is_context_refusal(&self) -> bool {
        match self {
            Error::Validation { message, .. } => crate::retry::is_context_refusal(message),
            _ => false,
        }
    }
}

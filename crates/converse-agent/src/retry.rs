//! The retry policy: a cold imported model (`ModelNotReadyException`) is retried with backoff up to the cold-start
//! timeout; throttling and unavailability get a bounded number of retries with jitter; validation errors are
//! explained and not retried.
//!
//! The SDK's own retries are switched off on the agent's client ([`crate::Agent::new`]): its standard mode gives up
//! on a cold model after three attempts, seconds in (see the CMI spec digest, §3.7).

use std::time::Duration;

use aws_sdk_bedrockruntime::error::{ProvideErrorMetadata, SdkError};

use crate::Error;

/// How long and how often to retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Give up on a cold model after this long (`--cold-start-timeout`).
    pub cold_start_timeout: Duration,
    /// First wait after `ModelNotReadyException`; doubles each time.
    pub cold_start_initial_delay: Duration,
    /// Longest wait between cold-start attempts.
    pub cold_start_max_delay: Duration,
    /// Retries for throttling, unavailability and transport errors.
    pub max_retries: u32,
    /// Base of the exponential backoff for those.
    pub base_delay: Duration,
    /// Cap of that backoff.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            cold_start_timeout: Duration::from_secs(600),
            cold_start_initial_delay: Duration::from_secs(2),
            cold_start_max_delay: Duration::from_secs(30),
            max_retries: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(20),
        }
    }
}

/// The kinds of failure the policy distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `ModelNotReadyException`.
    NotReady,
    /// Throttling, unavailability, internal errors, transport failures: retried a few times.
    Transient,
    /// `ValidationException`.
    Validation,
    /// Anything else (access denied, not found, model errors): not retried.
    Fatal,
}

/// A failed attempt.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: Kind,
    pub(crate) code: String,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn from_code(code: &str, message: String) -> Failure {
        let kind = match code {
            "ModelNotReadyException" => Kind::NotReady,
            "ThrottlingException"
            | "TooManyRequestsException"
            | "ServiceUnavailableException"
            | "InternalServerException"
            | "ModelTimeoutException"
            | "ModelStreamErrorException"
            | "internalServerException"
            | "throttlingException"
            | "serviceUnavailableException"
            | "modelStreamErrorException" => Kind::Transient,
            "ValidationException" | "validationException" => Kind::Validation,
            _ => Kind::Fatal,
        };
        Failure {
            kind,
            code: code.to_string(),
            message,
        }
    }

    /// Classifies an SDK error.
    pub(crate) fn from_sdk<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: Coded + ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        match err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                // The modelled variant decides; the wire code covers errors the model does not list.
                let code = e.known_code().or(e.code()).unwrap_or("UnknownError");
                let message = e.message().map(str::to_string).unwrap_or_else(|| e.to_string());
                Failure::from_code(code, message)
            }
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => Failure {
                kind: Kind::Transient,
                code: "transport".into(),
                message: aws_sdk_bedrockruntime::error::DisplayErrorContext(err).to_string(),
            },
            _ => Failure {
                kind: Kind::Fatal,
                code: "request".into(),
                message: aws_sdk_bedrockruntime::error::DisplayErrorContext(err).to_string(),
            },
        }
    }

    /// Whether this is ConverseStream refusing tools (Bedrock's "doesn't support tool use in streaming mode").
    pub(crate) fn refuses_streaming_tools(&self) -> bool {
        let m = self.message.to_lowercase();
        self.kind == Kind::Validation && m.contains("stream") && m.contains("tool")
    }
}

/// The modelled error kinds of each operation, by variant (the error metadata's code is set only on errors that came
/// off the wire, not on ones built in code).
pub(crate) trait Coded {
    fn known_code(&self) -> Option<&'static str>;
}

macro_rules! coded {
    ($t:ty { $($is:ident => $code:literal),* $(,)? }) => {
        impl Coded for $t {
            fn known_code(&self) -> Option<&'static str> {
                $( if self.$is() { return Some($code); } )*
                None
            }
        }
    };
}

coded!(aws_sdk_bedrockruntime::operation::converse::ConverseError {
    is_model_not_ready_exception => "ModelNotReadyException",
    is_throttling_exception => "ThrottlingException",
    is_service_unavailable_exception => "ServiceUnavailableException",
    is_internal_server_exception => "InternalServerException",
    is_model_timeout_exception => "ModelTimeoutException",
    is_validation_exception => "ValidationException",
    is_access_denied_exception => "AccessDeniedException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_model_error_exception => "ModelErrorException",
});
coded!(aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError {
    is_model_not_ready_exception => "ModelNotReadyException",
    is_throttling_exception => "ThrottlingException",
    is_service_unavailable_exception => "ServiceUnavailableException",
    is_internal_server_exception => "InternalServerException",
    is_model_timeout_exception => "ModelTimeoutException",
    is_model_stream_error_exception => "ModelStreamErrorException",
    is_validation_exception => "ValidationException",
    is_access_denied_exception => "AccessDeniedException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_model_error_exception => "ModelErrorException",
});
coded!(aws_sdk_bedrockruntime::operation::invoke_model::InvokeModelError {
    is_model_not_ready_exception => "ModelNotReadyException",
    is_throttling_exception => "ThrottlingException",
    is_service_unavailable_exception => "ServiceUnavailableException",
    is_internal_server_exception => "InternalServerException",
    is_model_timeout_exception => "ModelTimeoutException",
    is_validation_exception => "ValidationException",
    is_access_denied_exception => "AccessDeniedException",
    is_resource_not_found_exception => "ResourceNotFoundException",
    is_model_error_exception => "ModelErrorException",
    is_service_quota_exceeded_exception => "ServiceQuotaExceededException",
});
coded!(aws_sdk_bedrockruntime::types::error::ConverseStreamOutputError {
    is_throttling_exception => "ThrottlingException",
    is_service_unavailable_exception => "ServiceUnavailableException",
    is_internal_server_exception => "InternalServerException",
    is_model_stream_error_exception => "ModelStreamErrorException",
    is_validation_exception => "ValidationException",
});

/// What to do after a failure.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Wait, then try again; the model is cold.
    WarmUp { delay: Duration, attempt: u32 },
    /// Wait, then try again; a transient error.
    Retry { delay: Duration, attempt: u32 },
    /// Give up.
    Fail,
}

/// Retry bookkeeping for one model call.
#[derive(Debug, Clone, Default)]
pub(crate) struct RetryState {
    cold_attempts: u32,
    transient_attempts: u32,
    /// When the first `ModelNotReadyException` arrived.
    cold_since: Option<tokio::time::Instant>,
}

impl RetryState {
    /// Decides; `jitter` maps the backoff ceiling to the actual delay (random in use, fixed in tests).
    pub(crate) fn decide(
        &mut self,
        policy: &RetryPolicy,
        f: &Failure,
        now: tokio::time::Instant,
        jitter: &mut dyn FnMut(Duration) -> Duration,
    ) -> Decision {
        match f.kind {
            Kind::NotReady => {
                let since = *self.cold_since.get_or_insert(now);
                let elapsed = now - since;
                if elapsed >= policy.cold_start_timeout {
                    return Decision::Fail;
                }
                self.cold_attempts += 1;
                let exp = policy
                    .cold_start_initial_delay
                    .saturating_mul(1u32 << (self.cold_attempts - 1).min(16));
                let delay = exp
                    .min(policy.cold_start_max_delay)
                    .min(policy.cold_start_timeout - elapsed);
                Decision::WarmUp {
                    delay,
                    attempt: self.cold_attempts,
                }
            }
            Kind::Transient => {
                if self.transient_attempts >= policy.max_retries {
                    return Decision::Fail;
                }
                self.transient_attempts += 1;
                let ceiling = policy
                    .base_delay
                    .saturating_mul(1u32 << (self.transient_attempts - 1).min(16))
                    .min(policy.max_delay);
                Decision::Retry {
                    delay: jitter(ceiling),
                    attempt: self.transient_attempts,
                }
            }
            Kind::Validation | Kind::Fatal => Decision::Fail,
        }
    }

    /// Time since the model was first found cold.
    pub(crate) fn cold_elapsed(&self, now: tokio::time::Instant) -> Duration {
        self.cold_since.map(|s| now - s).unwrap_or_default()
    }

    /// The error to return when the decision is to fail.
    pub(crate) fn error(&self, policy: &RetryPolicy, model_id: &str, f: Failure, now: tokio::time::Instant) -> Error {
        match f.kind {
            Kind::NotReady => Error::ColdStartTimeout {
                model_id: model_id.to_string(),
                elapsed: self
                    .cold_elapsed(now)
                    .max(policy.cold_start_timeout.min(self.cold_elapsed(now))),
                attempts: self.cold_attempts + 1,
                message: f.message,
            },
            Kind::Transient => Error::RetriesExhausted {
                model_id: model_id.to_string(),
                code: f.code,
                attempts: self.transient_attempts + 1,
                message: f.message,
            },
            Kind::Validation => {
                let hint = explain_validation(&f.message);
                Error::Validation {
                    model_id: model_id.to_string(),
                    message: f.message,
                    hint,
                }
            }
            Kind::Fatal => {
                let hint = match f.code.as_str() {
                    "AccessDeniedException" => {
                        " (hint: enable access to this model in the Bedrock console, and check IAM permissions for bedrock:InvokeModel)"
                    }
                    "ResourceNotFoundException" => {
                        " (hint: the model does not exist in this account and region; check `cmi models show` and --region)"
                    }
                    _ => "",
                };
                Error::Service {
                    model_id: model_id.to_string(),
                    code: f.code,
                    message: format!("{}{hint}", f.message),
                }
            }
        }
    }
}

/// "Equal jitter": half the ceiling plus a random part of the other half, so retries spread out but never fire at once.
pub(crate) fn equal_jitter(ceiling: Duration) -> Duration {
    use rand::Rng as _;
    let half = ceiling / 2;
    let extra = if half.is_zero() {
        Duration::ZERO
    } else {
        rand::rng().random_range(Duration::ZERO..=half)
    };
    half + extra
}

/// Whether a ValidationException message refuses the prompt as longer than the model's context ("Input is too long
/// for requested model", "maximum context length", …).
pub(crate) fn is_context_refusal(message: &str) -> bool {
    let m = message.to_lowercase();
    [
        "too long",
        "context length",
        "context window",
        "input length",
        "too many tokens",
    ]
    .iter()
    .any(|p| m.contains(p))
}

/// Explains a ValidationException message: what it usually means and what to change.
pub(crate) fn explain_validation(message: &str) -> Option<String> {
    let m = message.to_lowercase();
    let hint = if m.contains("stream") && m.contains("tool") {
        "this model cannot stream with tools; set `supportsStreamingToolUse: false` in its registry entry (cmi does so automatically when it sees this)"
    } else if m.contains("converse") {
        "this model cannot use the Converse API; set `instructSupported: false` in its registry entry (`cmi models sync` reads it from Bedrock) so chat goes through InvokeModel and the model's own chat template"
    } else if m.contains("tool") {
        "this model cannot take tools here; run with --no-tools, or set `toolUse: false` in its registry entry"
    } else if m.contains("on-demand throughput") || m.contains("inference profile") {
        "call the model through a cross-region inference profile (for example the `us.` prefix); `cmi models show NAME` lists them"
    } else if m.contains("max_tokens") || m.contains("maxtokens") || m.contains("max tokens") {
        "lower `maxTokensLimit` in the model's registry entry"
    } else if m.contains("model identifier") || m.contains("model id") {
        "check the model ID and the region (`cmi models show NAME`); ARNs are callable only in their own region"
    } else if m.contains("blank") || m.contains("empty") {
        "the conversation has an empty message; start a new session (this is a bug in cmi: please report it)"
    } else if is_context_refusal(message) || m.contains("context") {
        "this turn is longer than the model's context even with every older turn left out, so it is taken out of the conversation; ask again more briefly (tool definitions count too: --no-tools leaves them out)"
    } else {
        return None;
    };
    Some(hint.to_string())
}

//! Bedrock Runtime errors as the SDKs decode them: `x-amzn-ErrorType` names, HTTP statuses and JSON bodies.

use serde::{Deserialize, Serialize};

/// The HTTP header carrying the error type in restJson1 error responses.
pub const ERROR_TYPE_HEADER: &str = "x-amzn-ErrorType";

/// The errors Bedrock answers with: those of the runtime operations (bedrock-cmi.md §3.7), of the control plane
/// (`ConflictException`), and of the front door before any operation (an unknown operation, a missing or bad
/// signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorType {
    /// 400, bad input.
    Validation,
    /// 403.
    AccessDenied,
    /// 404, unknown model.
    ResourceNotFound,
    /// 408, generation took longer than the model timeout.
    ModelTimeout,
    /// 400, Invoke operations only.
    ServiceQuotaExceeded,
    /// 429, too many requests (engine queue full).
    Throttling,
    /// 429, the model is being loaded (cold start); the SDKs retry it.
    ModelNotReady,
    /// 424, the model failed.
    ModelError,
    /// 424, the model failed while streaming.
    ModelStreamError,
    /// 500.
    InternalServer,
    /// 503.
    ServiceUnavailable,
    /// 400, the control plane's "already exists" or "in use".
    Conflict,
    /// 404, no operation at this method and path.
    UnknownOperation,
    /// 403, the request carries no signature or token.
    MissingAuthenticationToken,
    /// 403, the access key (or API key) is not one the service knows.
    UnrecognizedClient,
    /// 403, the signature does not verify (or is stale).
    InvalidSignature,
}

impl ErrorType {
    /// Every error type, for tests and tables.
    pub const ALL: [ErrorType; 16] = [
        ErrorType::Validation,
        ErrorType::AccessDenied,
        ErrorType::ResourceNotFound,
        ErrorType::ModelTimeout,
        ErrorType::ServiceQuotaExceeded,
        ErrorType::Throttling,
        ErrorType::ModelNotReady,
        ErrorType::ModelError,
        ErrorType::ModelStreamError,
        ErrorType::InternalServer,
        ErrorType::ServiceUnavailable,
        ErrorType::Conflict,
        ErrorType::UnknownOperation,
        ErrorType::MissingAuthenticationToken,
        ErrorType::UnrecognizedClient,
        ErrorType::InvalidSignature,
    ];

    /// The shape name, as sent in `x-amzn-ErrorType` (e.g. `ValidationException`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Validation => "ValidationException",
            ErrorType::AccessDenied => "AccessDeniedException",
            ErrorType::ResourceNotFound => "ResourceNotFoundException",
            ErrorType::ModelTimeout => "ModelTimeoutException",
            ErrorType::ServiceQuotaExceeded => "ServiceQuotaExceededException",
            ErrorType::Throttling => "ThrottlingException",
            ErrorType::ModelNotReady => "ModelNotReadyException",
            ErrorType::ModelError => "ModelErrorException",
            ErrorType::ModelStreamError => "ModelStreamErrorException",
            ErrorType::InternalServer => "InternalServerException",
            ErrorType::ServiceUnavailable => "ServiceUnavailableException",
            ErrorType::Conflict => "ConflictException",
            ErrorType::UnknownOperation => "UnknownOperationException",
            ErrorType::MissingAuthenticationToken => "MissingAuthenticationTokenException",
            ErrorType::UnrecognizedClient => "UnrecognizedClientException",
            ErrorType::InvalidSignature => "InvalidSignatureException",
        }
    }

    /// The HTTP status code of the error response.
    pub fn status(self) -> u16 {
        match self {
            ErrorType::Validation | ErrorType::ServiceQuotaExceeded | ErrorType::Conflict => 400,
            ErrorType::AccessDenied
            | ErrorType::MissingAuthenticationToken
            | ErrorType::UnrecognizedClient
            | ErrorType::InvalidSignature => 403,
            ErrorType::ResourceNotFound | ErrorType::UnknownOperation => 404,
            ErrorType::ModelTimeout => 408,
            ErrorType::Throttling | ErrorType::ModelNotReady => 429,
            ErrorType::ModelError | ErrorType::ModelStreamError => 424,
            ErrorType::InternalServer => 500,
            ErrorType::ServiceUnavailable => 503,
        }
    }

    /// The member name used as `:exception-type` when this error is sent inside a ConverseStream or
    /// InvokeModelWithResponseStream event stream, or `None` when the stream unions have no such member (the error
    /// must then be sent as an HTTP error before the stream starts).
    pub fn stream_member(self) -> Option<&'static str> {
        match self {
            ErrorType::InternalServer => Some("internalServerException"),
            ErrorType::ModelStreamError => Some("modelStreamErrorException"),
            ErrorType::Validation => Some("validationException"),
            ErrorType::Throttling => Some("throttlingException"),
            ErrorType::ServiceUnavailable => Some("serviceUnavailableException"),
            // InvokeModelWithResponseStream's ResponseStream has it; ConverseStreamOutput does not.
            ErrorType::ModelTimeout => Some("modelTimeoutException"),
            _ => None,
        }
    }

    /// Parses a shape name (`ThrottlingException`) or stream member name (`throttlingException`). A restJson1
    /// header value may carry a `:namespace` suffix, which is ignored.
    pub fn from_name(name: &str) -> Option<ErrorType> {
        let name = name.split(':').next().unwrap_or(name);
        ErrorType::ALL
            .into_iter()
            .find(|t| t.name() == name || t.stream_member() == Some(name))
    }
}

impl std::fmt::Display for ErrorType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The JSON body of an error response or in-stream exception.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Human-readable message; every modelled error has it.
    pub message: String,
    /// `ModelErrorException` / `ModelStreamErrorException`: the status code the model returned (100–599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_status_code: Option<u16>,
    /// `ModelStreamErrorException`: the model's own message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_message: Option<String>,
    /// `ModelErrorException`: the resource name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

impl ErrorBody {
    /// A body with only `message`.
    pub fn new(message: impl Into<String>) -> Self {
        ErrorBody {
            message: message.into(),
            ..ErrorBody::default()
        }
    }

    /// The JSON bytes of this body.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing a struct of strings and integers cannot fail.
        serde_json::to_vec(self).expect("ErrorBody is always serializable")
    }
}

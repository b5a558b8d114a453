//! Bedrock error responses: status code, `x-amzn-ErrorType` header and `{"message": …}` body, as the SDKs parse them;
//! the same error as an event-stream exception once a stream has started, and in OpenAI's shape on the OpenAI paths.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bedrock_wire::{ErrorBody, ErrorType, WireError};
use http::StatusCode;

/// An error answer of a Bedrock route: the wire crate's error type, a message, and extra body members.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) kind: ErrorType,
    pub(crate) message: String,
    /// `ModelErrorException`: the status the model returned and the resource.
    original_status: Option<u16>,
    resource_name: Option<String>,
    /// A status other than the type's own (a body over the limit is a `ValidationException` with 413).
    status: Option<StatusCode>,
}

impl ApiError {
    pub(crate) fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            original_status: None,
            resource_name: None,
            status: None,
        }
    }
    /// A request body over the limit: 413, as the service answers it.
    pub(crate) fn too_large(message: impl Into<String>) -> Self {
        let mut e = Self::validation(message);
        e.status = Some(StatusCode::PAYLOAD_TOO_LARGE);
        e
    }
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Validation, message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ResourceNotFound, message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Conflict, message)
    }
    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorType::AccessDenied, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorType::InternalServer, message)
    }
    pub(crate) fn throttling(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Throttling, message)
    }
    pub(crate) fn model_not_ready(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ModelNotReady, message)
    }
    pub(crate) fn model_timeout(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ModelTimeout, message)
    }
    pub(crate) fn quota(message: impl Into<String>) -> Self {
        Self::new(ErrorType::ServiceQuotaExceeded, message)
    }
    pub(crate) fn unknown_operation(message: impl Into<String>) -> Self {
        Self::new(ErrorType::UnknownOperation, message)
    }
    pub(crate) fn model_error(message: impl Into<String>, original_status: u16, resource: &str) -> Self {
        let mut e = Self::new(ErrorType::ModelError, message);
        e.original_status = Some(original_status);
        e.resource_name = Some(resource.to_string());
        e
    }

    pub(crate) fn status(&self) -> StatusCode {
        self.status
            .unwrap_or_else(|| StatusCode::from_u16(self.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
    }

    fn body(&self) -> ErrorBody {
        ErrorBody {
            message: self.message.clone(),
            original_status_code: self.original_status,
            original_message: None,
            resource_name: self.resource_name.clone(),
        }
    }

    /// The event-stream exception frame for this error once a stream has started: the stream unions' own member when
    /// they have one, else `modelStreamErrorException` carrying the original status and message.
    pub(crate) fn stream_frame(&self) -> bytes::Bytes {
        let (member, body) = match self.kind {
            ErrorType::Throttling | ErrorType::Validation | ErrorType::InternalServer => (
                self.kind.stream_member().unwrap_or("internalServerException"),
                ErrorBody::new(&self.message),
            ),
            _ => (
                "modelStreamErrorException",
                ErrorBody {
                    message: self.message.clone(),
                    original_status_code: Some(self.kind.status()),
                    original_message: Some(self.message.clone()),
                    resource_name: None,
                },
            ),
        };
        bedrock_wire::encode_exception_body(member, &body).unwrap_or_default()
    }

    /// The error as OpenAI's APIs answer it (`{"error": {"message", "type", "code"}}`), with the same status, for the
    /// OpenAI-compatible paths: the OpenAI SDKs raise their typed errors from the status and read this body.
    pub(crate) fn openai_response(&self) -> Response {
        let kind = match self.status().as_u16() {
            400 => "invalid_request_error",
            401 | 403 => "authentication_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            _ => "api_error",
        };
        let body = serde_json::json!({"error": {"message": self.message, "type": kind, "code": self.kind.name()}});
        let mut resp = json(self.status(), &body);
        resp.headers_mut()
            .insert("x-amzn-errortype", http::HeaderValue::from_static(self.kind.name()));
        resp
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        ApiError::new(e.error_type(), e.client_message())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = Response::new(Body::from(self.body().to_json()));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-errortype", http::HeaderValue::from_static(self.kind.name()));
        resp
    }
}

/// JSON success response with a status.
pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> Response {
    let mut resp = Response::new(Body::from(value.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

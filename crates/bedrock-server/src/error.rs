//! Bedrock error responses: status code, `x-amzn-ErrorType` header and `{"message": …}` body, as the SDKs parse them.

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// An error answer of a Bedrock route.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// Extra members of the error body (for example `originalStatusCode`).
    pub(crate) extra: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            extra: serde_json::Map::new(),
        }
    }
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ValidationException", message)
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ConflictException", message)
    }
    pub(crate) fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerException", message)
    }
    pub(crate) fn throttling(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "ThrottlingException", message)
    }
    pub(crate) fn model_not_ready(message: impl Into<String>) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "ModelNotReadyException", message)
    }
    pub(crate) fn model_timeout(message: impl Into<String>) -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "ModelTimeoutException", message)
    }
    pub(crate) fn quota(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ServiceQuotaExceededException", message)
    }
    pub(crate) fn model_error(message: impl Into<String>, original_status: u16, resource: &str) -> Self {
        let mut e = Self::new(StatusCode::FAILED_DEPENDENCY, "ModelErrorException", message);
        e.extra.insert("originalStatusCode".into(), original_status.into());
        e.extra.insert("resourceName".into(), resource.into());
        e
    }
    pub(crate) fn body_json(&self) -> serde_json::Value {
        let mut m = self.extra.clone();
        m.insert("message".into(), self.message.clone().into());
        serde_json::Value::Object(m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body_json().to_string();
        let mut resp = Response::new(Body::from(body));
        *resp.status_mut() = self.status;
        let h = resp.headers_mut();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        h.insert("x-amzn-errortype", http::HeaderValue::from_static(self.code));
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

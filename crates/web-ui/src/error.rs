//! The crate's error type; handlers turn it into a JSON answer with the status it names.

use axum::response::{IntoResponse, Response};
use http::StatusCode;

/// What went wrong in the UI's handlers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request the UI cannot act on: the message names the bad value and what was expected.
    #[error("{0}")]
    BadRequest(String),
    /// No such model, session or turn.
    #[error("{0}")]
    NotFound(String),
    /// The model registry could not be read or written.
    #[error(transparent)]
    Registry(#[from] model_registry::Error),
    /// A session could not be read or written.
    #[error(transparent)]
    Agent(#[from] converse_agent::Error),
    /// The host failed (building an agent, listing models).
    #[error("{0}")]
    Host(String),
    /// The standalone server stopped with an error.
    #[error("serving the web UI: {0}")]
    Serve(#[source] std::io::Error),
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = match &self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Registry(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        (status, axum::Json(serde_json::json!({"error": self.to_string()}))).into_response()
    }
}

//! The Bedrock runtime routes: which surface answers an operation, and the model a path names. The surfaces are
//! adapters over one generation path ([`generation`]): Converse and ConverseStream ([`converse`]), InvokeModel and
//! its stream ([`invoke`]), OpenAI Chat Completions and Responses ([`openai`]). Errors are sent the way each
//! client decodes them (JSON with `x-amzn-ErrorType` before a stream starts, event-stream exceptions after).

pub(crate) mod converse;
pub(crate) mod generation;
pub(crate) mod invoke;
pub(crate) mod openai;
pub(crate) mod output;

use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::HeaderMap;

use crate::db::ModelRow;
use crate::error::ApiError;
use crate::state::App;

pub(crate) async fn handle(app: &Arc<App>, model_id: &str, op: &str, headers: &HeaderMap, body: Bytes) -> Response {
    // Which API a client used, for whoever watches the log (the end-to-end tests check that models without Converse
    // are called only through InvokeModel).
    tracing::debug!(model = %model_id, operation = %op, "runtime request");
    let result = match op {
        "converse" => converse::converse(app, model_id, &body, false).await,
        "converse-stream" => converse::converse(app, model_id, &body, true).await,
        "invoke" => invoke::invoke(app, model_id, headers, &body, false).await,
        "invoke-with-response-stream" => invoke::invoke(app, model_id, headers, &body, true).await,
        other => Err(ApiError::unknown_operation(format!("unknown operation {other}"))),
    };
    result.unwrap_or_else(|e| e.into_response())
}

/// Finds the imported model a runtime path names (percent-decoded ARN, name or id).
fn resolve(app: &App, model_id: &str) -> Result<ModelRow, ApiError> {
    if model_id.contains(":foundation-model/")
        || model_id.contains(":inference-profile/")
        || (!model_id.starts_with("arn:") && model_id.contains('.'))
    {
        return Err(ApiError::access_denied(format!(
            "You don't have access to the model with the specified model ID {model_id}: the local Bedrock serves imported models only."
        )));
    }
    if model_id.starts_with("arn:") && !model_id.contains(":imported-model/") {
        return Err(ApiError::validation(format!(
            "The provided model identifier {model_id} is invalid."
        )));
    }
    match app.db.model(model_id) {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(ApiError::not_found(format!(
            "The model {model_id} was not found. Check the model ARN and try again."
        ))),
        Err(e) => {
            tracing::error!(error = %e, "state database failure");
            Err(ApiError::internal("internal error in the local Bedrock state database"))
        }
    }
}

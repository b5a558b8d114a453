//! The Bedrock runtime routes (Converse, ConverseStream, InvokeModel, InvokeModelWithResponseStream) and the loaded
//! models (cold starts, idle unload).

use std::path::Path;
use std::sync::Arc;

use axum::response::{IntoResponse as _, Response};
use bytes::Bytes;
use http::HeaderMap;

use crate::ServerConfig;
use crate::app::App;
use crate::error::ApiError;

/// Models loaded into the engine.
#[derive(Debug)]
pub(crate) struct Models {}

impl Models {
    pub(crate) fn new(_config: &ServerConfig) -> Self {
        Models {}
    }
    pub(crate) async fn load_for_import(&self, _id: &str, _dir: &Path) -> Result<(), String> {
        Ok(())
    }
    pub(crate) fn unload(&self, _id: &str) {}
    pub(crate) fn unload_all(&self) {}
}

pub(crate) fn start_background(_app: &Arc<App>) {}

/// (instructSupported, tools through Converse) for a model folder.
pub(crate) fn converse_capability(dir: &Path) -> (bool, bool) {
    let has_template = dir.join("chat_template.jinja").is_file()
        || dir.join("chat_template.json").is_file()
        || std::fs::read(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v.get("chat_template").is_some());
    (has_template, has_template)
}

pub(crate) async fn handle(_app: &Arc<App>, _model: &str, _op: &str, _headers: &HeaderMap, _body: Bytes) -> Response {
    ApiError::validation("the runtime is not built yet").into_response()
}

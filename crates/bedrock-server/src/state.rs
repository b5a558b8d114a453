//! The shared state of one running server ([`App`]) and the slot that counts an in-flight Invoke request. A leaf of
//! the module graph: it imports no handler, so every handler can take it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::db::Db;
use crate::models::Models;
use crate::s3::S3;
use crate::{Credentials, ServerConfig};

/// The account id in every ARN the server mints.
pub(crate) const ACCOUNT: &str = "000000000000";
/// Shared state of one running server.
pub(crate) struct App {
    pub(crate) config: ServerConfig,
    pub(crate) creds: Credentials,
    /// The Bedrock API key accepted as a bearer token.
    pub(crate) api_key: String,
    pub(crate) db: Db,
    pub(crate) s3: S3,
    pub(crate) models_dir: PathBuf,
    pub(crate) runtime: Models,
    pub(crate) invocations: Arc<std::sync::atomic::AtomicUsize>,
    /// An app mounted under [`crate::app::MOUNT_PREFIX`] (the web UI), set once after the server has started.
    pub(crate) mounted: std::sync::OnceLock<axum::Router>,
}

/// A counted in-flight Invoke request; released on drop.
pub(crate) struct InvokeSlot(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for InvokeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl App {
    /// See [`RunningServer::loaded_models`].
    pub(crate) fn loaded_models(&self) -> Vec<(String, Option<String>)> {
        let loaded = self.runtime.loaded();
        self.by_name(loaded.into_iter().map(|(id, q)| (id, q.map(|q| q.to_string()))))
    }

    /// The loaded models by name, each with what its load did about quantisation.
    pub(crate) fn quantised_loads(&self) -> Vec<(String, infer_engine::QuantisedLoad)> {
        self.by_name(self.runtime.quantised_loads())
    }

    /// The loaded models by name, each with what its prefix cache holds and has saved.
    pub(crate) fn prefix_caches(&self) -> Vec<(String, infer_engine::PrefixCacheStats)> {
        self.by_name(self.runtime.prefix_caches())
    }

    /// `items` of model ids with their model names instead (those no longer registered left out).
    fn by_name<T>(&self, items: impl IntoIterator<Item = (String, T)>) -> Vec<(String, T)> {
        let models = self.db.models().unwrap_or_default();
        items
            .into_iter()
            .filter_map(|(id, t)| models.iter().find(|m| m.id == id).map(|m| (m.name.clone(), t)))
            .collect()
    }

    pub(crate) fn region(&self) -> &str {
        &self.config.region
    }
    /// Takes one of the concurrent-invocation slots, or answers `ServiceQuotaExceededException` when none is free.
    pub(crate) fn invoke_slot(&self) -> Result<InvokeSlot, crate::error::ApiError> {
        use std::sync::atomic::Ordering;
        let max = self.config.max_concurrent_requests;
        self.invocations
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n < max).then_some(n + 1))
            .map_err(|_| {
                crate::error::ApiError::quota(format!(
                    "You have reached the quota of {max} concurrent invocations of the local Bedrock. Reduce the number of concurrent requests and try again."
                ))
            })?;
        Ok(InvokeSlot(self.invocations.clone()))
    }
    pub(crate) fn arn(&self, kind: &str, id: &str) -> String {
        format!("arn:aws:bedrock:{}:{ACCOUNT}:{kind}/{id}", self.config.region)
    }
}

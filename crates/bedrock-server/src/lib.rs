//! The local Bedrock: S3, the model-import control plane and the runtime APIs on one loopback port.
//!
//! One axum app serves everything. Requests under `/model-import-jobs`, `/imported-models` and `/model/` are Bedrock
//! (restJson1), and so are the OpenAI-compatible surfaces (`/v1/chat/completions`, `/openai/v1/…`); they take a SigV4
//! signature (verified by [`sigv4`]) or the server's Bedrock API key as a bearer token. Everything else is S3, served
//! by `s3s` over `s3s-fs` with `s3s`'s own SigV4 verification. `/_cmi/health` answers liveness probes and touches
//! nothing.

pub use infer_engine::Quantize;

mod app;
mod control;
mod creds;
mod db;
mod error;
mod ids;
mod job_request;
mod jobs;
mod models;
mod runtime;
mod s3;
mod sigv4;
mod state;

#[cfg(test)]
mod tests;

#[cfg(feature = "testing")]
pub mod testing;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use creds::{read_api_key, read_credentials};
pub use infer_engine::QuantisedLoad;

/// Errors of the local Bedrock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O failure on a path of the data directory.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state database failed.
    #[error("state database {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file of the data directory has unexpected content.
    #[error("{path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration value is invalid.
    #[error("invalid {field} {value:?}: expected {expected}")]
    Config {
        /// The configuration field.
        field: &'static str,
        /// The bad value.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// An access key pair the server accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

/// How to run the server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Objects, state database and generated credentials live here.
    pub data_dir: PathBuf,
    /// Address to bind; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Region the server claims to be.
    pub region: String,
    /// Credentials to accept; `None` means the pair generated on first start and stored in `data_dir/credentials`.
    pub credentials: Option<Credentials>,
    /// Load models eagerly and never answer `ModelNotReadyException`.
    pub warm: bool,
    /// Unload a model after this long without requests.
    pub idle_unload: Duration,
    /// Quantise models at load (unless a model says otherwise: see [`ServerConfig::model_quantize`]).
    pub quantize: Option<Quantize>,
    /// Write `data_dir/endpoint.json` so other `cmi` commands find this server (what `cmi serve` does).
    pub advertise: bool,
    /// Longest generation before `ModelTimeoutException` (default 5 minutes).
    pub model_timeout: Option<Duration>,
    /// Concurrent Invoke requests allowed per server before `ServiceQuotaExceededException` (default 64).
    pub max_concurrent_requests: usize,
    /// Sequences one loaded model generates together (continuous batching; default 8).
    pub max_batch: usize,
    /// Requests per loaded model that may wait for a free sequence before `ThrottlingException` (default 64; the
    /// engine's queue holds at least one).
    pub max_queue: usize,
    /// Per-model override of "ConverseStream accepts tools" (model name → allowed); models not listed use their
    /// `cmi:stream-tools` import tag (default: allowed).
    pub model_stream_tools: Vec<(String, bool)>,
    /// Per-model quantisation (model name or ARN → a quantisation, or `None` for the weights as stored); wins over
    /// the model's `cmi:quantize` import tag, which wins over [`ServerConfig::quantize`].
    pub model_quantize: Vec<(String, Option<Quantize>)>,
    /// MiB of keys and values each loaded model keeps from past requests, so that a prompt resending an earlier
    /// one (a conversation's history) computes only what is new; 0 turns it off. `None`: the engine's default
    /// (an eighth of the memory available at load, at most 4 GiB).
    pub prefix_cache_mb: Option<u64>,
}

impl ServerConfig {
    /// Defaults: 127.0.0.1 on a free port, us-east-1, generated credentials, cold starts on, 5 minutes idle unload.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            region: "us-east-1".to_string(),
            credentials: None,
            warm: false,
            idle_unload: Duration::from_secs(300),
            quantize: None,
            advertise: false,
            model_timeout: None,
            max_concurrent_requests: 64,
            max_batch: 8,
            max_queue: 64,
            model_stream_tools: Vec::new(),
            model_quantize: Vec::new(),
            prefix_cache_mb: None,
        }
    }
}

/// A server running in this process; dropping it stops it.
pub struct RunningServer {
    app: std::sync::Arc<state::App>,
    addr: SocketAddr,
    region: String,
    credentials: Credentials,
    api_key: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    advertised: Option<PathBuf>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .field("region", &self.region)
            .field("advertised", &self.advertised)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// `http://127.0.0.1:PORT`.
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }
    /// The credentials it accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }
    /// The Bedrock API key it accepts as a bearer token (`Authorization: Bearer …`).
    pub fn api_key(&self) -> &str {
        &self.api_key
    }
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
    /// The models loaded into the engine now, by name, each with the quantisation it runs in (`None`: the weights
    /// as stored).
    pub fn loaded_models(&self) -> Vec<(String, Option<String>)> {
        self.app.loaded_models()
    }
    /// The models loaded into the engine now, by name, each with what its load did about quantisation (matrices
    /// quantised, matrices mapped from the quantised-weights cache in the model's folder, whether it wrote the cache).
    pub fn quantised_loads(&self) -> Vec<(String, QuantisedLoad)> {
        self.app.quantised_loads()
    }
    /// The models loaded into the engine now, by name, each with what its prefix cache holds and has saved (its
    /// budget is [`ServerConfig::prefix_cache_mb`]).
    pub fn prefix_caches(&self) -> Vec<(String, infer_engine::PrefixCacheStats)> {
        self.app.prefix_caches()
    }
    /// Serves `router` under `/ui` on this server's port, beside the Bedrock APIs (which keep their own
    /// authentication; the mounted app does its own). The router sees the whole path (`/ui/...`). Only the first
    /// call mounts anything; it returns false when an app was mounted already.
    pub fn mount(&self, router: axum::Router) -> bool {
        self.app.mounted.set(router).is_ok()
    }
    /// Stops accepting connections and waits until the server task has ended.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(path) = self.advertised.take() {
            app::remove_advertisement(&path, self.addr);
        }
    }
}

/// A server another process runs (`cmi serve`), found through `data_dir/endpoint.json`.
#[derive(Debug, Clone)]
pub struct RunningElsewhere {
    /// Its endpoint URL.
    pub endpoint_url: String,
    /// Its region.
    pub region: String,
    /// Credentials it accepts.
    pub credentials: Credentials,
    /// The Bedrock API key it accepts as a bearer token.
    pub api_key: Option<String>,
}

/// Starts the server and returns once it accepts connections.
pub async fn start(config: ServerConfig) -> Result<RunningServer, Error> {
    app::start(config).await
}

/// Finds a live server advertised in `data_dir` (checks its health endpoint).
pub async fn find_running(data_dir: &Path) -> Option<RunningElsewhere> {
    app::find_running(data_dir).await
}

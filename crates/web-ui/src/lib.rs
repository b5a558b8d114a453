//! The web chat: the model registry, the chat agent and the import pipeline in the browser.
//!
//! One axum [`Router`](axum::Router) under `/ui`, mounted on the local Bedrock's port by `cmi serve` (and by `cmi ui`
//! when it starts one) or served alone by `cmi ui` against AWS. The page is server-rendered HTML with one small
//! script, both embedded in the binary; no Node toolchain at build or run time.
//!
//! - [`gate`]: the one-time token of the printed URL becomes an `HttpOnly`, `SameSite=Strict` session cookie; without
//!   either, every route answers 401 (a spent or wrong token: 403).
//! - Models ([`models`]): the registry (`model-registry`) with the imported models listed live, add/edit/remove of the
//!   user's entries, and `model_registry::export::bedrock_engineer`, the export `cmi models export` prints.
//! - Chat ([`chat`]): `converse_agent::Agent` turns run on the server, in the session store `cmi chat` uses, streamed
//!   to the page as JSON lines; a turn is cancelled from the page, and commands ask the page before they run.
//! - Import ([`import`]): `bedrock_import::import` (the pipeline `cmi import` runs) with its events streamed.
//! - [`i18n`]: English and Japanese, chosen from `Accept-Language` or the page's switch.
//!
//! What the UI talks to (AWS or a local Bedrock, the paths, how an agent is built) is the caller's [`Host`]: the
//! binary builds agents and runs imports exactly as its `chat` and `import` commands do.

use std::path::PathBuf;
use std::sync::Arc;

use converse_agent::Agent;
use converse_agent::tools::{Approver, BoxFuture};

pub mod chat;
mod error;
pub mod gate;
pub mod i18n;
pub mod import;
pub mod models;
mod page;
mod state;
mod stream;
#[cfg(test)]
mod tests;

pub use error::Error;
pub use gate::Gate;
pub use i18n::Lang;

/// An imported model as ListImportedModels reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportedModel {
    /// Its name.
    pub name: String,
    /// Its ARN.
    pub arn: String,
    /// Whether it can use Converse (`instructSupported`), when known.
    pub instruct_supported: Option<bool>,
    /// Its architecture, when known.
    pub architecture: Option<String>,
}

/// What the page asks of an import.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct ImportRequest {
    /// A local folder or a Hugging Face repo id.
    pub source: String,
    /// The model's name (empty for a check).
    #[serde(default)]
    pub name: String,
    /// Only the preflight: download (for a repo id) and check, upload nothing.
    #[serde(default)]
    pub check_only: bool,
    /// The S3 bucket (AWS needs one; the local Bedrock has its own).
    #[serde(default)]
    pub bucket: Option<String>,
    /// Create the bucket when it does not exist.
    #[serde(default)]
    pub create_bucket: bool,
    /// The IAM role Bedrock assumes to read the bucket (AWS only).
    #[serde(default)]
    pub role_arn: Option<String>,
}

/// How an import ended, as the page shows it.
#[derive(Debug)]
pub enum ImportEnd {
    /// The preflight of a check.
    Checked(Box<model_folder::Report>),
    /// The pipeline's outcome.
    Outcome(Box<bedrock_import::Outcome>),
}

/// The world the UI works in, given by the binary.
pub trait Host: Send + Sync + 'static {
    /// The user's model registry file.
    fn registry_file(&self) -> PathBuf;
    /// The session store (the directory `cmi chat` saves sessions in).
    fn sessions_dir(&self) -> PathBuf;
    /// The region requests go to.
    fn region(&self) -> String;
    /// What the UI talks to, in a few words (`local Bedrock at http://…`, `AWS us-east-1`).
    fn target(&self) -> String;
    /// ListImportedModels.
    fn imported_models(&self) -> BoxFuture<'_, Result<Vec<ImportedModel>, String>>;
    /// An agent for `model` (a registry name, model ID or ARN) as `cmi chat` builds it, with `approver` asked
    /// before a command runs.
    fn agent(&self, model: String, approver: Approver) -> BoxFuture<'_, Result<Agent, String>>;
    /// Runs an import (or its check) as `cmi import` does, reporting to `progress`.
    fn import(
        &self,
        request: ImportRequest,
        progress: Arc<dyn bedrock_import::Progress>,
    ) -> BoxFuture<'_, Result<ImportEnd, String>>;
}

/// A UI instance: its gate and its router.
pub struct Ui {
    gate: Arc<Gate>,
    router: axum::Router,
}

impl std::fmt::Debug for Ui {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ui").field("gate", &self.gate).finish_non_exhaustive()
    }
}

impl Ui {
    /// A UI for `host`, to be served on `port` (which names its cookie).
    pub fn new(host: Arc<dyn Host>, port: u16) -> Ui {
        let gate = Arc::new(Gate::new(port));
        let chats = Arc::new(chat::Chats::new(host.clone()));
        let state = Arc::new(state::State { host });
        let router = page::router(state, chats, gate.clone());
        Ui { gate, router }
    }

    /// The URL to print: `http://ADDR/ui/?token=…`, where `base` is `http://ADDR`.
    pub fn url(&self, base: &str) -> String {
        match self.gate.token() {
            Some(t) => format!("{}/ui/?token={t}", base.trim_end_matches('/')),
            None => format!("{}/ui/", base.trim_end_matches('/')),
        }
    }

    /// The router (every route under `/ui`, behind the gate).
    pub fn router(&self) -> axum::Router {
        self.router.clone()
    }
}

/// Serves `ui` alone on `listener` until `shutdown` resolves (for `cmi ui` against AWS or a `cmi serve` elsewhere).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ui: &Ui,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { axum::response::Redirect::to("/ui/") }),
        )
        .merge(ui.router());
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(Error::Serve)
}

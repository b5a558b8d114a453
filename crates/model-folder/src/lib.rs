//! Preflight for Custom Model Import: read a Hugging Face model folder (config, tokenizer files, safetensors *headers*
//! and index) and report every problem at once, each with a severity and a fix.
//!
//! `check(dir)` never reads tensor data, so a 16 GB folder checks in milliseconds. `Err` only means the folder could
//! not be read at all; everything else is a [`Finding`] in the [`Report`].

mod arch;
mod checks;
mod header;
mod template_check;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use checks::{MAX_CONTEXT, MAX_MULTIMODAL_BYTES, MAX_TEXT_BYTES};

/// Errors: the folder itself cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The path does not exist or is not a directory.
    #[error("{path}: not a model folder (expected a directory holding config.json and *.safetensors)")]
    NotADirectory {
        /// The path given.
        path: PathBuf,
    },
    /// Listing or reading the folder failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

/// How bad a finding is: `Error` stops an import before upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The import would fail or the model would not work.
    Error,
    /// The import goes ahead, but something will not work as the user probably expects.
    Warning,
    /// Worth knowing.
    Info,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// One problem (or fact) found in the folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// Stable kebab-case identifier (`missing-tensor`, `context-too-long`, …) for scripts and tests.
    pub code: String,
    /// What is wrong, naming the file, key or tensor.
    pub message: String,
    /// What to do about it.
    pub fix: Option<String>,
}

/// The result of [`check`].
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every finding, errors first.
    pub findings: Vec<Finding>,
    /// `architectures[0]` from `config.json` (or `model_type` when that is missing).
    pub architecture: Option<String>,
    /// `model_type` from `config.json`.
    pub model_type: Option<String>,
    /// The chat-template family (drives template repair and tool-call parsing).
    #[serde(serialize_with = "ser_debug")]
    pub family: chat_template::Family,
    /// The model's context length (`max_position_embeddings` or the family's equivalent).
    pub context_length: Option<u64>,
    /// Total size of the `.safetensors` files, in bytes.
    pub weight_bytes: u64,
    /// Number of tensors across all weight files.
    pub tensor_count: usize,
    /// Predicted `instructSupported` of the imported model: Converse works.
    pub instruct_supported: bool,
    /// Converse with tools should work (the template renders tool definitions).
    pub converse_tools: bool,
    /// The files an import uploads (names relative to the folder), sorted.
    pub files: Vec<String>,
}

fn ser_debug<T: std::fmt::Debug, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{v:?}").to_lowercase())
}

impl Report {
    /// True when an import must not go ahead.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The findings of severity `Error`.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity == Severity::Error)
    }

    /// The first finding with this code, if any.
    pub fn find(&self, code: &str) -> Option<&Finding> {
        self.findings.iter().find(|f| f.code == code)
    }
}

/// Checks a model folder. Reads `config.json`, the tokenizer files and safetensors headers only.
#[tracing::instrument(skip_all, fields(dir = %dir.display()))]
pub fn check(dir: &Path) -> Result<Report, Error> {
    let started = std::time::Instant::now();
    let report = checks::run(dir)?;
    tracing::debug!(
        findings = report.findings.len(),
        weight_bytes = report.weight_bytes,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model folder checked"
    );
    Ok(report)
}

/// The file names (relative to `dir`) an import needs: weights, index, config and tokenizer files, chat templates,
/// generation config. Hidden files and everything else (README, original/ checkpoints, `.bin` weights) are left out.
pub fn import_files(dir: &Path) -> Result<Vec<String>, Error> {
    checks::import_files(dir)
}

/// Whether a file of a repository (a path relative to its root, `/`-separated) is one an import needs: the same
/// rule as [`import_files`], for choosing what to download. Files in subfolders are never needed.
pub fn is_import_file(name: &str) -> bool {
    !name.contains('/') && !name.starts_with('.') && checks::wanted(name)
}

#[cfg(test)]
mod tests;

//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading, rendering or repairing a chat template.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The template source does not parse.
    #[error("template syntax error in {name} at line {line}, column {column}: {message}")]
    Syntax {
        /// Which template (`default`, `tool_use`, a file name).
        name: String,
        /// 1-based line.
        line: usize,
        /// 1-based column (in characters).
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The template called `raise_exception(message)`; `message` is the template's own text.
    #[error("{message}")]
    Raised {
        /// The exact message the template raised.
        message: String,
    },
    /// Rendering failed for another reason (undefined value, type error, unknown filter...).
    #[error("template render failed at line {line}: {message}", line = line.map_or_else(|| "?".to_string(), |l| l.to_string()))]
    Render {
        /// What went wrong, as minijinja describes it.
        message: String,
        /// 1-based line in the template, when known.
        line: Option<usize>,
    },
    /// The render ran out of fuel or produced more output than allowed.
    #[error("template stopped: {what} exceeded the limit of {limit}")]
    Limit {
        /// `"fuel (instructions executed)"` or `"output size in bytes"`.
        what: &'static str,
        /// The limit that was hit.
        limit: u64,
    },
    /// No chat template was found.
    #[error("no chat template in {dir}: looked at {}", looked_at.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NoTemplate {
        /// The model folder.
        dir: PathBuf,
        /// Every file that was examined.
        looked_at: Vec<PathBuf>,
    },
    /// A JSON file could not be parsed.
    #[error("malformed {path} at line {line}, column {column}: {message}")]
    Json {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde_json expected.
        message: String,
    },
    /// A field of a JSON file had the wrong shape.
    #[error("{path}: field `{field}` must be {expected}, found {found}")]
    Field {
        /// The file.
        path: PathBuf,
        /// The key (dotted path).
        field: String,
        /// What was expected.
        expected: &'static str,
        /// A short description of what was there.
        found: String,
    },
    /// The request is not something transformers would render.
    #[error("invalid render request: {0}")]
    Request(String),
    /// A named template (`tool_use`, ...) does not exist.
    #[error("no chat template named `{name}` (available: {available})")]
    NoNamedTemplate {
        /// The requested name.
        name: String,
        /// The names that exist.
        available: String,
    },
    /// There is no ready-made template for this family.
    #[error("no replacement template known for family `{family}`; pass --family with one of: {known}")]
    NoTemplateForFamily {
        /// The family that has none.
        family: String,
        /// Families that have one.
        known: String,
    },
    /// Nothing to undo.
    #[error("nothing to undo in {path}: no `{key}` record of an original template")]
    NothingToUndo {
        /// tokenizer_config.json.
        path: PathBuf,
        /// The key where the original is recorded.
        key: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// `"read"`, `"write"`, `"rename"`...
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

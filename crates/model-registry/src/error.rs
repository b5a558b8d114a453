//! The crate's error type and the validation problems it carries (file, line, entry, field).

use std::fmt;
use std::path::PathBuf;

/// Errors of the model registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not JSON5 (nor JSON).
    #[error("{origin}:{line}:{column}: not valid JSON5: {message}")]
    Syntax {
        /// File name, or `<input>`.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser said.
        message: String,
    },
    /// One or more entries are invalid.
    #[error("{0}")]
    Invalid(Problems),
    /// A model ID is malformed.
    #[error("invalid model ID `{id}`: {reason}")]
    BadModelId {
        /// The ID as given.
        id: String,
        /// Which part is wrong and what was expected.
        reason: String,
    },
    /// A built-in entry cannot be removed.
    #[error("`{name}` is a built-in model and cannot be removed (a user entry of the same name would shadow it)")]
    Builtin {
        /// The name.
        name: String,
    },
    /// No user entry has this name.
    #[error("no model named `{name}` in {}", file.display())]
    NotFound {
        /// The name.
        name: String,
        /// The user file searched.
        file: PathBuf,
    },
    /// A name that is neither registered nor a model ID.
    #[error("unknown model `{name}`: not a registered name (see `cmi models list`) nor a Bedrock model ID or ARN")]
    UnknownModel {
        /// The name.
        name: String,
        /// The user file searched.
        file: PathBuf,
    },
    /// The entry has no profile serving the region.
    #[error("model `{name}` is not served in region {region} (served in: {})", if served.is_empty() { "none listed".to_string() } else { served.join(", ") })]
    RegionNotServed {
        /// The entry's name.
        name: String,
        /// The region asked for.
        region: String,
        /// The regions its profiles serve.
        served: Vec<String>,
    },
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The entry is kept, but something looks wrong (an unknown field, a placeholder).
    Warning,
    /// The entry cannot be used.
    Error,
}

/// One finding about an entry, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// The file, or `<input>` / `<stdin>`; `None` for entries built in code.
    pub origin: Option<String>,
    /// 1-based line of the field (or of the entry when the field is missing).
    pub line: Option<usize>,
    /// The entry's name, or `#N` (1-based) when it has none.
    pub entry: String,
    /// The field (`maxTokensLimit`, `inferenceProfiles[1].regions[0]`).
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match (&self.origin, self.line) {
            (Some(o), Some(l)) => write!(f, "{o}:{l}: ")?,
            (Some(o), None) => write!(f, "{o}: ")?,
            (None, _) => {}
        }
        write!(
            f,
            "{sev}: model `{}`, field `{}`: {}",
            self.entry, self.field, self.message
        )
    }
}

/// A list of problems; displays one per line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The errors only.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Error)
    }
    /// The warnings only.
    pub fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.0.iter().filter(|p| p.severity == Severity::Warning)
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors().count();
        write!(f, "{n} invalid model {}", if n == 1 { "field" } else { "fields" })?;
        for p in &self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

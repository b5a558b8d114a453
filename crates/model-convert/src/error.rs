//! The error type of this crate.

use std::path::PathBuf;

/// Everything that can go wrong while fetching or converting a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `creating directory`, ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The GGUF header (metadata and tensor table) could not be parsed.
    #[error("{path}: not a readable GGUF file: {message}")]
    BadGguf {
        /// The GGUF file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// A metadata key the conversion needs is absent.
    #[error("GGUF metadata key `{key}` is missing (expected {expected})")]
    MissingKey {
        /// The metadata key.
        key: String,
        /// What was expected there.
        expected: &'static str,
    },
    /// A metadata key has the wrong type or an unusable value.
    #[error("GGUF metadata key `{key}` is {found} (expected {expected})")]
    BadKey {
        /// The metadata key.
        key: String,
        /// What was expected there.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// `general.architecture` names an architecture this converter does not map.
    #[error("GGUF architecture `{architecture}` is not supported (expected one of: {supported})")]
    UnsupportedArchitecture {
        /// The architecture in the file.
        architecture: String,
        /// The architectures this converter handles.
        supported: &'static str,
    },
    /// The GGUF tokenizer is of a kind this converter cannot rebuild.
    #[error("GGUF tokenizer `{key}` = `{value}` is not supported (expected {expected})")]
    UnsupportedTokenizer {
        /// The metadata key (`tokenizer.ggml.model` or `tokenizer.ggml.pre`).
        key: &'static str,
        /// Its value.
        value: String,
        /// What is supported.
        expected: &'static str,
    },
    /// The tokenizer could not be built from the GGUF vocabulary.
    #[error("building tokenizer.json from the GGUF vocabulary: {message}")]
    Tokenizer {
        /// What went wrong.
        message: String,
    },
    /// A tensor is malformed, of an unsupported type, unknown, or missing.
    #[error("tensor `{tensor}`: {message}")]
    Tensor {
        /// The GGUF tensor name.
        tensor: String,
        /// What is wrong with it and what was expected.
        message: String,
    },
    /// A safetensors file could not be written.
    #[error("writing {path}: {message}")]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// What the writer reported.
        message: String,
    },
    /// The output directory exists and is not empty.
    #[error("output directory {path} already exists and is not empty (expected a new or empty directory)")]
    OutputExists {
        /// The output directory.
        path: PathBuf,
    },
    /// A dtype name other than f32, f16 or bf16.
    #[error("unknown dtype `{value}` (expected f32, f16 or bf16)")]
    BadDType {
        /// The rejected name.
        value: String,
    },
    /// Python (needed to fetch the demo model with pip) could not be run or failed.
    #[error("{command} failed: {message}; {hint}")]
    Python {
        /// The command line that was run.
        command: String,
        /// What happened (exit status and the tail of its output).
        message: String,
        /// What the user can do about it.
        hint: &'static str,
    },
    /// The downloaded package did not contain what was expected.
    #[error("{path}: {message}")]
    BadDownload {
        /// The downloaded file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }

    pub(crate) fn tensor(tensor: &str, message: impl Into<String>) -> Error {
        Error::Tensor {
            tensor: tensor.to_owned(),
            message: message.into(),
        }
    }
}

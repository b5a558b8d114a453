//! Decoder-only transformer models (Llama, Mistral, Mixtral, Qwen2, Qwen3) on candle, built for continuous
//! batching: every sequence has its own KV cache and position, and one forward pass runs a batch that mixes
//! prompt prefills and single-token decode steps.
//!
//! candle-transformers' models keep one KV cache inside the model and one position for the whole batch, which
//! continuous batching cannot use, so the decoder is written here (on candle's tensors, matmul, RMS norm, RoPE and
//! quantized kernels) and covers the five families with a handful of switches.

mod config;
mod dense;
mod model;
mod quant_cache;
mod team;
mod weights;

use std::path::{Path, PathBuf};

pub use config::{Arch, MODEL_TYPES, ModelConfig, RopeScaling, eos_ids, unsupported_architecture};
pub use dense::simd::cap as cap_simd;
pub use model::{KvCache, Transformer};
pub use quant_cache::QuantisedLoad;

/// The errors of this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A JSON file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json { path: PathBuf, source: serde_json::Error },
    /// A config field is missing or has a value we do not understand.
    #[error("{path}: field `{field}` is {found}, expected {expected}")]
    ConfigField {
        path: PathBuf,
        field: String,
        expected: String,
        found: String,
    },
    /// The architecture is one the engine does not run.
    #[error("unsupported architecture `{arch}`: {reason}")]
    UnsupportedArchitecture { arch: String, reason: String },
    /// No weights in the folder.
    #[error("no model.safetensors or model.safetensors.index.json in {dir}")]
    NoWeights { dir: PathBuf },
    /// A safetensors file is malformed or truncated.
    #[error("{path}: invalid safetensors: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// A tensor the architecture needs is absent.
    #[error("tensor `{name}` is missing (looked in {files})")]
    MissingTensor { name: String, files: String },
    /// A tensor has the wrong shape.
    #[error("tensor `{name}` in {path} has shape {found:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        path: PathBuf,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// A sequence grew past the model's context window.
    #[error("sequence of {needed} tokens exceeds the context window of {context_length} tokens")]
    ContextOverflow { needed: usize, context_length: usize },
    /// A tensor operation failed.
    #[error("tensor operation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

/// Weight quantisation applied at load time, into GGML's block formats (quantised by candle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantize {
    /// 8-bit blocks of 32.
    Q8_0,
    /// 4-bit k-quant super-blocks of 256 (GGML's Q4_K; matrices whose input width is not a multiple of 256 use Q4_0,
    /// as llama.cpp falls back for such rows).
    Q4K,
    /// 4-bit blocks of 32.
    Q4_0,
}

impl Quantize {
    /// Every quantisation, by the name settings use.
    pub const ALL: [Quantize; 3] = [Quantize::Q8_0, Quantize::Q4K, Quantize::Q4_0];
    /// The names of [`Self::ALL`], and `none` (the weights as stored): what a setting may say.
    pub const SETTINGS: [&'static str; 4] = ["q8_0", "q4k", "q4_0", "none"];

    /// Reads a setting (`--quantize`, a `cmi:quantize` tag): `Ok(None)` is `none`, the weights as stored. The
    /// error names the value and the choices.
    pub fn parse_setting(value: &str) -> Result<Option<Quantize>, String> {
        if value == "none" {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| {
            format!(
                "{value:?} is not a quantisation: expected {}",
                Self::SETTINGS.join(", ")
            )
        })
    }
}

impl std::str::FromStr for Quantize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" | "q8" => Ok(Quantize::Q8_0),
            "q4k" | "q4_k" | "q4_k_m" => Ok(Quantize::Q4K),
            "q4_0" | "q4" => Ok(Quantize::Q4_0),
            _ => Err(format!("unknown quantisation `{s}`: expected q8_0, q4k or q4_0")),
        }
    }
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Quantize::Q8_0 => "q8_0",
            Quantize::Q4K => "q4k",
            Quantize::Q4_0 => "q4_0",
        })
    }
}

/// One sequence's part of a batched forward pass: the new tokens and the sequence's cache.
pub struct SeqInput<'a> {
    /// Tokens to append (the whole prompt for a prefill, one token for a decode step).
    pub tokens: &'a [u32],
    /// The sequence's KV cache; its length is the position of `tokens[0]`.
    pub cache: &'a mut KvCache,
}

/// What the engine needs from a causal language model.
pub trait CausalLm: Send + Sync {
    /// The checked config.
    fn config(&self) -> &ModelConfig;
    /// A fresh, empty KV cache for one sequence.
    fn new_cache(&self) -> KvCache;
    /// Runs a batch of sequences; returns the logits of the last new token of each, `[batch, vocab]` (f32).
    fn forward_last(&self, batch: &mut [SeqInput<'_>]) -> Result<candle_core::Tensor, Error>;
    /// Runs one sequence and returns the logits of every new token, `[tokens, vocab]` (f32).
    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<candle_core::Tensor, Error>;
}

/// Fixes the thread count candle uses for its kernels to the number of available cores, through
/// `RAYON_NUM_THREADS`, unless it (or `CANDLE_NUM_THREADS`) is already set.
///
/// Without it, candle 0.11 works the count out anew on every matmul, reading `/proc/cpuinfo` each time: about
/// 6 % of a batched decode step in `examples/profile.rs`.
///
/// # Safety
/// Sets an environment variable, so it must be called before any other thread is started (first thing in `main`).
#[allow(unsafe_code)]
pub unsafe fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() || std::env::var_os("CANDLE_NUM_THREADS").is_some() {
        return;
    }
    let n = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    // SAFETY: the caller guarantees no other thread runs yet, so nothing reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", n.to_string()) };
}

/// Loads the model in `dir` (config.json + safetensors), optionally quantised.
pub fn load(dir: &Path, quantize: Option<Quantize>) -> Result<Transformer, Error> {
    load_cached(dir, quantize, None)
}

/// Loads the model in `dir`, optionally quantised, its quantised blocks kept in the file `cache` between loads (see
/// [`Transformer::load_cached`]).
pub fn load_cached(dir: &Path, quantize: Option<Quantize>, cache: Option<&Path>) -> Result<Transformer, Error> {
    let config = ModelConfig::from_dir(dir)?;
    Transformer::load_cached(dir, config, quantize, cache)
}

pub(crate) fn read_json(path: &Path) -> Result<serde_json::Value, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests;

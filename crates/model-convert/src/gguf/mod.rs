//! GGUF → Hugging Face folder: dequantised safetensors, `config.json`, tokenizer files, `generation_config.json`.
//!
//! The GGUF header and tensor table are read with `candle_core::quantized::gguf_file`; every tensor is bounds-checked
//! against the file before candle touches it, and candle calls run under `catch_unwind`, so a truncated or corrupt
//! file gives an error naming the tensor or key, never a panic. Output goes to a temporary sibling directory that is
//! renamed into place at the end: a failed conversion leaves nothing half-written.

mod config;
mod meta;
mod names;
mod tokenizer;
mod write;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufReader;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::gguf_file::{Content, TensorInfo};

use crate::{ConvertReport, DType, Error};
pub use config::SUPPORTED_ARCHS;
use config::{Hparams, config_json, generation_config_json};
use meta::Meta;
use names::Planned;
use tokenizer::GgufVocab;

/// Default largest safetensors file before the weights are sharded (about 2 GB, as transformers' `save_pretrained`).
pub const DEFAULT_SHARD_BYTES: u64 = 2_000_000_000;

/// Options of [`convert_with`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConvertOptions {
    /// Dtype of the written weights.
    pub dtype: DType,
    /// Replace a non-empty output directory (otherwise refused).
    pub overwrite: bool,
    /// Largest safetensors file before sharding, in bytes of tensor data.
    pub shard_bytes: u64,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            dtype: DType::default(),
            overwrite: false,
            shard_bytes: DEFAULT_SHARD_BYTES,
        }
    }
}

impl ConvertOptions {
    /// Options with this dtype and the defaults otherwise.
    pub fn with_dtype(dtype: DType) -> Self {
        ConvertOptions {
            dtype,
            ..Default::default()
        }
    }

    /// Sets [`ConvertOptions::overwrite`].
    pub fn overwrite(mut self, overwrite: bool) -> Self {
        self.overwrite = overwrite;
        self
    }

    /// Sets [`ConvertOptions::shard_bytes`].
    pub fn shard_bytes(mut self, bytes: u64) -> Self {
        self.shard_bytes = bytes;
        self
    }
}

/// Progress of a conversion, for a progress bar.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// The header is read and the plan made: this many tensors will be written.
    Started {
        /// Tensors to write.
        tensors: usize,
        /// Bytes of tensor data to write.
        bytes: u64,
    },
    /// Tensor number `index` (0-based) is converted.
    Tensor {
        /// 0-based position.
        index: usize,
        /// Its Hugging Face name.
        name: String,
    },
    /// Writing a file of the output folder.
    Writing {
        /// The file name.
        file: String,
    },
}

/// Converts `gguf` into a Hugging Face folder at `out_dir` (which must not exist or be empty).
pub fn convert(gguf: &Path, out_dir: &Path, dtype: DType) -> Result<ConvertReport, Error> {
    convert_with(gguf, out_dir, &ConvertOptions::with_dtype(dtype), &mut |_| {})
}

/// [`convert`] with options and a progress callback.
pub fn convert_with(
    gguf: &Path,
    out_dir: &Path,
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<ConvertReport, Error> {
    check_out_dir(out_dir, opts.overwrite)?;
    let mut file = GgufFile::open(gguf)?;
    let meta = Meta::new(&file.content.metadata);
    let mut hparams = Hparams::read(&meta)?;
    let vocab = GgufVocab::read(&meta)?;
    let plan = names::plan(&hparams, &file.content.tensor_infos)?;
    if let Some(info) = file.content.tensor_infos.get("rope_freqs.weight") {
        let original = meta.u64_opt(&format!("{}.rope.scaling.original_context_length", hparams.gguf_arch))?;
        let factors = file.load(&names::Planned {
            gguf: "rope_freqs.weight".into(),
            hf: String::new(),
            shape: info.shape.dims().to_vec(),
            unpermute_heads: None,
        })?;
        if let Some(other) = &hparams.rope_scaling {
            return Err(Error::tensor(
                "rope_freqs.weight",
                format!("comes with rope scaling {other} in the metadata: expected one or the other"),
            ));
        }
        hparams.rope_scaling = Some(config::llama3_rope_scaling(&hparams, &factors, original)?);
    }
    if vocab.tokens.len() > plan.vocab_rows {
        return Err(Error::tensor(
            "token_embd.weight",
            format!(
                "has {} rows but the vocabulary has {} tokens (expected at least as many rows)",
                plan.vocab_rows,
                vocab.tokens.len()
            ),
        ));
    }
    let tokenizer = vocab.build()?;
    let ids = vocab.special_ids();

    let shards = write::plan_shards(&plan.tensors, opts.dtype, opts.shard_bytes);
    let total_bytes: u64 = shards.iter().map(|s| s.bytes).sum();
    progress(Progress::Started {
        tensors: plan.tensors.len(),
        bytes: total_bytes,
    });

    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(Error::io("creating directory", &parent))?;
    let tmp = tempfile::Builder::new()
        .prefix(&format!(
            ".{}.partial-",
            out_dir.file_name().and_then(|n| n.to_str()).unwrap_or("model")
        ))
        .tempdir_in(&parent)
        .map_err(Error::io("creating a temporary directory in", &parent))?;

    let mut parameters = 0u64;
    let mut index = 0usize;
    let mut weight_map = BTreeMap::new();
    let shard_count = shards.len();
    for (n, shard) in shards.iter().enumerate() {
        let file_name = write::shard_name(n, shard_count);
        let mut views = Vec::with_capacity(shard.tensors.len());
        for planned in &shard.tensors {
            progress(Progress::Tensor {
                index,
                name: planned.hf.clone(),
            });
            index += 1;
            let values = file.load(planned)?;
            parameters += values.len() as u64;
            views.push((
                planned.hf.clone(),
                write::OwnedView::new(&values, planned.shape.clone(), opts.dtype),
            ));
            weight_map.insert(planned.hf.clone(), file_name.clone());
        }
        progress(Progress::Writing {
            file: file_name.clone(),
        });
        write::safetensors(&tmp.path().join(&file_name), views)?;
    }
    if shard_count > 1 {
        progress(Progress::Writing {
            file: "model.safetensors.index.json".into(),
        });
        let index = serde_json::json!({"metadata": {"total_size": total_bytes}, "weight_map": weight_map});
        write::json(&tmp.path().join("model.safetensors.index.json"), &index)?;
    }

    progress(Progress::Writing {
        file: "tokenizer.json".into(),
    });
    vocab.write_tokenizer_json(&tokenizer, &tmp.path().join("tokenizer.json"))?;
    write::json(
        &tmp.path().join("tokenizer_config.json"),
        &vocab.tokenizer_config_json(hparams.context_length),
    )?;
    write::json(
        &tmp.path().join("config.json"),
        &config_json(&hparams, plan.vocab_rows, plan.tied, &ids, opts.dtype),
    )?;
    write::json(
        &tmp.path().join("generation_config.json"),
        &generation_config_json(&ids),
    )?;

    write::move_into_place(tmp, out_dir, opts.overwrite)?;
    tracing::info!(out = %out_dir.display(), tensors = plan.tensors.len(), "conversion finished");
    Ok(ConvertReport {
        out_dir: out_dir.to_path_buf(),
        gguf_architecture: hparams.gguf_arch.clone(),
        hf_architecture: hparams.arch.hf_architecture().to_owned(),
        dtype: opts.dtype,
        tensors: plan.tensors.len(),
        parameters,
        weight_bytes: total_bytes,
        shards: shard_count,
        tied_embeddings: plan.tied,
        vocab_size: vocab.tokens.len(),
        skipped: plan.skipped,
    })
}

fn check_out_dir(out_dir: &Path, overwrite: bool) -> Result<(), Error> {
    match std::fs::read_dir(out_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !overwrite {
                return Err(Error::OutputExists {
                    path: out_dir.to_path_buf(),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("reading output directory", out_dir)(e)),
    }
}

/// A candle error's message without the backtrace candle attaches when `RUST_BACKTRACE` is set.
fn candle_msg(e: candle_core::Error) -> String {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => candle_msg(*inner),
        candle_core::Error::Context { inner, context } => format!("{context}: {}", candle_msg(*inner)),
        other => other.to_string(),
    }
}

/// Turns a panic inside candle into an error (candle's GGUF reader is hardened, but a corrupt file must never abort
/// the process).
fn no_panic<T>(what: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(what)) {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("reader panicked: {msg}"))
        }
    }
}

/// An open GGUF file: its parsed header and a reader for tensor data.
struct GgufFile {
    reader: BufReader<File>,
    content: Content,
    file_len: u64,
}

/// Header and tensor-table facts of a GGUF file, without reading any tensor data.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GgufSummary {
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// Tensor name → (ggml type, shape as Hugging Face orders it).
    pub tensors: BTreeMap<String, (String, Vec<usize>)>,
    /// Number of metadata keys.
    pub metadata_keys: usize,
}

/// Reads only the header of a GGUF file (metadata and tensor table).
pub fn inspect(gguf: &Path) -> Result<GgufSummary, Error> {
    let file = GgufFile::open(gguf)?;
    let meta = Meta::new(&file.content.metadata);
    Ok(GgufSummary {
        architecture: meta.str_opt("general.architecture").ok().flatten().map(str::to_owned),
        tensors: file
            .content
            .tensor_infos
            .iter()
            .map(|(k, v)| (k.clone(), (format!("{:?}", v.ggml_dtype), v.shape.dims().to_vec())))
            .collect(),
        metadata_keys: file.content.metadata.len(),
    })
}

impl GgufFile {
    fn open(path: &Path) -> Result<GgufFile, Error> {
        let f = File::open(path).map_err(Error::io("opening", path))?;
        let file_len = f.metadata().map_err(Error::io("reading metadata of", path))?.len();
        let mut reader = BufReader::new(f);
        let content =
            no_panic(|| Content::read(&mut reader).map_err(candle_msg)).map_err(|message| Error::BadGguf {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(GgufFile {
            reader,
            content,
            file_len,
        })
    }

    /// Reads, dequantises and (for Q/K) un-permutes one tensor; returns its values in Hugging Face row-major order.
    fn load(&mut self, planned: &Planned) -> Result<Vec<f32>, Error> {
        let name = planned.gguf.as_str();
        let info = self
            .content
            .tensor_infos
            .get(name)
            .ok_or_else(|| Error::tensor(name, "missing from the tensor table"))?;
        check_bounds(name, info, self.content.tensor_data_offset, self.file_len)?;
        let offset = self.content.tensor_data_offset;
        let reader = &mut self.reader;
        let dtype = info.ggml_dtype;
        let values = no_panic(|| {
            let q = info.read(reader, offset, &Device::Cpu).map_err(candle_msg)?;
            let t = q.dequantize(&Device::Cpu).map_err(candle_msg)?;
            let t = match planned.unpermute_heads {
                Some(heads) => {
                    unpermute(&t, heads).map_err(|e| format!("undoing the Q/K permutation: {}", candle_msg(e)))?
                }
                None => t,
            };
            t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(candle_msg)
        })
        .map_err(|m| Error::tensor(name, format!("cannot decode {dtype:?} data: {m}")))?;
        let expected: usize = planned.shape.iter().product();
        if values.len() != expected {
            return Err(Error::tensor(
                name,
                format!("decoded {} values (expected {expected})", values.len()),
            ));
        }
        Ok(values)
    }
}

/// Checks, before candle allocates anything, that the tensor's element count is sane and its data lies in the file.
fn check_bounds(name: &str, info: &TensorInfo, data_offset: u64, file_len: u64) -> Result<(), Error> {
    let dims = info.shape.dims();
    let elems = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::tensor(name, format!("shape {dims:?} overflows")))?;
    let (block, type_size) = (info.ggml_dtype.block_size(), info.ggml_dtype.type_size());
    if block == 0 || elems % block != 0 {
        return Err(Error::tensor(
            name,
            format!(
                "has {elems} elements (expected a multiple of the {:?} block size {block})",
                info.ggml_dtype
            ),
        ));
    }
    let bytes = (elems / block)
        .checked_mul(type_size)
        .ok_or_else(|| Error::tensor(name, format!("shape {dims:?} overflows")))? as u64;
    let start = data_offset.checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(bytes));
    match end {
        Some(end) if end <= file_len => Ok(()),
        _ => Err(Error::tensor(
            name,
            format!(
                "data at offset {} + {bytes} bytes lies past the end of the file ({file_len} bytes; truncated download?)",
                data_offset.saturating_add(info.offset)
            ),
        )),
    }
}

/// Undoes llama.cpp's `permute` of Q/K rows: within each head, GGUF interleaves the two rotary halves
/// (`reshape(heads, 2, d, ..).swapaxes(1, 2)`); Hugging Face keeps them as two blocks.
fn unpermute(t: &candle_core::Tensor, heads: usize) -> candle_core::Result<candle_core::Tensor> {
    let dims = t.dims().to_vec();
    let Some(&rows) = dims.first() else {
        candle_core::bail!("cannot un-permute a scalar")
    };
    let half = rows / heads / 2;
    let mut split = vec![heads, half, 2];
    split.extend_from_slice(&dims[1..]);
    t.reshape(split)?.transpose(1, 2)?.contiguous()?.reshape(dims)
}

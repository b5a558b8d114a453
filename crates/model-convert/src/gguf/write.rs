//! Writing the output folder: safetensors shards, JSON files, and the final atomic move.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, View};
use tempfile::TempDir;

use super::names::Planned;
use crate::{DType, Error};

/// The tensors of one safetensors file.
#[derive(Debug)]
pub(crate) struct Shard {
    pub(crate) tensors: Vec<Planned>,
    pub(crate) bytes: u64,
}

/// Splits the tensors, in order, into files of at most `max_bytes` (a tensor larger than that gets a file of its own).
pub(crate) fn plan_shards(tensors: &[Planned], dtype: DType, max_bytes: u64) -> Vec<Shard> {
    let mut shards: Vec<Shard> = Vec::new();
    for t in tensors {
        let bytes = t.shape.iter().product::<usize>() as u64 * dtype.size() as u64;
        match shards.last_mut() {
            Some(s) if s.bytes + bytes <= max_bytes || s.tensors.is_empty() => {
                s.bytes += bytes;
                s.tensors.push(t.clone());
            }
            _ => shards.push(Shard {
                tensors: vec![t.clone()],
                bytes,
            }),
        }
    }
    if shards.is_empty() {
        shards.push(Shard {
            tensors: Vec::new(),
            bytes: 0,
        });
    }
    shards
}

/// `model.safetensors`, or `model-0000N-of-0000M.safetensors` when sharded (transformers' names).
pub(crate) fn shard_name(index: usize, count: usize) -> String {
    if count <= 1 {
        "model.safetensors".to_owned()
    } else {
        format!("model-{:05}-of-{count:05}.safetensors", index + 1)
    }
}

/// A tensor's bytes in the output dtype.
pub(crate) struct OwnedView {
    dtype: DType,
    shape: Vec<usize>,
    data: Vec<u8>,
}

impl OwnedView {
    /// Converts f32 values (rounding to nearest even for f16/bf16, as torch's `.to()` does).
    pub(crate) fn new(values: &[f32], shape: Vec<usize>, dtype: DType) -> OwnedView {
        let mut data = Vec::with_capacity(values.len() * dtype.size());
        match dtype {
            DType::F32 => values.iter().for_each(|x| data.extend_from_slice(&x.to_le_bytes())),
            DType::F16 => values
                .iter()
                .for_each(|x| data.extend_from_slice(&half::f16::from_f32(*x).to_le_bytes())),
            DType::BF16 => values
                .iter()
                .for_each(|x| data.extend_from_slice(&half::bf16::from_f32(*x).to_le_bytes())),
        }
        OwnedView { dtype, shape, data }
    }
}

impl View for &OwnedView {
    fn dtype(&self) -> Dtype {
        match self.dtype {
            DType::F32 => Dtype::F32,
            DType::F16 => Dtype::F16,
            DType::BF16 => Dtype::BF16,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }

    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes one safetensors file with `format: pt` metadata (transformers refuses files without it).
pub(crate) fn safetensors(path: &Path, tensors: Vec<(String, OwnedView)>) -> Result<(), Error> {
    let metadata = HashMap::from([("format".to_owned(), "pt".to_owned())]);
    safetensors::serialize_to_file(tensors.iter().map(|(n, v)| (n.as_str(), v)), Some(metadata), path).map_err(|e| {
        Error::Safetensors {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })
}

/// Writes pretty JSON with a trailing newline.
pub(crate) fn json(path: &Path, value: &serde_json::Value) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Io {
        action: "serialising",
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    std::fs::write(path, text).map_err(Error::io("writing", path))
}

/// Renames the finished temporary directory to `out_dir`. An existing empty `out_dir` is replaced; a non-empty one
/// only with `overwrite` (moved aside first, deleted after the rename succeeds).
pub(crate) fn move_into_place(tmp: TempDir, out_dir: &Path, overwrite: bool) -> Result<(), Error> {
    let mut aside = None;
    if out_dir.exists() {
        let empty = std::fs::read_dir(out_dir)
            .map_err(Error::io("reading", out_dir))?
            .next()
            .is_none();
        if empty {
            std::fs::remove_dir(out_dir).map_err(Error::io("removing empty directory", out_dir))?;
        } else if overwrite {
            let parent = tmp.path().parent().unwrap_or(Path::new("."));
            let old = tempfile::Builder::new()
                .prefix(".old-")
                .tempdir_in(parent)
                .map_err(Error::io("creating a temporary directory in", parent))?;
            let old_path = old.path().join("previous");
            std::fs::rename(out_dir, &old_path).map_err(Error::io("moving aside", out_dir))?;
            aside = Some(old);
        } else {
            return Err(Error::OutputExists {
                path: out_dir.to_path_buf(),
            });
        }
    }
    // The safetensors writer creates owner-only files; give them the mode our other files got from the umask.
    if let Ok(perms) = std::fs::metadata(tmp.path().join("config.json")).map(|m| m.permissions()) {
        for entry in std::fs::read_dir(tmp.path())
            .map_err(Error::io("reading", tmp.path()))?
            .flatten()
        {
            if entry.path().extension().is_some_and(|e| e == "safetensors") {
                std::fs::set_permissions(entry.path(), perms.clone())
                    .map_err(Error::io("setting permissions of", entry.path()))?;
            }
        }
    }
    let tmp_path = tmp.keep();
    if let Err(e) = std::fs::rename(&tmp_path, out_dir) {
        let _ = std::fs::remove_dir_all(&tmp_path);
        return Err(Error::io("moving the finished folder to", out_dir)(e));
    }
    // Dropping `aside` deletes the previous contents.
    drop(aside);
    Ok(())
}

//! Memory-mapped safetensors (one file, or shards listed in `model.safetensors.index.json`): headers are checked
//! up front; matrices are used in place from the map ([`DenseWeight`]), small tensors (norms, biases, routers)
//! are read into f32 compute tensors; every shape is checked.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use safetensors::tensor::{Metadata, TensorView};

use crate::Error;
use crate::dense::{DenseWeight, Stored};
use crate::quant_cache::SourceFile;

struct Entry {
    file: usize,
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The tensors of a model folder, memory-mapped.
pub(crate) struct Weights {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    /// What a quantised-weights cache is checked against (see [`crate::quant_cache`]).
    fingerprint: Vec<SourceFile>,
    entries: HashMap<String, Entry>,
    /// Drop a small tensor's pages once it is read (a quantised load, which keeps nothing else mapped but the
    /// matrices it reads in place).
    release_after_read: bool,
}

fn map(path: &Path) -> Result<Mmap, Error> {
    let file = File::open(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: the model files are not modified while the engine loads them (a folder being rewritten under a
    // running engine is unsupported, as for every mmap-based loader). The local Bedrock replaces files by rename,
    // which leaves a mapped file intact.
    #[allow(unsafe_code)]
    let mmap = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    // Before the first page is touched: pages read from disk then come in 2 MiB folios, mapped whole, and a decode
    // step that streams every weight takes one TLB entry per 2 MiB instead of one per 4 KiB (demo model in bf16,
    // interleaved steps in one process: 9% faster). A file the page cache already holds in small pages stays in
    // them; the local Bedrock's object store writes files in whole 2 MiB extents so that theirs are large already.
    #[cfg(target_os = "linux")]
    if let Err(e) = mmap.advise(memmap2::Advice::HugePage) {
        tracing::debug!(path = %path.display(), error = %e, "madvise(HUGEPAGE) on the weights failed");
    }
    Ok(mmap)
}

impl Weights {
    /// Opens `model.safetensors`, or the shards named by `model.safetensors.index.json`.
    pub(crate) fn open(dir: &Path) -> Result<Weights, Error> {
        let index = dir.join("model.safetensors.index.json");
        let paths: Vec<PathBuf> = if index.exists() {
            let v = crate::read_json(&index)?;
            let Some(map) = v["weight_map"].as_object() else {
                return Err(Error::ConfigField {
                    path: index,
                    field: "weight_map".into(),
                    expected: "an object of tensor name -> shard file".into(),
                    found: v["weight_map"].to_string(),
                });
            };
            let mut files: Vec<String> = map.values().filter_map(|f| f.as_str().map(str::to_string)).collect();
            files.sort();
            files.dedup();
            files.into_iter().map(|f| dir.join(f)).collect()
        } else {
            let single = dir.join("model.safetensors");
            if !single.exists() {
                return Err(Error::NoWeights { dir: dir.to_path_buf() });
            }
            vec![single]
        };
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        let mut fingerprint = Vec::new();
        for (i, path) in paths.into_iter().enumerate() {
            let mmap = map(&path)?;
            let (n, meta): (usize, Metadata) =
                safetensors::SafeTensors::read_metadata(&mmap).map_err(|e| Error::Safetensors {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            let base = 8 + n;
            fingerprint.push(SourceFile::of(&path, &mmap[..base])?);
            for (name, info) in meta.tensors() {
                let (start, end) = (base + info.data_offsets.0, base + info.data_offsets.1);
                if end > mmap.len() {
                    return Err(Error::Safetensors {
                        path: path.clone(),
                        message: format!(
                            "tensor `{name}` ends at byte {end} but the file has {} bytes (truncated?)",
                            mmap.len()
                        ),
                    });
                }
                entries.insert(
                    name,
                    Entry {
                        file: i,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start,
                        end,
                    },
                );
            }
            files.push((path, Arc::new(mmap)));
        }
        Ok(Weights {
            files,
            fingerprint,
            entries,
            release_after_read: false,
        })
    }

    /// The files' fingerprint, for a quantised-weights cache.
    pub(crate) fn fingerprint(&self) -> &[SourceFile] {
        &self.fingerprint
    }

    /// Whether a tensor exists.
    pub(crate) fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// The entry of `name`, checked to have exactly `shape` and a float dtype.
    fn entry(&self, name: &str, shape: &[usize]) -> Result<&Entry, Error> {
        use safetensors::Dtype;
        self.entry_of(name, shape, &[Dtype::F32, Dtype::F16, Dtype::BF16])
    }

    /// The entry of `name`, checked to have exactly `shape` and one of `dtypes`.
    fn entry_of(&self, name: &str, shape: &[usize], dtypes: &[safetensors::Dtype]) -> Result<&Entry, Error> {
        let Some(e) = self.entries.get(name) else {
            let files: Vec<String> = self.files.iter().map(|(p, _)| p.display().to_string()).collect();
            return Err(Error::MissingTensor {
                name: name.to_string(),
                files: files.join(", "),
            });
        };
        let path = &self.files[e.file].0;
        if e.shape != shape {
            return Err(Error::TensorShape {
                name: name.to_string(),
                path: path.clone(),
                expected: shape.to_vec(),
                found: e.shape.clone(),
            });
        }
        if !dtypes.contains(&e.dtype) {
            let names: Vec<String> = dtypes.iter().map(|d| format!("{d:?}")).collect();
            return Err(Error::Safetensors {
                path: path.clone(),
                message: format!(
                    "tensor `{name}` has dtype {:?}, expected {}",
                    e.dtype,
                    names.join(" or ")
                ),
            });
        }
        let want = shape.iter().product::<usize>() * e.dtype.bitsize() / 8;
        if e.end - e.start != want {
            return Err(Error::Safetensors {
                path: path.clone(),
                message: format!(
                    "tensor `{name}` has {} data bytes, expected {want} for shape {shape:?} in {:?}",
                    e.end - e.start,
                    e.dtype
                ),
            });
        }
        Ok(e)
    }

    /// The matrix `name` (`[rows, cols]`), used in place from the map.
    pub(crate) fn dense(&self, name: &str, rows: usize, cols: usize) -> Result<DenseWeight, Error> {
        let e = self.entry(name, &[rows, cols])?;
        let stored = match e.dtype {
            safetensors::Dtype::F16 => Stored::F16,
            safetensors::Dtype::BF16 => Stored::Bf16,
            _ => Stored::F32,
        };
        Ok(DenseWeight::mapped(
            self.files[e.file].1.clone(),
            e.start,
            stored,
            rows,
            cols,
        ))
    }

    /// The stored bytes of `name`, checked to have exactly `shape` and one of `dtypes`, and its dtype: for tensors
    /// the model lays out anew (MXFP4 blocks, transposed experts).
    pub(crate) fn raw(
        &self,
        name: &str,
        shape: &[usize],
        dtypes: &[safetensors::Dtype],
    ) -> Result<(safetensors::Dtype, &[u8]), Error> {
        let e = self.entry_of(name, shape, dtypes)?;
        Ok((e.dtype, &self.files[e.file].1[e.start..e.end]))
    }

    /// Drops the mapped pages of `name`, whose bytes were copied into another form.
    pub(crate) fn release(&self, name: &str) {
        if let Some(e) = self.entries.get(name) {
            crate::dense::release_folios(&self.files[e.file].1, e.start..e.end);
        }
    }

    /// Reads `name` as an f32 tensor of exactly `shape`.
    pub(crate) fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, Error> {
        let e = self.entry(name, shape)?;
        let path = &self.files[e.file].0;
        let bytes = &self.files[e.file].1[e.start..e.end];
        let view = TensorView::new(e.dtype, e.shape.clone(), bytes).map_err(|err| Error::Safetensors {
            path: path.clone(),
            message: format!("tensor `{name}`: {err}"),
        })?;
        let t = view.load(&Device::Cpu)?;
        if self.release_after_read {
            crate::dense::release_folios(&self.files[e.file].1, e.start..e.end);
        }
        Ok(if t.dtype() == DType::F32 {
            t
        } else {
            t.to_dtype(DType::F32)?
        })
    }

    /// Whether [`Self::get`] drops a tensor's pages once it has copied it.
    pub(crate) fn set_release_after_read(&mut self, on: bool) {
        self.release_after_read = on;
    }

    /// Drops every mapped page of the files outside the byte ranges in `kept` (the matrices still read in place), once
    /// a quantised model has copied all else out: the last sweep after each matrix's and small tensor's own release
    /// (see `dense::release_folios`), so that whatever a load touched is never left resident. Before these releases
    /// covered whole folios, a norm read after its neighbours were quantised mapped their 2 MiB folios back, and the
    /// demo model's quantised runs kept some 100 MB of released weights resident.
    pub(crate) fn release_all_but(&self, kept: &[(Arc<Mmap>, std::ops::Range<usize>)]) {
        const PAGE: usize = 4096;
        for (path, map) in &self.files {
            let mut keep: Vec<std::ops::Range<usize>> = kept
                .iter()
                .filter(|(m, _)| Arc::ptr_eq(m, map))
                .map(|(_, r)| r.clone())
                .collect();
            keep.sort_by_key(|r| r.start);
            let mut from = 0usize;
            let gaps = keep.iter().cloned().chain(std::iter::once(map.len()..map.len()));
            for r in gaps {
                // Whole pages strictly inside the gap, so no page of a kept range is dropped.
                let (start, end) = (from.next_multiple_of(PAGE), r.start / PAGE * PAGE);
                if end > start {
                    // SAFETY: a private read-only file mapping: dropped pages are read from the file again if they
                    // are ever touched, so no reference into the map can observe a change.
                    #[allow(unsafe_code)]
                    let done =
                        unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
                    if let Err(e) = done {
                        tracing::debug!(path = %path.display(), error = %e, "madvise(DONTNEED) on weight pages failed");
                    }
                }
                from = from.max(r.end);
            }
        }
    }

    /// Total bytes of tensor data.
    pub(crate) fn total_bytes(&self) -> u64 {
        self.entries.values().map(|e| (e.end - e.start) as u64).sum()
    }
}

//! The quantised-weights cache: the GGML blocks a quantised load made, kept in one file beside the model so that a
//! later load maps them and uses them in place instead of quantising the model again (at 8B shape Q4_K takes minutes).
//!
//! The file is the blocks of each quantised matrix, one after another, each at a 4 KiB boundary, then a JSON footer
//! naming them and a fixed trailer (the last [`TRAILER`] bytes): the magic `CMIQUANT`, [`FORMAT`], the footer's
//! length and its FNV-1a hash. The footer is at the end so that the file can be written in one pass while the model
//! is quantised, each matrix's blocks mapped back as soon as they are written (the heap never holds more than the
//! matrix being quantised). It is written to a temporary file beside it, synced and renamed into place, so a crash
//! never leaves a torn cache under its name.
//!
//! A cache is used only when everything it was made from is unchanged: [`FORMAT`] (bumped whenever what a load
//! quantises, or how, changes), the quantisation kind, and the fingerprint of the safetensors files: for each, its
//! name, size, modification time (nanoseconds) and the FNV-1a hash of its header (every tensor's name, dtype, shape
//! and offsets). The tensor data itself is not hashed (that would read the whole model at every start, which the
//! cache is there to avoid), so a rewrite that keeps a file's size, header and modification time is not noticed; nor
//! is the cache's own data checked beyond its footer: like the safetensors bytes, it is trusted once its footer says
//! it belongs. A cache that does not belong, or cannot be read (missing, short, corrupt footer), is ignored with a
//! log line saying why, and replaced by the load; a cache that cannot be written is a warning, never an error.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapOptions};
use serde::{Deserialize, Serialize};

use crate::dense::{BLOCK, DenseWeight, SUPER_BLOCK, Stored};
use crate::{Error, Quantize};

/// The cache format; a file of another format is ignored (and replaced).
pub(crate) const FORMAT: u32 = 1;
/// The trailer's magic.
const MAGIC: &[u8; 8] = b"CMIQUANT";
/// Bytes of the trailer: magic, format (u32), reserved (u32), footer length (u64), footer FNV-1a (u64).
const TRAILER: usize = 32;
/// Each matrix's blocks start at a multiple of this (a page: mapped and released in whole pages).
const ALIGN: u64 = 4096;

/// FNV-1a, 64-bit: a fixed hash (std's `DefaultHasher` may change between Rust releases), cheap on headers.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// One safetensors file as a cache remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SourceFile {
    name: String,
    bytes: u64,
    mtime_ns: u64,
    header_fnv1a: u64,
}

impl SourceFile {
    /// The fingerprint of the file at `path`, whose header (length prefix and JSON) is `header`.
    pub(crate) fn of(path: &Path, header: &[u8]) -> Result<SourceFile, Error> {
        let meta = std::fs::metadata(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Ok(SourceFile {
            name: path
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            bytes: meta.len(),
            mtime_ns,
            header_fnv1a: fnv1a(header),
        })
    }
}

/// One matrix's blocks in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    /// The tensors it was made from (a fused matrix names all of its parts), as the load names it.
    key: String,
    stored: String,
    rows: usize,
    cols: usize,
    offset: u64,
    bytes: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Footer {
    format: u32,
    quantize: String,
    source: Vec<SourceFile>,
    matrices: Vec<Entry>,
}

fn stored_name(s: Stored) -> &'static str {
    match s {
        Stored::F32 => "f32",
        Stored::F16 => "f16",
        Stored::Bf16 => "bf16",
        Stored::Q8_0 => "q8_0",
        Stored::Q4_0 => "q4_0",
        Stored::Q4K => "q4k",
        Stored::Mxfp4 => "mxfp4",
    }
}

/// What a load did about quantisation: how many matrices it quantised, how many it mapped from the cache, and whether
/// it wrote the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QuantisedLoad {
    /// Matrices quantised by this load.
    pub quantised: usize,
    /// Matrices whose blocks were mapped from the cache.
    pub mapped: usize,
    /// Whether this load wrote (or rewrote) the cache.
    pub cache_written: bool,
}

/// A valid cache, mapped.
struct Cache {
    map: Arc<Mmap>,
    entries: std::collections::HashMap<String, Entry>,
}

/// Reads and checks the cache at `path` against `kind` and `source`; `Err` says why it cannot be used.
fn open(path: &Path, kind: Quantize, source: &[SourceFile]) -> Result<Cache, String> {
    let file = File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let len = file.metadata().map_err(|e| format!("cannot stat it: {e}"))?.len();
    if len < TRAILER as u64 {
        return Err(format!(
            "it has {len} bytes, fewer than its {TRAILER}-byte trailer (truncated?)"
        ));
    }
    // SAFETY: the cache is only ever replaced by rename (a new file), never written in place, so the mapped file does
    // not change under the map; as for the safetensors files, a cache rewritten in place by something else is
    // unsupported.
    #[allow(unsafe_code)]
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("cannot map it: {e}"))?;
    #[cfg(target_os = "linux")]
    if let Err(e) = map.advise(memmap2::Advice::HugePage) {
        tracing::debug!(path = %path.display(), error = %e, "madvise(HUGEPAGE) on the quantised-weights cache failed");
    }
    let t = &map[map.len() - TRAILER..];
    let word = |at: usize| u64::from_le_bytes(t[at..at + 8].try_into().expect("8 bytes"));
    if &t[..8] != MAGIC {
        return Err("its trailer does not end in the magic `CMIQUANT` (truncated or not a cache)".into());
    }
    let format = u32::from_le_bytes(t[8..12].try_into().expect("4 bytes"));
    if format != FORMAT {
        return Err(format!("it is format {format}, expected {FORMAT}"));
    }
    let (footer_len, footer_hash) = (word(16), word(24));
    let body = (map.len() - TRAILER) as u64;
    if footer_len > body {
        return Err(format!(
            "its footer of {footer_len} bytes is longer than the {body} bytes before the trailer"
        ));
    }
    let footer_start = (body - footer_len) as usize;
    let footer_bytes = &map[footer_start..map.len() - TRAILER];
    if fnv1a(footer_bytes) != footer_hash {
        return Err("its footer does not match the footer's hash (corrupt)".into());
    }
    let footer: Footer =
        serde_json::from_slice(footer_bytes).map_err(|e| format!("its footer is not valid JSON: {e}"))?;
    if footer.format != FORMAT {
        return Err(format!("its footer says format {}, expected {FORMAT}", footer.format));
    }
    if footer.quantize != kind.to_string() {
        return Err(format!("it holds {} blocks, expected {kind}", footer.quantize));
    }
    if footer.source != source {
        return Err(format!(
            "it was made from other weights: {:?}, the folder has {source:?}",
            footer.source
        ));
    }
    let mut entries = std::collections::HashMap::new();
    for e in footer.matrices {
        if e.offset
            .checked_add(e.bytes)
            .is_none_or(|end| end > footer_start as u64)
        {
            return Err(format!(
                "matrix `{}` at bytes {}..+{} runs past the blocks' end at {footer_start}",
                e.key, e.offset, e.bytes
            ));
        }
        entries.insert(e.key.clone(), e);
    }
    Ok(Cache {
        map: Arc::new(map),
        entries,
    })
}

/// The cache being written: a temporary file beside the cache's path, renamed onto it by [`Writer::finish`].
struct Writer {
    file: File,
    temp: PathBuf,
    /// Bytes written so far.
    at: u64,
    entries: Vec<Entry>,
}

impl Writer {
    fn create(path: &Path) -> std::io::Result<Writer> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{name}.");
        // What an interrupted writer left behind (a crash mid-write): never used, only in the way.
        if let Ok(list) = std::fs::read_dir(dir) {
            for e in list.flatten() {
                let n = e.file_name();
                let n = n.to_string_lossy();
                if n.starts_with(&prefix) && n.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!("{prefix}{}-{nanos}.tmp", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&temp)?;
        Ok(Writer {
            file,
            temp,
            at: 0,
            entries: Vec::new(),
        })
    }

    /// Appends a matrix's blocks at the next page boundary and maps them back.
    fn append(
        &mut self,
        key: &str,
        stored: Stored,
        rows: usize,
        cols: usize,
        blocks: &[u8],
    ) -> std::io::Result<DenseWeight> {
        let offset = self.at.next_multiple_of(ALIGN);
        let pad = (offset - self.at) as usize;
        self.file.write_all(&[0u8; ALIGN as usize][..pad])?;
        self.file.write_all(blocks)?;
        self.at = offset + blocks.len() as u64;
        self.entries.push(Entry {
            key: key.to_string(),
            stored: stored_name(stored).to_string(),
            rows,
            cols,
            offset,
            bytes: blocks.len() as u64,
        });
        // SAFETY: the range was just written and this writer only ever appends past it; the file is then renamed
        // (or removed), never written in place, so the mapped bytes do not change.
        #[allow(unsafe_code)]
        let map = unsafe { MmapOptions::new().offset(offset).len(blocks.len()).map(&self.file) }?;
        Ok(DenseWeight::mapped(Arc::new(map), 0, stored, rows, cols))
    }

    /// Writes the footer and trailer, syncs the file and renames it onto `path` (then syncs the directory).
    fn finish(mut self, path: &Path, kind: Quantize, source: &[SourceFile]) -> std::io::Result<()> {
        let footer = Footer {
            format: FORMAT,
            quantize: kind.to_string(),
            source: source.to_vec(),
            matrices: std::mem::take(&mut self.entries),
        };
        let json = serde_json::to_vec(&footer).map_err(std::io::Error::other)?;
        let mut trailer = Vec::with_capacity(TRAILER);
        trailer.extend_from_slice(MAGIC);
        trailer.extend_from_slice(&FORMAT.to_le_bytes());
        trailer.extend_from_slice(&0u32.to_le_bytes());
        trailer.extend_from_slice(&(json.len() as u64).to_le_bytes());
        trailer.extend_from_slice(&fnv1a(&json).to_le_bytes());
        self.file.write_all(&json)?;
        self.file.write_all(&trailer)?;
        self.file.sync_all()?;
        std::fs::rename(&self.temp, path)?;
        if let Some(dir) = path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }

    /// Removes the temporary file (the maps of what it held stay valid).
    fn abandon(self) {
        let _ = std::fs::remove_file(&self.temp);
    }
}

/// The quantisation of one load: each matrix the model runs passes through [`Quantiser::matrix`], which maps its
/// blocks from the cache, or quantises it (and writes the blocks to the new cache).
pub(crate) struct Quantiser {
    kind: Option<Quantize>,
    path: Option<PathBuf>,
    source: Vec<SourceFile>,
    cache: Option<Cache>,
    /// Entries used from `cache`, copied into a new cache if one is written after all.
    used: Vec<(Entry, Stored)>,
    writer: Option<Writer>,
    /// No cache is written (none asked for, or writing it failed).
    no_writer: bool,
    report: QuantisedLoad,
    /// Matrices the model has, for progress lines.
    total: usize,
    started: Instant,
    logged: Instant,
}

impl Quantiser {
    /// A load quantised into `kind` (`None`: nothing is quantised), with its cache at `path` for weights of `source`;
    /// `total` matrices are expected.
    pub(crate) fn new(kind: Option<Quantize>, path: Option<&Path>, source: &[SourceFile], total: usize) -> Quantiser {
        let cache = match (kind, path) {
            (Some(kind), Some(path)) => match open(path, kind, source) {
                Ok(c) => {
                    tracing::info!(path = %path.display(), "mapping quantised weights from the cache");
                    Some(c)
                }
                Err(reason) if path.exists() => {
                    tracing::info!(path = %path.display(), %reason, "quantised-weights cache ignored; quantising again");
                    None
                }
                Err(_) => None,
            },
            _ => None,
        };
        Quantiser {
            kind,
            path: path.map(Path::to_path_buf),
            source: source.to_vec(),
            cache,
            used: Vec::new(),
            writer: None,
            no_writer: path.is_none() || kind.is_none(),
            report: QuantisedLoad::default(),
            total,
            started: Instant::now(),
            logged: Instant::now(),
        }
    }

    /// The matrix `w` (made of the tensors `key` names) as the model runs it: quantised, from the cache or anew, or
    /// as stored when no quantisation applies (none asked for, or rows that are not whole blocks).
    pub(crate) fn matrix(&mut self, key: &str, w: DenseWeight) -> Result<DenseWeight, Error> {
        let Some(kind) = self.kind else { return Ok(w) };
        // Weights stored quantised (GPT-OSS's MXFP4 experts) are run as they are, never quantised again.
        if w.stored().is_quantised() {
            return Ok(w);
        }
        let (rows, cols) = (w.rows(), w.cols());
        // Q4_K needs rows of whole super-blocks of 256, Q8_0 and Q4_0 blocks of 32; rows of other lengths fall back
        // to Q4_0 (as llama.cpp's k-quants do), or stay as they are.
        let to = match kind {
            Quantize::Q4K if cols.is_multiple_of(SUPER_BLOCK) => Stored::Q4K,
            _ if !cols.is_multiple_of(BLOCK) => return Ok(w),
            Quantize::Q8_0 => Stored::Q8_0,
            Quantize::Q4K | Quantize::Q4_0 => Stored::Q4_0,
        };
        if let Some(cache) = &self.cache
            && let Some(e) = cache.entries.get(key)
            && e.stored == stored_name(to)
            && (e.rows, e.cols) == (rows, cols)
            && e.bytes == (rows * to.row_bytes(cols)) as u64
        {
            self.report.mapped += 1;
            self.used.push((e.clone(), to));
            return Ok(DenseWeight::mapped(
                cache.map.clone(),
                e.offset as usize,
                to,
                rows,
                cols,
            ));
        }
        if self.report.quantised == 0 {
            tracing::info!(quantize = %kind, matrices = self.total, "quantising the weights");
        }
        let blocks = w.quantised_bytes(to)?;
        w.release_pages();
        self.report.quantised += 1;
        self.progress();
        if let Some(writer) = self.writer() {
            match writer.append(key, to, rows, cols, &blocks) {
                Ok(mapped) => return Ok(mapped),
                Err(e) => self.give_up_writing(&e),
            }
        }
        Ok(DenseWeight::held(blocks, to, rows, cols))
    }

    /// The writer of the new cache, created (with the entries already used from an old one copied in) on the first
    /// matrix that the old cache did not have.
    fn writer(&mut self) -> Option<&mut Writer> {
        if self.no_writer {
            return None;
        }
        if self.writer.is_none() {
            let path = self.path.clone()?;
            let made = Writer::create(&path).and_then(|mut w| {
                if let Some(cache) = &self.cache {
                    for (e, stored) in &self.used {
                        let (start, end) = (e.offset as usize, (e.offset + e.bytes) as usize);
                        // The blocks already in use stay on the old map (valid after the rename).
                        w.append(&e.key, *stored, e.rows, e.cols, &cache.map[start..end])?;
                    }
                }
                Ok(w)
            });
            match made {
                Ok(w) => self.writer = Some(w),
                Err(e) => {
                    self.give_up_writing(&e);
                    return None;
                }
            }
        }
        self.writer.as_mut()
    }

    fn give_up_writing(&mut self, e: &std::io::Error) {
        let path = self.path.as_deref().unwrap_or(Path::new("")).display().to_string();
        tracing::warn!(%path, error = %e, "cannot write the quantised-weights cache; the model is quantised at every load");
        if let Some(w) = self.writer.take() {
            w.abandon();
        }
        self.no_writer = true;
    }

    /// A progress line every 10 s.
    fn progress(&mut self) {
        if self.logged.elapsed() >= Duration::from_secs(10) {
            self.logged = Instant::now();
            tracing::info!(
                done = self.report.quantised + self.report.mapped,
                of = self.total,
                secs = self.started.elapsed().as_secs(),
                "quantising the weights"
            );
        }
    }

    /// Ends the load: a new cache is written into place. Returns what the load did.
    pub(crate) fn finish(mut self) -> QuantisedLoad {
        if let (Some(w), Some(kind), Some(path)) = (self.writer.take(), self.kind, self.path.clone()) {
            let temp = w.temp.clone();
            match w.finish(&path, kind, &self.source) {
                Ok(()) => {
                    self.report.cache_written = true;
                    tracing::info!(
                        path = %path.display(),
                        matrices = self.report.quantised + self.report.mapped,
                        secs = self.started.elapsed().as_secs(),
                        "quantised the weights; wrote the cache"
                    );
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    tracing::warn!(path = %path.display(), error = %e, "cannot write the quantised-weights cache");
                }
            }
        } else if self.report.quantised > 0 {
            tracing::info!(
                matrices = self.report.quantised,
                secs = self.started.elapsed().as_secs(),
                "quantised the weights"
            );
        }
        self.report
    }
}

//! Uploading a model folder to S3: a plan (files → keys), then parallel multipart uploads with bounded memory,
//! sync semantics (skip objects already there with the same size and CRC32C), resume of interrupted multipart
//! uploads, and full-object CRC32C checks.
//!
//! Checksums: every object carries its full-object CRC32C twice — as S3's own `FULL_OBJECT` checksum (S3 verifies it
//! at `CompleteMultipartUpload` and returns it from `HeadObject`) and as user metadata `cmi-crc32c` (kept by any
//! S3-compatible store, including ones that do not implement full-object checksums). CRC32C is what S3 supports as a
//! full-object checksum for multipart uploads (SHA-256 is only available as a composite of part hashes).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ChecksumType, CompletedMultipartUpload, CompletedPart};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use tokio::sync::Semaphore;

use crate::Error;
use crate::checksum::{self, crc32c_base64};
use crate::journal::{DonePart, FileSum, JournalFile, OpenUpload, mtime_ns};
use crate::progress::{Event, Progress};
use crate::summary::{ManifestEntry, UploadSummary};

/// User-metadata key carrying the object's CRC32C (base64), for stores without full-object checksums.
pub const CRC_METADATA_KEY: &str = "cmi-crc32c";

const MIB: u64 = 1024 * 1024;
/// S3 limits: parts of 5 MiB to 5 GiB (the last may be smaller), at most 10000 of them.
const MIN_PART: u64 = 5 * MIB;
const MAX_PART: u64 = 5 * 1024 * MIB;
const MAX_PARTS: u64 = 10_000;
/// Files uploaded at once. Two keep the pipe full across file boundaries; with more, every file finishes near the end
/// and their completions (the store assembles and syncs each object) pile up there instead of overlapping the
/// transfer of the next file.
const FILES_AT_ONCE: usize = 2;
/// Chunk size for parallel checksumming of local files.
const HASH_CHUNK: u64 = 64 * MIB;

/// How to upload.
#[derive(Debug, Clone)]
pub struct UploadSettings {
    /// Multipart part size (raised for files that would need more than 10000 parts). Files up to this size go in one
    /// `PutObject`.
    pub part_size: u64,
    /// Upper bound on file data held in memory at once (part buffers in flight).
    pub max_memory: u64,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Resume state (local checksums, open multipart uploads); `None` keeps it in memory only (no resume).
    pub journal: Option<PathBuf>,
    /// How S3 calls that fail transiently (no answer, a 5xx, `SlowDown`) are tried again.
    pub retry: Retry,
}

/// Retries of S3 calls that failed transiently ([`Error::is_transient`]), with exponential backoff, on top of the
/// SDK's own few quick attempts: long enough to ride out a server restart. Other failures end the upload at once
/// (the journal keeps what was done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Attempts in all, the first included (at least 1).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each further one.
    pub first_delay: Duration,
    /// Longest wait between two attempts.
    pub max_delay: Duration,
}

impl Default for Retry {
    /// 8 attempts over about 25 s (0.25, 0.5, 1, 2, 4, 8, 8 s apart).
    fn default() -> Self {
        Retry {
            attempts: 8,
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl Default for UploadSettings {
    /// 32 MiB parts, 256 MiB of buffers, 16 requests in flight, no journal. Measured with `cmi bench upload` on a
    /// 2-core machine against the local store: 32 MiB parts went about 8% faster than 16 MiB and 15% faster than
    /// 8 MiB (fewer requests, each with its own hashing and bookkeeping on both sides).
    fn default() -> Self {
        UploadSettings {
            part_size: 32 * MIB,
            max_memory: 256 * MIB,
            max_concurrency: 16,
            journal: None,
            retry: Retry::default(),
        }
    }
}

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// The local file.
    pub local: PathBuf,
    /// Its S3 key.
    pub key: String,
}

/// What goes where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPlan {
    /// Target bucket.
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// The files.
    pub files: Vec<PlannedFile>,
}

impl UploadPlan {
    /// Plans `names` (relative to `dir`) under `s3://bucket/prefix/`.
    pub fn new(dir: &Path, names: &[String], bucket: &str, prefix: &str) -> UploadPlan {
        let prefix = prefix.trim_matches('/').to_string();
        let files = names
            .iter()
            .map(|n| PlannedFile {
                local: dir.join(n),
                key: if prefix.is_empty() {
                    n.clone()
                } else {
                    format!("{prefix}/{n}")
                },
            })
            .collect();
        UploadPlan {
            bucket: bucket.to_string(),
            prefix,
            files,
        }
    }

    /// The folder URI the import job reads: `s3://bucket/prefix/`.
    pub fn s3_uri(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}/", self.bucket)
        } else {
            format!("s3://{}/{}/", self.bucket, self.prefix)
        }
    }
}

/// Uploads plans with one S3 client and one set of settings.
#[derive(Debug, Clone)]
pub struct Uploader {
    s3: Client,
    settings: UploadSettings,
}

/// A file after the local pass: size and checksum known.
#[derive(Debug, Clone)]
struct Local {
    file: PlannedFile,
    size: u64,
    crc: u32,
}

/// State shared by every request of one upload run.
struct Run<'a> {
    s3: &'a Client,
    bucket: &'a str,
    settings: &'a UploadSettings,
    progress: &'a dyn Progress,
    journal: Mutex<JournalFile>,
    /// Memory budget in MiB units; a request holds ⌈len / MiB⌉ permits while its buffer lives.
    memory: Semaphore,
    /// Requests in flight.
    requests: Semaphore,
    stats: Mutex<Stats>,
    /// Part buffers to reuse.
    buffers: BufferPool,
}

/// Part buffers handed back when the request that sent them is done, so that each part is read into memory that is
/// already mapped: fresh 16 MiB allocations cost a page fault and a page clear per 4 KiB (a tenth of the upload's
/// CPU time when measured). Holds at most as many buffers as the memory budget has room for.
#[derive(Clone)]
struct BufferPool {
    free: std::sync::Arc<Mutex<Vec<Vec<u8>>>>,
    keep: usize,
}

impl BufferPool {
    /// A buffer of at least `len` initialised bytes.
    fn take(&self, len: usize) -> Vec<u8> {
        let mut free = lock(&self.free);
        match free.iter().position(|b| b.len() >= len) {
            Some(i) => free.swap_remove(i),
            None => {
                // Buffers too small for this length (a larger part size) are of no further use.
                free.clear();
                drop(free);
                vec![0u8; len]
            }
        }
    }

    /// `buf[..len]` as `Bytes`; the buffer comes back to the pool when the last reference goes.
    fn bytes(&self, buf: Vec<u8>, len: usize) -> Bytes {
        Bytes::from_owner(Pooled {
            buf,
            len,
            pool: self.clone(),
        })
    }
}

struct Pooled {
    buf: Vec<u8>,
    len: usize,
    pool: BufferPool,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let mut free = lock(&self.pool.free);
        if free.len() < self.pool.keep {
            free.push(std::mem::take(&mut self.buf));
        }
    }
}

#[derive(Default)]
struct Stats {
    bytes_sent: u64,
    bytes_resumed: u64,
    parts_sent: usize,
    parts_resumed: usize,
}

impl Uploader {
    /// An uploader with these settings.
    pub fn new(s3: Client, settings: UploadSettings) -> Uploader {
        Uploader { s3, settings }
    }

    /// Uploads the plan. Objects already present with the same size and checksum are skipped; an interrupted
    /// multipart upload recorded in the journal is resumed. Fails on the first error (the journal keeps what was
    /// done, so running again continues).
    #[tracing::instrument(skip_all, fields(bucket = %plan.bucket, prefix = %plan.prefix, files = plan.files.len()))]
    pub async fn upload(&self, plan: &UploadPlan, progress: &dyn Progress) -> Result<UploadSummary, Error> {
        let started = Instant::now();
        let memory_units = (self.settings.max_memory / MIB).max(part_units(MIN_PART));
        let run = Run {
            s3: &self.s3,
            bucket: &plan.bucket,
            settings: &self.settings,
            progress,
            journal: Mutex::new(JournalFile::load(self.settings.journal.as_deref())?),
            memory: Semaphore::new(memory_units as usize),
            requests: Semaphore::new(self.settings.max_concurrency.max(1)),
            stats: Mutex::new(Stats::default()),
            buffers: BufferPool {
                free: Default::default(),
                keep: (self.settings.max_memory / self.settings.part_size.max(MIN_PART)).max(1) as usize,
            },
        };
        let locals = run.checksum_all(&plan.files).await?;
        lock(&run.journal).save()?;

        // Which objects are already there?
        // Futures are built eagerly (they do nothing until polled): a stream of closures over borrowed data makes
        // the whole upload future non-`Send` (rustc's "FnOnce is not general enough").
        let heads: Vec<_> = locals.iter().map(|l| run.already_present(l)).collect();
        let present: Vec<bool> = stream::iter(heads).buffered(16).try_collect().await?;
        let bytes_total: u64 = locals.iter().map(|l| l.size).sum();
        let bytes_skipped: u64 = locals
            .iter()
            .zip(&present)
            .filter(|(_, p)| **p)
            .map(|(l, _)| l.size)
            .sum();
        let resumable: u64 = locals
            .iter()
            .zip(&present)
            .filter(|(_, p)| !**p)
            .map(|(l, _)| run.resumable_bytes(l))
            .sum();
        progress.event(Event::Planned {
            files: locals.len(),
            total_bytes: bytes_total,
            to_send: bytes_total - bytes_skipped - resumable,
        });
        for (l, _) in locals.iter().zip(&present).filter(|(_, p)| **p) {
            progress.event(Event::Skipped {
                key: l.file.key.clone(),
                bytes: l.size,
            });
        }

        // Several files at once, so the pipe stays full across file boundaries; the semaphores bound the total.
        let todo: Vec<&Local> = locals
            .iter()
            .zip(&present)
            .filter(|(_, p)| !**p)
            .map(|(l, _)| l)
            .collect();
        let uploads: Vec<_> = todo.into_iter().map(|l| run.upload_file(l)).collect();
        stream::iter(uploads)
            .buffer_unordered(FILES_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;

        let stats = lock(&run.stats);
        let mut manifest: Vec<ManifestEntry> = locals
            .iter()
            .map(|l| ManifestEntry {
                key: l.file.key.clone(),
                size: l.size,
                crc32c: crc32c_base64(l.crc),
            })
            .collect();
        manifest.sort_by(|a, b| a.key.cmp(&b.key));
        let summary = UploadSummary {
            files: locals.len(),
            files_skipped: present.iter().filter(|p| **p).count(),
            bytes_total,
            bytes_sent: stats.bytes_sent,
            bytes_skipped,
            bytes_resumed: stats.bytes_resumed,
            parts_sent: stats.parts_sent,
            parts_resumed: stats.parts_resumed,
            elapsed: started.elapsed(),
            manifest,
        };
        tracing::info!(
            bytes_sent = summary.bytes_sent,
            bytes_skipped = summary.bytes_skipped,
            bytes_resumed = summary.bytes_resumed,
            elapsed_ms = summary.elapsed.as_millis() as u64,
            "upload finished"
        );
        Ok(summary)
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data (journal, counters) stays consistent across a panic in
/// another task because every update is a single assignment.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn part_units(len: u64) -> u64 {
    len.div_ceil(MIB).max(1)
}

/// The part size for a file: the setting, raised so the file fits in 10000 parts, within S3's limits.
pub(crate) fn part_size_for(settings: &UploadSettings, size: u64) -> u64 {
    let need = size.div_ceil(MAX_PARTS);
    settings
        .part_size
        .max(need)
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART, MAX_PART)
}

pub(crate) fn part_len(size: u64, part_size: u64, n: i32) -> u64 {
    let start = (n as u64 - 1) * part_size;
    part_size.min(size - start)
}

fn blocking_err(path: &Path, e: tokio::task::JoinError) -> Error {
    Error::io(path, std::io::Error::other(e))
}

/// Runs `call` until it succeeds, fails for good, or has used `retry.attempts`; waits between attempts as `retry`
/// says. Only transient failures ([`Error::is_transient`]) are tried again.
async fn retrying<T, F, Fut>(retry: &Retry, op: &str, key: &str, mut call: F) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let mut delay = retry.first_delay;
    let mut attempt = 1;
    loop {
        match call().await {
            Err(e) if e.is_transient() && attempt < retry.attempts.max(1) => {
                tracing::warn!(
                    op,
                    key,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    error = %e,
                    "a transient S3 failure; trying again"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(retry.max_delay);
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl Run<'_> {
    /// Size and CRC32C of every file, from the journal when size and mtime are unchanged, else by reading the file
    /// in parallel chunks.
    async fn checksum_all(&self, files: &[PlannedFile]) -> Result<Vec<Local>, Error> {
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            let md = std::fs::metadata(&f.local).map_err(|e| Error::io(&f.local, e))?;
            let (size, mtime) = (md.len(), mtime_ns(&md));
            let id = f
                .local
                .canonicalize()
                .unwrap_or_else(|_| f.local.clone())
                .to_string_lossy()
                .into_owned();
            let cached = lock(&self.journal)
                .data
                .files
                .get(&id)
                .filter(|s| s.size == size && s.mtime_ns == mtime)
                .map(|s| s.crc32c);
            let crc = match cached {
                Some(c) => c,
                None => {
                    let chunks: Vec<(u64, u64)> = (0..size.div_ceil(HASH_CHUNK))
                        .map(|i| (i * HASH_CHUNK, HASH_CHUNK.min(size - i * HASH_CHUNK)))
                        .collect();
                    let hashes: Vec<_> = chunks
                        .into_iter()
                        .map(|(off, len)| {
                            let path = f.local.clone();
                            async move {
                                let crc = tokio::task::spawn_blocking({
                                    let path = path.clone();
                                    move || checksum::crc_range(&path, off, len, &|_| {})
                                })
                                .await
                                .map_err(|e| blocking_err(&path, e))?
                                .map_err(|e| Error::io(&path, e))?;
                                self.progress.event(Event::Hashed { bytes: len });
                                Ok::<_, Error>((crc, len))
                            }
                        })
                        .collect();
                    let crcs: Vec<(u32, u64)> = stream::iter(hashes).buffered(threads).try_collect().await?;
                    let crc = checksum::combine(crcs);
                    lock(&self.journal).data.files.insert(
                        id,
                        FileSum {
                            size,
                            mtime_ns: mtime,
                            crc32c: crc,
                        },
                    );
                    crc
                }
            };
            out.push(Local {
                file: f.clone(),
                size,
                crc,
            });
        }
        Ok(out)
    }

    /// True when the object exists with the same size and CRC32C (S3's full-object checksum or our metadata).
    async fn already_present(&self, l: &Local) -> Result<bool, Error> {
        let key = &l.file.key;
        let head = retrying(&self.settings.retry, "HeadObject", key, || async {
            let head = self
                .s3
                .head_object()
                .bucket(self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await;
            match head {
                Ok(h) => Ok(Some(h)),
                Err(e) => {
                    let not_found = e.as_service_error().is_some_and(|s| s.is_not_found())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                    if not_found {
                        return Ok(None);
                    }
                    Err(Error::s3("HeadObject", self.bucket, key, e))
                }
            }
        })
        .await?;
        let Some(head) = head else { return Ok(false) };
        if head.content_length() != Some(l.size as i64) {
            return Ok(false);
        }
        Ok(remote_crc(&head) == Some(crc32c_base64(l.crc)))
    }

    /// Bytes an open multipart upload in the journal already covers (an estimate for the plan's `to_send`).
    fn resumable_bytes(&self, l: &Local) -> u64 {
        let journal = lock(&self.journal);
        let Some(u) = journal.data.uploads.get(&format!("{}/{}", self.bucket, l.file.key)) else {
            return 0;
        };
        if u.size != l.size || u.crc32c != l.crc {
            return 0;
        }
        u.parts.keys().map(|n| part_len(l.size, u.part_size, *n)).sum()
    }

    async fn upload_file(&self, l: &Local) -> Result<(), Error> {
        let part_size = part_size_for(self.settings, l.size);
        if l.size > MAX_PART * MAX_PARTS {
            return Err(Error::TooLarge {
                path: l.file.local.clone(),
                size: l.size,
            });
        }
        if l.size <= part_size {
            self.put_whole(l).await?;
        } else {
            let mut resumed = false;
            match self.put_multipart(l, part_size, true, &mut resumed).await {
                Ok(()) => {}
                // The store says the resumed upload is gone (aborted, expired, or completed by a run whose answer
                // never arrived): done if the object is there, else start this file over once, from a fresh upload.
                // Any other failure keeps the journal, so that the next run continues the same upload.
                Err(e) if resumed && e.is_no_such_upload() => {
                    if self.already_present(l).await? {
                        tracing::info!(key = %l.file.key, "the interrupted upload was completed before; nothing to send");
                        let journal_key = format!("{}/{}", self.bucket, l.file.key);
                        let mut j = lock(&self.journal);
                        j.data.uploads.remove(&journal_key);
                        j.save()?;
                        drop(j);
                        self.progress.event(Event::FileDone {
                            key: l.file.key.clone(),
                        });
                        return Ok(());
                    }
                    tracing::warn!(key = %l.file.key, error = %e, "the interrupted upload cannot be continued; starting it over");
                    let journal_key = format!("{}/{}", self.bucket, l.file.key);
                    {
                        let mut j = lock(&self.journal);
                        j.data.uploads.remove(&journal_key);
                        j.save()?;
                    }
                    self.put_multipart(l, part_size, false, &mut resumed).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.verify(l).await?;
        self.progress.event(Event::FileDone {
            key: l.file.key.clone(),
        });
        Ok(())
    }

    /// Reads a range under the memory budget; the returned permits must live as long as the buffer.
    async fn read(
        &self,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> Result<(Bytes, u32, tokio::sync::SemaphorePermit<'_>), Error> {
        // The semaphore is never closed, so acquiring can only wait, not fail.
        let permit = self
            .memory
            .acquire_many(part_units(len) as u32)
            .await
            .expect("semaphore never closed");
        let p = path.to_path_buf();
        // `len` is at most the part size (≤ 5 GiB), which fits a usize on the 64-bit targets we build for.
        let len = len as usize;
        let mut buf = self.buffers.take(len);
        let (buf, crc) = tokio::task::spawn_blocking(move || {
            checksum::read_range(&p, offset, &mut buf[..len]).map(|crc| (buf, crc))
        })
        .await
        .map_err(|e| blocking_err(path, e))?
        .map_err(|e| Error::io(path, e))?;
        Ok((self.buffers.bytes(buf, len), crc, permit))
    }

    async fn put_whole(&self, l: &Local) -> Result<(), Error> {
        let key = &l.file.key;
        self.progress.event(Event::FileStarted {
            key: key.clone(),
            bytes: l.size,
            resumed_bytes: 0,
        });
        let (data, crc, _mem) = self.read(&l.file.local, 0, l.size).await?;
        if crc != l.crc {
            return Err(Error::FileChanged {
                path: l.file.local.clone(),
                before: crc32c_base64(l.crc),
                after: crc32c_base64(crc),
            });
        }
        let b64 = crc32c_base64(crc);
        // The semaphore is never closed.
        let _req = self.requests.acquire().await.expect("semaphore never closed");
        retrying(&self.settings.retry, "PutObject", key, || async {
            self.s3
                .put_object()
                .bucket(self.bucket)
                .key(key)
                .content_length(l.size as i64)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_crc32_c(&b64)
                .metadata(CRC_METADATA_KEY, &b64)
                .body(ByteStream::from(data.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| Error::s3("PutObject", self.bucket, key, e))
        })
        .await?;
        let mut s = lock(&self.stats);
        s.bytes_sent += l.size;
        s.parts_sent += 1;
        drop(s);
        self.progress.event(Event::Sent {
            key: key.clone(),
            bytes: l.size,
        });
        Ok(())
    }

    async fn put_multipart(
        &self,
        l: &Local,
        part_size: u64,
        allow_resume: bool,
        resumed_out: &mut bool,
    ) -> Result<(), Error> {
        let key = &l.file.key;
        let journal_key = format!("{}/{}", self.bucket, key);
        let nparts = l.size.div_ceil(part_size) as i32;
        let b64 = crc32c_base64(l.crc);

        let resumable = if allow_resume {
            self.resume(l, part_size, &journal_key).await?
        } else {
            None
        };
        *resumed_out = resumable.is_some();
        let (upload_id, mut done) = match resumable {
            Some(r) => r,
            None => {
                let out = retrying(&self.settings.retry, "CreateMultipartUpload", key, || async {
                    self.s3
                        .create_multipart_upload()
                        .bucket(self.bucket)
                        .key(key)
                        .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                        .checksum_type(ChecksumType::FullObject)
                        .metadata(CRC_METADATA_KEY, &b64)
                        .send()
                        .await
                        .map_err(|e| Error::s3("CreateMultipartUpload", self.bucket, key, e))
                })
                .await?;
                let id = out.upload_id().ok_or(Error::S3 {
                    op: "CreateMultipartUpload",
                    bucket: self.bucket.to_string(),
                    key: key.clone(),
                    message: "the response has no UploadId".into(),
                    no_such_upload: false,
                    transient: false,
                    source: "missing UploadId".into(),
                })?;
                let mut j = lock(&self.journal);
                j.data.uploads.insert(
                    journal_key.clone(),
                    OpenUpload {
                        upload_id: id.to_string(),
                        size: l.size,
                        crc32c: l.crc,
                        part_size,
                        parts: BTreeMap::new(),
                    },
                );
                j.save()?;
                (id.to_string(), BTreeMap::new())
            }
        };
        let resumed: u64 = done.keys().map(|n| part_len(l.size, part_size, *n)).sum();
        {
            let mut s = lock(&self.stats);
            s.bytes_resumed += resumed;
            s.parts_resumed += done.len();
        }
        self.progress.event(Event::FileStarted {
            key: key.clone(),
            bytes: l.size,
            resumed_bytes: resumed,
        });

        let todo: Vec<i32> = (1..=nparts).filter(|n| !done.contains_key(n)).collect();
        let parts: Vec<_> = todo
            .into_iter()
            .map(|n| self.put_part(l, &upload_id, &journal_key, part_size, n))
            .collect();
        let sent: Vec<(i32, DonePart)> = stream::iter(parts)
            .buffer_unordered(self.settings.max_concurrency.max(1))
            .try_collect()
            .await?;
        done.extend(sent);

        let combined = checksum::combine((1..=nparts).map(|n| (done[&n].crc32c, part_len(l.size, part_size, n))));
        if combined != l.crc {
            // The parts no longer make up the file we planned: throw the upload away.
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await;
            let mut j = lock(&self.journal);
            j.data.uploads.remove(&journal_key);
            j.save()?;
            return Err(Error::FileChanged {
                path: l.file.local.clone(),
                before: b64,
                after: crc32c_base64(combined),
            });
        }
        let parts: Vec<CompletedPart> = (1..=nparts)
            .map(|n| {
                let p = &done[&n];
                CompletedPart::builder()
                    .part_number(n)
                    .set_e_tag(p.etag.clone())
                    .checksum_crc32_c(crc32c_base64(p.crc32c))
                    .build()
            })
            .collect();
        let completed = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();
        let mut attempts = 0;
        let done = retrying(&self.settings.retry, "CompleteMultipartUpload", key, || {
            attempts += 1;
            let completed = completed.clone();
            let upload_id = &upload_id;
            let b64 = &b64;
            async move {
                self.s3
                    .complete_multipart_upload()
                    .bucket(self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(completed)
                    .checksum_crc32_c(b64)
                    .checksum_type(ChecksumType::FullObject)
                    .mpu_object_size(l.size as i64)
                    .send()
                    .await
                    .map_err(|e| Error::s3("CompleteMultipartUpload", self.bucket, key, e))
            }
        })
        .await;
        match done {
            Ok(_) => {}
            // An attempt whose answer was lost may have completed the upload: then the object is there.
            Err(e) if attempts > 1 && e.is_no_such_upload() && self.already_present(l).await? => {
                tracing::info!(key = %key, "the upload was completed by an attempt whose answer was lost");
            }
            Err(e) => return Err(e),
        }
        let mut j = lock(&self.journal);
        j.data.uploads.remove(&journal_key);
        j.save()
    }

    /// An interrupted upload of this same file from the journal, with the parts S3 still has: `None` when there is
    /// none to continue (another file, or S3 answered that the upload is gone). A transient failure to list the parts
    /// is tried again and, if it lasts, ends the run with the journal kept: only `NoSuchUpload` proves the upload
    /// gone, and throwing it away on a connection reset sent every acknowledged part again.
    ///
    /// A listed part counts when its CRC32C is known and matches: the journal's record (taken from the bytes sent)
    /// and the listing's must agree when both exist; a part the listing alone knows (the store had acknowledged it,
    /// but the run was killed before it wrote the answer down) counts when its listed CRC32C is the one of the local
    /// bytes it stands for.
    async fn resume(
        &self,
        l: &Local,
        part_size: u64,
        journal_key: &str,
    ) -> Result<Option<(String, BTreeMap<i32, DonePart>)>, Error> {
        let Some(open) = lock(&self.journal).data.uploads.get(journal_key).cloned() else {
            return Ok(None);
        };
        let key = &l.file.key;
        if open.size != l.size || open.crc32c != l.crc || open.part_size != part_size {
            tracing::info!(key = %key, "the file changed since the interrupted upload; starting over");
            let _ = self
                .s3
                .abort_multipart_upload()
                .bucket(self.bucket)
                .key(key)
                .upload_id(&open.upload_id)
                .send()
                .await;
            lock(&self.journal).data.uploads.remove(journal_key);
            return Ok(None);
        }
        let mut listed = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = retrying(&self.settings.retry, "ListParts", key, || async {
                self.s3
                    .list_parts()
                    .bucket(self.bucket)
                    .key(key)
                    .upload_id(&open.upload_id)
                    .set_part_number_marker(marker.clone())
                    .send()
                    .await
                    .map_err(|e| Error::s3("ListParts", self.bucket, key, e))
            })
            .await;
            let out = match out {
                Ok(o) => o,
                Err(e) if e.is_no_such_upload() => {
                    tracing::info!(key = %key, error = %e, "the interrupted upload is gone; starting over");
                    let mut j = lock(&self.journal);
                    j.data.uploads.remove(journal_key);
                    j.save()?;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            listed.extend(out.parts().iter().cloned());
            match (out.is_truncated(), out.next_part_number_marker()) {
                (Some(true), Some(m)) if marker.as_deref() != Some(m) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        let mut done = BTreeMap::new();
        let mut adopted = 0usize;
        for p in listed {
            let (Some(n), Some(size)) = (p.part_number(), p.size()) else {
                continue;
            };
            if n < 1 || (n as u64 - 1) * part_size >= l.size || size as u64 != part_len(l.size, part_size, n) {
                continue;
            }
            let recorded = open.parts.get(&n);
            let listed_crc = p.checksum_crc32_c().and_then(decode_crc);
            let crc = match (listed_crc, recorded.map(|r| r.crc32c)) {
                (Some(a), Some(b)) if a != b => continue,
                (_, Some(b)) => b,
                (Some(a), None) => {
                    let (path, off, len) = (l.file.local.clone(), (n as u64 - 1) * part_size, size as u64);
                    let local = tokio::task::spawn_blocking(move || checksum::crc_range(&path, off, len, &|_| {}))
                        .await
                        .map_err(|e| blocking_err(&l.file.local, e))?
                        .map_err(|e| Error::io(&l.file.local, e))?;
                    if local != a {
                        continue;
                    }
                    adopted += 1;
                    a
                }
                (None, None) => continue,
            };
            let etag = p
                .e_tag()
                .map(str::to_string)
                .or_else(|| recorded.and_then(|r| r.etag.clone()));
            done.insert(n, DonePart { etag, crc32c: crc });
        }
        if adopted > 0 {
            let mut j = lock(&self.journal);
            if let Some(u) = j.data.uploads.get_mut(journal_key) {
                u.parts.extend(done.iter().map(|(n, p)| (*n, p.clone())));
            }
            j.save()?;
        }
        tracing::info!(key = %key, parts = done.len(), adopted, "resuming interrupted upload");
        Ok(Some((open.upload_id, done)))
    }

    async fn put_part(
        &self,
        l: &Local,
        upload_id: &str,
        journal_key: &str,
        part_size: u64,
        n: i32,
    ) -> Result<(i32, DonePart), Error> {
        let key = &l.file.key;
        let len = part_len(l.size, part_size, n);
        let (data, crc, _mem) = self.read(&l.file.local, (n as u64 - 1) * part_size, len).await?;
        // The semaphore is never closed.
        let _req = self.requests.acquire().await.expect("semaphore never closed");
        let out = retrying(&self.settings.retry, "UploadPart", key, || async {
            self.s3
                .upload_part()
                .bucket(self.bucket)
                .key(key)
                .upload_id(upload_id)
                .part_number(n)
                .content_length(len as i64)
                .checksum_algorithm(ChecksumAlgorithm::Crc32C)
                .checksum_crc32_c(crc32c_base64(crc))
                .body(ByteStream::from(data.clone()))
                .customize()
                .disable_payload_signing()
                .send()
                .await
                .map_err(|e| Error::s3("UploadPart", self.bucket, key, e))
        })
        .await?;
        let part = DonePart {
            etag: out.e_tag().map(str::to_string),
            crc32c: crc,
        };
        {
            let mut j = lock(&self.journal);
            if let Some(u) = j.data.uploads.get_mut(journal_key) {
                u.parts.insert(n, part.clone());
            }
            j.save()?;
        }
        {
            let mut s = lock(&self.stats);
            s.bytes_sent += len;
            s.parts_sent += 1;
        }
        self.progress.event(Event::Sent {
            key: key.clone(),
            bytes: len,
        });
        Ok((n, part))
    }

    /// HeadObject after upload: the size must match, and the checksum when the store reports one.
    async fn verify(&self, l: &Local) -> Result<(), Error> {
        let key = &l.file.key;
        let head = retrying(&self.settings.retry, "HeadObject", key, || async {
            self.s3
                .head_object()
                .bucket(self.bucket)
                .key(key)
                .checksum_mode(ChecksumMode::Enabled)
                .send()
                .await
                .map_err(|e| Error::s3("HeadObject", self.bucket, key, e))
        })
        .await?;
        let want = crc32c_base64(l.crc);
        if head.content_length() != Some(l.size as i64) {
            return Err(Error::ChecksumMismatch {
                bucket: self.bucket.to_string(),
                key: key.clone(),
                local: want,
                remote: format!("(size {:?} instead of {})", head.content_length(), l.size),
            });
        }
        if let Some(full) = s3_full_object_crc(&head)
            && full != want
        {
            return Err(Error::ChecksumMismatch {
                bucket: self.bucket.to_string(),
                key: key.clone(),
                local: want,
                remote: full,
            });
        }
        Ok(())
    }
}

/// S3's own full-object CRC32C (not the composite `xxx-N` form of multipart uploads).
fn s3_full_object_crc(head: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Option<String> {
    let v = head.checksum_crc32_c()?;
    let full = matches!(head.checksum_type(), None | Some(ChecksumType::FullObject));
    (full && !v.contains('-')).then(|| v.to_string())
}

/// The object's full-object CRC32C: S3's checksum when it has one, else our metadata.
fn remote_crc(head: &aws_sdk_s3::operation::head_object::HeadObjectOutput) -> Option<String> {
    s3_full_object_crc(head).or_else(|| head.metadata().and_then(|m| m.get(CRC_METADATA_KEY)).cloned())
}

pub(crate) fn decode_crc(b64: &str) -> Option<u32> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    Some(u32::from_be_bytes(bytes.try_into().ok()?))
}

//! The durable write path of the object store: a body is staged in a temporary file while it is hashed, the client's
//! checksums are verified against the bytes actually received, and only then is the file synced and renamed into place.
//!
//! Staged files live in the store root, not next to the object: the root is on the same filesystem as every bucket
//! (so the rename is atomic), it is never listed as a bucket or an object, and s3s-fs sweeps `.tmp.*.internal.part`
//! files there at startup, so a crash leaves no litter. A temporary file in the object's own directory would show up
//! in ListObjects (s3s-fs lists every file under the bucket) and in the folder an import job copies.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use bytes::Bytes;
use futures::{Stream, StreamExt as _};
use http::HeaderMap;
use s3s::checksum::ChecksumHasher;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::{Checksum, ChecksumAlgorithm};
use s3s::{S3Error, S3ErrorCode, StdError, s3_error};

/// An I/O failure on a file of the store, as the `InternalError` the client sees (the path and cause are logged).
pub(crate) fn io_error(what: &str, path: &Path, e: std::io::Error) -> S3Error {
    tracing::error!(path = %path.display(), error = %e, "object store: {what} failed");
    S3Error::with_message(
        S3ErrorCode::InternalError,
        format!("the local object store failed {what} {}: {e}", path.display()),
    )
}

/// Fsyncs a directory, so the entries created, renamed or removed in it survive a crash.
pub(crate) async fn sync_dir(dir: &Path) -> Result<(), S3Error> {
    let d = tokio::fs::File::open(dir)
        .await
        .map_err(|e| io_error("opening directory", dir, e))?;
    d.sync_all().await.map_err(|e| io_error("syncing directory", dir, e))?;
    #[cfg(test)]
    synced::record(dir);
    Ok(())
}

/// Fsyncs a file's data and metadata.
pub(crate) async fn sync_file(path: &Path) -> Result<(), S3Error> {
    let f = tokio::fs::File::open(path)
        .await
        .map_err(|e| io_error("opening", path, e))?;
    f.sync_all().await.map_err(|e| io_error("syncing", path, e))
}

/// The directories synced so far (tests only): which acknowledged changes were made durable.
#[cfg(test)]
pub(crate) mod synced {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static SYNCED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(crate) fn record(dir: &Path) {
        SYNCED.lock().unwrap_or_else(|p| p.into_inner()).push(dir.to_path_buf());
    }

    /// Takes the directories synced under `root` since the last call.
    pub(crate) fn take_under(root: &Path) -> Vec<PathBuf> {
        let mut all = SYNCED.lock().unwrap_or_else(|p| p.into_inner());
        let (mine, rest): (Vec<PathBuf>, Vec<PathBuf>) = all.drain(..).partition(|d| d.starts_with(root));
        *all = rest;
        mine
    }
}

/// Removes a file; a missing file is fine.
pub(crate) async fn remove_if_present(path: &Path) -> Result<(), S3Error> {
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("removing", path, e)),
    }
}

/// Reads a file; `None` when it does not exist.
pub(crate) async fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, S3Error> {
    match tokio::fs::read(path).await {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error("reading", path, e)),
    }
}

/// The extent the file is written in: each write call covers whole, aligned extents of 2 MiB (but the last). The
/// page cache then holds the object in 2 MiB folios, and the engine, which memory-maps the weights of an imported
/// model straight from these files, maps them with one TLB entry per 2 MiB (see `infer-models`' `weights`); written
/// piece by piece as the body arrived, the file would sit in small pages for as long as it stays cached.
const EXTENT: u64 = 2 << 20;

/// Bytes gathered before they go to the file in one blocking call (then up to the last whole extent).
const WRITE_BATCH: usize = 4 << 20;

/// A temporary file in the store root; removed when dropped unless it was renamed into place.
///
/// Received chunks are kept as they came (`Bytes`, no copy) and written in batches of about 4 MiB on the blocking
/// pool, straight from those buffers in one vectored write: a `tokio::fs::File` behind a `BufWriter` copied every
/// byte twice on the way.
pub(crate) struct Staged {
    path: PathBuf,
    file: Option<std::fs::File>,
    /// Bytes already in the file.
    written: u64,
    pending: Vec<Bytes>,
    pending_len: usize,
    placed: bool,
}

/// Writes all of `chunks` with vectored writes (no copy into one buffer); `Write::write_all_vectored` does this but
/// is not stable yet.
fn write_chunks(file: &mut std::fs::File, chunks: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<std::io::IoSlice<'_>> = chunks.iter().map(|c| std::io::IoSlice::new(c)).collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match file.write_vectored(rest) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Appends the file `from` to `to`, whose length is `at`: the first write reaches the next extent boundary, the
/// others are whole extents (see [`EXTENT`]); returns the bytes appended.
fn append_in_extents(from: &mut std::fs::File, to: &mut std::fs::File, at: u64) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut buf = vec![0u8; (2 * EXTENT) as usize];
    let mut copied = 0u64;
    loop {
        let pos = at + copied;
        // Up to the boundary after next, so that every write but the first and the last is two whole extents.
        let want = (2 * EXTENT - pos % EXTENT) as usize;
        let mut got = 0;
        while got < want {
            match from.read(&mut buf[got..want]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if got == 0 {
            return Ok(copied);
        }
        to.write_all(&buf[..got])?;
        copied += got as u64;
    }
}

impl Staged {
    /// Creates an empty staged file under `root`.
    pub(crate) async fn create(root: &Path) -> Result<Staged, S3Error> {
        // This name matches s3s-fs's startup sweep of stale temporary files, and the UUID cannot collide with the
        // counter-based names s3s-fs gives its own.
        let path = root.join(format!(".tmp.cmi-{}.internal.part", uuid::Uuid::new_v4()));
        // Created synchronously (an empty file: microseconds), so that no await point lies between the file's creation
        // and the guard that removes it. With `tokio::fs`, a request dropped while the open ran on the blocking pool
        // left the new file behind with no owner until the next restart.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error("creating", &path, e))?;
        Ok(Staged {
            path,
            file: Some(file),
            written: 0,
            pending: Vec::new(),
            pending_len: 0,
            placed: false,
        })
    }

    fn closed(&self) -> S3Error {
        io_error(
            "writing",
            &self.path,
            std::io::Error::other("the staged file was already closed"),
        )
    }

    /// Runs `op` on the file on the blocking pool, after the pending chunks are written.
    async fn with_file<T: Send + 'static>(
        &mut self,
        what: &'static str,
        op: impl FnOnce(&mut std::fs::File) -> std::io::Result<T> + Send + 'static,
    ) -> Result<T, S3Error> {
        let mut file = self.file.take().ok_or_else(|| self.closed())?;
        let chunks = std::mem::take(&mut self.pending);
        self.written += self.pending_len as u64;
        self.pending_len = 0;
        let (file, result) = tokio::task::spawn_blocking(move || {
            let r = write_chunks(&mut file, &chunks).and_then(|()| op(&mut file));
            (file, r)
        })
        .await
        .map_err(|e| io_error(what, &self.path, std::io::Error::other(e)))?;
        self.file = Some(file);
        result.map_err(|e| io_error(what, &self.path, e))
    }

    /// Appends bytes (kept without copying until the next batch is written).
    pub(crate) async fn write_bytes(&mut self, data: Bytes) -> Result<(), S3Error> {
        if self.file.is_none() {
            return Err(self.closed());
        }
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= WRITE_BATCH {
            // Up to the last extent boundary; the bytes past it wait for the next batch.
            let end = self.written + self.pending_len as u64;
            let keep = (end % EXTENT) as usize;
            let mut tail = Vec::new();
            let mut kept = 0;
            while kept < keep {
                let Some(mut last) = self.pending.pop() else { break };
                let take = (keep - kept).min(last.len());
                tail.push(last.split_off(last.len() - take));
                kept += take;
                if !last.is_empty() {
                    self.pending.push(last);
                }
            }
            self.pending_len -= kept;
            self.with_file("writing", |_| Ok(())).await?;
            tail.reverse();
            self.pending = tail;
            self.pending_len = kept;
        }
        Ok(())
    }

    /// Appends a copy of `data`.
    pub(crate) async fn write(&mut self, data: &[u8]) -> Result<(), S3Error> {
        self.write_bytes(Bytes::copy_from_slice(data)).await
    }

    /// Appends the whole of the file at `src`; returns the number of bytes appended.
    ///
    /// In extent-aligned writes through a buffer rather than with `std::io::copy` (`copy_file_range`): on ext4 the
    /// kernel's copy goes in 64 KiB pieces and leaves the object in small pages of the page cache (see [`EXTENT`]),
    /// and the buffer's extra copy costs about as much as the kernel's. A filesystem with reflinks (XFS, btrfs)
    /// could have shared the parts' blocks instead; the copy is the price of one path that is fast to decode from
    /// everywhere.
    pub(crate) async fn append_file(&mut self, src: &Path) -> Result<u64, S3Error> {
        let mut from = std::fs::File::open(src).map_err(|e| io_error("opening", src, e))?;
        let src_path = src.to_path_buf();
        let at = self.written + self.pending_len as u64;
        let n = self
            .with_file("appending", move |to| {
                append_in_extents(&mut from, to, at)
                    .map_err(|e| std::io::Error::new(e.kind(), format!("from {}: {e}", src_path.display())))
            })
            .await?;
        self.written += n;
        Ok(n)
    }

    /// Writes what is pending and fsyncs the data: after this the bytes are on disk, whatever happens to the process.
    pub(crate) async fn sync(&mut self) -> Result<(), S3Error> {
        self.with_file("syncing", |f| f.sync_all()).await
    }

    /// Renames the staged file to `dest` (same filesystem, so atomically). Call [`Staged::sync`] first when the file
    /// must survive a crash; the caller syncs `dest`'s directory.
    pub(crate) async fn place(mut self, dest: &Path) -> Result<(), S3Error> {
        self.with_file("writing", |_| Ok(())).await?;
        self.file = None;
        tokio::fs::rename(&self.path, dest)
            .await
            .map_err(|e| io_error(&format!("renaming {} to", self.path.display()), dest, e))?;
        self.placed = true;
        Ok(())
    }

    /// Writes `bytes` to a new staged file under `root` and syncs it.
    pub(crate) async fn with_bytes(root: &Path, bytes: &[u8]) -> Result<Staged, S3Error> {
        let mut s = Staged::create(root).await?;
        s.write(bytes).await?;
        s.sync().await?;
        Ok(s)
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.placed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A checksum algorithm S3 accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Alg {
    Crc32,
    Crc32c,
    Sha1,
    Sha256,
    Crc64Nvme,
}

const ALGS: [Alg; 5] = [Alg::Crc32, Alg::Crc32c, Alg::Sha1, Alg::Sha256, Alg::Crc64Nvme];

impl Alg {
    fn name(self) -> &'static str {
        match self {
            Alg::Crc32 => ChecksumAlgorithm::CRC32,
            Alg::Crc32c => ChecksumAlgorithm::CRC32C,
            Alg::Sha1 => ChecksumAlgorithm::SHA1,
            Alg::Sha256 => ChecksumAlgorithm::SHA256,
            Alg::Crc64Nvme => ChecksumAlgorithm::CRC64NVME,
        }
    }

    fn header(self) -> &'static str {
        match self {
            Alg::Crc32 => "x-amz-checksum-crc32",
            Alg::Crc32c => "x-amz-checksum-crc32c",
            Alg::Sha1 => "x-amz-checksum-sha1",
            Alg::Sha256 => "x-amz-checksum-sha256",
            Alg::Crc64Nvme => "x-amz-checksum-crc64nvme",
        }
    }

    fn value(self, c: &Checksum) -> Option<&String> {
        match self {
            Alg::Crc32 => c.checksum_crc32.as_ref(),
            Alg::Crc32c => c.checksum_crc32c.as_ref(),
            Alg::Sha1 => c.checksum_sha1.as_ref(),
            Alg::Sha256 => c.checksum_sha256.as_ref(),
            Alg::Crc64Nvme => c.checksum_crc64nvme.as_ref(),
        }
    }

    fn slot(self, c: &mut Checksum) -> &mut Option<String> {
        match self {
            Alg::Crc32 => &mut c.checksum_crc32,
            Alg::Crc32c => &mut c.checksum_crc32c,
            Alg::Sha1 => &mut c.checksum_sha1,
            Alg::Sha256 => &mut c.checksum_sha256,
            Alg::Crc64Nvme => &mut c.checksum_crc64nvme,
        }
    }

    fn enable(self, h: &mut ChecksumHasher) {
        match self {
            Alg::Crc32 => h.crc32 = Some(Default::default()),
            Alg::Crc32c => h.crc32c = Some(Default::default()),
            Alg::Sha1 => h.sha1 = Some(Default::default()),
            Alg::Sha256 => h.sha256 = Some(Default::default()),
            Alg::Crc64Nvme => h.crc64nvme = Some(Default::default()),
        }
    }
}

/// The integrity checks a write request asks for: checksum values sent as headers, algorithms announced for a
/// trailer (`x-amz-trailer`) or by `x-amz-sdk-checksum-algorithm`, and `Content-MD5`.
#[derive(Debug)]
pub(crate) struct Expect {
    sent: Checksum,
    announced: Vec<Alg>,
    content_md5: Option<String>,
    /// The body's length as the request declares it: `x-amz-decoded-content-length` for an aws-chunked body, else
    /// `Content-Length`.
    declared_len: Option<(u64, &'static str)>,
}

/// The length a request declares for its (decoded) body, and the header that declares it.
fn declared_length(headers: &HeaderMap) -> Result<Option<(u64, &'static str)>, S3Error> {
    let number = |name: &'static str| -> Result<Option<(u64, &'static str)>, S3Error> {
        let Some(v) = headers.get(name) else { return Ok(None) };
        let n = v
            .to_str()
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "{name} {:?} is not a byte count: expected a non-negative integer",
                    String::from_utf8_lossy(v.as_bytes())
                )
            })?;
        Ok(Some((n, name)))
    };
    if let Some(d) = number("x-amz-decoded-content-length")? {
        return Ok(Some(d));
    }
    // An aws-chunked body without its decoded length: s3s has replaced Content-Length, so there is nothing to check.
    let streaming = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("STREAMING-"));
    if streaming {
        return Ok(None);
    }
    number("content-length")
}

/// What a body hashed to while it was staged.
#[derive(Debug)]
pub(crate) struct Received {
    pub(crate) size: u64,
    pub(crate) md5: [u8; 16],
    computed: Checksum,
}

impl Received {
    /// The MD5 as lowercase hex (the ETag of a single-part object).
    pub(crate) fn md5_hex(&self) -> String {
        hex::encode(self.md5)
    }
}

impl Expect {
    /// Reads the checks a request declares (its `x-amz-checksum-*` values are in `sent`).
    pub(crate) fn new(
        sent: Checksum,
        algorithm: Option<&ChecksumAlgorithm>,
        headers: &HeaderMap,
        content_md5: Option<String>,
    ) -> Result<Expect, S3Error> {
        let mut announced = Vec::new();
        if let Some(a) = algorithm {
            let alg = ALGS
                .into_iter()
                .find(|x| x.name().eq_ignore_ascii_case(a.as_str()))
                .ok_or_else(|| {
                    s3_error!(
                        InvalidRequest,
                        "unsupported x-amz-sdk-checksum-algorithm {:?}: expected CRC32, CRC32C, SHA1, SHA256 or CRC64NVME",
                        a.as_str()
                    )
                })?;
            announced.push(alg);
        }
        for v in headers.get_all("x-amz-trailer") {
            let v = v
                .to_str()
                .map_err(|_| s3_error!(InvalidArgument, "x-amz-trailer is not ASCII"))?;
            for name in v.split(',').map(str::trim) {
                if let Some(alg) = ALGS.into_iter().find(|x| x.header().eq_ignore_ascii_case(name))
                    && !announced.contains(&alg)
                {
                    announced.push(alg);
                }
            }
        }
        Ok(Expect {
            sent,
            announced,
            content_md5,
            declared_len: declared_length(headers)?,
        })
    }

    /// A hasher for every algorithm the request sent or announced.
    fn hasher(&self) -> ChecksumHasher {
        let mut h = ChecksumHasher::default();
        for alg in ALGS {
            if alg.value(&self.sent).is_some() || self.announced.contains(&alg) {
                alg.enable(&mut h);
            }
        }
        h
    }

    /// Streams `body` into `staged`, hashing it on the way.
    pub(crate) async fn receive<S>(&self, staged: &mut Staged, mut body: S) -> Result<Received, S3Error>
    where
        S: Stream<Item = Result<Bytes, StdError>> + Unpin,
    {
        let mut md5 = Md5::new();
        let mut hasher = self.hasher();
        let mut size: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(body_error)?;
            md5.update(&chunk);
            hasher.update(&chunk);
            size += chunk.len() as u64;
            staged.write_bytes(chunk).await?;
        }
        // A body that ends early is refused, as S3 does: hyper and s3s end the stream where the bytes end (an
        // aws-chunked body whose chunks stop short of x-amz-decoded-content-length), and the checksums only catch it
        // when the client sent some.
        if let Some((declared, header)) = self.declared_len
            && declared != size
        {
            return Err(if size < declared {
                s3_error!(
                    IncompleteBody,
                    "the body ended after {size} bytes, but its {header} declares {declared}: nothing was stored"
                )
            } else {
                s3_error!(
                    InvalidRequest,
                    "the body has {size} bytes, more than the {declared} its {header} declares: nothing was stored"
                )
            });
        }
        Ok(Received {
            size,
            md5: md5.finalize(),
            computed: hasher.finalize(),
        })
    }

    /// Compares what was sent (headers, then the trailer that followed the body) with what was received; returns the
    /// verified checksums, the ones to store with the object.
    pub(crate) fn verify(mut self, received: &Received, trailers: Option<HeaderMap>) -> Result<Checksum, S3Error> {
        if let Some(trailers) = trailers {
            for alg in ALGS {
                if let Some(v) = trailers.get(alg.header()) {
                    let v = v
                        .to_str()
                        .map_err(|_| s3_error!(InvalidArgument, "trailer {} is not ASCII", alg.header()))?;
                    *alg.slot(&mut self.sent) = Some(v.to_string());
                }
            }
        }
        for alg in &self.announced {
            if alg.value(&self.sent).is_none() {
                return Err(s3_error!(
                    InvalidRequest,
                    "the request announces a {} checksum (x-amz-sdk-checksum-algorithm or x-amz-trailer) but carries no {} header or trailer",
                    alg.name(),
                    alg.header()
                ));
            }
        }
        let mut verified = Checksum::default();
        for alg in ALGS {
            let Some(sent) = alg.value(&self.sent) else {
                continue;
            };
            let got = alg.value(&received.computed).map(String::as_str).unwrap_or("");
            if sent != got {
                return Err(s3_error!(
                    BadDigest,
                    "the {} sent with the request is {sent:?}, but the {} bytes received have {} {got:?}",
                    alg.header(),
                    received.size,
                    alg.name()
                ));
            }
            *alg.slot(&mut verified) = Some(sent.clone());
        }
        if let Some(md5) = &self.content_md5 {
            let b64 = base64::engine::general_purpose::STANDARD;
            let sent = b64.decode(md5).ok().filter(|d| d.len() == 16).ok_or_else(|| {
                s3_error!(
                    InvalidDigest,
                    "Content-MD5 {md5:?} is not valid: expected the base64 of a 16-byte MD5 digest"
                )
            })?;
            if sent != received.md5 {
                return Err(s3_error!(
                    BadDigest,
                    "the Content-MD5 sent with the request is {md5:?}, but the {} bytes received have MD5 {:?}",
                    received.size,
                    b64.encode(received.md5)
                ));
            }
        }
        Ok(verified)
    }
}

/// The S3 error for a body that failed while it was read (s3s verifies signatures and payload hashes as it streams).
fn body_error(e: StdError) -> S3Error {
    let text = e.to_string();
    if text.contains("SignatureMismatch") {
        s3_error!(
            SignatureDoesNotMatch,
            "a chunk signature of the aws-chunked body does not match"
        )
    } else if text.contains("Sha256Mismatch") {
        s3_error!(BadDigest, "the body does not match its x-amz-content-sha256 header")
    } else {
        s3_error!(IncompleteBody, "the request body could not be read: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(data: &[u8], algs: &[Alg]) -> Received {
        let mut h = ChecksumHasher::default();
        for a in algs {
            a.enable(&mut h);
        }
        h.update(data);
        Received {
            size: data.len() as u64,
            md5: Md5::checksum(data),
            computed: h.finalize(),
        }
    }

    #[test]
    fn a_wrong_checksum_names_the_sent_and_the_computed_value() {
        let sent = Checksum {
            checksum_crc32: Some("AAAAAA==".into()),
            ..Checksum::default()
        };
        let expect = Expect::new(sent, None, &HeaderMap::new(), None).expect("expect");
        let e = expect
            .verify(&received(b"hello", &[Alg::Crc32]), None)
            .expect_err("mismatch");
        assert_eq!(e.code(), &S3ErrorCode::BadDigest);
        let msg = e.message().unwrap_or_default();
        assert!(
            msg.contains("AAAAAA==") && msg.contains("x-amz-checksum-crc32") && msg.contains("NhCmhg=="),
            "{msg}"
        );
    }

    #[test]
    fn a_trailer_checksum_is_verified_and_kept() {
        let mut headers = HeaderMap::new();
        headers.insert("x-amz-trailer", "x-amz-checksum-crc32c".parse().expect("value"));
        let expect = Expect::new(Checksum::default(), None, &headers, None).expect("expect");
        let r = received(b"hello", &[Alg::Crc32c]);
        let good = r.computed.checksum_crc32c.clone().expect("crc32c");
        let mut trailers = HeaderMap::new();
        trailers.insert("x-amz-checksum-crc32c", good.parse().expect("value"));
        let verified = expect.verify(&r, Some(trailers)).expect("verified");
        assert_eq!(verified.checksum_crc32c, Some(good));
        // Announced but never sent.
        let expect = Expect::new(Checksum::default(), None, &headers, None).expect("expect");
        let e = expect.verify(&r, None).expect_err("missing trailer");
        assert_eq!(e.code(), &S3ErrorCode::InvalidRequest);
    }

    #[test]
    fn content_md5_is_checked() {
        let b64 = base64::engine::general_purpose::STANDARD;
        let good = b64.encode(Md5::checksum(b"hello"));
        let expect = Expect::new(Checksum::default(), None, &HeaderMap::new(), Some(good)).expect("expect");
        assert!(expect.verify(&received(b"hello", &[]), None).is_ok());
        let bad = b64.encode(Md5::checksum(b"other"));
        let expect = Expect::new(Checksum::default(), None, &HeaderMap::new(), Some(bad)).expect("expect");
        let e = expect.verify(&received(b"hello", &[]), None).expect_err("mismatch");
        assert_eq!(e.code(), &S3ErrorCode::BadDigest);
        let expect = Expect::new(Checksum::default(), None, &HeaderMap::new(), Some("nope".into())).expect("expect");
        let e = expect.verify(&received(b"hello", &[]), None).expect_err("malformed");
        assert_eq!(e.code(), &S3ErrorCode::InvalidDigest);
    }

    /// Bytes `0..n` of a pattern with no short period, so a dropped, doubled or reordered piece shows.
    fn pattern(from: usize, n: usize) -> Vec<u8> {
        (from..from + n)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn staged_bytes_and_appended_files_come_out_whole_and_in_order_across_extent_boundaries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let part = dir.path().join("part");
        let part_len = 5 * EXTENT as usize + 12_345;
        let mut expected = Vec::new();
        let mut staged = Staged::create(dir.path()).await.expect("create");
        // Chunks of uneven sizes, so batches end inside chunks, then a file appended at an unaligned offset, then
        // more chunks after it.
        let mut at = 0;
        for (i, len) in [1usize, 70_001, 3 << 20, 999_999, 5 << 20, 17, 2 << 20]
            .into_iter()
            .cycle()
            .take(11)
            .enumerate()
        {
            let bytes = pattern(at, len);
            at += len;
            expected.extend_from_slice(&bytes);
            staged.write_bytes(Bytes::from(bytes)).await.expect("write");
            if i == 6 {
                let file = pattern(at, part_len);
                at += part_len;
                std::fs::write(&part, &file).expect("part");
                expected.extend_from_slice(&file);
                assert_eq!(staged.append_file(&part).await.expect("append"), part_len as u64);
            }
        }
        staged.sync().await.expect("sync");
        let dest = dir.path().join("object");
        staged.place(&dest).await.expect("place");
        let got = std::fs::read(&dest).expect("read");
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the object's bytes differ from what was written");
    }
}

//! The object store behind `s3s`: `s3s_fs::FileSystem` for reads, listings, deletes and the multipart bookkeeping,
//! with our own write path for every operation that creates or replaces an object or a part.
//!
//! What s3s-fs 0.14.1 gets wrong, and why those operations are hand-rolled here:
//! - PutObject and CreateMultipartUpload into a bucket that does not exist succeed (PutObject even creates the bucket
//!   directory with `create_dir_all`); S3 answers `NoSuchBucket`.
//! - PutObject renames the uploaded file into place before it compares the client's checksums, so an upload refused
//!   with `BadDigest` has already replaced the previous object. UploadPart ignores the part's checksums altogether.
//! - Nothing is fsynced, so an acknowledged object may not survive a power loss.
//! - CompleteMultipartUpload drops the upload id, moves the upload's metadata onto the key and deletes each part while
//!   it assembles, so a failure halfway (a missing part, a short part) changes the existing object's metadata and
//!   destroys the upload; it keeps the previous object's checksums in the record of the new one; it refuses part
//!   lists with gaps.
//! - CopyObject copies straight onto the destination file (`fs::copy`), so a crash or a concurrent reader sees a torn
//!   object.
//!
//! Every write here goes: temporary file in the store root → checksums verified → fsync → (key lock) old records
//! removed → rename → fsync of the directory → new records renamed into place → fsync of the root. The records are
//! s3s-fs's own sidecar files (its private layout, pinned by the exact s3s-fs version), so its GetObject, HeadObject
//! and ListObjects read what we write. Readers of one key (GetObject, HeadObject, a copy's source) take the key's lock
//! shared while they open the file and read its records, so they never pair one version's bytes with another's
//! checksums.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use base64::Engine as _;
use s3s::crypto::{Checksum as _, Md5};
use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};
use tokio::io::AsyncReadExt as _;

use super::write::{Expect, Staged, io_error, read_if_present, remove_if_present, sync_dir, sync_file};

/// Parts other than the last must be at least this large (as in S3).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
const LOCK_STRIPES: usize = 64;

type Fut<'a, T> = Pin<Box<dyn Future<Output = S3Result<S3Response<T>>> + Send + 'a>>;

/// The object store under `root` (one directory per bucket). Cheap to clone: every clone is the same store.
///
/// Every operation that changes state runs on a task of its own ([`detached`]), so that a client that disconnects
/// (hyper then drops the request's future) cannot stop a commit half-way: it finishes, or fails and leaves the old
/// object whole.
#[derive(Clone)]
pub(crate) struct Store(std::sync::Arc<Shared>);

impl std::ops::Deref for Store {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every clone of the [`Store`] shares.
pub(crate) struct Shared {
    fs: s3s_fs::FileSystem,
    root: PathBuf,
    /// Striped per-key locks: writers hold one exclusively while they swap an object and its records, readers hold it
    /// shared while they open an object and read its records.
    locks: Vec<tokio::sync::RwLock<()>>,
}

/// Runs `work` to its end on a task of its own and waits for it: dropping the returned future (the client went away)
/// does not stop the work.
async fn detached<T: Send + 'static>(work: impl Future<Output = S3Result<T>> + Send + 'static) -> S3Result<T> {
    tokio::spawn(work)
        .await
        .map_err(|e| s3_error!(InternalError, "the object store's task for this request failed: {e}"))?
}

impl Store {
    pub(crate) fn new(root: &Path) -> Result<Store, String> {
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| format!("cannot open the object store: {e:?}"))?;
        Ok(Store(std::sync::Arc::new(Shared {
            fs,
            root: root.to_path_buf(),
            locks: (0..LOCK_STRIPES).map(|_| tokio::sync::RwLock::new(())).collect(),
        })))
    }
}

impl Shared {
    fn stripe_index(&self, bucket: &str, key: &str) -> usize {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (bucket, key).hash(&mut h);
        (h.finish() % LOCK_STRIPES as u64) as usize
    }

    fn stripe(&self, bucket: &str, key: &str) -> &tokio::sync::RwLock<()> {
        &self.locks[self.stripe_index(bucket, key)]
    }

    /// The bucket's directory; `NoSuchBucket` when it does not exist.
    fn bucket_dir(&self, bucket: &str) -> S3Result<PathBuf> {
        let dir = self.root.join(bucket);
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(s3_error!(NoSuchBucket, "the bucket {bucket:?} does not exist"))
        }
    }

    /// Where an object's bytes live; the key is checked again here so no path built below can leave the bucket.
    fn object_path(&self, bucket: &str, key: &str) -> S3Result<PathBuf> {
        super::check_key(key).map_err(|m| s3_error!(InvalidArgument, "{m}"))?;
        Ok(self.root.join(bucket).join(key))
    }

    fn sidecar(&self, bucket: &str, key: &str, suffix: &str) -> PathBuf {
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        self.root
            .join(format!(".bucket-{}.object-{}{suffix}", enc(bucket), enc(key)))
    }

    /// s3s-fs's record of an object's ETag and checksums.
    fn record_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.sidecar(bucket, key, ".internal.json")
    }

    /// s3s-fs's record of an object's (or, with `upload`, a pending multipart upload's) metadata and headers.
    fn metadata_path(&self, bucket: &str, key: &str, upload: Option<&uuid::Uuid>) -> PathBuf {
        match upload {
            None => self.sidecar(bucket, key, ".metadata.json"),
            Some(u) => self.sidecar(bucket, key, &format!(".upload-{u}.metadata.json")),
        }
    }

    fn upload_info_path(&self, upload: &uuid::Uuid) -> PathBuf {
        self.root.join(format!(".upload-{upload}.json"))
    }

    /// The start of the name of every file an upload keeps in the store root besides its record: its parts and
    /// their MD5 records.
    fn upload_files_prefix(upload: &uuid::Uuid) -> String {
        format!(".upload_id-{upload}.")
    }

    fn part_prefix(upload: &uuid::Uuid) -> String {
        format!("{}part-", Self::upload_files_prefix(upload))
    }

    fn part_path(&self, upload: &uuid::Uuid, part: i32) -> PathBuf {
        self.root.join(format!("{}{part}", Self::part_prefix(upload)))
    }

    /// The MD5 of a part (its ETag), recorded when the part arrived so that completing the upload need not hash the
    /// data again. Named so that s3s-fs's ListParts (which parses every `.part-N` name) skips it and its
    /// AbortMultipartUpload (which removes every `.upload_id-ID*` file) removes it.
    fn part_md5_path(&self, upload: &uuid::Uuid, part: i32) -> PathBuf {
        self.root
            .join(format!("{}md5-{part}", Self::upload_files_prefix(upload)))
    }

    async fn read_record(
        &self,
        bucket: &str,
        key: &str,
    ) -> S3Result<Option<serde_json::Map<String, serde_json::Value>>> {
        let path = self.record_path(bucket, key);
        match read_if_present(&path).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                s3_error!(
                    InternalError,
                    "the object record {} is not a JSON object: {e}",
                    path.display()
                )
            }),
        }
    }

    /// The object's ETag: the recorded one, else the MD5 of its bytes (s3s-fs's rule).
    async fn current_etag(&self, bucket: &str, key: &str) -> S3Result<String> {
        if let Some(e) = self.read_record(bucket, key).await?.as_ref().and_then(record_etag) {
            return Ok(e);
        }
        let path = self.object_path(bucket, key)?;
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error("opening", &path, e))?;
        Ok(hex::encode(md5_of(&mut f, &path, None).await?))
    }

    /// If-Match / If-None-Match of PutObject and CompleteMultipartUpload, as s3s-fs evaluates them.
    async fn check_conditions(
        &self,
        bucket: &str,
        key: &str,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
    ) -> S3Result<()> {
        let exists = self.object_path(bucket, key)?.is_file();
        if if_none_match.is_some_and(ETagCondition::is_any) && exists {
            return Err(s3_error!(
                PreconditionFailed,
                "s3://{bucket}/{key} already exists and If-None-Match is *"
            ));
        }
        if let Some(cond) = if_match {
            if !exists {
                return Err(s3_error!(
                    PreconditionFailed,
                    "s3://{bucket}/{key} does not exist, but If-Match requires it"
                ));
            }
            if let Some(expected) = cond.as_etag() {
                let current = self.current_etag(bucket, key).await?;
                if !ETag::Strong(current.clone()).strong_cmp(expected) {
                    return Err(s3_error!(
                        PreconditionFailed,
                        "the ETag of s3://{bucket}/{key} is {current:?}, but If-Match expects {:?}",
                        expected.value()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Creates the directories of `key` below the bucket directory, syncing each new entry.
    async fn make_parents(bucket_dir: &Path, key: &str) -> S3Result<()> {
        let mut dir = bucket_dir.to_path_buf();
        let mut segments: Vec<&str> = key.split('/').collect();
        segments.pop();
        for seg in segments.into_iter().filter(|s| !s.is_empty()) {
            let parent = dir.clone();
            dir.push(seg);
            match tokio::fs::create_dir(&dir).await {
                Ok(()) => sync_dir(&parent).await?,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if !dir.is_dir() {
                        return Err(s3_error!(
                            InvalidArgument,
                            "object key {key:?} cannot be stored: its prefix {:?} is an object here, and this store \
                             keeps objects as files, so a key cannot also be a prefix",
                            dir.strip_prefix(bucket_dir).unwrap_or(&dir).display()
                        ));
                    }
                }
                Err(e) => return Err(io_error("creating directory", &dir, e)),
            }
        }
        Ok(())
    }

    /// Puts a staged, synced object and its records in place. The caller holds the key's lock exclusively.
    ///
    /// The new records are staged (and synced) before anything is touched; the old ones are removed before the data
    /// rename, so a crash in between leaves an object without a stored checksum, never one with a wrong checksum.
    async fn commit(&self, bucket: &str, key: &str, data: Staged, object: NewRecords) -> S3Result<SystemTime> {
        let bucket_dir = self.bucket_dir(bucket)?;
        let path = self.object_path(bucket, key)?;
        if path.is_dir() {
            return Err(s3_error!(
                InvalidArgument,
                "object key {key:?} cannot be stored: it is a prefix of other objects here, and this store keeps \
                 prefixes as directories"
            ));
        }
        Self::make_parents(&bucket_dir, key).await?;
        let record = serde_json::to_vec(&object.record)
            .map_err(|e| s3_error!(InternalError, "cannot encode the object record: {e}"))?;
        let record = Staged::with_bytes(&self.root, &record).await?;
        let metadata = match &object.metadata {
            Some(m) => Some(Staged::with_bytes(&self.root, m).await?),
            None => None,
        };
        let (record_path, metadata_path) = (self.record_path(bucket, key), self.metadata_path(bucket, key, None));
        remove_if_present(&record_path).await?;
        remove_if_present(&metadata_path).await?;
        data.place(&path).await?;
        let dir = path.parent().unwrap_or(&bucket_dir);
        sync_dir(dir).await?;
        if let Some(m) = metadata {
            m.place(&metadata_path).await?;
        }
        record.place(&record_path).await?;
        sync_dir(&self.root).await?;
        let modified = tokio::fs::metadata(&path)
            .await
            .and_then(|m| m.modified())
            .map_err(|e| io_error("reading the modification time of", &path, e))?;
        Ok(modified)
    }

    /// Checks that an upload exists and belongs to the caller.
    async fn check_upload(&self, upload_id: &str, creds: Option<&s3s::auth::Credentials>) -> S3Result<uuid::Uuid> {
        let no_such = || {
            s3_error!(
                NoSuchUpload,
                "there is no multipart upload {upload_id:?}: it was never created, or it was completed or aborted"
            )
        };
        let id = uuid::Uuid::parse_str(upload_id).map_err(|_| no_such())?;
        let path = self.upload_info_path(&id);
        let bytes = read_if_present(&path).await?.ok_or_else(no_such)?;
        let owner: Option<String> = serde_json::from_slice(&bytes)
            .map_err(|e| s3_error!(InternalError, "the upload record {} is not valid: {e}", path.display()))?;
        if owner.as_deref() != creds.map(|c| c.access_key.as_str()) {
            return Err(s3_error!(
                AccessDenied,
                "the multipart upload {upload_id} was created with another access key"
            ));
        }
        Ok(id)
    }

    async fn put(&self, req: S3Request<PutObjectInput>) -> S3Result<S3Response<PutObjectOutput>> {
        if let Some(sc) = &req.input.storage_class
            && !["STANDARD", "REDUCED_REDUNDANCY"].contains(&sc.as_str())
        {
            return Err(s3_error!(
                InvalidStorageClass,
                "storage class {:?} is not supported here: expected STANDARD or REDUCED_REDUNDANCY",
                sc.as_str()
            ));
        }
        self.bucket_dir(&req.input.bucket)?;
        if req.input.key.ends_with('/') {
            // A "directory" object: s3s-fs creates the directory and stores no bytes; nothing to verify.
            return self.fs.put_object(req).await;
        }
        let S3Request {
            input,
            headers,
            trailing_headers,
            ..
        } = req;
        let PutObjectInput {
            body,
            bucket,
            key,
            checksum_algorithm,
            checksum_crc32,
            checksum_crc32c,
            checksum_crc64nvme,
            checksum_sha1,
            checksum_sha256,
            content_md5,
            if_match,
            if_none_match,
            metadata,
            content_encoding,
            content_type,
            content_disposition,
            content_language,
            cache_control,
            expires,
            website_redirect_location,
            ..
        } = input;
        let sent = Checksum {
            checksum_crc32,
            checksum_crc32c,
            checksum_crc64nvme,
            checksum_sha1,
            checksum_sha256,
            ..Checksum::default()
        };
        // Fail fast before the body is read; evaluated again under the lock, where it counts.
        self.check_conditions(&bucket, &key, if_match.as_ref(), if_none_match.as_ref())
            .await?;
        let expect = Expect::new(sent, checksum_algorithm.as_ref(), &headers, content_md5)?;
        let body = body.ok_or_else(|| s3_error!(IncompleteBody, "PutObject s3://{bucket}/{key} has no body"))?;
        let mut staged = Staged::create(&self.root).await?;
        let received = expect.receive(&mut staged, body).await?;
        let checksum = expect.verify(&received, trailing_headers.and_then(|t| t.take()))?;
        staged.sync().await?;

        let e_tag = received.md5_hex();
        let attrs = Attributes {
            metadata,
            content_encoding,
            content_type,
            content_disposition,
            content_language,
            cache_control,
            expires,
            website_redirect_location,
        };
        let records = NewRecords {
            metadata: Some(attrs.to_json()?),
            record: record_with(&e_tag, &checksum),
        };
        {
            let _w = self.stripe(&bucket, &key).write().await;
            self.check_conditions(&bucket, &key, if_match.as_ref(), if_none_match.as_ref())
                .await?;
            self.commit(&bucket, &key, staged, records).await?;
        }
        tracing::debug!(bucket, key, size = received.size, e_tag, "object written");
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(ETag::Strong(e_tag)),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn upload_part_impl(&self, req: S3Request<UploadPartInput>) -> S3Result<S3Response<UploadPartOutput>> {
        let S3Request {
            input,
            headers,
            trailing_headers,
            credentials,
            ..
        } = req;
        let UploadPartInput {
            body,
            bucket,
            upload_id,
            part_number,
            checksum_algorithm,
            checksum_crc32,
            checksum_crc32c,
            checksum_crc64nvme,
            checksum_sha1,
            checksum_sha256,
            content_md5,
            ..
        } = input;
        if !(1..=10_000).contains(&part_number) {
            return Err(s3_error!(
                InvalidArgument,
                "part number {part_number} is out of range: expected an integer from 1 to 10000"
            ));
        }
        self.bucket_dir(&bucket)?;
        let id = self.check_upload(&upload_id, credentials.as_ref()).await?;
        let sent = Checksum {
            checksum_crc32,
            checksum_crc32c,
            checksum_crc64nvme,
            checksum_sha1,
            checksum_sha256,
            ..Checksum::default()
        };
        let expect = Expect::new(sent, checksum_algorithm.as_ref(), &headers, content_md5)?;
        let body = body.ok_or_else(|| s3_error!(IncompleteBody, "UploadPart {part_number} has no body"))?;
        let mut staged = Staged::create(&self.root).await?;
        let received = expect.receive(&mut staged, body).await?;
        let checksum = expect.verify(&received, trailing_headers.and_then(|t| t.take()))?;
        // No fsync: a part is not an object. CompleteMultipartUpload syncs the assembled object before it renames it,
        // and checks every part against the ETag the client was given, so a part lost in a crash is refused, not used.
        // The MD5 goes first: a part file present is always one whose recorded MD5 (if any) is its own, because a
        // re-upload of the same part number replaces the record before the data.
        let md5_path = self.part_md5_path(&id, part_number);
        remove_if_present(&md5_path).await?;
        let part_path = self.part_path(&id, part_number);
        staged.place(&part_path).await?;
        let mut record = Staged::create(&self.root).await?;
        record
            .write(&part_record(&received.md5, received.size, &checksum))
            .await?;
        record.place(&md5_path).await?;
        Ok(S3Response::new(UploadPartOutput {
            e_tag: Some(ETag::Strong(received.md5_hex())),
            checksum_crc32: checksum.checksum_crc32,
            checksum_crc32c: checksum.checksum_crc32c,
            checksum_sha1: checksum.checksum_sha1,
            checksum_sha256: checksum.checksum_sha256,
            checksum_crc64nvme: checksum.checksum_crc64nvme,
            ..Default::default()
        }))
    }

    async fn complete(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let credentials = req.credentials;
        let CompleteMultipartUploadInput {
            multipart_upload,
            bucket,
            key,
            upload_id,
            if_match,
            if_none_match,
            ..
        } = req.input;
        let id = self.check_upload(&upload_id, credentials.as_ref()).await?;
        let parts = multipart_upload.and_then(|m| m.parts).unwrap_or_default();
        if parts.is_empty() {
            return Err(s3_error!(
                InvalidPart,
                "CompleteMultipartUpload lists no parts: expected at least one"
            ));
        }
        self.bucket_dir(&bucket)?;
        self.object_path(&bucket, &key)?;
        self.check_conditions(&bucket, &key, if_match.as_ref(), if_none_match.as_ref())
            .await?;

        // The whole list is checked before any byte is read (its order, then each part); nothing below changes state
        // until the commit.
        let mut numbers = Vec::with_capacity(parts.len());
        for (i, p) in parts.iter().enumerate() {
            let n = p
                .part_number
                .ok_or_else(|| s3_error!(InvalidPart, "entry {} of the part list has no PartNumber", i + 1))?;
            if let Some(&previous) = numbers.last()
                && n <= previous
            {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "part {n} is listed after part {previous}: expected part numbers in ascending order"
                ));
            }
            numbers.push(n);
        }
        let mut plan = Vec::with_capacity(parts.len());
        for (i, (p, n)) in parts.iter().zip(numbers).enumerate() {
            let path = self.part_path(&id, n);
            let size = match tokio::fs::metadata(&path).await {
                Ok(m) if m.is_file() => m.len(),
                _ => {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {n} of upload {upload_id} was never uploaded: upload it, or leave it out of the list"
                    ));
                }
            };
            if i + 1 < parts.len() && size < MIN_PART_SIZE {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} is {size} bytes: every part but the last must be at least {MIN_PART_SIZE} bytes (5 MiB)"
                ));
            }
            plan.push((n, path, size, p.e_tag.clone()));
        }

        // Assembly into a staged file; the parts stay until the object is committed, so a failure here leaves the
        // key untouched and the upload complete-able again.
        let mut staged = Staged::create(&self.root).await?;
        let mut part_md5s = Vec::with_capacity(plan.len());
        for (n, path, size, listed) in &plan {
            // The record counts only for a part of the size it was written with (parts are not synced, so a crash
            // can leave a short one).
            let recorded = read_if_present(&self.part_md5_path(&id, *n))
                .await?
                .and_then(|b| parse_part_record(&b))
                .filter(|r| r.size == *size)
                .map(|r| r.md5);
            let md5 = match recorded {
                Some(md5) => {
                    staged.append_file(path).await?;
                    md5
                }
                // A part stored without its record (by an older version): hash it on the way.
                None => {
                    let mut f = tokio::fs::File::open(path)
                        .await
                        .map_err(|e| io_error("opening", path, e))?;
                    md5_of(&mut f, path, Some(&mut staged)).await?
                }
            };
            let actual = hex::encode(md5);
            if let Some(listed) = listed {
                let listed = listed.value().trim_matches('"');
                if listed != actual {
                    return Err(s3_error!(
                        InvalidPart,
                        "part {n}: the ETag listed is {listed:?}, but the uploaded part's ETag is {actual:?}"
                    ));
                }
            }
            part_md5s.push(md5);
        }
        staged.sync().await?;
        let mut all = Md5::new();
        for m in &part_md5s {
            all.update(m);
        }
        let e_tag = format!("{}-{}", hex::encode(all.finalize()), part_md5s.len());
        let upload_metadata = self.metadata_path(&bucket, &key, Some(&id));
        let records = NewRecords {
            metadata: read_if_present(&upload_metadata).await?,
            record: record_with(&e_tag, &Checksum::default()),
        };
        {
            let _w = self.stripe(&bucket, &key).write().await;
            self.check_conditions(&bucket, &key, if_match.as_ref(), if_none_match.as_ref())
                .await?;
            self.commit(&bucket, &key, staged, records).await?;
        }
        // The object is durable; now the upload goes (a crash here leaves parts to be aborted, never a bad object).
        remove_if_present(&self.upload_info_path(&id)).await?;
        remove_if_present(&upload_metadata).await?;
        let prefix = Self::upload_files_prefix(&id);
        let mut dir = tokio::fs::read_dir(&self.root)
            .await
            .map_err(|e| io_error("listing", &self.root, e))?;
        while let Some(entry) = dir.next_entry().await.map_err(|e| io_error("listing", &self.root, e))? {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(&prefix)) {
                remove_if_present(&entry.path()).await?;
            }
        }
        tracing::debug!(
            bucket,
            key,
            e_tag,
            parts = part_md5s.len(),
            "multipart upload completed"
        );
        Ok(S3Response::new(CompleteMultipartUploadOutput {
            bucket: Some(bucket),
            key: Some(key),
            e_tag: Some(ETag::Strong(e_tag)),
            ..Default::default()
        }))
    }

    /// ListParts as S3 answers it: the upload must exist (`NoSuchUpload`), parts come in order, a page at a time, each
    /// with its ETag and the checksums it was uploaded with, so that a client that lost its own record of a part
    /// can still trust it. s3s-fs lists the part files unordered with their sizes alone, and lists any upload id.
    async fn list_parts_impl(&self, req: S3Request<ListPartsInput>) -> S3Result<S3Response<ListPartsOutput>> {
        let credentials = req.credentials;
        let ListPartsInput {
            bucket,
            key,
            upload_id,
            max_parts,
            part_number_marker,
            ..
        } = req.input;
        self.bucket_dir(&bucket)?;
        let id = self.check_upload(&upload_id, credentials.as_ref()).await?;
        let prefix = Self::part_prefix(&id);
        let mut numbers = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.root)
            .await
            .map_err(|e| io_error("listing", &self.root, e))?;
        while let Some(entry) = dir.next_entry().await.map_err(|e| io_error("listing", &self.root, e))? {
            if let Some(n) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .and_then(|n| n.parse::<i32>().ok())
            {
                numbers.push(n);
            }
        }
        numbers.sort_unstable();
        let marker = part_number_marker.unwrap_or(0);
        let max = usize::try_from(max_parts.unwrap_or(1000).clamp(1, 1000)).unwrap_or(1000);
        numbers.retain(|n| *n > marker);
        let truncated = numbers.len() > max;
        numbers.truncate(max);
        let mut parts = Vec::with_capacity(numbers.len());
        for &n in &numbers {
            let path = self.part_path(&id, n);
            let Ok(md) = tokio::fs::metadata(&path).await else {
                // Replaced or aborted while we listed.
                continue;
            };
            let record = read_if_present(&self.part_md5_path(&id, n))
                .await?
                .and_then(|b| parse_part_record(&b))
                .filter(|r| r.size == md.len());
            let (e_tag, checksum) = match record {
                Some(r) => (Some(ETag::Strong(hex::encode(r.md5))), r.checksum),
                // A part without its record (stored by an older version, or cut off between its data and its
                // record): its ETag is the MD5 of what is there.
                None => {
                    let mut f = tokio::fs::File::open(&path)
                        .await
                        .map_err(|e| io_error("opening", &path, e))?;
                    (
                        Some(ETag::Strong(hex::encode(md5_of(&mut f, &path, None).await?))),
                        Checksum::default(),
                    )
                }
            };
            parts.push(Part {
                part_number: Some(n),
                size: Some(i64::try_from(md.len()).unwrap_or(i64::MAX)),
                last_modified: md.modified().ok().map(Timestamp::from),
                e_tag,
                checksum_crc32: checksum.checksum_crc32,
                checksum_crc32c: checksum.checksum_crc32c,
                checksum_sha1: checksum.checksum_sha1,
                checksum_sha256: checksum.checksum_sha256,
                checksum_crc64nvme: checksum.checksum_crc64nvme,
            });
        }
        Ok(S3Response::new(ListPartsOutput {
            bucket: Some(bucket),
            key: Some(key),
            upload_id: Some(upload_id),
            max_parts: Some(max as i32),
            part_number_marker: Some(marker),
            next_part_number_marker: numbers.last().copied(),
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        }))
    }

    /// Makes a removal durable: the object's directory and the store root (its records) are synced.
    async fn sync_removal(&self, bucket: &str, key: &str) -> S3Result<()> {
        let path = self.object_path(bucket, key)?;
        let trimmed = path.to_string_lossy().trim_end_matches('/').to_string();
        if let Some(dir) = Path::new(&trimmed).parent()
            && dir.is_dir()
        {
            sync_dir(dir).await?;
        }
        sync_dir(&self.root).await
    }

    /// DeleteObject under the key's lock: s3s-fs removes the file (and leaves its records, which go here), then the
    /// removal is synced before the answer.
    async fn delete(&self, req: S3Request<DeleteObjectInput>) -> S3Result<S3Response<DeleteObjectOutput>> {
        let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
        self.object_path(&bucket, &key)?;
        let _w = self.stripe(&bucket, &key).write().await;
        let out = self.fs.delete_object(req).await?;
        if !key.ends_with('/') {
            remove_if_present(&self.record_path(&bucket, &key)).await?;
            remove_if_present(&self.metadata_path(&bucket, &key, None)).await?;
        }
        self.sync_removal(&bucket, &key).await?;
        Ok(out)
    }

    /// DeleteObjects: as [`Shared::delete`] for each key, the keys' locks taken in one order.
    async fn delete_many(&self, req: S3Request<DeleteObjectsInput>) -> S3Result<S3Response<DeleteObjectsOutput>> {
        let bucket = req.input.bucket.clone();
        let keys: Vec<String> = req.input.delete.objects.iter().map(|o| o.key.clone()).collect();
        for k in &keys {
            self.object_path(&bucket, k)?;
        }
        let mut stripes: Vec<usize> = keys.iter().map(|k| self.stripe_index(&bucket, k)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for i in stripes {
            guards.push(self.locks[i].write().await);
        }
        let out = self.fs.delete_objects(req).await?;
        let deleted: Vec<String> = out
            .output
            .deleted
            .iter()
            .flatten()
            .filter_map(|d| d.key.clone())
            .collect();
        for k in deleted.iter().filter(|k| !k.ends_with('/')) {
            remove_if_present(&self.record_path(&bucket, k)).await?;
            remove_if_present(&self.metadata_path(&bucket, k, None)).await?;
        }
        let mut dirs: Vec<PathBuf> = deleted
            .iter()
            .filter_map(|k| {
                let p = self.object_path(&bucket, k.trim_end_matches('/')).ok()?;
                p.parent().map(Path::to_path_buf)
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        for d in dirs.iter().filter(|d| d.is_dir()) {
            sync_dir(d).await?;
        }
        sync_dir(&self.root).await?;
        Ok(out)
    }

    async fn copy(&self, req: S3Request<CopyObjectInput>) -> S3Result<S3Response<CopyObjectOutput>> {
        let input = req.input;
        let (src_bucket, src_key) = match &input.copy_source {
            CopySource::Bucket { bucket, key, .. } => (bucket.to_string(), key.to_string()),
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "copy sources other than BUCKET/KEY (access points, outposts) are not supported here"
                ));
            }
        };
        let src_path = self.object_path(&src_bucket, &src_key)?;
        // A consistent snapshot of the source: the open file and the records of that same version.
        let (mut src, src_record, src_metadata, src_modified) = {
            let _r = self.stripe(&src_bucket, &src_key).read().await;
            self.bucket_dir(&src_bucket)?;
            let no_such_key = || s3_error!(NoSuchKey, "the copy source s3://{src_bucket}/{src_key} does not exist");
            if !src_path.is_file() {
                return Err(no_such_key());
            }
            let f = tokio::fs::File::open(&src_path).await.map_err(|_| no_such_key())?;
            let modified = f
                .metadata()
                .await
                .and_then(|m| m.modified())
                .map_err(|e| io_error("reading the modification time of", &src_path, e))?;
            let record = self.read_record(&src_bucket, &src_key).await?;
            let metadata = read_if_present(&self.metadata_path(&src_bucket, &src_key, None)).await?;
            (f, record, metadata, modified)
        };
        self.bucket_dir(&input.bucket)?;
        self.object_path(&input.bucket, &input.key)?;

        let mut staged = Staged::create(&self.root).await?;
        let md5 = md5_of(&mut src, &src_path, Some(&mut staged)).await?;
        let src_etag = src_record
            .as_ref()
            .and_then(record_etag)
            .unwrap_or_else(|| hex::encode(md5));
        copy_conditions(&input, &src_etag, Timestamp::from(src_modified))?;
        staged.sync().await?;

        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        let metadata = if replace {
            Some(
                Attributes {
                    metadata: input.metadata.clone(),
                    content_encoding: input.content_encoding.clone(),
                    content_type: input.content_type.clone(),
                    content_disposition: input.content_disposition.clone(),
                    content_language: input.content_language.clone(),
                    cache_control: input.cache_control.clone(),
                    expires: input.expires.clone(),
                    website_redirect_location: input.website_redirect_location.clone(),
                }
                .to_json()?,
            )
        } else {
            src_metadata
        };
        // The source's checksums describe the same bytes, so they travel with the copy (as in s3s-fs).
        let mut record = src_record.unwrap_or_default();
        record.insert("e_tag".into(), serde_json::Value::String(src_etag.clone()));
        let modified = {
            let _w = self.stripe(&input.bucket, &input.key).write().await;
            self.commit(&input.bucket, &input.key, staged, NewRecords { metadata, record })
                .await?
        };
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(ETag::Strong(src_etag)),
                last_modified: Some(Timestamp::from(modified)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }
}

/// The records written with an object.
struct NewRecords {
    /// s3s-fs's metadata file (JSON), or none.
    metadata: Option<Vec<u8>>,
    /// s3s-fs's ETag and checksum record.
    record: serde_json::Map<String, serde_json::Value>,
}

fn record_etag(record: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    record.get("e_tag").and_then(|v| v.as_str()).map(str::to_string)
}

/// s3s-fs's record layout: `e_tag` and one `checksum_ALG` field per stored checksum.
fn record_with(e_tag: &str, checksum: &Checksum) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("e_tag".into(), e_tag.into());
    for (field, v) in [
        ("checksum_crc32", &checksum.checksum_crc32),
        ("checksum_crc32c", &checksum.checksum_crc32c),
        ("checksum_sha1", &checksum.checksum_sha1),
        ("checksum_sha256", &checksum.checksum_sha256),
        ("checksum_crc64nvme", &checksum.checksum_crc64nvme),
    ] {
        if let Some(v) = v {
            m.insert(field.into(), v.clone().into());
        }
    }
    m
}

/// The headers stored with an object, in s3s-fs's metadata file layout.
struct Attributes {
    metadata: Option<Metadata>,
    content_encoding: Option<String>,
    content_type: Option<String>,
    content_disposition: Option<String>,
    content_language: Option<String>,
    cache_control: Option<String>,
    expires: Option<Timestamp>,
    website_redirect_location: Option<String>,
}

impl Attributes {
    fn to_json(&self) -> S3Result<Vec<u8>> {
        let mut m = serde_json::Map::new();
        if let Some(meta) = &self.metadata {
            let user: serde_json::Map<String, serde_json::Value> =
                meta.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
            m.insert("user_metadata".into(), user.into());
        }
        let expires = match &self.expires {
            None => None,
            Some(ts) => {
                let mut buf = Vec::new();
                ts.format(TimestampFormat::DateTime, &mut buf)
                    .ok()
                    .map(|()| String::from_utf8_lossy(&buf).into_owned())
            }
        };
        for (field, v) in [
            ("content_encoding", &self.content_encoding),
            ("content_type", &self.content_type),
            ("content_disposition", &self.content_disposition),
            ("content_language", &self.content_language),
            ("cache_control", &self.cache_control),
            ("expires", &expires),
            ("website_redirect_location", &self.website_redirect_location),
        ] {
            if let Some(v) = v {
                m.insert(field.into(), v.clone().into());
            }
        }
        serde_json::to_vec(&m).map_err(|e| s3_error!(InternalError, "cannot encode the object metadata: {e}"))
    }
}

/// CopyObject's conditions on the source, with S3's precedence (If-Match over If-Unmodified-Since, If-None-Match over
/// If-Modified-Since).
fn copy_conditions(input: &CopyObjectInput, src_etag: &str, src_modified: Timestamp) -> S3Result<()> {
    let src = ETag::Strong(src_etag.to_string());
    let failed = |what: &str| s3_error!(PreconditionFailed, "the copy source does not satisfy {what}");
    if let Some(cond) = &input.copy_source_if_match {
        if !cond.as_etag().is_none_or(|e| src.strong_cmp(e)) {
            return Err(failed("x-amz-copy-source-if-match"));
        }
    } else if let Some(t) = &input.copy_source_if_unmodified_since
        && src_modified > *t
    {
        return Err(failed("x-amz-copy-source-if-unmodified-since"));
    }
    if let Some(cond) = &input.copy_source_if_none_match {
        if cond.as_etag().is_none_or(|e| src.weak_cmp(e)) {
            return Err(failed("x-amz-copy-source-if-none-match"));
        }
    } else if let Some(t) = &input.copy_source_if_modified_since
        && src_modified <= *t
    {
        return Err(failed("x-amz-copy-source-if-modified-since"));
    }
    Ok(())
}

/// A part's record: the 16 MD5 digest bytes, its size (8 bytes, little-endian), then the checksums the client sent
/// with it and the store verified (s3s-fs's record layout as JSON, `checksum_ALG` fields; nothing when there were
/// none). Records of older versions end after the size.
fn part_record(md5: &[u8; 16], size: u64, checksum: &Checksum) -> Vec<u8> {
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(md5);
    r.extend_from_slice(&size.to_le_bytes());
    let mut sums = record_with("", checksum);
    sums.remove("e_tag");
    if !sums.is_empty() {
        // A map of strings always encodes.
        r.extend_from_slice(&serde_json::to_vec(&sums).unwrap_or_default());
    }
    r
}

/// What a part's record says.
struct PartRecord {
    md5: [u8; 16],
    size: u64,
    checksum: Checksum,
}

fn parse_part_record(b: &[u8]) -> Option<PartRecord> {
    let md5 = <[u8; 16]>::try_from(b.get(..16)?).ok()?;
    let size = u64::from_le_bytes(<[u8; 8]>::try_from(b.get(16..24)?).ok()?);
    let mut checksum = Checksum::default();
    let rest = b.get(24..)?;
    if !rest.is_empty() {
        let sums: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(rest).ok()?;
        let get = |f: &str| sums.get(f).and_then(|v| v.as_str()).map(str::to_string);
        checksum.checksum_crc32 = get("checksum_crc32");
        checksum.checksum_crc32c = get("checksum_crc32c");
        checksum.checksum_sha1 = get("checksum_sha1");
        checksum.checksum_sha256 = get("checksum_sha256");
        checksum.checksum_crc64nvme = get("checksum_crc64nvme");
    }
    Some(PartRecord { md5, size, checksum })
}

/// Reads `f` to its end, returning its MD5 and appending its bytes to `copy_to` when given.
async fn md5_of(f: &mut tokio::fs::File, path: &Path, mut copy_to: Option<&mut Staged>) -> S3Result<[u8; 16]> {
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).await.map_err(|e| io_error("reading", path, e))?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        if let Some(s) = copy_to.as_deref_mut() {
            s.write(&buf[..n]).await?;
        }
    }
    Ok(md5.finalize())
}

/// Operations s3s-fs does right, passed through unchanged (the `async_trait` signature, written out so this crate
/// needs no proc-macro for it).
macro_rules! delegate {
    ($($op:ident: $input:ident -> $output:ident;)*) => {$(
        fn $op<'a, 'b>(&'a self, req: S3Request<$input>) -> Fut<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            self.fs.$op(req)
        }
    )*};
}

/// Operations that change state, run [`detached`] on a clone of the store, with the body that makes them durable
/// before the answer.
macro_rules! detach {
    ($($op:ident: $input:ident -> $output:ident = |$s:ident, $req:ident| $body:expr;)*) => {$(
        fn $op<'a, 'b>(&'a self, $req: S3Request<$input>) -> Fut<'b, $output>
        where
            'a: 'b,
            Self: 'b,
        {
            let $s = self.clone();
            Box::pin(detached(async move { $body }))
        }
    )*};
}

impl S3 for Store {
    delegate! {
        get_bucket_location: GetBucketLocationInput -> GetBucketLocationOutput;
        head_bucket: HeadBucketInput -> HeadBucketOutput;
        list_buckets: ListBucketsInput -> ListBucketsOutput;
        list_objects: ListObjectsInput -> ListObjectsOutput;
        list_objects_v2: ListObjectsV2Input -> ListObjectsV2Output;
    }

    detach! {
        create_bucket: CreateBucketInput -> CreateBucketOutput = |s, req| {
            let out = s.fs.create_bucket(req).await?;
            sync_dir(&s.root).await?;
            Ok(out)
        };
        delete_bucket: DeleteBucketInput -> DeleteBucketOutput = |s, req| {
            let out = s.fs.delete_bucket(req).await?;
            sync_dir(&s.root).await?;
            Ok(out)
        };
        delete_object: DeleteObjectInput -> DeleteObjectOutput = |s, req| s.delete(req).await;
        delete_objects: DeleteObjectsInput -> DeleteObjectsOutput = |s, req| s.delete_many(req).await;
        abort_multipart_upload: AbortMultipartUploadInput -> AbortMultipartUploadOutput = |s, req| {
            let out = s.fs.abort_multipart_upload(req).await?;
            sync_dir(&s.root).await?;
            Ok(out)
        };
        put_object: PutObjectInput -> PutObjectOutput = |s, req| s.put(req).await;
        copy_object: CopyObjectInput -> CopyObjectOutput = |s, req| s.copy(req).await;
        upload_part: UploadPartInput -> UploadPartOutput = |s, req| s.upload_part_impl(req).await;
        complete_multipart_upload: CompleteMultipartUploadInput -> CompleteMultipartUploadOutput =
            |s, req| s.complete(req).await;
        create_multipart_upload: CreateMultipartUploadInput -> CreateMultipartUploadOutput = |s, req| {
            // s3s-fs creates the upload whether or not the bucket exists.
            s.bucket_dir(&req.input.bucket)?;
            let (bucket, key) = (req.input.bucket.clone(), req.input.key.clone());
            s.object_path(&bucket, &key)?;
            let out = s.fs.create_multipart_upload(req).await?;
            // s3s-fs writes the upload's records without syncing them: an acknowledged upload must survive a crash.
            if let Some(id) = out.output.upload_id.as_deref().and_then(|u| uuid::Uuid::parse_str(u).ok()) {
                sync_file(&s.upload_info_path(&id)).await?;
                let metadata = s.metadata_path(&bucket, &key, Some(&id));
                if metadata.is_file() {
                    sync_file(&metadata).await?;
                }
            }
            sync_dir(&s.root).await?;
            Ok(out)
        };
    }

    fn list_parts<'a, 'b>(&'a self, req: S3Request<ListPartsInput>) -> Fut<'b, ListPartsOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(self.list_parts_impl(req))
    }

    fn get_object<'a, 'b>(&'a self, req: S3Request<GetObjectInput>) -> Fut<'b, GetObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            // s3s-fs opens the file and reads its records before it returns; the body streams from the open file
            // after the lock is released.
            let _r = self.stripe(&req.input.bucket, &req.input.key).read().await;
            self.fs.get_object(req).await
        })
    }

    fn head_object<'a, 'b>(&'a self, req: S3Request<HeadObjectInput>) -> Fut<'b, HeadObjectOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let _r = self.stripe(&req.input.bucket, &req.input.key).read().await;
            self.fs.head_object(req).await
        })
    }

    fn upload_part_copy<'a, 'b>(&'a self, req: S3Request<UploadPartCopyInput>) -> Fut<'b, UploadPartCopyOutput>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            // s3s-fs writes the part itself: drop any MD5 record of an earlier part with this number first, so that
            // completing the upload hashes the copied data.
            if let Ok(id) = uuid::Uuid::parse_str(&req.input.upload_id) {
                remove_if_present(&self.part_md5_path(&id, req.input.part_number)).await?;
            }
            self.fs.upload_part_copy(req).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3::write::synced;

    fn request<T>(input: T) -> S3Request<T> {
        S3Request {
            input,
            method: http::Method::PUT,
            uri: http::Uri::from_static("/"),
            headers: http::HeaderMap::new(),
            extensions: http::Extensions::new(),
            credentials: None,
            region: None,
            service: None,
            trailing_headers: None,
        }
    }

    fn put(bucket: &str, key: &str, data: &'static [u8]) -> S3Request<PutObjectInput> {
        let body = s3s::Body::from(bytes::Bytes::from_static(data));
        let mut req = request(
            PutObjectInput::builder()
                .bucket(bucket.into())
                .key(key.into())
                .body(Some(StreamingBlob::from(body)))
                .build()
                .expect("input"),
        );
        req.headers
            .insert("content-length", data.len().to_string().parse().expect("value"));
        req
    }

    /// CreateBucket and DeleteObject answer only once the directory entries they create or remove are synced: a
    /// power loss after the answer cannot undo them.
    #[tokio::test(flavor = "current_thread")]
    async fn bucket_creation_and_deletes_are_synced_before_the_answer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("root");
        let store = Store::new(&root).expect("store");
        synced::take_under(&root);

        store
            .create_bucket(request(
                CreateBucketInput::builder().bucket("b".into()).build().expect("input"),
            ))
            .await
            .expect("create bucket");
        assert!(
            synced::take_under(&root).contains(&root),
            "CreateBucket answered before the new bucket directory's entry was synced"
        );

        store.put_object(put("b", "dir/k", b"bytes")).await.expect("put");
        synced::take_under(&root);
        store
            .delete_object(request(
                DeleteObjectInput::builder()
                    .bucket("b".into())
                    .key("dir/k".into())
                    .build()
                    .expect("input"),
            ))
            .await
            .expect("delete");
        let after_delete = synced::take_under(&root);
        assert!(
            after_delete.contains(&root.join("b").join("dir")),
            "DeleteObject answered before the removal was synced: {after_delete:?}"
        );
        assert!(
            !root.join(".bucket-Yg.object-ZGlyL2s.internal.json").exists(),
            "the deleted object's record is left behind"
        );

        store.put_object(put("b", "k2", b"more")).await.expect("put");
        synced::take_under(&root);
        store
            .delete_objects(request(
                DeleteObjectsInput::builder()
                    .bucket("b".into())
                    .delete(Delete {
                        objects: vec![ObjectIdentifier {
                            key: "k2".into(),
                            ..Default::default()
                        }],
                        quiet: None,
                    })
                    .build()
                    .expect("input"),
            ))
            .await
            .expect("delete objects");
        assert!(
            synced::take_under(&root).contains(&root.join("b")),
            "DeleteObjects answered before the removal was synced"
        );
    }
}

//! S3 on the shared port: `s3s` (protocol, SigV4 incl. presigned and aws-chunked uploads with trailing checksums) over
//! `s3s-fs` (objects as files under `data_dir/s3`, written to a temporary file and renamed into place).
//!
//! Around it: keys that could leave the bucket directory are refused before anything runs; writes to one key are
//! serialised (s3s-fs renames the data and then writes the checksum record, so two racing writers could pair one's data
//! with the other's checksum); before an overwrite the old checksum record is removed, so a crash between the data
//! rename and the new record leaves an object without a stored checksum rather than with a wrong one; and after every
//! successful write (PutObject, CopyObject, CompleteMultipartUpload) the object file and its directory are fsynced
//! before the client gets its answer, so an acknowledged object survives a crash.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use http::{Method, Request, StatusCode};

use crate::{Credentials, Error};

/// The S3 half of the server.
#[derive(Clone)]
pub(crate) struct S3 {
    service: s3s::service::S3Service,
    root: PathBuf,
    /// Striped per-key write locks.
    locks: std::sync::Arc<Vec<tokio::sync::Mutex<()>>>,
}

const LOCK_STRIPES: usize = 64;

impl S3 {
    pub(crate) fn new(root: &Path, creds: &Credentials) -> Result<S3, Error> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let fs = s3s_fs::FileSystem::new(root).map_err(|e| Error::Corrupt {
            path: root.to_path_buf(),
            message: format!("cannot open the object store: {e:?}"),
        })?;
        let mut b = s3s::service::S3ServiceBuilder::new(fs);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
        ));
        let locks = std::sync::Arc::new((0..LOCK_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect());
        Ok(S3 {
            service: b.build(),
            root: root.to_path_buf(),
            locks,
        })
    }

    /// Root directory of the buckets.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Serves one S3 request.
    pub(crate) async fn call(&self, req: Request<Body>) -> Response {
        let target = match check_target(req.uri().path(), req.headers().get("x-amz-copy-source")) {
            Ok(t) => t,
            Err(msg) => return s3_error(StatusCode::BAD_REQUEST, "InvalidArgument", &msg),
        };
        let method = req.method().clone();
        let query = req.uri().query().unwrap_or("").to_string();
        let writes = target
            .as_ref()
            .filter(|(_, key)| writes_object(&method, &query) && !key.ends_with('/'));
        let _guard = match writes {
            Some((bucket, key)) => {
                use std::hash::{Hash as _, Hasher as _};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                (bucket, key).hash(&mut h);
                let stripe = (h.finish() % LOCK_STRIPES as u64) as usize;
                let guard = self.locks[stripe].lock().await;
                let _ = tokio::fs::remove_file(self.root.join(checksum_record_name(bucket, key))).await;
                Some(guard)
            }
            None => None,
        };
        let req = req.map(s3s::Body::http_body_unsync);
        let resp = match self.service.call(req).await {
            Ok(r) => r.map(Body::new),
            Err(e) => {
                tracing::warn!(error = ?e, "s3 request failed");
                return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error");
            }
        };
        if resp.status().is_success()
            && let Some((bucket, key)) = target
            && writes_object(&method, &query)
            && !key.ends_with('/')
        {
            let path = self.root.join(&bucket).join(&key);
            let synced = tokio::task::spawn_blocking(move || sync_path(&path)).await;
            if !matches!(synced, Ok(Ok(()))) {
                tracing::error!(bucket, key, ?synced, "fsync after write failed");
                return s3_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "InternalError",
                    "could not persist the object",
                );
            }
        }
        resp
    }
}

/// The file where s3s-fs 0.14.1 keeps an object's ETag and checksums (its private naming, pinned by the version).
fn checksum_record_name(bucket: &str, key: &str) -> String {
    use base64::Engine as _;
    let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(".bucket-{}.object-{}.internal.json", enc(bucket), enc(key))
}

/// Does this request (to an object path) create or replace the object?
fn writes_object(method: &Method, query: &str) -> bool {
    let has = |k: &str| query.split('&').any(|p| p == k || p.starts_with(&format!("{k}=")));
    (*method == Method::PUT && !has("partNumber") && !has("tagging") && !has("acl"))
        || (*method == Method::POST && has("uploadId"))
}

fn sync_path(path: &Path) -> std::io::Result<()> {
    std::fs::File::open(path)?.sync_all()?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Splits a path-style S3 path into (bucket, key) and refuses keys that could escape the bucket directory.
pub(crate) fn check_target(
    raw_path: &str,
    copy_source: Option<&http::HeaderValue>,
) -> Result<Option<(String, String)>, String> {
    let decoded = percent_encoding::percent_decode_str(raw_path)
        .decode_utf8()
        .map_err(|_| format!("object path {raw_path:?} is not valid UTF-8 after percent-decoding"))?;
    if let Some(src) = copy_source {
        let src = src.to_str().map_err(|_| "x-amz-copy-source is not ASCII".to_string())?;
        let src = src.split('?').next().unwrap_or("");
        let src = percent_encoding::percent_decode_str(src).decode_utf8_lossy();
        check_key(src.trim_start_matches('/'))?;
    }
    let rest = decoded.strip_prefix('/').unwrap_or(&decoded);
    let Some((bucket, key)) = rest.split_once('/') else {
        return Ok(None);
    };
    if key.is_empty() {
        return Ok(None);
    }
    check_key(key)?;
    Ok(Some((bucket.to_string(), key.to_string())))
}

fn check_key(key: &str) -> Result<(), String> {
    if key.contains('\0') {
        return Err(format!("object key {key:?} contains NUL: keys must not"));
    }
    if key.starts_with('/') || key.contains('\\') {
        return Err(format!(
            "object key {key:?} is absolute or contains a backslash: expected a relative key"
        ));
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!(
            "object key {key:?} has a '.' or '..' segment: keys must stay inside the bucket"
        ));
    }
    Ok(())
}

fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{}</Message></Error>",
        message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
    );
    (status, [(http::header::CONTENT_TYPE, "application/xml")], xml).into_response()
}

//! S3 on the shared port: `s3s` (protocol, SigV4 incl. presigned and aws-chunked uploads with trailing checksums) over
//! [`store::Store`], which serves reads from `s3s-fs` (objects as files under `data_dir/s3`) and writes objects through
//! its own durable, checksum-verified path ([`write`]).
//!
//! Keys that could leave the bucket directory are refused here before anything runs (and again by the store).

mod store;
mod write;

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::response::{IntoResponse as _, Response};
use http::{Request, StatusCode};

use crate::{Credentials, Error};

/// The S3 half of the server.
#[derive(Clone)]
pub(crate) struct S3 {
    service: s3s::service::S3Service,
    root: PathBuf,
}

impl S3 {
    pub(crate) fn new(root: &Path, creds: &Credentials) -> Result<S3, Error> {
        std::fs::create_dir_all(root).map_err(|source| Error::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let store = store::Store::new(root).map_err(|message| Error::Corrupt {
            path: root.to_path_buf(),
            message,
        })?;
        let mut b = s3s::service::S3ServiceBuilder::new(store);
        b.set_auth(s3s::auth::SimpleAuth::from_single(
            creds.access_key_id.clone(),
            creds.secret_access_key.clone(),
        ));
        Ok(S3 {
            service: b.build(),
            root: root.to_path_buf(),
        })
    }

    /// Root directory of the buckets.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Serves one S3 request.
    pub(crate) async fn call(&self, req: Request<Body>) -> Response {
        if let Err(msg) = check_target(req.uri().path(), req.headers().get("x-amz-copy-source")) {
            return s3_error(StatusCode::BAD_REQUEST, "InvalidArgument", &msg);
        }
        let req = req.map(s3s::Body::http_body_unsync);
        match self.service.call(req).await {
            Ok(r) => r.map(Body::new),
            Err(e) => {
                tracing::warn!(error = ?e, "s3 request failed");
                s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "internal error")
            }
        }
    }
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

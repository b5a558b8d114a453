//! A Hugging Face hub on loopback for download tests: the two endpoints `hf-hub` and `huggingface_hub` use — the
//! repository listing (`GET /api/models/{org}/{name}/revision/{rev}`) and file resolution
//! (`GET /{org}/{name}/resolve/{rev}/{file}`, ranged, with `ETag`/`X-Linked-Etag`, `X-Repo-Commit` and
//! `Content-Range` as the hub sends them) — serving repositories made from local folders.
//!
//! It counts the bytes it serves per file and can be told to fail a file's ranges past an offset, so tests can prove
//! that a download resumes instead of starting over. It runs on a thread of its own, so synchronous tests (the CLI's)
//! can use it as well as async ones.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest as _, Sha256};

/// One repository on the fake hub.
#[derive(Debug, Clone)]
pub struct HubRepo {
    /// The commit every revision of this repository resolves to (40 hex digits).
    pub commit: String,
    /// Files by repository path.
    pub files: BTreeMap<String, Vec<u8>>,
    /// A token the repository requires (`Authorization: Bearer …`), as for a gated or private repository.
    pub token: Option<String>,
}

impl HubRepo {
    /// A repository holding every file of `dir` (not recursive), plus a `README.md` and `.gitattributes` as real
    /// repositories have, which an import does not need.
    pub fn from_dir(dir: &Path) -> std::io::Result<HubRepo> {
        let mut files = BTreeMap::new();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            if e.file_type()?.is_file() {
                files.insert(e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path())?);
            }
        }
        files.insert("README.md".into(), b"# a test model\n".to_vec());
        files.insert(
            ".gitattributes".into(),
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec(),
        );
        // The commit names the content, as a git commit would.
        let mut h = Sha256::new();
        for (name, data) in &files {
            h.update(name.as_bytes());
            h.update(Sha256::digest(data));
        }
        let commit = hex(&h.finalize())[..40].to_string();
        Ok(HubRepo {
            commit,
            files,
            token: None,
        })
    }
}

/// A file's ranges from `offset` on fail (HTTP 500) while `remaining` is above zero.
#[derive(Debug, Clone)]
struct Fault {
    repo: String,
    file: String,
    offset: u64,
    remaining: usize,
}

#[derive(Debug, Default)]
struct Inner {
    repos: BTreeMap<String, HubRepo>,
    served: BTreeMap<String, u64>,
    requests: Vec<String>,
    faults: Vec<Fault>,
    /// `repo/file` whose served bytes are altered (the ETag still names the original content).
    corrupt: Vec<String>,
}

type Shared = Arc<Mutex<Inner>>;

/// A running fake hub; stops when dropped.
pub struct FakeHub {
    addr: SocketAddr,
    inner: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FakeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHub")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeHub {
    /// Starts a hub on a free loopback port serving `repos` (`org/name` → repository).
    pub fn start(repos: impl IntoIterator<Item = (String, HubRepo)>) -> FakeHub {
        let inner: Shared = Arc::new(Mutex::new(Inner {
            repos: repos.into_iter().collect(),
            ..Inner::default()
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for the fake hub");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new()
            .route("/api/models/{org}/{name}/revision/{rev}", get(info))
            .route("/{org}/{name}/resolve/{rev}/{*file}", get(resolve))
            .with_state(inner.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("fake hub runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        FakeHub {
            addr,
            inner,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// The base URL, as `HF_ENDPOINT` takes it.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes of `repo`'s `file` served so far (ranged responses count what they sent).
    pub fn served(&self, repo: &str, file: &str) -> u64 {
        self.lock().served.get(&format!("{repo}/{file}")).copied().unwrap_or(0)
    }

    /// Every request so far, as `METHOD path`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Makes the next `times` ranged requests for `repo`'s `file` that start at or after `offset` fail with HTTP 500.
    pub fn fail_ranges_from(&self, repo: &str, file: &str, offset: u64, times: usize) {
        self.lock().faults.push(Fault {
            repo: repo.into(),
            file: file.into(),
            offset,
            remaining: times,
        });
    }

    /// Serves `repo`'s `file` with one byte changed, under the original's ETag (a corrupted transfer or cache).
    pub fn corrupt(&self, repo: &str, file: &str) {
        self.lock().corrupt.push(format!("{repo}/{file}"));
    }

    /// Drops every injected failure.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// Lets `repo` be read only with this token (a gated or private repository).
    pub fn require_token(&self, repo: &str, token: &str) {
        if let Some(r) = self.lock().repos.get_mut(repo) {
            r.token = Some(token.to_string());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn authorised(repo: &HubRepo, headers: &HeaderMap) -> bool {
    match &repo.token {
        None => true,
        Some(t) => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {t}")),
    }
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [("x-error-code", "RepoNotFound")],
        axum::Json(serde_json::json!({ "error": what })),
    )
        .into_response()
}

fn unauthorised() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("x-error-code", "GatedRepo")],
        axum::Json(serde_json::json!({ "error": "Access to this repository is restricted." })),
    )
        .into_response()
}

/// The repository `id` at `rev` as this request may see it, or the hub's answer when it may not: 404 for an unknown
/// repository, 401 without its token, 404 for a revision other than `main` or its commit.
fn visible_repo<'a>(g: &'a Inner, id: &str, rev: &str, headers: &HeaderMap) -> Result<&'a HubRepo, Box<Response>> {
    let Some(repo) = g.repos.get(id) else {
        return Err(Box::new(not_found("Repository not found")));
    };
    if !authorised(repo, headers) {
        return Err(Box::new(unauthorised()));
    }
    if rev != "main" && rev != repo.commit {
        return Err(Box::new(not_found(&format!("Invalid rev id: {rev}"))));
    }
    Ok(repo)
}

async fn info(
    State(inner): State<Shared>,
    UrlPath((org, name, rev)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{org}/{name}");
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    g.requests.push(format!("GET /api/models/{id}/revision/{rev}"));
    let repo = match visible_repo(&g, &id, &rev, &headers) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let siblings: Vec<_> = repo
        .files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    axum::Json(serde_json::json!({
        "id": id,
        "modelId": id,
        "sha": repo.commit,
        "private": repo.token.is_some(),
        "siblings": siblings,
    }))
    .into_response()
}

/// Parses `bytes=a-b` (the only form `hf-hub` sends); an end past the file is clamped, as HTTP allows.
fn range(headers: &HeaderMap, len: u64) -> Option<(u64, u64)> {
    let v = headers.get(header::RANGE)?.to_str().ok()?;
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.parse().ok()?;
    let end: u64 = if b.is_empty() {
        len.saturating_sub(1)
    } else {
        b.parse().ok()?
    };
    (start < len && start <= end).then_some((start, end.min(len - 1)))
}

async fn resolve(
    State(inner): State<Shared>,
    UrlPath((org, name, rev, file)): UrlPath<(String, String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let id = format!("{org}/{name}");
    let mut g = inner.lock().unwrap_or_else(|p| p.into_inner());
    let r = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    g.requests.push(format!("GET /{id}/resolve/{rev}/{file} {r}"));
    let repo = match visible_repo(&g, &id, &rev, &headers) {
        Ok(r) => r,
        Err(refused) => return *refused,
    };
    let Some(data) = repo.files.get(&file) else {
        return (
            StatusCode::NOT_FOUND,
            [("x-error-code", "EntryNotFound")],
            "Entry not found",
        )
            .into_response();
    };
    let mut served = data.clone();
    if g.corrupt.contains(&format!("{id}/{file}")) && !served.is_empty() {
        let mid = served.len() / 2;
        served[mid] ^= 0x55;
    }
    let commit = repo.commit.clone();
    let len = data.len() as u64;
    // Large files live in LFS: the hub names them by their SHA-256 in `X-Linked-Etag`; small ones by a git hash.
    let sha = hex(&Sha256::digest(data));
    let data = served;
    let lfs = file.ends_with(".safetensors");
    let mut h = HeaderMap::new();
    h.insert("x-repo-commit", HeaderValue::from_str(&commit).expect("ascii"));
    if lfs {
        h.insert(
            "x-linked-etag",
            HeaderValue::from_str(&format!("\"{sha}\"")).expect("ascii"),
        );
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&format!("\"{}\"", &sha[..40])).expect("ascii"),
        );
    } else {
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&format!("\"{}\"", &sha[24..])).expect("ascii"),
        );
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    let Some((start, end)) = range(&headers, len) else {
        *g.served.entry(format!("{id}/{file}")).or_default() += len;
        return (StatusCode::OK, h, data).into_response();
    };
    if let Some(f) = g
        .faults
        .iter_mut()
        .find(|f| f.repo == id && f.file == file && f.remaining > 0 && start >= f.offset)
    {
        f.remaining -= 1;
        return (StatusCode::INTERNAL_SERVER_ERROR, "injected failure").into_response();
    }
    let body = data[start as usize..=end as usize].to_vec();
    *g.served.entry(format!("{id}/{file}")).or_default() += body.len() as u64;
    h.insert(
        header::CONTENT_RANGE,
        HeaderValue::from_str(&format!("bytes {start}-{end}/{len}")).expect("ascii"),
    );
    (StatusCode::PARTIAL_CONTENT, h, body).into_response()
}

//! Hugging Face repo ids as import sources: `org/name[@revision]`, downloaded with `hf-hub` into the standard cache
//! layout (`<cache>/models--org--name/{blobs,snapshots/<commit>,refs/<revision>}`), fetching only the files an import
//! needs (the same rule as `model_folder::import_files`), resumable (`hf-hub` keeps a `.sync.part` file with its
//! committed offset), and reusing files already in the snapshot.
//!
//! The caller resolves the environment (`HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN`) into [`HubSettings`]; this module
//! never reads it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hf_hub::api::tokio::{ApiBuilder, ApiError, Progress as HubProgress};
use hf_hub::{Cache, Repo, RepoType};
use tokio::sync::mpsc;

use crate::Error;
use crate::progress::{Event, Progress};

/// The public hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// A repository on the hub, at a revision (branch, tag or commit; `main` when none is pinned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSource {
    /// `org/name`.
    pub repo_id: String,
    /// The revision asked for, `None` for `main`.
    pub revision: Option<String>,
}

impl HubSource {
    /// Parses `org/name` or `org/name@revision`; `None` when the text is not of that form (a path, say).
    pub fn parse(s: &str) -> Option<HubSource> {
        let (id, revision) = match s.split_once('@') {
            Some((id, rev)) if !rev.is_empty() => (id, Some(rev.to_string())),
            Some(_) => return None,
            None => (s, None),
        };
        let mut parts = id.split('/');
        let (Some(org), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return None;
        };
        // The hub's rule for both halves: letters, digits, `-`, `_`, `.`; not starting with `.` or `-`; at most 96.
        let ok = |p: &str| {
            !p.is_empty()
                && p.len() <= 96
                && !p.starts_with(['.', '-'])
                && !p.contains("..")
                && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        };
        (ok(org) && ok(name)).then(|| HubSource {
            repo_id: id.to_string(),
            revision,
        })
    }

    /// The revision to fetch.
    pub fn revision(&self) -> &str {
        self.revision.as_deref().unwrap_or("main")
    }
}

impl std::fmt::Display for HubSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.revision {
            Some(r) => write!(f, "{}@{r}", self.repo_id),
            None => f.write_str(&self.repo_id),
        }
    }
}

/// Where and how to download.
#[derive(Debug, Clone)]
pub struct HubSettings {
    /// The hub cache (`$HF_HOME/hub`, by default `~/.cache/huggingface/hub`).
    pub cache_dir: PathBuf,
    /// The hub's base URL (`HF_ENDPOINT`), without a trailing `/`.
    pub endpoint: String,
    /// A user access token (`HF_TOKEN`), sent as `Authorization: Bearer`. `None` falls back to the `token` file
    /// next to the cache, as `huggingface_hub` writes it on login.
    pub token: Option<String>,
    /// Files downloaded at once.
    pub max_files: usize,
    /// Size of one ranged request; also the granularity of resume.
    pub chunk_size: usize,
}

impl HubSettings {
    /// Settings for the public hub with this cache and token: 4 files at once, 10 MB chunks.
    pub fn new(cache_dir: PathBuf, token: Option<String>) -> HubSettings {
        HubSettings {
            cache_dir,
            endpoint: DEFAULT_ENDPOINT.to_string(),
            token,
            max_files: 4,
            chunk_size: 10_000_000,
        }
    }
}

/// A downloaded snapshot.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// The snapshot folder (`<cache>/models--org--name/snapshots/<commit>`): the model folder to import.
    pub dir: PathBuf,
    /// The commit the revision resolved to.
    pub commit: String,
    /// The files fetched or found, sorted.
    pub files: Vec<String>,
    /// Files of the repository left out (not needed by an import).
    pub skipped: Vec<String>,
    /// Files already in the snapshot, not downloaded again.
    pub cached: usize,
    /// Bytes received in this run.
    pub bytes_downloaded: u64,
}

/// Forwards `hf-hub`'s progress callbacks (which must be `'static`) to the caller through a channel.
#[derive(Clone)]
struct Forward {
    file: String,
    tx: mpsc::UnboundedSender<Event>,
    bytes: Arc<AtomicU64>,
    /// hf-hub's first `update` after `init` reports what an earlier run already committed (resumed, not received);
    /// it comes before the per-chunk clones are made, so they start with this cleared.
    resumed_pending: bool,
}

impl HubProgress for Forward {
    async fn init(&mut self, size: usize, _filename: &str) {
        let _ = self.tx.send(Event::DownloadStarted {
            file: self.file.clone(),
            bytes: size as u64,
        });
    }
    async fn update(&mut self, size: usize) {
        if !std::mem::take(&mut self.resumed_pending) {
            self.bytes.fetch_add(size as u64, Ordering::Relaxed);
        }
        let _ = self.tx.send(Event::Downloaded {
            file: self.file.clone(),
            bytes: size as u64,
        });
    }
    async fn finish(&mut self) {}
}

/// Lists the repository at its revision, then downloads the files an import needs into the cache (files already in
/// the snapshot are reused; a file cut off half-way continues from its last committed chunk).
#[tracing::instrument(skip_all, fields(repo = %source))]
pub async fn download(
    source: &HubSource,
    settings: &HubSettings,
    progress: &dyn Progress,
) -> Result<Downloaded, Error> {
    let cache = Cache::new(settings.cache_dir.clone());
    let mut builder = ApiBuilder::from_cache(cache)
        .with_endpoint(settings.endpoint.trim_end_matches('/').to_string())
        .with_progress(false)
        .with_max_files(settings.max_files.max(1))
        .with_chunk_size(Some(settings.chunk_size.max(1)));
    if let Some(t) = &settings.token {
        builder = builder.with_token(Some(t.clone()));
    }
    let api = builder.build().map_err(|e| hub_error(source, None, e))?;
    let repo = Repo::with_revision(source.repo_id.clone(), RepoType::Model, source.revision().to_string());
    let folder = settings.cache_dir.join(repo.folder_name());
    let api_repo = api.repo(repo);

    let info = api_repo.info().await.map_err(|e| hub_error(source, None, e))?;
    let commit = info.sha.clone();
    let (files, skipped): (Vec<String>, Vec<String>) = info
        .siblings
        .into_iter()
        .map(|s| s.rfilename)
        .partition(|n| model_folder::is_import_file(n));
    if !files.iter().any(|f| f == "config.json") {
        return Err(Error::Hub {
            repo: source.to_string(),
            file: Some("config.json".into()),
            message: format!(
                "the repository has no config.json at {} ({} files: {}); it is not a Hugging Face transformers model",
                source.revision(),
                files.len() + skipped.len(),
                preview(files.iter().chain(&skipped))
            ),
        });
    }
    let dir = folder.join("snapshots").join(&commit);
    tracing::info!(commit = %commit, files = files.len(), skipped = skipped.len(), "listed repository");

    let bytes = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut cached = 0;
    let mut todo = Vec::new();
    for f in &files {
        if dir.join(f).is_file() {
            cached += 1;
        } else {
            todo.push(f.clone());
        }
    }
    let gets: Vec<_> = todo
        .iter()
        .map(|f| {
            let fwd = Forward {
                file: f.clone(),
                tx: tx.clone(),
                bytes: bytes.clone(),
                resumed_pending: true,
            };
            let api_repo = &api_repo;
            async move {
                let path = api_repo
                    .download_with_progress(f, fwd)
                    .await
                    .map_err(|e| hub_error(source, Some(f), e))?;
                Ok::<_, Error>((f, path))
            }
        })
        .collect();
    // Only the forwarders hold senders now: the channel closes when the last download ends.
    drop(tx);
    use futures::{StreamExt as _, TryStreamExt as _};
    let fetch = futures::stream::iter(gets)
        .buffer_unordered(settings.max_files.max(1))
        .try_collect::<Vec<_>>();
    tokio::pin!(fetch);
    let fetched = loop {
        tokio::select! {
            r = &mut fetch => break r,
            Some(e) = rx.recv() => progress.event(e),
        }
    };
    while let Ok(e) = rx.try_recv() {
        progress.event(e);
    }
    let fetched = fetched?;
    for (f, path) in &fetched {
        // The pointer lands under the commit the file response named; it must be the one the listing named.
        if *path != dir.join(f) {
            return Err(Error::Hub {
                repo: source.to_string(),
                file: Some(f.to_string()),
                message: format!(
                    "the file came from another commit than the listing ({} instead of {commit}); the revision moved during the download, run again",
                    path.parent().map(|p| p.display().to_string()).unwrap_or_default()
                ),
            });
        }
    }
    // hf-hub does not check what it received. LFS files are named by their SHA-256 (the blob the pointer links to is
    // `blobs/<sha256>`): hash each fresh one and refuse a mismatch, so a corrupt download is never imported.
    for (f, path) in fetched {
        verify_lfs_blob(source, f, path).await?;
    }
    Ok(Downloaded {
        dir,
        commit,
        files,
        skipped,
        cached,
        bytes_downloaded: bytes.load(Ordering::Relaxed),
    })
}

/// Hashes an LFS blob and compares it with its name; on a mismatch removes the blob and its pointer.
async fn verify_lfs_blob(source: &HubSource, file: &str, pointer: PathBuf) -> Result<(), Error> {
    let Ok(target) = std::fs::read_link(&pointer) else {
        return Ok(()); // not a symlink (a filesystem without them): nothing names the content
    };
    let expected = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_string();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(()); // a git-hashed small file: the name is not a SHA-256 of the content
    }
    let blob = pointer.parent().map(|p| p.join(&target)).unwrap_or(target);
    let b = blob.clone();
    let actual = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        std::io::copy(&mut std::fs::File::open(&b)?, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await
    .map_err(|e| Error::Hub {
        repo: source.to_string(),
        file: Some(file.to_string()),
        message: format!("hashing the download failed: {e}"),
    })?
    .map_err(|e| Error::io(&blob, e))?;
    if actual != expected.to_ascii_lowercase() {
        let _ = std::fs::remove_file(&pointer);
        let _ = std::fs::remove_file(&blob);
        return Err(Error::Hub {
            repo: source.to_string(),
            file: Some(file.to_string()),
            message: format!(
                "the downloaded data has SHA-256 {actual}, but the hub names it {expected}; the corrupt copy was removed, run again"
            ),
        });
    }
    Ok(())
}

fn preview<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let v: Vec<&str> = names.take(5).map(String::as_str).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// One clear message per failure: a missing repo or revision, a refused token, or the transport's own error.
fn hub_error(source: &HubSource, file: Option<&str>, e: ApiError) -> Error {
    let status = match &e {
        ApiError::RequestError(r) => r.status().map(|s| s.as_u16()),
        _ => None,
    };
    let message = match (status, file) {
        (Some(404), None) => format!(
            "no such repository or revision `{}` (HTTP 404); check the id and the revision, and pass HF_TOKEN for a private or gated repository",
            source.revision()
        ),
        (Some(404), Some(_)) => "not found on the hub (HTTP 404)".into(),
        (Some(401 | 403), _) => format!(
            "access refused (HTTP {}); the repository is private or gated: accept its terms on the hub and set HF_TOKEN to a token that may read it",
            status.unwrap_or_default()
        ),
        _ => {
            let mut parts = vec![e.to_string()];
            let mut cur = std::error::Error::source(&e);
            while let Some(c) = cur {
                let t = c.to_string();
                if !parts.iter().any(|p| p.contains(&t)) {
                    parts.push(t);
                }
                cur = c.source();
            }
            parts.join(": ")
        }
    };
    Error::Hub {
        repo: source.to_string(),
        file: file.map(str::to_string),
        message,
    }
}

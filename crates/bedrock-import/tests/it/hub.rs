//! Downloading repo ids with `hf-hub` from a hub on loopback (`test_support::hub`): only the files an import needs,
//! the standard cache layout, reuse, pinned revisions, resume after a failure half-way, and clear errors.

use std::sync::{Arc, Mutex};

use bedrock_import::{Event, HubSettings, HubSource, download};
use test_support::hub::{FakeHub, HubRepo};

const REPO: &str = "acme/tiny-llama";

fn setup() -> (tempfile::TempDir, HubRepo, FakeHub) {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), test_support::Family::Llama).expect("tiny model");
    let repo = HubRepo::from_dir(model.path()).expect("repo");
    let hub = FakeHub::start([(REPO.to_string(), repo.clone())]);
    (model, repo, hub)
}

fn settings(hub: &FakeHub, cache: &std::path::Path) -> HubSettings {
    let mut s = HubSettings::new(cache.to_path_buf(), None);
    s.endpoint = hub.endpoint();
    s
}

fn src(s: &str) -> HubSource {
    HubSource::parse(s).unwrap_or_else(|| panic!("{s} parses as a repo id"))
}

#[tokio::test]
async fn downloads_only_what_an_import_needs_into_the_cache_layout_and_reuses_it() {
    let (_model, repo, hub) = setup();
    let cache = tempfile::tempdir().expect("cache");
    let events = Arc::new(Mutex::new(Vec::new()));
    let ev = events.clone();
    let record = move |e: Event| ev.lock().unwrap().push(e);
    let d = download(&src(REPO), &settings(&hub, cache.path()), &record)
        .await
        .expect("download");

    assert_eq!(d.commit, repo.commit);
    let snapshot = cache
        .path()
        .join("models--acme--tiny-llama/snapshots")
        .join(&repo.commit);
    assert_eq!(d.dir, snapshot);
    let refs = std::fs::read_to_string(cache.path().join("models--acme--tiny-llama/refs/main")).expect("refs/main");
    assert_eq!(refs.trim(), repo.commit);
    let wanted: Vec<String> = repo
        .files
        .keys()
        .filter(|f| !f.starts_with('.') && *f != "README.md")
        .cloned()
        .collect();
    assert_eq!(d.files, wanted);
    assert_eq!(d.skipped, vec![".gitattributes".to_string(), "README.md".to_string()]);
    for f in &wanted {
        assert_eq!(
            std::fs::read(snapshot.join(f)).expect("file in snapshot"),
            repo.files[f],
            "{f}"
        );
    }
    assert!(!snapshot.join("README.md").exists());
    assert_eq!(
        hub.served(REPO, "README.md"),
        0,
        "files an import does not need are not fetched"
    );
    let total: u64 = wanted.iter().map(|f| repo.files[f].len() as u64).sum();
    assert_eq!(d.bytes_downloaded, total);
    let started = events
        .lock()
        .unwrap()
        .iter()
        .filter(|e| matches!(e, Event::DownloadStarted { .. }))
        .count();
    assert_eq!(started, wanted.len(), "one DownloadStarted per file");

    // A second run finds everything in the snapshot and fetches nothing.
    let served_before: u64 = wanted.iter().map(|f| hub.served(REPO, f)).sum();
    let again = download(&src(REPO), &settings(&hub, cache.path()), &())
        .await
        .expect("second download");
    assert_eq!(again.cached, wanted.len());
    assert_eq!(again.bytes_downloaded, 0);
    let served_after: u64 = wanted.iter().map(|f| hub.served(REPO, f)).sum();
    assert_eq!(served_after, served_before, "nothing is downloaded twice");
}

#[tokio::test]
async fn a_download_cut_off_half_way_resumes_from_its_committed_chunks() {
    let (_model, repo, hub) = setup();
    let cache = tempfile::tempdir().expect("cache");
    let file = "model.safetensors";
    let len = repo.files[file].len() as u64;
    assert!(
        len > 64 * 1024,
        "the tiny model's weights are big enough to chunk ({len} bytes)"
    );
    let chunk = (len / 8) as usize;
    let mut s = settings(&hub, cache.path());
    s.chunk_size = chunk;
    s.max_files = 1; // chunks in order, so the committed prefix is exactly the chunks before the failure
    let half = (chunk * 4) as u64;
    hub.fail_ranges_from(REPO, file, half, 1000);

    let e = download(&src(REPO), &s, &())
        .await
        .expect_err("the injected failure stops the download");
    let msg = e.to_string();
    assert!(msg.contains(REPO) && msg.contains(file), "{msg}");
    assert!(
        !cache
            .path()
            .join("models--acme--tiny-llama/snapshots")
            .join(&repo.commit)
            .join(file)
            .exists()
    );
    let first = hub.served(REPO, file);
    assert!(
        first >= half,
        "the first run got the chunks before the failure ({first} of {len})"
    );

    // hf-hub's chunk tasks outlive the failed call (a killed process would take them along): let each of the four
    // chunks past the failure be tried (7 ranged requests after the first chunk's), and refused, before the hub is mended.
    let t = std::time::Instant::now();
    while hub
        .requests()
        .iter()
        .filter(|r| r.contains(file) && !r.contains(" bytes=0-"))
        .count()
        < 7
    {
        assert!(t.elapsed().as_secs() < 30, "chunk requests: {:?}", hub.requests());
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    hub.clear_faults();
    let d = download(&src(REPO), &s, &()).await.expect("resumed download");
    let second = hub.served(REPO, file) - first;
    assert!(
        second <= len - half + 1,
        "the second run sent only what was missing: {second} bytes of {len}, {half} already committed"
    );
    assert_eq!(std::fs::read(d.dir.join(file)).expect("weights"), repo.files[file]);
    let wanted_total: u64 = d.files.iter().map(|f| repo.files[f].len() as u64).sum();
    assert!(
        d.bytes_downloaded <= wanted_total - half,
        "the resumed bytes are not reported as downloaded: {} of {wanted_total}, {half} resumed",
        d.bytes_downloaded
    );
}

#[tokio::test]
async fn a_pinned_revision_is_fetched_and_an_unknown_one_is_named() {
    let (_model, repo, hub) = setup();
    let cache = tempfile::tempdir().expect("cache");
    let pinned = format!("{REPO}@{}", repo.commit);
    let d = download(&src(&pinned), &settings(&hub, cache.path()), &())
        .await
        .expect("pinned revision");
    assert_eq!(d.commit, repo.commit);
    assert!(
        cache
            .path()
            .join("models--acme--tiny-llama/refs")
            .join(&repo.commit)
            .exists()
    );

    let e = download(&src(&format!("{REPO}@v9")), &settings(&hub, cache.path()), &())
        .await
        .expect_err("unknown revision")
        .to_string();
    assert!(e.contains("`v9`") && e.contains("404"), "{e}");
}

#[tokio::test]
async fn missing_and_gated_repositories_get_clear_errors() {
    let (_model, _repo, hub) = setup();
    let cache = tempfile::tempdir().expect("cache");
    let e = download(&src("acme/no-such-model"), &settings(&hub, cache.path()), &())
        .await
        .expect_err("missing repo")
        .to_string();
    assert!(
        e.contains("acme/no-such-model") && e.contains("no such repository"),
        "{e}"
    );

    hub.require_token(REPO, "hf_secret");
    let e = download(&src(REPO), &settings(&hub, cache.path()), &())
        .await
        .expect_err("gated without a token")
        .to_string();
    assert!(e.contains("access refused") && e.contains("HF_TOKEN"), "{e}");
    let mut s = settings(&hub, cache.path());
    s.token = Some("hf_secret".into());
    download(&src(REPO), &s, &()).await.expect("gated with the token");
}

#[tokio::test]
async fn a_repository_that_is_not_a_transformers_model_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("model.gguf"), b"GGUF").expect("write");
    let hub = FakeHub::start([(
        "acme/gguf-only".to_string(),
        HubRepo::from_dir(dir.path()).expect("repo"),
    )]);
    let cache = tempfile::tempdir().expect("cache");
    let e = download(&src("acme/gguf-only"), &settings(&hub, cache.path()), &())
        .await
        .expect_err("no config.json")
        .to_string();
    assert!(e.contains("config.json") && e.contains("model.gguf"), "{e}");
}

#[tokio::test]
async fn a_corrupt_download_is_refused_and_removed() {
    let (_model, repo, hub) = setup();
    let cache = tempfile::tempdir().expect("cache");
    hub.corrupt(REPO, "model.safetensors");
    let e = download(&src(REPO), &settings(&hub, cache.path()), &())
        .await
        .expect_err("corrupt weights")
        .to_string();
    assert!(e.contains("model.safetensors") && e.contains("SHA-256"), "{e}");
    let snapshot = cache
        .path()
        .join("models--acme--tiny-llama/snapshots")
        .join(&repo.commit);
    assert!(
        !snapshot.join("model.safetensors").exists(),
        "no corrupt file left in the snapshot"
    );
}

#[test]
fn repo_ids_parse_and_paths_do_not() {
    assert_eq!(src("org/name").revision(), "main");
    assert_eq!(src("org/name@v1.0").revision(), "v1.0");
    for s in [
        "./org/name",
        "/abs/path",
        "org",
        "a/b/c",
        "org/name@",
        "../x",
        "org/.hidden",
        "org/na me",
    ] {
        assert!(HubSource::parse(s).is_none(), "{s} is not a repo id");
    }
}

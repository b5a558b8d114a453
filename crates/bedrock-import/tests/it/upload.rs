//! Upload round trips: content, sync semantics, resume after a kill, bucket handling.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bedrock_import::{Error, Event, UploadPlan, UploadSettings, Uploader, ensure_bucket};
use test_support::{Family, tiny_model};

use crate::s3::TestS3;

const MIB: u64 = 1024 * 1024;

/// Deterministic pseudo-random bytes (xorshift), so parts differ from each other.
fn write_noise(path: &Path, len: usize, seed: u64) {
    let mut x = seed | 1;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    std::fs::write(path, buf).expect("write");
}

/// A tiny model plus a 12 MiB weight file (multipart at 5 MiB parts: 3 parts).
fn model_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny_model(dir.path(), Family::Llama).expect("tiny model");
    write_noise(&dir.path().join("extra.safetensors"), 12 * MIB as usize + 123, 7);
    dir
}

fn settings(journal: Option<&Path>) -> UploadSettings {
    UploadSettings {
        part_size: 5 * MIB,
        max_memory: 16 * MIB,
        max_concurrency: 3,
        journal: journal.map(Path::to_path_buf),
        ..UploadSettings::default()
    }
}

fn plan(dir: &Path, bucket: &str) -> UploadPlan {
    let names = model_folder::import_files(dir).expect("list");
    UploadPlan::new(dir, &names, bucket, "models/tiny")
}

async fn get(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3.get_object().bucket(bucket).key(key).send().await.expect("get");
    out.body.collect().await.expect("body").into_bytes().to_vec()
}

async fn assert_uploaded(s3: &aws_sdk_s3::Client, plan: &UploadPlan) {
    for f in &plan.files {
        let remote = get(s3, &plan.bucket, &f.key).await;
        let local = std::fs::read(&f.local).expect("read");
        assert!(
            remote == local,
            "{} differs ({} vs {} bytes)",
            f.key,
            remote.len(),
            local.len()
        );
    }
}

#[tokio::test]
async fn upload_then_rerun_skips_everything() {
    let server = TestS3::start().await;
    let s3 = server.client();
    ensure_bucket(&s3, "models", "us-east-1", true).await.expect("bucket");
    let dir = model_dir();
    let plan = plan(dir.path(), "models");
    assert_eq!(plan.s3_uri(), "s3://models/models/tiny/");
    let uploader = Uploader::new(s3.clone(), settings(None));

    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let progress = move |e: Event| sink.lock().expect("lock").push(e);
    let first = uploader.upload(&plan, &progress).await.expect("upload");
    assert_eq!(first.files, plan.files.len());
    assert_eq!(first.files_skipped, 0);
    assert_eq!(first.bytes_sent, first.bytes_total);
    // 3 parts for the 12 MiB file, one PutObject per other file.
    assert_eq!(server.parts(), 3);
    assert_eq!(first.parts_sent, 3 + plan.files.len() - 1);
    assert_uploaded(&s3, &plan).await;
    let sent: u64 = events
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|e| {
            if let Event::Sent { bytes, .. } = e {
                Some(*bytes)
            } else {
                None
            }
        })
        .sum();
    assert_eq!(sent, first.bytes_total);

    // Same content again: nothing is sent (sync semantics), and the manifest is the same.
    let puts_before = server.object_puts.load(std::sync::atomic::Ordering::SeqCst);
    let second = uploader.upload(&plan, &()).await.expect("upload again");
    assert_eq!(second.bytes_sent, 0);
    assert_eq!(second.files_skipped, plan.files.len());
    assert_eq!(server.parts(), 3);
    assert_eq!(
        server.object_puts.load(std::sync::atomic::Ordering::SeqCst),
        puts_before
    );
    assert_eq!(first.digest(), second.digest());

    // Change one file: only it goes up again.
    let config = dir.path().join("config.json");
    let mut text = std::fs::read_to_string(&config).expect("read");
    text.push(' ');
    std::fs::write(&config, text).expect("write");
    let third = uploader.upload(&plan, &()).await.expect("upload changed");
    assert_eq!(third.files_skipped, plan.files.len() - 1);
    assert_eq!(third.bytes_sent, std::fs::metadata(&config).expect("md").len());
    assert_ne!(third.digest(), second.digest());
    assert_uploaded(&s3, &plan).await;
}

#[tokio::test]
async fn same_size_different_content_is_not_skipped() {
    let server = TestS3::start().await;
    let s3 = server.client();
    ensure_bucket(&s3, "bkt", "us-east-1", true).await.expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    write_noise(&dir.path().join("model.safetensors"), 1000, 1);
    let plan = UploadPlan::new(dir.path(), &["model.safetensors".to_string()], "bkt", "");
    let uploader = Uploader::new(s3.clone(), settings(None));
    uploader.upload(&plan, &()).await.expect("upload");
    write_noise(&dir.path().join("model.safetensors"), 1000, 2);
    let again = uploader.upload(&plan, &()).await.expect("upload");
    assert_eq!(again.files_skipped, 0);
    assert_eq!(again.bytes_sent, 1000);
    assert_uploaded(&s3, &plan).await;
}

#[tokio::test]
async fn killed_upload_resumes_without_resending_parts() {
    let server = TestS3::start().await;
    let s3 = server.client();
    ensure_bucket(&s3, "models", "us-east-1", true).await.expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    write_noise(&dir.path().join("model.safetensors"), 40 * MIB as usize + 5, 3); // 9 parts of 5 MiB
    let names = vec!["model.safetensors".to_string()];
    let plan = UploadPlan::new(dir.path(), &names, "models", "p");
    let state = tempfile::tempdir().expect("tempdir");
    let journal = state.path().join("journal.json");
    let mut cfg = settings(Some(&journal));
    cfg.max_concurrency = 1;

    // Run until three parts are acknowledged, then kill the task (as a Ctrl-C or a crash would).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let (uploader, plan) = (Uploader::new(s3.clone(), cfg.clone()), plan.clone());
        tokio::spawn(async move {
            let progress = move |e: Event| {
                if matches!(e, Event::Sent { .. }) {
                    let _ = tx.send(());
                }
            };
            uploader.upload(&plan, &progress).await
        })
    };
    for _ in 0..3 {
        rx.recv().await.expect("a part was sent");
    }
    task.abort();
    let _ = task.await;
    let sent_before = server.parts();
    assert!(
        (3..9).contains(&sent_before),
        "{sent_before} parts sent before the kill"
    );

    let summary = Uploader::new(s3.clone(), cfg).upload(&plan, &()).await.expect("resume");
    assert!(summary.parts_resumed >= 3, "{summary:?}");
    assert_eq!(summary.parts_resumed + summary.parts_sent, 9);
    // The server saw exactly the missing parts, not the resumed ones again.
    assert_eq!(server.parts() - sent_before, summary.parts_sent);
    assert_eq!(summary.bytes_resumed + summary.bytes_sent, summary.bytes_total);
    assert_uploaded(&s3, &plan).await;
    // The finished upload is gone from the journal.
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    assert_eq!(j["uploads"].as_object().map(|m| m.len()), Some(0), "{j}");
}

/// Starts an upload of a 9-part file with a journal and kills it (task abort) once three parts are acknowledged;
/// returns the plan, the settings and the UploadPart requests the server saw.
async fn upload_killed_after_three_parts(
    s3: &aws_sdk_s3::Client,
    parts_seen: impl Fn() -> usize,
    dir: &Path,
    journal: &Path,
) -> (UploadPlan, UploadSettings, usize) {
    write_noise(&dir.join("model.safetensors"), 40 * MIB as usize + 5, 3); // 9 parts of 5 MiB
    let names = vec!["model.safetensors".to_string()];
    let plan = UploadPlan::new(dir, &names, "models", "p");
    let mut cfg = settings(Some(journal));
    cfg.max_concurrency = 1;
    cfg.retry = bedrock_import::Retry {
        attempts: 5,
        first_delay: std::time::Duration::from_millis(10),
        max_delay: std::time::Duration::from_millis(40),
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let task = {
        let (uploader, plan) = (Uploader::new(s3.clone(), cfg.clone()), plan.clone());
        tokio::spawn(async move {
            let progress = move |e: Event| {
                if matches!(e, Event::Sent { .. }) {
                    let _ = tx.send(());
                }
            };
            uploader.upload(&plan, &progress).await
        })
    };
    for _ in 0..3 {
        rx.recv().await.expect("a part was sent");
    }
    task.abort();
    let _ = task.await;
    // A request the store had begun finishes on the store's side (it runs detached from the connection).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = parts_seen();
    assert!((3..9).contains(&sent), "{sent} parts sent before the kill");
    (plan, cfg, sent)
}

fn journal_parts(journal: &Path) -> usize {
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(journal).expect("journal")).expect("json");
    j["uploads"]
        .as_object()
        .map(|u| u.values().map(|o| o["parts"].as_object().map_or(0, |p| p.len())).sum())
        .unwrap_or(0)
}

/// A connection reset while an interrupted upload is continued (the server that just died) is tried again, and
/// never throws the upload away: only NoSuchUpload may. When the failures outlast the retries, the run fails and
/// the journal keeps every acknowledged part for the next.
#[tokio::test]
async fn a_transient_failure_while_resuming_keeps_the_interrupted_upload() {
    let server = TestS3::start().await;
    let s3 = server.client();
    ensure_bucket(&s3, "models", "us-east-1", true).await.expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let journal = state.path().join("journal.json");
    let (plan, cfg, sent_before) = upload_killed_after_three_parts(&s3, || server.parts(), dir.path(), &journal).await;
    let recorded = journal_parts(&journal);
    assert!(recorded >= 3, "{recorded} parts in the journal");

    // Every request fails for longer than the retries last: the run fails, the journal is intact.
    server.drop_next.store(1000, std::sync::atomic::Ordering::SeqCst);
    let err = Uploader::new(s3.clone(), cfg.clone())
        .upload(&plan, &())
        .await
        .expect_err("the server answers nothing");
    assert!(err.is_transient(), "{err}");
    assert!(!err.is_no_such_upload(), "{err}");
    assert_eq!(
        journal_parts(&journal),
        recorded,
        "the journal lost acknowledged parts: {err}"
    );

    // A few dropped ListParts connections (more than the SDK's own attempts) while resuming: the upload continues.
    *server.drop_only.lock().expect("lock") = "GET uploadId=".into();
    server.drop_next.store(6, std::sync::atomic::Ordering::SeqCst);
    let summary = Uploader::new(s3.clone(), cfg).upload(&plan, &()).await.expect("resume");
    assert!(summary.parts_resumed >= recorded, "{summary:?}");
    assert_eq!(summary.parts_resumed + summary.parts_sent, 9);
    assert_eq!(
        server.parts() - sent_before,
        summary.parts_sent,
        "acknowledged parts were sent again"
    );
    assert_uploaded(&s3, &plan).await;
}

/// Parts the store acknowledged but the killed client never wrote down are adopted from ListParts (their listed
/// CRC32C matches the local bytes), not sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_the_store_has_but_the_journal_lacks_are_adopted_not_sent_again() {
    let data = tempfile::tempdir().expect("tempdir");
    let server = bedrock_server::start(bedrock_server::ServerConfig::new(data.path().to_path_buf()))
        .await
        .expect("local bedrock");
    let c = server.credentials();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                &c.access_key_id,
                &c.secret_access_key,
                None,
                None,
                "test",
            ))
            .force_path_style(true)
            .build(),
    );
    ensure_bucket(&s3, "models", server.region(), true)
        .await
        .expect("bucket");
    let dir = tempfile::tempdir().expect("tempdir");
    let state = tempfile::tempdir().expect("tempdir");
    let journal = state.path().join("journal.json");
    let stored_parts = || {
        std::fs::read_dir(data.path().join("s3"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().contains(".part-"))
                    .count()
            })
            .unwrap_or(0)
    };
    let (plan, cfg, stored) = upload_killed_after_three_parts(&s3, stored_parts, dir.path(), &journal).await;
    // The client dies after the store answered and before the journal was written: forget every part.
    let mut j: serde_json::Value = serde_json::from_slice(&std::fs::read(&journal).expect("journal")).expect("json");
    for u in j["uploads"].as_object_mut().expect("uploads").values_mut() {
        u["parts"] = serde_json::json!({});
    }
    std::fs::write(&journal, serde_json::to_vec(&j).expect("json")).expect("write journal");

    let summary = Uploader::new(s3.clone(), cfg).upload(&plan, &()).await.expect("resume");
    assert_eq!(summary.parts_resumed, stored, "{summary:?}");
    assert_eq!(summary.parts_sent, 9 - stored, "{summary:?}");
    assert_eq!(summary.bytes_resumed + summary.bytes_sent, summary.bytes_total);
    assert_uploaded(&s3, &plan).await;
}

#[tokio::test]
async fn journal_caches_local_checksums() {
    let server = TestS3::start().await;
    let s3 = server.client();
    ensure_bucket(&s3, "bkt", "us-east-1", true).await.expect("bucket");
    let dir = model_dir();
    let plan = plan(dir.path(), "bkt");
    let state = tempfile::tempdir().expect("tempdir");
    let journal = state.path().join("j.json");
    let uploader = Uploader::new(s3.clone(), settings(Some(&journal)));
    let hashed = |events: &Mutex<Vec<Event>>| -> u64 {
        events
            .lock()
            .expect("lock")
            .iter()
            .filter_map(|e| {
                if let Event::Hashed { bytes } = e {
                    Some(*bytes)
                } else {
                    None
                }
            })
            .sum()
    };
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let first = uploader
        .upload(&plan, &move |e: Event| sink.lock().expect("lock").push(e))
        .await
        .expect("upload");
    assert_eq!(hashed(&events), first.bytes_total);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    uploader
        .upload(&plan, &move |e: Event| sink.lock().expect("lock").push(e))
        .await
        .expect("upload");
    assert_eq!(hashed(&events), 0, "unchanged files are not read again");
}

#[tokio::test]
async fn missing_bucket_and_creation() {
    let server = TestS3::start().await;
    let s3 = server.client();
    let err = ensure_bucket(&s3, "nope", "us-east-1", false)
        .await
        .expect_err("missing");
    assert!(
        matches!(err, Error::NoSuchBucket { ref bucket } if bucket == "nope"),
        "{err}"
    );
    ensure_bucket(&s3, "nope", "us-east-1", true).await.expect("create");
    ensure_bucket(&s3, "nope", "us-east-1", false)
        .await
        .expect("exists now");
}

#[tokio::test]
async fn missing_local_file_names_the_path() {
    let server = TestS3::start().await;
    let dir = model_dir();
    let mut plan = plan(dir.path(), "models");
    plan.files.push(bedrock_import::PlannedFile {
        local: dir.path().join("gone.safetensors"),
        key: "k".into(),
    });
    let err = Uploader::new(server.client(), settings(None))
        .upload(&plan, &())
        .await
        .expect_err("missing file");
    assert!(
        matches!(err, Error::Io { ref path, .. } if path.ends_with("gone.safetensors")),
        "{err}"
    );
}

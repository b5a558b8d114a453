//! Crash safety: a server process killed with SIGKILL in the middle of uploads loses no acknowledged object, shows no
//! half-written one, and keeps its jobs; killed in the middle of CompleteMultipartUpload, it keeps the previous object
//! whole (with its checksum and headers) and the upload complete-able.

mod common;

use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;

fn spawn(dir: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_local-bedrock"))
        .args(["--data-dir", dir.to_str().expect("utf-8 path")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn local-bedrock");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("endpoint line");
    let url = line.trim().strip_prefix("endpoint=").expect("endpoint=URL").to_string();
    (child, url)
}

fn credentials(dir: &std::path::Path) -> aws_credential_types::Credentials {
    let c = bedrock_server::read_credentials(dir)
        .expect("read")
        .expect("credentials");
    common::sdk_credentials(&c.access_key_id, &c.secret_access_key)
}

fn client(url: &str, dir: &std::path::Path) -> aws_sdk_s3::Client {
    common::s3_client(url, "us-east-1", credentials(dir))
}

fn bedrock(url: &str, dir: &std::path::Path) -> aws_sdk_bedrock::Client {
    common::bedrock_client(url, "us-east-1", credentials(dir))
}

fn content(i: usize) -> Vec<u8> {
    // Distinct per object and large enough that a kill often lands mid-write.
    let mut v = format!("object {i}:").into_bytes();
    v.extend(std::iter::repeat_n((i % 251) as u8, 256 * 1024 + i));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_uploads_loses_no_acknowledged_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = spawn(dir.path());
    let s3 = client(&url, dir.path());
    s3.create_bucket().bucket("crash").send().await.expect("bucket");
    // A completed import job before the crash.
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), test_support::Family::Llama).expect("tiny");
    common::upload_dir(&s3, model.path(), "crash", "model").await;
    let br = bedrock(&url, dir.path());
    let job_arn = br
        .create_model_import_job()
        .job_name("before-crash")
        .imported_model_name("crash-model")
        .model_data_source(aws_sdk_bedrock::types::ModelDataSource::S3DataSource(
            aws_sdk_bedrock::types::S3DataSource::builder()
                .s3_uri("s3://crash/model/")
                .build()
                .expect("src"),
        ))
        .send()
        .await
        .expect("create job")
        .job_arn;
    let job = common::wait_job(&br, &job_arn).await;
    assert_eq!(
        job.status(),
        Some(&aws_sdk_bedrock::types::ModelImportJobStatus::Completed)
    );

    // Writers upload distinct keys and overwrite one shared key; acknowledged keys are recorded.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<usize>::new()));
    let mut tasks = Vec::new();
    for w in 0..4 {
        let s3 = s3.clone();
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..1000 {
                let i = w * 1000 + n;
                let r = s3
                    .put_object()
                    .bucket("crash")
                    .key(format!("k/{i}"))
                    .body(ByteStream::from(content(i)))
                    .send()
                    .await;
                if r.is_err() {
                    return;
                }
                acked.lock().expect("lock").push(i);
                let _ = s3
                    .put_object()
                    .bucket("crash")
                    .key("shared")
                    .body(ByteStream::from(content(i)))
                    .send()
                    .await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    for t in tasks {
        let _ = t.await;
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() > 5,
        "too few uploads before the kill ({}) to prove anything",
        acked.len()
    );

    let (mut child, url) = spawn(dir.path());
    let s3 = client(&url, dir.path());
    for i in &acked {
        let got = s3
            .get_object()
            .bucket("crash")
            .key(format!("k/{i}"))
            .send()
            .await
            .expect("acknowledged object");
        let bytes = got.body.collect().await.expect("body").into_bytes();
        assert!(
            bytes.as_ref() == content(*i).as_slice(),
            "object k/{i} is damaged after the crash"
        );
    }
    // Every visible object is whole: either one of the contents written, never a torn mix.
    let list = s3
        .list_objects_v2()
        .bucket("crash")
        .prefix("k/")
        .max_keys(1000)
        .send()
        .await
        .expect("list");
    let mut keys: Vec<String> = list
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.push("shared".into());
    for key in &keys {
        let got = s3
            .get_object()
            .bucket("crash")
            .key(key)
            .send()
            .await
            .expect("get")
            .body
            .collect()
            .await
            .expect("b");
        let bytes = got.into_bytes();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(20)]).to_string();
        let i: usize = text
            .strip_prefix("object ")
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .expect("header");
        assert!(bytes.as_ref() == content(i).as_slice(), "{key} is torn");
    }
    let br = bedrock(&url, dir.path());
    let job = br
        .get_model_import_job()
        .job_identifier(&job_arn)
        .send()
        .await
        .expect("job after crash");
    assert_eq!(
        job.status(),
        Some(&aws_sdk_bedrock::types::ModelImportJobStatus::Completed)
    );
    br.get_imported_model()
        .model_identifier("crash-model")
        .send()
        .await
        .expect("model after crash");
    let _ = child.kill();
    let _ = child.wait();
}

/// Part `n` of the multipart test object: distinct per part, so a torn or misordered assembly shows.
fn part_content(n: i32, size: usize) -> Vec<u8> {
    (0..size)
        .map(|i| ((i as u64 * 31 + n as u64 * 7) % 251) as u8)
        .collect()
}

/// Staged files (s3s-fs's and ours) in the store root.
fn staged_files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir.join("s3"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let len = e.metadata().ok()?.len();
                    name.starts_with(".tmp.").then_some((name, len))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_complete_multipart_upload_keeps_the_previous_object() {
    use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, CompletedMultipartUpload, CompletedPart};
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, url) = spawn(dir.path());
    let s3 = client(&url, dir.path());
    s3.create_bucket().bucket("crash").send().await.expect("bucket");
    let original = b"the previous version".to_vec();
    let crc = s3
        .put_object()
        .bucket("crash")
        .key("big")
        .content_type("text/plain")
        .checksum_algorithm(ChecksumAlgorithm::Crc32)
        .body(ByteStream::from(original.clone()))
        .send()
        .await
        .expect("put the previous version")
        .checksum_crc32()
        .expect("crc32")
        .to_string();
    let id = s3
        .create_multipart_upload()
        .bucket("crash")
        .key("big")
        .content_type("application/x-new")
        .send()
        .await
        .expect("create")
        .upload_id()
        .expect("upload id")
        .to_string();
    // Enough bytes that the assembly takes a while; the last part is short.
    let sizes: Vec<usize> = (0..24).map(|i| if i == 23 { 1000 } else { 5 * 1024 * 1024 }).collect();
    let mut parts = Vec::new();
    for (i, size) in sizes.iter().enumerate() {
        let n = i as i32 + 1;
        let r = s3
            .upload_part()
            .bucket("crash")
            .key("big")
            .upload_id(&id)
            .part_number(n)
            .body(ByteStream::from(part_content(n, *size)))
            .send()
            .await
            .expect("upload part");
        parts.push(
            CompletedPart::builder()
                .part_number(n)
                .e_tag(r.e_tag().expect("etag"))
                .build(),
        );
    }
    assert_eq!(staged_files(dir.path()), Vec::new(), "staged files before the complete");
    let list = CompletedMultipartUpload::builder().set_parts(Some(parts)).build();

    // Kill the server as soon as the assembly has begun (its staged file has bytes).
    let complete = {
        let (s3, id, list) = (s3.clone(), id.clone(), list.clone());
        tokio::spawn(async move {
            s3.complete_multipart_upload()
                .bucket("crash")
                .key("big")
                .upload_id(id)
                .multipart_upload(list)
                .send()
                .await
        })
    };
    let started = std::time::Instant::now();
    while !staged_files(dir.path()).iter().any(|(_, len)| *len > 0) {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the assembly never started"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let completed = complete.await.expect("task").is_ok();
    eprintln!("CompleteMultipartUpload acknowledged before the kill: {completed}");

    let (mut child, url) = spawn(dir.path());
    let s3 = client(&url, dir.path());
    assert_eq!(staged_files(dir.path()), Vec::new(), "staged files after the restart");
    let got = s3
        .get_object()
        .bucket("crash")
        .key("big")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("the key after the crash");
    let expected_new: Vec<u8> = sizes
        .iter()
        .enumerate()
        .flat_map(|(i, size)| part_content(i as i32 + 1, *size))
        .collect();
    let content_type = got.content_type().map(str::to_string);
    let checksum = got.checksum_crc32().map(str::to_string);
    let bytes = got.body.collect().await.expect("body").into_bytes();
    if completed {
        // The complete was acknowledged before the kill: the new object must be there, whole.
        assert!(
            bytes.as_ref() == expected_new.as_slice(),
            "the acknowledged object is torn"
        );
    } else {
        assert!(
            bytes.as_ref() == original.as_slice(),
            "the previous version was replaced by a partial assembly"
        );
        assert_eq!(
            checksum.as_deref(),
            Some(crc.as_str()),
            "the previous version lost its checksum"
        );
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain"),
            "the previous version lost its headers"
        );
        // The client retries the complete, as it would after a lost connection, and gets the whole object.
        s3.complete_multipart_upload()
            .bucket("crash")
            .key("big")
            .upload_id(&id)
            .multipart_upload(list)
            .send()
            .await
            .expect("the upload survives the crash");
        let got = s3.get_object().bucket("crash").key("big").send().await.expect("get");
        assert_eq!(got.content_type(), Some("application/x-new"));
        let bytes = got.body.collect().await.expect("body").into_bytes();
        assert!(
            bytes.as_ref() == expected_new.as_slice(),
            "the retried complete gave a torn object"
        );
    }
    let _ = child.kill();
    let _ = child.wait();
}

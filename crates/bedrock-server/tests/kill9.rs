//! Crash safety: a server process killed with SIGKILL in the middle of uploads loses no acknowledged object, shows no
//! half-written one, and keeps its jobs.

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

fn client(url: &str, dir: &std::path::Path) -> aws_sdk_s3::Client {
    let c = bedrock_server::read_credentials(dir)
        .expect("read")
        .expect("credentials");
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(common::sdk_creds(&c.access_key_id, &c.secret_access_key))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
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

fn bedrock(url: &str, dir: &std::path::Path) -> aws_sdk_bedrock::Client {
    let c = bedrock_server::read_credentials(dir)
        .expect("read")
        .expect("credentials");
    let conf = aws_sdk_bedrock::Config::builder()
        .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrock::config::Region::new("us-east-1"))
        .endpoint_url(url)
        .credentials_provider(common::sdk_creds(&c.access_key_id, &c.secret_access_key))
        .build();
    aws_sdk_bedrock::Client::from_conf(conf)
}

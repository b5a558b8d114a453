//! The independent-client proof: boto3 (installed from PyPI into a cached venv) drives S3 with a multipart upload, an
//! import job, Converse, ConverseStream with a forced tool call and InvokeModel against this server. Needs network access to PyPI, so it is opt-in: `cargo test -p bedrock-server
//! --test boto3 -- --ignored`.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn venv_python() -> PathBuf {
    let cache = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
        .join(".cache/cmi/boto3-venv");
    let py = cache.join("bin/python");
    if !py.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&cache)
            .status()
            .expect("python3 -m venv")
            .success();
        assert!(ok, "creating the venv failed");
        let ok = Command::new(&py)
            .args(["-m", "pip", "install", "-q", "boto3"])
            .status()
            .expect("pip")
            .success();
        assert!(ok, "pip install boto3 failed");
    }
    py
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "installs boto3 from PyPI"]
async fn boto3_drives_s3_multipart_and_import() {
    let py = venv_python();
    let local = common::start(true).await;
    let work = tempfile::tempdir().expect("tempdir");
    let model = work.path().join("model");
    test_support::tiny_model(&model, test_support::Family::Qwen2).expect("tiny model");
    // Qwen's tool prompt needs more than the tiny model's 512-token window in a byte-level vocabulary.
    let cfg_path = model.join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
    cfg["max_position_embeddings"] = 4096.into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let c = local.server.credentials().clone();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/boto3/flow.py");
    let server_url = local.server.endpoint_url();
    let region = local.server.region().to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(py)
            .arg(script)
            .arg(&model)
            .env("AWS_ENDPOINT_URL", server_url)
            .env("AWS_REGION", region)
            .env("CMI_BOTO3_RUNTIME", "1")
            .env("AWS_ACCESS_KEY_ID", c.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", c.secret_access_key)
            .env_remove("AWS_PROFILE")
            .output()
            .expect("run flow.py")
    })
    .await
    .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "flow.py failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("boto3 flow ok"), "{stdout}");
    assert!(stdout.contains("converse-stream with tools ok"), "{stdout}");
    assert!(stdout.contains("invoke ok"), "{stdout}");
}

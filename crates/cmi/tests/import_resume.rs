//! A `cmi import` killed (SIGKILL) in the middle of its upload, then run again: the parts the first run had
//! acknowledged are not sent again, and the import completes with the same objects a clean run uploads.
//!
//! Uses the real demo model (about 270 MB of bf16 weights, converted by `cmi convert demo`; the GGUF comes from the
//! shared cache, as in the quickstart test) against a `cmi serve` the test runs, so that the server outlives the
//! killed client as it would in real use.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{cmi_command, convert_demo, start_serve, text};

fn command_with_cache(home: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut c = cmi_command(home, cache, args);
    c.env("CMI_DATA_DIR", home.join("server"));
    c
}

fn command(home: &Path, args: &[&str]) -> Command {
    command_with_cache(home, &home.join("cache"), args)
}

/// Acknowledged parts of multipart uploads in flight, from the upload journals (one per destination).
fn acknowledged_parts(uploads: &Path) -> usize {
    common::journal_uploads(uploads).values().map(|(_, parts)| parts).sum()
}

#[test]
fn a_killed_import_resumes_without_resending_acknowledged_parts() {
    let home = tempfile::tempdir().expect("home");
    let model = home.path().join("smollm2");
    convert_demo(home.path(), &model);

    let _serve = start_serve(
        command(home.path(), &["serve", "--port", "0", "--warm"]),
        Stdio::null(),
        &home.path().join("server/endpoint.json"),
    );

    // Small parts, one at a time: the upload takes long enough to be killed in the middle.
    let args = [
        "import",
        model.to_str().expect("utf-8"),
        "--name",
        "smol-resume",
        "--part-size-mib",
        "5",
        "--concurrency",
        "1",
        "--json",
    ];
    let uploads = home.path().join("cache/cmi/uploads");
    let mut first = command(home.path(), &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("first import starts");
    let t = Instant::now();
    let killed_at = loop {
        let parts = acknowledged_parts(&uploads);
        if parts >= 4 {
            first.kill().expect("SIGKILL the import");
            break parts;
        }
        if let Some(status) = first.try_wait().expect("wait") {
            panic!("the first import ended ({status}) before it could be killed mid-upload");
        }
        assert!(t.elapsed() < Duration::from_secs(300), "no parts acknowledged");
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = first.wait();
    assert!(
        acknowledged_parts(&uploads) >= killed_at,
        "the journal keeps the acknowledged parts"
    );

    let second = command(home.path(), &args).output().expect("second import runs");
    assert!(second.status.success(), "second import failed\n{}", text(&second));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(" resumed, in "),
        "the summary reports resumed bytes\n{}",
        text(&second)
    );
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).expect("--json output");
    let up = &v["upload"];
    let (total, sent, resumed, skipped) = (
        up["bytesTotal"].as_u64().expect("bytesTotal"),
        up["bytesSent"].as_u64().expect("bytesSent"),
        up["bytesResumed"].as_u64().expect("bytesResumed"),
        up["bytesSkipped"].as_u64().expect("bytesSkipped"),
    );
    assert!(
        resumed >= killed_at as u64 * 5 * 1024 * 1024,
        "the {killed_at} acknowledged parts were resumed, not sent again: {up}"
    );
    assert_eq!(sent + resumed + skipped, total, "{up}");
    assert!(sent < total, "{up}");
    assert!(
        v["modelArn"].as_str().is_some_and(|a| a.contains(":imported-model/")),
        "{v}"
    );

    // A clean third run finds every object in place (same size and checksum) and sends nothing.
    let third = command(home.path(), &args).output().expect("third import runs");
    assert!(third.status.success(), "third import failed\n{}", text(&third));
    let v3: serde_json::Value = serde_json::from_slice(&third.stdout).expect("--json output");
    assert_eq!(v3["upload"]["bytesSent"].as_u64(), Some(0), "{v3}");
    assert_eq!(v3["upload"]["bytesSkipped"].as_u64(), Some(total), "{v3}");
}

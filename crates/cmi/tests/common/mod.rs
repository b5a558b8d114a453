//! Helpers shared by the binary's integration tests: `cmi` with the test's own config, data and cache directories
//! and no AWS configuration, a readable dump of a finished command, and a child process killed when dropped.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// `cmi ARGS` isolated in `home` (config, data), with `cache` as the cache directory and no AWS configured. `HOME`
/// itself is left alone: every path `cmi` uses follows the `XDG_*` variables, and pip (the demo model) keeps working.
pub fn cmi_command(home: &Path, cache: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cmi"));
    c.args(args)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_DATA_HOME", home.join("data"))
        .env("XDG_CACHE_HOME", cache)
        .env("NO_COLOR", "1")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_PROFILE")
        .env_remove("CMI_ENDPOINT_URL")
        .env_remove("CMI_DATA_DIR")
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-aws-credentials"))
        .env("AWS_CONFIG_FILE", home.join("no-aws-config"));
    c
}

/// The caller's cache directory, shared between runs so the demo model's GGUF is fetched once.
pub fn shared_cache() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))
        .expect("HOME is set")
}

/// `cmi convert demo DIR` for a test in `home`, with the GGUF from the shared cache; panics unless it succeeds.
pub fn convert_demo(home: &Path, dir: &Path) {
    let out = cmi_command(
        home,
        &shared_cache(),
        &["convert", "demo", dir.to_str().expect("utf-8")],
    )
    .stdin(Stdio::null())
    .output()
    .expect("cmi convert demo runs");
    assert!(out.status.success(), "convert demo failed\n{}", text(&out));
}

/// Exit status, stdout and stderr, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Kills the process when the test ends, however it ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cmd` (a `cmi serve`) with no stdin or stdout and `stderr` as given, and waits for the `endpoint.json`
/// it writes at `endpoint`; the server is killed when the returned guard drops.
pub fn start_serve(mut cmd: Command, stderr: Stdio, endpoint: &Path) -> Child {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("cmi serve starts");
    let guard = Child(child);
    wait_for_file(endpoint);
    guard
}

/// Waits up to a minute for `file` (e.g. the `endpoint.json` a starting `cmi serve` writes).
pub fn wait_for_file(file: &Path) {
    let t = std::time::Instant::now();
    while !file.exists() {
        assert!(t.elapsed().as_secs() < 60, "{} did not appear", file.display());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `bucket/key` → (upload id, parts recorded) of the multipart uploads in flight, from every upload journal in
/// `uploads` (one journal per destination; unreadable ones are skipped, as a journal being rewritten may be).
pub fn journal_uploads(uploads: &Path) -> std::collections::BTreeMap<String, (String, usize)> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(uploads) else {
        return out;
    };
    for e in dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
    {
        let Ok(bytes) = std::fs::read(e.path()) else { continue };
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        for (k, u) in v["uploads"].as_object().into_iter().flatten() {
            let id = u["upload_id"].as_str().unwrap_or_default().to_string();
            let parts = u["parts"].as_object().map_or(0, |p| p.len());
            out.insert(k.clone(), (id, parts));
        }
    }
    out
}

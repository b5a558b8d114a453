//! The web chat in a real browser: `cmi serve` with its UI, headless Chromium driven through chromedriver (Debian's
//! packages, installed with apt-get when missing and run as root) through the W3C WebDriver protocol (a small client
//! below, plain HTTP/1.1 to chromedriver on loopback).
//!
//! Steps: requests without the token (or with a wrong one) are refused while the Bedrock routes keep their SigV4;
//! the tokened URL opens the models table; the tiny model is imported from the page with upload progress; a chat on
//! it makes a tool round trip (a forced `list_files` call), asks before a command runs, and a long answer is
//! cancelled on the server; an entry is exported in Bedrock Engineer's shape; the page switches to Japanese. Every
//! step saves a PNG under `<target dir>/web-screenshots/`.
//!
//! Needs Chromium, so it is opt-in: `cargo test -p cmi --test web -- --ignored` (not yet a step of `.ci/run`: it
//! failed one run in three, cause unknown).

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod common;

use common::{Child, cmi_command, text};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Chromium and chromedriver from Debian's packages, installed when missing (CI runs as root).
fn ensure_browser() {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return;
    }
    let run = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    if !run(&["install", "-y", "chromium", "chromium-driver"]) {
        assert!(run(&["update"]), "apt-get update failed");
        assert!(
            run(&["install", "-y", "chromium", "chromium-driver"]),
            "apt-get install chromium chromium-driver failed (run as root)"
        );
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target dir")
        .join("web-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    dir
}

/// One HTTP/1.1 exchange on a fresh connection: the status and the body (chunked bodies decoded).
fn http(addr: &str, method: &str, path: &str, headers: &str, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    // Read the head, then exactly the body it announces: a server may keep the connection open.
    let mut raw = vec![];
    let mut buf = [0u8; 65536];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).expect("read");
        assert!(n > 0, "{addr} closed before the end of the head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let have = raw.len() - head_end;
        let done = match length {
            Some(n) => have >= n,
            None if chunked => raw.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    if !chunked {
        return (status, rest);
    }
    let mut body = String::new();
    let mut rest = rest.as_str();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || tail.len() < n {
            break;
        }
        body.push_str(&tail[..n]);
        rest = tail.get(n + 2..).unwrap_or("");
    }
    (status, body)
}

/// A GET without a body, for the gate's checks.
fn get(addr: &str, path: &str, headers: &str) -> (u16, String) {
    http(addr, "GET", path, headers, None)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Standard base64, for screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => 255,
    };
    let mut out = vec![];
    let (mut acc, mut bits) = (0u32, 0);
    for v in s.bytes().map(val).filter(|v| *v != 255) {
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// A W3C WebDriver session on chromedriver, over plain HTTP: the few commands the test needs.
struct Browser {
    addr: String,
    session: String,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    fn start(port: u16, caps: Value) -> Browser {
        let addr = format!("127.0.0.1:{port}");
        let (status, body) = http(
            &addr,
            "POST",
            "/session",
            "",
            Some(&json!({"capabilities": {"alwaysMatch": caps}}).to_string()),
        );
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session ({status}): {body}"))
            .to_string();
        Browser { addr, session }
    }

    /// A command: `Ok(value)`, or the WebDriver error's name and message.
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let path = format!("/session/{}{path}", self.session);
        let body = body.map(|b| b.to_string());
        let (status, text) = http(&self.addr, method, &path, "", body.as_deref());
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{method} {path}: {e}: {text}"))?;
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(format!(
                "{method} {path}: {} {}",
                v["value"]["error"], v["value"]["message"]
            ))
        }
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).expect("navigate");
    }

    fn url(&self) -> String {
        self.cmd("GET", "/url", None)
            .expect("url")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn find(&self, css: &str) -> Option<String> {
        let v = self
            .cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})))
            .ok()?;
        v[ELEMENT].as_str().map(str::to_string)
    }

    fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .ok()
        .and_then(|v| v.as_array().map(Vec::len))
        .unwrap_or(0)
    }

    /// Waits up to `secs` for `css`.
    fn wait_for(&self, css: &str, secs: u64) -> String {
        let t = Instant::now();
        loop {
            if let Some(e) = self.find(css) {
                return e;
            }
            assert!(t.elapsed().as_secs() < secs, "no `{css}` after {secs}s");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn text(&self, css: &str) -> String {
        let e = self.wait_for(css, 30);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .expect("text")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Clicks `css` once it is there and can be clicked.
    fn click(&self, css: &str) {
        let t = Instant::now();
        loop {
            let e = self.wait_for(css, 60);
            match self.cmd("POST", &format!("/element/{e}/click"), Some(json!({}))) {
                Ok(_) => return,
                Err(err) => assert!(t.elapsed().as_secs() < 60, "click `{css}`: {err}"),
            }
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    fn exec(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args})))
            .unwrap_or_else(|e| panic!("script {script}: {e}"))
    }

    /// Waits until `expr` (JavaScript) is true.
    fn wait_until(&self, expr: &str, secs: u64) {
        let t = Instant::now();
        while self.exec(&format!("return Boolean({expr});"), json!([])) != Value::Bool(true) {
            assert!(t.elapsed().as_secs() < secs, "`{expr}` still false after {secs}s");
            std::thread::sleep(Duration::from_millis(150));
        }
    }

    /// Sets a field's value as typing would (input and change events).
    fn set(&self, css: &str, value: &str) {
        self.wait_for(css, 30);
        self.exec(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('input')); e.dispatchEvent(new Event('change'));",
            json!([css, value]),
        );
    }

    fn shot(&self, name: &str) {
        // Let animations and streamed renders settle.
        std::thread::sleep(Duration::from_millis(400));
        let b64 = self.cmd("GET", "/screenshot", None).expect("screenshot");
        let path = screenshots_dir().join(format!("{name}.png"));
        std::fs::write(&path, base64_decode(b64.as_str().unwrap_or_default())).expect("write screenshot");
        eprintln!("screenshot: {}", path.display());
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.cmd("DELETE", "", None);
    }
}

#[test]
#[ignore = "needs Chromium and chromedriver (installed with apt-get when missing); a step of .ci/run"]
fn the_web_chat_works_in_a_real_browser() {
    ensure_browser();
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().to_path_buf();
    let cmi = |args: &[&str]| {
        let mut c = cmi_command(&home, &home.join("cache"), args);
        c.env("CMI_DATA_DIR", home.join("server"));
        c
    };

    // The tiny model, its window raised for the tool definitions (as the MCP tests do).
    let tiny = home.join("tiny");
    let out = cmi(&["dev", "tiny-model", tiny.to_str().expect("utf-8"), "--family", "llama"])
        .output()
        .expect("cmi dev tiny-model");
    assert!(out.status.success(), "{}", text(&out));
    let cfg_path = tiny.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
    cfg["max_position_embeddings"] = 16384.into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let workspace = home.join("workspace");
    std::fs::create_dir_all(&workspace).expect("workspace");
    std::fs::write(workspace.join("notes.md"), "# Notes\n").expect("a file to list");

    // `cmi serve`: its stdout carries the UI's link.
    let log = std::fs::File::create(home.join("serve.log")).expect("serve.log");
    let mut serve = cmi(&[
        "serve",
        "--port",
        "0",
        "--ui-workspace",
        workspace.to_str().expect("utf-8"),
    ]);
    let mut child = serve
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("cmi serve");
    let stdout = child.stdout.take().expect("stdout");
    let _serve = Child(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("/ui/?token=") {
                let _ = tx.send(line.trim().to_string());
            }
        }
    });
    let serve_log = || std::fs::read_to_string(home.join("serve.log")).unwrap_or_default();
    let url = rx
        .recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("cmi serve printed no UI link; its log:\n{}", serve_log()));
    let addr = url
        .strip_prefix("http://")
        .and_then(|u| u.split_once('/'))
        .map(|(a, _)| a.to_string())
        .expect("an http://ADDR/ URL");

    // Without the token nothing is served; a wrong token is refused; the Bedrock routes still want SigV4.
    let (status, body) = get(&addr, "/ui/", "");
    assert_eq!(status, 401, "{body}");
    assert!(!body.contains("<html"), "{body}");
    assert_eq!(get(&addr, "/ui/api/models", "").0, 401);
    assert_eq!(get(&addr, "/ui/assets/app.js", "").0, 401);
    assert_eq!(get(&addr, "/ui/?token=0123", "").0, 403);
    let port = addr.rsplit(':').next().expect("a port");
    assert_eq!(get(&addr, "/ui/", &format!("Cookie: cmi_ui_{port}=forged\r\n")).0, 401);
    let (status, _) = get(&addr, "/imported-models", "");
    assert!(
        (400..500).contains(&status),
        "unsigned ListImportedModels answered {status}"
    );

    // The browser.
    let port = free_port();
    let driver = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver");
    let _driver = Child(driver);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed().as_secs() < 30, "chromedriver did not listen");
        std::thread::sleep(Duration::from_millis(100));
    }
    let profile = home.join("chromium-profile");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1440,900", "--lang=en-US",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {"intl.accept_languages": "en-US,en"},
        }
    });
    let b = Browser::start(port, caps);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| steps(&b, &url, &tiny, &home)));
    drop(b);
    if let Err(e) = result {
        eprintln!("--- serve log\n{}", serve_log());
        std::panic::resume_unwind(e);
    }
}

fn steps(b: &Browser, url: &str, tiny: &Path, home: &Path) {
    // 1. The tokened link: the cookie is set and the token leaves the address bar.
    b.goto(url);
    b.wait_for("#models-table tbody tr", 30);
    assert!(!b.url().contains("token="), "{}", b.url());
    let rows = b.count("#models-table tbody tr");
    assert!(rows > 5, "{rows} rows");
    let head = b.text("#models-table thead").to_lowercase();
    for col in ["converse", "streams with tools", "context", "max tokens"] {
        assert!(head.contains(col), "no {col} column in {head}");
    }
    b.shot("01-models");
    // The same link again (the token is spent) in this browser, which is signed in: just the page.
    b.goto(url);
    b.wait_for("#models-table", 30);

    // 2. Import the tiny model, with progress.
    b.click("#tab-import");
    b.set("#import-source", tiny.to_str().expect("utf-8"));
    b.set("#import-name", "tiny");
    b.click("#import-run");
    b.wait_for("[data-step=\"check\"]", 120);
    b.wait_for("[data-step=\"upload\"] .ptext", 300);
    b.shot("02-import-progress");
    b.wait_for("[data-step=\"end\"].done #import-chat", 900);
    let upload = b.text("[data-step=\"upload\"]");
    assert!(upload.contains("Uploaded") && upload.contains("/s"), "{upload}");
    b.wait_for("[data-step=\"job\"].ok", 10);
    b.shot("03-import-done");

    // 3. Chat with it: a forced `list_files` call, its input and result shown.
    b.click("#import-chat");
    b.wait_until("document.querySelector('#view-chat').classList.contains('on')", 10);
    b.wait_until("document.querySelector('#chat-model').value === 'tiny'", 10);
    // Random weights write a forced call's string arguments until they happen to close them: room, and a few turns.
    b.set("#chat-max-tokens", "400");
    let mut attempts = 0;
    while b.count("details.tool.ok, details.tool.failed") == 0 {
        attempts += 1;
        assert!(
            attempts <= 4,
            "no tool round trip in 4 turns with a forced list_files call"
        );
        b.set("#chat-tool-choice", "list_files");
        b.set("#chat-input", "Which files are in the workspace?");
        b.click("#chat-send");
        b.wait_until("!document.querySelector('#chat-send').disabled", 300);
    }
    let tool = b.text("details.tool");
    assert!(tool.contains("list_files"), "{tool}");
    b.shot("04-chat-tool-round-trip");

    // 4. A command asks first; declined, the model is told so.
    let mut attempts = 0;
    while b.count(".approval .run") == 0 {
        attempts += 1;
        assert!(
            attempts <= 4,
            "no command to approve in 4 turns with a forced run_command call"
        );
        b.set("#chat-tool-choice", "run_command");
        b.set("#chat-input", "Run a command.");
        b.click("#chat-send");
        b.wait_until(
            "document.querySelector('.approval .run') || !document.querySelector('#chat-send').disabled",
            300,
        );
    }
    b.shot("05-approval");
    b.click(".approval .decline");
    b.wait_for(".approval.declined", 60);
    b.wait_until("!document.querySelector('#chat-send').disabled", 300);

    // 5. A long answer (imported models do not stream with tools, so it comes whole: 8000 tokens take a while),
    // cancelled on the server while the model writes it.
    b.set("#chat-tool-choice", "");
    b.set("#chat-max-tokens", "8000");
    b.set("#chat-input", "Tell me a very long story.");
    b.click("#chat-send");
    b.wait_until("document.querySelector('#chat-status').textContent.length > 0", 30);
    std::thread::sleep(Duration::from_millis(800));
    b.shot("06-waiting");
    b.click("#chat-stop");
    b.wait_for(".notice.cancelled", 60);
    b.shot("07-cancelled");
    let sessions = home.join("config/cmi/sessions");
    let cancelled = std::fs::read_dir(&sessions)
        .unwrap_or_else(|e| panic!("{}: {e}", sessions.display()))
        .flatten()
        .any(|f| {
            std::fs::read_to_string(f.path())
                .unwrap_or_default()
                .contains("\"type\":\"cancelled\"")
        });
    assert!(cancelled, "the session file records no cancel");
    b.wait_for("#session-list li[data-id]", 30);

    // 6. The export, in Bedrock Engineer's models.ts shape.
    b.goto(&format!("{}#models", b.url().split('#').next().unwrap_or_default()));
    b.exec("location.reload();", json!([]));
    b.click("button[data-act=\"export\"][data-name=\"tiny\"]");
    b.wait_until("document.querySelector('#dialog').open", 10);
    let exported = b.exec("return document.querySelector('#dialog-text').value;", json!([]));
    let exported = exported.as_str().unwrap_or_default();
    assert!(
        exported.contains("baseId:") && exported.contains("cmi models export"),
        "{exported}"
    );
    b.shot("08-export");
    b.click("#dialog-close");

    // 7. Japanese, from the switch (and remembered).
    b.click(".lang-switch a[data-lang=\"ja\"]");
    b.wait_until("document.documentElement.lang === 'ja'", 30);
    assert_eq!(b.text("#tab-chat"), "チャット");
    b.shot("09-japanese-models");
    b.click("#tab-chat");
    b.click("#session-list li[data-id]");
    b.wait_for(".msg.assistant", 30);
    b.shot("10-japanese-chat");
}

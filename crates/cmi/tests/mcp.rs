//! MCP both ways, with no registry: `cmi chat --mcp-config` with a standard-library Python MCP server
//! (`crates/mcp-tools/tests/stub_server.py`) and with `cmi mcp` itself as servers, against a `cmi serve` running a
//! tiny random model; forced tool calls (`--tool-choice SERVER__TOOL`) make the round trips certain, a server that
//! crashes mid-session must leave the chat going with a named error, and a bad config must be named before anything
//! starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::{Child, cmi_command, start_serve, text};

struct Env {
    _dir: tempfile::TempDir,
    home: PathBuf,
    _serve: Child,
}

impl Env {
    /// A `cmi serve` with the tiny model imported as `tiny`.
    fn new() -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let home = dir.path().to_path_buf();
        let env = |args: &[&str]| {
            let mut c = cmi_command(&home, &home.join("cache"), args);
            c.env("CMI_DATA_DIR", home.join("server"));
            c
        };
        let log = std::fs::File::create(home.join("serve.log")).expect("serve.log");
        let serve = start_serve(
            env(&["serve", "--port", "0"]),
            log.into(),
            &home.join("server/endpoint.json"),
        );
        let tiny = home.join("tiny");
        let out = env(&["dev", "tiny-model", tiny.to_str().expect("utf-8"), "--family", "llama"])
            .output()
            .expect("cmi dev tiny-model");
        assert!(out.status.success(), "{}", text(&out));
        // The tool definitions fill far more than the tiny model's 512 tokens in a byte-level vocabulary.
        let cfg_path = tiny.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
        cfg["max_position_embeddings"] = 16384.into();
        std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
        let out = env(&["import", tiny.to_str().expect("utf-8"), "--name", "tiny"])
            .stdin(Stdio::null())
            .output()
            .expect("cmi import");
        assert!(out.status.success(), "{}", text(&out));
        std::fs::create_dir_all(home.join("workspace")).expect("workspace");
        Env {
            _dir: dir,
            home,
            _serve: serve,
        }
    }

    fn cmi(&self, args: &[&str]) -> Command {
        let mut c = cmi_command(&self.home, &self.home.join("cache"), args);
        c.env("CMI_DATA_DIR", self.home.join("server"));
        c
    }

    /// Writes an `mcpServers` file with `servers` (JSON of the map's entries) and returns its path.
    fn config(&self, name: &str, servers: &str) -> PathBuf {
        let p = self.home.join(name);
        std::fs::write(&p, format!(r#"{{"mcpServers": {{{servers}}}}}"#)).expect("config");
        p
    }

    /// `cmi chat` on the tiny model with `config`, the first call of each turn forced to `tool`, and `lines` typed.
    /// A call with arguments needs room: random weights may write whitespace for a while inside the forced JSON.
    fn chat(&self, config: &Path, tool: &str, max_tokens: &str, lines: &[&str]) -> Output {
        let ws = self.home.join("workspace");
        let mut c = self.cmi(&[
            "chat",
            "--model",
            "tiny",
            "--workspace",
            ws.to_str().expect("utf-8"),
            "--mcp-config",
            config.to_str().expect("utf-8"),
            "--tool-choice",
            tool,
            "--max-tokens",
            max_tokens,
            "--max-steps",
            "2",
            "--mcp-timeout",
            "20s",
        ]);
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cmi chat");
        let mut stdin = child.stdin.take().expect("stdin");
        for l in lines {
            writeln!(stdin, "{l}").expect("type");
        }
        drop(stdin);
        child.wait_with_output().expect("cmi chat runs")
    }
}

fn stub() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../mcp-tools/tests/stub_server.py");
    format!(
        r#""stub": {{"command": "python3", "args": [{}]}}"#,
        serde_json::to_string(&script).expect("path")
    )
}

#[test]
fn chat_calls_mcp_tools_survives_a_crash_and_cmi_mcp_serves_the_registry() {
    let env = Env::new();

    // A forced call of a stub tool: shown like a built-in call, with the server's answer.
    let config = env.config("stub.json", &stub());
    let out = env.chat(&config, "stub__hello", "32", &["Say hello."]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr.contains("mcp: `stub` offers 6 tools"), "{}", text(&out));
    assert!(
        stdout.contains("→ stub__hello {}") && stdout.contains("← hello from stub"),
        "{}",
        text(&out)
    );

    // The server exits during a call: the model gets a named error, and the next turn is told the server is gone.
    let out = env.chat(&config, "stub__crash", "32", &["Crash it.", "And again."]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        stdout.contains("✗ MCP server `stub` exited or closed its connection during the call of `crash`"),
        "{}",
        text(&out)
    );
    assert!(
        stdout.contains("✗ MCP server `stub` is not running any more"),
        "the chat did not go on to a second turn\n{}",
        text(&out)
    );

    // `cmi mcp` as the server: the registry's models through MCP, the tiny model among them.
    let exe = env!("CARGO_BIN_EXE_cmi");
    let config = env.config(
        "cmi.json",
        &format!(
            r#""cmi": {{"command": {}, "args": ["mcp"]}}"#,
            serde_json::to_string(exe).expect("path")
        ),
    );
    let out = env.chat(&config, "cmi__list_models", "512", &["Which models are there?"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}", text(&out));
    assert!(stderr.contains("mcp: `cmi` offers 7 tools"), "{}", text(&out));
    assert!(
        stdout.contains("→ cmi__list_models {") && stdout.contains("← ") && stdout.contains("\"tiny\""),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_mcp_config_is_named_before_anything_starts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    std::fs::write(
        home.join("mcp.json"),
        r#"{"mcpServers": {"fs": {"command": "npx", "args": "-y"}}}"#,
    )
    .expect("config");
    let out = cmi_command(
        home,
        &home.join("cache"),
        &["chat", "--model", "x", "-p", "hi", "--mcp-config"],
    )
    .arg(home.join("mcp.json"))
    .stdin(Stdio::null())
    .output()
    .expect("cmi chat");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains("`mcpServers.fs.args` is the string \"-y\", expected an array of strings"),
        "{}",
        text(&out)
    );
}

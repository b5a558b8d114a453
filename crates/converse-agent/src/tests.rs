//! Unit tests: reasoning split, normalisation and trimming, synthesised streams, workspace confinement, sessions,
//! and the retry policy / tool loop / switch-over against scripted SDK responses (`aws-smithy-mocks`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_bedrockruntime::Client;
use aws_sdk_bedrockruntime::operation::converse::{ConverseError, ConverseOutput};
use aws_sdk_bedrockruntime::operation::converse_stream::ConverseStreamError;
use aws_sdk_bedrockruntime::types::error::{ModelNotReadyException, ThrottlingException, ValidationException};
use aws_sdk_bedrockruntime::types::{
    self as sdk, ContentBlock, ConversationRole, ConverseMetrics, StopReason, TokenUsage, ToolUseBlock,
};
use aws_smithy_mocks::{RuleMode, mock, mock_client};
use model_registry::{Availability, ModelEntry};
use serde_json::{Value, json};

use crate::agent::Assembler;
use crate::message::{normalize, trim_to_budget};
use crate::tools::{Approver, ToolSet, Workspace};
use crate::*;

// ---------- reasoning split ----------

fn split_all(chunks: &[&str], open: bool) -> (String, String) {
    let mut s = ThinkSplitter::new(open);
    let mut pieces = vec![];
    for c in chunks {
        pieces.extend(s.feed(c));
    }
    pieces.extend(s.finish());
    let mut text = String::new();
    let mut reasoning = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => text.push_str(&t),
            Piece::Reasoning(r) => reasoning.push_str(&r),
        }
    }
    (text, reasoning)
}

#[test]
fn think_tags_split_across_chunks() {
    let (t, r) = split_all(&["<th", "ink>plan ", "it</thi", "nk>\n\nAnswer: 4"], false);
    assert_eq!((t.as_str(), r.as_str()), ("\n\nAnswer: 4", "plan it"));
    let (t, r) = split_all(&["a < b and <b>bold</b>"], false);
    assert_eq!((t.as_str(), r.as_str()), ("a < b and <b>bold</b>", ""));
    // Prompt opened thinking (DeepSeek-R1 template): output starts as reasoning.
    let (t, r) = split_all(&["hmm, 2+2", "</think>4"], true);
    assert_eq!((t.as_str(), r.as_str()), ("4", "hmm, 2+2"));
}

// ---------- normalisation and trimming ----------

fn tool_use(id: &str) -> Block {
    Block::ToolUse {
        tool_use_id: id.into(),
        name: "read_file".into(),
        input: json!({"path": "a"}),
    }
}
fn tool_result(id: &str) -> Block {
    Block::ToolResult {
        tool_use_id: id.into(),
        content: "x".into(),
        is_error: false,
    }
}
fn assistant(content: Vec<Block>) -> Message {
    Message {
        role: Role::Assistant,
        content,
    }
}
fn user_blocks(content: Vec<Block>) -> Message {
    Message {
        role: Role::User,
        content,
    }
}

#[test]
fn normalize_fixes_what_bedrock_rejects() {
    let h = vec![
        Message::user("hi"),
        assistant(vec![
            Block::Text("  ".into()),
            Block::ReasoningContent {
                text: "t".into(),
                signature: None,
            },
            Block::ToolUse {
                tool_use_id: "1".into(),
                name: "list_files".into(),
                input: Value::Null,
            },
        ]),
        // The turn was cancelled before the result: no user message with the result.
        Message::user("again"),
        Message::user("and again"),
    ];
    let n = normalize(&h, false);
    assert_eq!(n.len(), 3, "{n:#?}");
    assert_eq!(
        n[1].content,
        vec![Block::ToolUse {
            tool_use_id: "1".into(),
            name: "list_files".into(),
            input: json!({})
        }]
    );
    // The missing result is supplied (as an error) first, then the two user texts merged in.
    assert!(matches!(&n[2].content[0], Block::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "1"));
    assert_eq!(n[2].text(), "againand again");
    // Orphan results at the start are dropped.
    let n = normalize(&[user_blocks(vec![tool_result("9")]), Message::user("q")], false);
    assert_eq!(n, vec![Message::user("q")]);
    // Signed reasoning is kept for thinking models.
    let signed = assistant(vec![
        Block::ReasoningContent {
            text: "r".into(),
            signature: Some("s".into()),
        },
        Block::Text("a".into()),
    ]);
    assert_eq!(normalize(&[Message::user("q"), signed.clone()], true)[1], signed);
}

#[test]
fn trimming_keeps_tool_pairs_together() {
    let big = "x".repeat(400);
    let mut h = vec![
        Message::user(big.clone()),
        assistant(vec![tool_use("1")]),
        user_blocks(vec![tool_result("1")]),
        assistant(vec![Block::Text(big.clone())]),
        Message::user("second question"),
        assistant(vec![tool_use("2")]),
        user_blocks(vec![tool_result("2")]),
        Message::user("third"),
    ];
    let dropped = trim_to_budget(&mut h, 60);
    assert_eq!(dropped, 4);
    assert_eq!(h[0], Message::user("second question"));
    // Both halves of pair 2 survive together.
    assert!(matches!(h[1].content[0], Block::ToolUse { .. }) && matches!(h[2].content[0], Block::ToolResult { .. }));
    // Never below the last question.
    let mut h = vec![
        Message::user(big.clone()),
        assistant(vec![Block::Text("a".into())]),
        Message::user(big),
    ];
    trim_to_budget(&mut h, 1);
    assert_eq!(h.len(), 1);
}

// ---------- synthesised streams ----------

#[test]
fn synthesized_stream_has_chunks_indices_and_reasoning() {
    let blocks = vec![
        Block::ReasoningContent {
            text: "I should look at the file first, carefully.".into(),
            signature: Some("sig".into()),
        },
        Block::Text("Let me read the file for you, it will take a moment.".into()),
        tool_use("t1"),
    ];
    let evs = synthesize(&blocks, "tool_use", Usage::default(), 5);
    let starts: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ContentBlockStart {
                content_block_index, ..
            } => Some(*content_block_index),
            _ => None,
        })
        .collect();
    let stops: Vec<_> = evs
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ContentBlockStop { content_block_index } => Some(*content_block_index),
            _ => None,
        })
        .collect();
    assert_eq!(starts, vec![2]);
    assert_eq!(stops, vec![0, 1, 2]);
    let text_deltas = evs
        .iter()
        .filter(|e| {
            matches!(
                e,
                StreamEvent::ContentBlockDelta {
                    content_block_index: 1,
                    delta: Delta::Text(_)
                }
            )
        })
        .count();
    assert!(
        text_deltas >= 2,
        "text should arrive in several chunks, got {text_deltas}"
    );
    assert!(evs.iter().any(|e| matches!(e, StreamEvent::ContentBlockDelta { content_block_index: 0, delta: Delta::ReasoningContent(ReasoningDelta::Signature(s)) } if s == "sig")));
    assert_eq!(
        serde_json::to_value(&evs[evs.len() - 2]).expect("json"),
        json!({"messageStop": {"stopReason": "tool_use"}})
    );
    // Reassembles to the same blocks.
    let mut asm = Assembler::new(false);
    let mut sink = |_e: AgentEvent| {};
    for e in &evs {
        asm.on(e, &mut sink);
    }
    let out = asm.finish(&mut sink);
    assert_eq!(out.message.content, blocks);
}

#[test]
fn a_tool_call_cut_off_in_text_is_recognised() {
    use crate::message::cut_off_tool_call;
    let tools = ["read_file", "write_file", "list_files", "run_command"];
    for (text, name) in [
        (
            r#"{"name": "read_file", "parameters": {"path": "jjjj"#,
            Some("read_file"),
        ),
        (r#"  {"name":"write_file","#, Some("write_file")),
        (r#"{"name": "wri"#, Some("")),
        (
            r#"<|python_tag|>{"name": "list_files", "parameters": {"#,
            Some("list_files"),
        ),
        (r#"<|python_tag|>{"name": "anything", "#, Some("anything")),
        (
            r#"<tool_call>
{"name": "run_command", "arguments": {"command": "ls"#,
            Some("run_command"),
        ),
        (
            r#"[TOOL_CALLS][{"name": "read_file", "arguments": {"#,
            Some("read_file"),
        ),
        (
            "<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>read_file",
            Some(""),
        ),
        ("<tool_call>", Some("")),
        // Answers that are JSON, not calls.
        (r#"[{"name": "Alice", "age": 31}, {"name": "Bo"#, None),
        (r#"{"name": "Alice", "#, None),
        (r#"{"name": "Al"#, None),
        (r#"{"name": 42, "#, None),
        (r#"{"answer": 42, "name": "read_file""#, None),
        ("The file says {\"name\": \"read_file\"}", None),
        ("", None),
    ] {
        assert_eq!(cut_off_tool_call(text, &tools).as_deref(), name, "{text:?}");
    }
}

#[test]
fn the_estimate_counts_ascii_by_bytes_and_other_characters_one_each() {
    use crate::message::estimate_tokens;
    // 4 a message, then ASCII at 4 bytes a token (rounded up per block).
    assert_eq!(estimate_tokens(&Message::user("")), 4);
    assert_eq!(estimate_tokens(&Message::user("x".repeat(400))), 104);
    assert_eq!(estimate_tokens(&Message::user("abcde")), 6);
    // Japanese: a token a character, not a quarter of its 3 bytes.
    assert_eq!(estimate_tokens(&Message::user("こんにちは、世界")), 4 + 8);
    assert_eq!(estimate_tokens(&Message::user("日本語 ok")), 4 + 3 + 1);
    let call = assistant(vec![tool_use("t1")]);
    assert!(estimate_tokens(&call) > 4);
}

#[test]
fn a_refusal_with_figures_scales_the_budget_to_them() {
    use crate::agent::smaller_budget;
    let refusal = |m: &str| Error::Validation {
        model_id: "m".into(),
        message: m.into(),
        hint: None,
    };
    // 9241 sent, 8192 fit, 1024 kept for the answer: 7168 of 9241.
    let ours =
        refusal("Input is too long for requested model: the prompt has 9241 tokens and the context window is 8192.");
    assert_eq!(smaller_budget(&ours, 2000, 1024), 2000 * 7168 / 9241);
    // The window first, as vLLM words it; the answer's room never below half the window.
    let vllm = refusal(
        "This model's maximum context length is 4096 tokens. However, you requested 5000 tokens (4000 in the messages, 1000 in the completion).",
    );
    assert_eq!(smaller_budget(&vllm, 1000, 4000), 1000 * 2048 / 5000);
    // Without figures: half. Always less than what was sent.
    assert_eq!(smaller_budget(&refusal("Input is too long"), 1000, 10), 500);
    assert_eq!(smaller_budget(&refusal("too long: 8192 of 8192"), 1000, 10), 500);
    assert_eq!(
        smaller_budget(&refusal("the prompt has 9000 tokens, the window 8192"), 1, 10),
        0
    );
}

#[test]
fn truncated_tool_json_at_max_tokens_is_not_run() {
    let mut asm = Assembler::new(false);
    let mut sink = |_e: AgentEvent| {};
    for e in [
        StreamEvent::MessageStart {
            role: "assistant".into(),
        },
        StreamEvent::ContentBlockStart {
            content_block_index: 0,
            start: BlockStart::ToolUse {
                tool_use_id: "a".into(),
                name: "write_file".into(),
            },
        },
        StreamEvent::ContentBlockDelta {
            content_block_index: 0,
            delta: Delta::ToolUse {
                input: "{\"path\": \"x\", \"content\": \"abc".into(),
            },
        },
        StreamEvent::MessageStop {
            stop_reason: "max_tokens".into(),
        },
    ] {
        asm.on(&e, &mut sink);
    }
    let out = asm.finish(&mut sink);
    assert_eq!(out.truncated_tool.as_deref(), Some("write_file"));
    assert!(out.message.content.is_empty());
}

// ---------- workspace ----------

#[test]
fn workspace_refuses_escapes_including_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::os::unix::fs::symlink(outside.path(), dir.path().join("sub/link")).expect("symlink");
    std::os::unix::fs::symlink(dir.path().join("sub"), dir.path().join("inner")).expect("symlink");
    let ws = Workspace::new(dir.path()).expect("ws");
    assert!(ws.resolve("a/b.txt").is_ok());
    assert!(ws.resolve("inner/new.txt").is_ok(), "a link that stays inside is fine");
    for bad in [
        "../x",
        "sub/../../x",
        "/etc/passwd",
        "sub/link/secret",
        "sub/link/new/file.txt",
    ] {
        let e = ws.resolve(bad).expect_err(bad);
        assert!(e.contains("outside the workspace"), "{bad}: {e}");
    }
}

#[tokio::test]
async fn builtin_tools_work_and_fail_as_tool_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let asked = Arc::new(AtomicUsize::new(0));
    let a = asked.clone();
    let approver: Approver = Arc::new(move |_cmd| {
        a.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { false })
    });
    let tools = ToolSet::builtin(
        Workspace::new(dir.path()).expect("ws"),
        approver,
        vec!["echo".into()],
        false,
    );
    let r = tools
        .call("write_file", &json!({"path": "d/f.txt", "content": "hello"}))
        .await;
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(
        tools.call("read_file", &json!({"path": "d/f.txt"})).await.as_deref(),
        Ok("hello")
    );
    assert_eq!(
        tools.call("list_files", &json!({"recursive": true})).await.as_deref(),
        Ok("d/\nd/f.txt")
    );
    assert!(
        tools
            .call("read_file", &json!({"path": "../../etc/passwd"}))
            .await
            .is_err()
    );
    assert!(
        tools
            .call("read_file", &json!({}))
            .await
            .unwrap_err()
            .contains("missing string argument `path`")
    );
    // Allow-listed: runs without asking.
    let out = tools
        .call("run_command", &json!({"command": "echo hi"}))
        .await
        .expect("runs");
    assert!(out.contains("exit status: 0") && out.contains("hi"), "{out}");
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    // Not allow-listed: asked, declined.
    let e = tools
        .call("run_command", &json!({"command": "touch nope"}))
        .await
        .unwrap_err();
    assert!(e.contains("declined"), "{e}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(!dir.path().join("nope").exists());
    assert!(
        tools
            .call("nonexistent", &json!({}))
            .await
            .unwrap_err()
            .contains("no tool named")
    );
}

// ---------- sessions ----------

#[test]
fn session_resumes_after_a_crash_mid_turn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Session::create(dir.path(), "m").expect("create");
    s.record(&AgentEvent::Message(Message::user("q1"))).expect("rec");
    s.record(&AgentEvent::Message(assistant(vec![Block::Text("a1".into())])))
        .expect("rec");
    s.record(&AgentEvent::Message(Message::user("q2"))).expect("rec");
    s.record(&AgentEvent::Reasoning("thinking".into())).expect("rec");
    s.record(&AgentEvent::Text("partial ans".into())).expect("rec");
    let path = s.path().to_path_buf();
    drop(s);
    // A torn last line, as a crash mid-write leaves.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"{\"type\":\"par"))
        .expect("append");
    let back = Session::open(&path).expect("open");
    assert_eq!(back.model, "m");
    assert_eq!(back.messages.len(), 4);
    assert_eq!(back.messages[3].text(), "partial ans\n[interrupted]");
    assert!(matches!(&back.messages[3].content[0], Block::ReasoningContent { text, .. } if text == "thinking"));
    assert_eq!(Session::latest(dir.path()).expect("latest"), Some(path));
}

use crate::session::Session;

// ---------- the agent against scripted SDK responses ----------

fn entry(streaming_tools: bool) -> ModelEntry {
    let mut e = ModelEntry::new(
        "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl",
        "M",
        "meta",
    );
    e.availability = Some(Availability {
        base: vec!["us-east-1".into()],
    });
    e.supports_streaming_tool_use = Some(streaming_tools);
    e
}

fn text_output(text: &str) -> ConverseOutput {
    stopped_output(text, StopReason::EndTurn)
}

fn stopped_output(text: &str, stop: StopReason) -> ConverseOutput {
    ConverseOutput::builder()
        .output(sdk::ConverseOutput::Message(
            sdk::Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::Text(text.into()))
                .build()
                .expect("msg"),
        ))
        .stop_reason(stop)
        .usage(
            TokenUsage::builder()
                .input_tokens(3)
                .output_tokens(2)
                .total_tokens(5)
                .build()
                .expect("usage"),
        )
        .metrics(ConverseMetrics::builder().latency_ms(7).build().expect("metrics"))
        .build()
        .expect("output")
}

fn tool_output(name: &str, input: Value) -> ConverseOutput {
    ConverseOutput::builder()
        .output(sdk::ConverseOutput::Message(
            sdk::Message::builder()
                .role(ConversationRole::Assistant)
                .content(ContentBlock::Text("<think>need the file</think>Reading it.".into()))
                .content(ContentBlock::ToolUse(
                    ToolUseBlock::builder()
                        .tool_use_id("tooluse_1")
                        .name(name)
                        .input(crate::doc::json_to_doc(&input))
                        .build()
                        .expect("tool"),
                ))
                .build()
                .expect("msg"),
        ))
        .stop_reason(StopReason::ToolUse)
        .usage(
            TokenUsage::builder()
                .input_tokens(3)
                .output_tokens(2)
                .total_tokens(5)
                .build()
                .expect("usage"),
        )
        .metrics(ConverseMetrics::builder().latency_ms(7).build().expect("metrics"))
        .build()
        .expect("output")
}

fn not_ready() -> ConverseError {
    ConverseError::ModelNotReadyException(
        ModelNotReadyException::builder()
            .message("Model is not ready for inference.")
            .build(),
    )
}

fn quick_policy() -> RetryPolicy {
    RetryPolicy {
        cold_start_timeout: Duration::from_secs(60),
        cold_start_initial_delay: Duration::from_secs(2),
        cold_start_max_delay: Duration::from_secs(10),
        max_retries: 3,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
    }
}

/// An agent with tools on and streaming-with-tools off, so every step is a (mocked) non-streaming Converse call.
fn agent(client: &Client, dir: &std::path::Path) -> Agent {
    let mut cfg = AgentConfig::new(
        "arn:aws:bedrock:us-east-1:123456789012:imported-model/abcdefghijkl",
        entry(false),
    );
    cfg.retry = quick_policy();
    let approver: Approver = Arc::new(|_| Box::pin(async { false }));
    let tools = ToolSet::builtin(Workspace::new(dir).expect("ws"), approver, vec![], false);
    Agent::new(client, cfg, tools).with_jitter(|d| d)
}

async fn run(agent: &mut Agent, q: &str) -> (Result<TurnOutcome, Error>, Vec<AgentEvent>, Vec<Message>) {
    let mut events = vec![];
    let mut history = vec![];
    let r = agent
        .run_turn(&mut history, Message::user(q), &mut |e| events.push(e))
        .await;
    (r, events, history)
}

#[tokio::test(start_paused = true)]
async fn cold_model_answers_after_several_model_not_ready_429s() {
    let rule = mock!(Client::converse)
        .sequence()
        .error(not_ready)
        .times(3)
        .output(|| text_output("warm now"))
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&rule]);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = tokio::time::Instant::now();
    let (r, events, _) = run(&mut agent(&client, dir.path()), "hi").await;
    assert_eq!(r.expect("answers").text, "warm now");
    assert_eq!(rule.num_calls(), 4);
    let attempts: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::WarmingUp { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(attempts.iter().max(), Some(&3));
    // Backoff 2 s, 4 s, 8 s (doubling, capped at 10 s), with a status tick at least every second.
    assert_eq!(started.elapsed(), Duration::from_secs(14));
    assert!(attempts.len() >= 14, "{} ticks", attempts.len());
    let last_elapsed = events.iter().rev().find_map(|e| match e {
        AgentEvent::WarmingUp { elapsed, .. } => Some(*elapsed),
        _ => None,
    });
    assert_eq!(last_elapsed, Some(Duration::from_secs(14)));
}

#[tokio::test(start_paused = true)]
async fn cold_start_timeout_is_reached() {
    let rule = mock!(Client::converse).sequence().error(not_ready).repeatedly().build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&rule]);
    let dir = tempfile::tempdir().expect("tempdir");
    let started = tokio::time::Instant::now();
    let (r, _, history) = run(&mut agent(&client, dir.path()), "hi").await;
    let err = r.expect_err("times out");
    assert!(matches!(err, Error::ColdStartTimeout { .. }), "{err}");
    assert!(err.to_string().contains("--cold-start-timeout"), "{err}");
    assert_eq!(started.elapsed(), Duration::from_secs(60));
    // 2+4+8+10+10+10+10 = 54, then the last wait is cut to the 6 s left: 8 waits, 9 calls.
    assert_eq!(rule.num_calls(), 9);
    assert_eq!(history, vec![Message::user("hi")], "the question is kept for a retry");
}

#[tokio::test(start_paused = true)]
async fn throttling_gets_bounded_retries_with_backoff() {
    let throttled =
        || ConverseError::ThrottlingException(ThrottlingException::builder().message("Too many requests").build());
    let ok = mock!(Client::converse)
        .sequence()
        .error(throttled)
        .times(2)
        .output(|| text_output("fine"))
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&ok]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, events, _) = run(&mut agent(&client, dir.path()), "hi").await;
    assert_eq!(r.expect("answers").text, "fine");
    let delays: Vec<Duration> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Retrying { delay, .. } => Some(*delay),
            _ => None,
        })
        .collect();
    assert_eq!(delays, vec![Duration::from_millis(500), Duration::from_secs(1)]);

    let always = mock!(Client::converse).sequence().error(throttled).repeatedly().build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&always]);
    let (r, _, _) = run(&mut agent(&client, dir.path()), "hi").await;
    let err = r.expect_err("gives up");
    assert!(
        matches!(&err, Error::RetriesExhausted { code, attempts: 4, .. } if code == "ThrottlingException"),
        "{err}"
    );
    assert_eq!(always.num_calls(), 4);
}

#[test]
fn jitter_stays_within_half_and_full_ceiling() {
    for _ in 0..100 {
        let d = crate::retry::equal_jitter(Duration::from_secs(2));
        assert!(d >= Duration::from_secs(1) && d <= Duration::from_secs(2), "{d:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn validation_errors_are_explained_not_retried() {
    let rule = mock!(Client::converse).then_error(|| {
        ConverseError::ValidationException(
            ValidationException::builder()
                .message("This model doesn't support tool use.")
                .build(),
        )
    });
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&rule]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, _, _) = run(&mut agent(&client, dir.path()), "hi").await;
    let err = r.expect_err("refused");
    assert_eq!(rule.num_calls(), 1);
    let msg = err.to_string();
    assert!(
        msg.contains("doesn't support tool use") && msg.contains("hint: ") && msg.contains("--no-tools"),
        "{msg}"
    );
}

fn too_long() -> ConverseError {
    ConverseError::ValidationException(
        ValidationException::builder()
            .message(
                "Input is too long for requested model: the prompt has 9241 tokens and the context window is 8192.",
            )
            .build(),
    )
}

/// Bytes of text in a Converse request.
fn request_bytes(r: &aws_sdk_bedrockruntime::operation::converse::ConverseInput) -> usize {
    r.messages()
        .iter()
        .flat_map(|m| m.content())
        .filter_map(|c| c.as_text().ok())
        .map(String::len)
        .sum()
}

#[tokio::test(start_paused = true)]
async fn a_refusal_as_too_long_leaves_out_the_oldest_exchanges_and_is_remembered() {
    // The model takes at most `limit` bytes of text (its tokenizer needs a token for every byte, say), which the
    // byte estimate cannot know: with no budget configured, or with one too large for it.
    for (configured, limit) in [(None, 1000), (Some(300), 600)] {
        let refused = mock!(Client::converse)
            .match_requests(move |r| request_bytes(r) > limit)
            .then_error(too_long);
        let answered = mock!(Client::converse)
            .match_requests(move |r| request_bytes(r) <= limit)
            .then_output(|| text_output("fits now"));
        let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&refused, &answered]);
        let dir = tempfile::tempdir().expect("tempdir");
        let base = agent(&client, dir.path());
        let mut history = vec![];
        for i in 0..4 {
            history.push(Message::user(format!("question {i} {}", "x".repeat(400))));
            history.push(assistant(vec![Block::Text(format!("answer {i} {}", "y".repeat(400)))]));
        }
        let mut config = base.config().clone();
        config.history_budget = configured;
        let mut agent = Agent::new(&client, config, base.tools().clone()).with_jitter(|d| d);
        let before = history.len();
        let mut events = vec![];
        let out = agent
            .run_turn(&mut history, Message::user("and now?"), &mut |e| events.push(e))
            .await
            .expect("answers once older turns are left out");
        assert_eq!(out.text, "fits now");
        let left_out: Vec<usize> = events
            .iter()
            .filter_map(|e| match e {
                AgentEvent::ContextTrimmed { left_out } => Some(*left_out),
                _ => None,
            })
            .collect();
        assert!(!left_out.is_empty() && left_out.iter().all(|&n| n > 0), "{events:?}");
        assert_eq!(history.len(), before + 2, "the history keeps every message");
        assert!(refused.num_calls() >= 1);
        assert_eq!(answered.num_calls(), 1);

        // The next turn starts from what the refusal taught (the smaller of it and the configured budget): no
        // second refusal.
        let refusals = refused.num_calls();
        let mut events = vec![];
        agent
            .run_turn(&mut history, Message::user("and then?"), &mut |e| events.push(e))
            .await
            .expect("answers");
        assert_eq!(
            refused.num_calls(),
            refusals,
            "{configured:?}: refused again: {events:?}"
        );
        assert_eq!(answered.num_calls(), 2);
    }
}

#[tokio::test(start_paused = true)]
async fn a_turn_too_long_on_its_own_is_refused_taken_out_and_the_chat_goes_on() {
    let refused = mock!(Client::converse)
        .match_requests(|r| request_bytes(r) > 1000)
        .then_error(too_long);
    let answered = mock!(Client::converse)
        .match_requests(|r| request_bytes(r) <= 1000)
        .then_output(|| text_output("short is fine"));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&refused, &answered]);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut agent = agent(&client, dir.path());
    let mut history = vec![Message::user("earlier"), assistant(vec![Block::Text("yes".into())])];
    let mut events = vec![];
    let err = agent
        .run_turn(&mut history, Message::user("z".repeat(5000)), &mut |e| events.push(e))
        .await
        .expect_err("refused");
    assert!(err.is_context_refusal(), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("9241 tokens") && msg.contains("hint: ") && msg.contains("taken out of the conversation"),
        "{msg}"
    );
    assert_eq!(
        refused.num_calls(),
        2,
        "once as it was, once with the earlier exchange left out"
    );
    assert!(events.contains(&AgentEvent::Withdrawn { messages: 1 }), "{events:?}");
    assert_eq!(history.len(), 2, "the question is taken out");

    // The next question is not merged with the refused one.
    let out = agent
        .run_turn(&mut history, Message::user("short one?"), &mut |_| {})
        .await
        .expect("answers");
    assert_eq!(out.text, "short is fine");
    assert_eq!(refused.num_calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_off_in_text_is_not_shown_as_the_answer_but_asked_again() {
    let rule = mock!(Client::converse)
        .sequence()
        .output(|| {
            stopped_output(
                r#"{"name": "read_file", "parameters": {"path": "aaaa"#,
                StopReason::MaxTokens,
            )
        })
        .output(|| text_output("done"))
        .build();
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&rule]);
    let dir = tempfile::tempdir().expect("tempdir");
    let (r, events, history) = run(&mut agent(&client, dir.path()), "read it").await;
    assert_eq!(r.expect("answers").text, "done");
    assert_eq!(rule.num_calls(), 2);
    assert!(
        events.contains(&AgentEvent::TruncatedToolCall {
            name: "read_file".into()
        }),
        "{events:?}"
    );
    assert!(
        history
            .iter()
            .any(|m| m.role == Role::User && m.text().contains("`read_file` was cut off")),
        "{history:?}"
    );

    // An answer that is JSON naming no tool, cut off, is the answer.
    let json = r#"[{"name": "Alice", "age": 31}, {"name": "Bo"#;
    let rule = mock!(Client::converse).then_output(move || stopped_output(json, StopReason::MaxTokens));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::Sequential, [&rule]);
    let (r, events, _) = run(&mut agent(&client, dir.path()), "people as JSON").await;
    let out = r.expect("answers");
    assert_eq!((out.text.as_str(), out.stop_reason.as_str()), (json, "max_tokens"));
    assert_eq!(rule.num_calls(), 1);
    assert!(!events.iter().any(|e| matches!(e, AgentEvent::TruncatedToolCall { .. })));
}

#[test]
fn a_withdrawn_turn_stays_out_of_a_resumed_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = crate::session::Session::create(dir.path(), "tiny").expect("session");
    for e in [
        AgentEvent::Message(Message::user("first")),
        AgentEvent::Message(assistant(vec![Block::Text("one".into())])),
        AgentEvent::Message(Message::user("far too long")),
        AgentEvent::Withdrawn { messages: 1 },
    ] {
        s.record(&e).expect("record");
    }
    assert_eq!(s.messages.len(), 2);
    let resumed = crate::session::Session::open(s.path()).expect("open");
    assert_eq!(resumed.messages, s.messages);
}

#[tokio::test]
async fn tool_round_trip_without_streaming_is_presented_as_a_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("notes.txt"), "the answer is 42").expect("write");
    let rule = mock!(Client::converse)
        .sequence()
        .output(|| tool_output("read_file", json!({"path": "notes.txt"})))
        .output(|| text_output("The file says the answer is 42."))
        .build();
    let stream_rule = mock!(Client::converse_stream).then_error(|| {
        ConverseStreamError::ValidationException(ValidationException::builder().message("must not be called").build())
    });
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule, &stream_rule]);
    let (r, events, history) = run(&mut agent(&client, dir.path()), "what do my notes say?").await;
    let out = r.expect("answers");
    assert_eq!((out.steps, out.text.as_str()), (2, "The file says the answer is 42."));
    assert_eq!(stream_rule.num_calls(), 0, "non-streaming Converse only");
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, AgentEvent::Request { api: Api::Converse, .. }))
            .count()
            == 2
    );
    let reasoning: String = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Reasoning(r) => Some(r.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(reasoning, "need the file");
    assert!(
        events.iter().any(
            |e| matches!(e, AgentEvent::ToolResult { output, is_error: false, .. } if output == "the answer is 42")
        )
    );
    // Still a stream: start, deltas with indices, tool block start at index 1, stop.
    assert!(events.iter().any(|e| matches!(
        e,
        AgentEvent::Stream(StreamEvent::ContentBlockStart {
            content_block_index: 1,
            ..
        })
    )));
    assert!(events.iter().filter(|e| matches!(e, AgentEvent::Text(_))).count() >= 2);
    assert_eq!(history.len(), 4);
    assert!(matches!(&history[2].content[0], Block::ToolResult { tool_use_id, .. } if tool_use_id == "tooluse_1"));
    // The reasoning split out of <think> is kept in the history, apart from the text.
    assert!(
        matches!(&history[1].content[0], Block::ReasoningContent { text, signature: None } if text == "need the file")
    );
}

#[tokio::test]
async fn refusal_of_streaming_with_tools_switches_over_and_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let refused = mock!(Client::converse_stream).then_error(|| {
        ConverseStreamError::ValidationException(
            ValidationException::builder()
                .message("This model doesn't support tool use in streaming mode.")
                .build(),
        )
    });
    let converse = mock!(Client::converse).then_output(|| text_output("hello"));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&refused, &converse]);
    let mut cfg = AgentConfig::new("m-arn", entry(true));
    cfg.retry = quick_policy();
    let approver: Approver = Arc::new(|_| Box::pin(async { true }));
    let tools = ToolSet::builtin(Workspace::new(dir.path()).expect("ws"), approver, vec![], false);
    let remembered = Arc::new(Mutex::new(vec![]));
    let r2 = remembered.clone();
    let mut agent = Agent::new(&client, cfg, tools).on_streaming_refused(Arc::new(move |id: &str| {
        r2.lock().expect("lock").push(id.to_string());
    }));
    assert!(agent.streams_with_tools());
    let (r, events, _) = run(&mut agent, "hi").await;
    assert_eq!(r.expect("answers").text, "hello");
    assert!(!agent.streams_with_tools());
    assert_eq!(*remembered.lock().expect("lock"), vec!["m-arn".to_string()]);
    let apis: Vec<Api> = events
        .iter()
        .filter_map(|e| match e {
            AgentEvent::Request { api, .. } => Some(*api),
            _ => None,
        })
        .collect();
    assert_eq!(apis, vec![Api::ConverseStream, Api::Converse]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::SwitchedToNonStreaming { .. }))
    );
    // The next turn goes straight to Converse.
    let (_, events, _) = run(&mut agent, "again").await;
    assert_eq!(refused.num_calls(), 1);
    assert!(events.iter().all(|e| !matches!(
        e,
        AgentEvent::Request {
            api: Api::ConverseStream,
            ..
        }
    )));
}

#[tokio::test]
async fn step_limit_stops_a_looping_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = mock!(Client::converse).then_output(|| tool_output("list_files", json!({})));
    let client = mock_client!(aws_sdk_bedrockruntime, RuleMode::MatchAny, [&rule]);
    let mut a = agent(&client, dir.path());
    a = {
        let mut cfg = a.config().clone();
        cfg.max_steps = 3;
        let approver: Approver = Arc::new(|_| Box::pin(async { false }));
        Agent::new(
            &client,
            cfg,
            ToolSet::builtin(Workspace::new(dir.path()).expect("ws"), approver, vec![], false),
        )
    };
    let (r, _, history) = run(&mut a, "loop").await;
    assert!(matches!(r, Err(Error::StepLimit { steps: 3 })));
    assert_eq!(rule.num_calls(), 3);
    assert_eq!(history.len(), 7);
}

/// The InvokeModel path reads tool calls in the syntax the model's template teaches, and reasoning, as Converse would.
#[test]
fn invoke_path_parses_tool_calls_and_reasoning_from_raw_output() {
    use crate::invoke::{OutputPiece, template_parser};
    let parse = template_parser(chat_template::ToolSyntax::Hermes);
    let out = "<think>the user wants a file</think>Let me look.\n<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\"path\": \"notes.txt\"}}\n</tool_call>";
    let pieces = parse(out, false);
    assert!(
        pieces.contains(&OutputPiece::Reasoning("the user wants a file".into())),
        "{pieces:?}"
    );
    assert!(
        pieces.contains(&OutputPiece::ToolCall {
            name: "read_file".into(),
            arguments: serde_json::json!({"path": "notes.txt"})
        }),
        "{pieces:?}"
    );
    // A malformed call stays text rather than being run.
    let bad = parse(
        "<tool_call>\n{\"name\": \"read_file\", \"arguments\": {\n</tool_call>",
        false,
    );
    assert!(
        bad.iter().all(|p| !matches!(p, OutputPiece::ToolCall { .. })),
        "{bad:?}"
    );
}

//! End-to-end: the agent on the real `aws-sdk-bedrockruntime` client against the local Bedrock (`bedrock-server`)
//! serving tiny generated models: a streamed turn, a tool round trip with `supportsStreamingToolUse: false`, the
//! run-time switch-over, a cold start, chat through InvokeModel with the model's own template, and a conversation
//! that outgrows the model's context.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_credential_types::Credentials;
use bedrock_server::{RunningServer, ServerConfig};
use converse_agent::invoke::InvokeBackend;
use converse_agent::tools::{Approver, ToolSet, Workspace};
use converse_agent::{Agent, AgentConfig, AgentEvent, Api, Error, Message, RetryPolicy, StreamEvent, TurnOutcome};
use model_registry::{Availability, ModelEntry};
use test_support::Family;

struct Local {
    server: RunningServer,
    _dir: tempfile::TempDir,
}

async fn start(warm: bool, stream_tools: Vec<(String, bool)>) -> Local {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = ServerConfig::new(dir.path().to_path_buf());
    cfg.warm = warm;
    cfg.model_stream_tools = stream_tools;
    let server = bedrock_server::start(cfg).await.expect("local Bedrock starts");
    Local { server, _dir: dir }
}

fn creds(server: &RunningServer) -> Credentials {
    let c = server.credentials();
    Credentials::new(&c.access_key_id, &c.secret_access_key, None, None, "test")
}

fn runtime(server: &RunningServer) -> aws_sdk_bedrockruntime::Client {
    let conf = aws_sdk_bedrockruntime::Config::builder()
        .behavior_version(aws_sdk_bedrockruntime::config::BehaviorVersion::latest())
        .region(aws_sdk_bedrockruntime::config::Region::new(server.region().to_string()))
        .endpoint_url(server.endpoint_url())
        .credentials_provider(creds(server))
        .build();
    aws_sdk_bedrockruntime::Client::from_conf(conf)
}

/// Imports a tiny model of `family` under `name`; returns its registry entry (from GetImportedModel, as
/// `cmi models sync` builds it) and the model folder.
async fn import(server: &RunningServer, family: Family, name: &str) -> (ModelEntry, tempfile::TempDir) {
    // The tiny models declare a 512-token context; the built-in tools' specs alone render longer than that. Positions
    // are rotary, so the same weights run at any length.
    import_with_context(server, family, name, 8192).await
}

/// As [`import`], with a context window of `context` tokens.
async fn import_with_context(
    server: &RunningServer,
    family: Family,
    name: &str,
    context: u32,
) -> (ModelEntry, tempfile::TempDir) {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), family).expect("tiny model");
    let cfg_path = model.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
    cfg["max_position_embeddings"] = serde_json::json!(context);
    std::fs::write(&cfg_path, serde_json::to_vec_pretty(&cfg).expect("json")).expect("write config");
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(creds(server))
            .force_path_style(true)
            .build(),
    );
    let bucket = "models";
    let _ = s3.create_bucket().bucket(bucket).send().await;
    for e in std::fs::read_dir(model.path()).expect("dir") {
        let e = e.expect("entry");
        let body = aws_sdk_s3::primitives::ByteStream::from_path(e.path())
            .await
            .expect("body");
        let key = format!("{name}/{}", e.file_name().to_string_lossy());
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body)
            .send()
            .await
            .expect("put");
    }
    let br = aws_sdk_bedrock::Client::from_conf(
        aws_sdk_bedrock::Config::builder()
            .behavior_version(aws_sdk_bedrock::config::BehaviorVersion::latest())
            .region(aws_sdk_bedrock::config::Region::new(server.region().to_string()))
            .endpoint_url(server.endpoint_url())
            .credentials_provider(creds(server))
            .build(),
    );
    let job = br
        .create_model_import_job()
        .job_name(format!("{name}-job"))
        .imported_model_name(name)
        .role_arn("arn:aws:iam::123456789012:role/ImportRole")
        .model_data_source(aws_sdk_bedrock::types::ModelDataSource::S3DataSource(
            aws_sdk_bedrock::types::S3DataSource::builder()
                .s3_uri(format!("s3://{bucket}/{name}/"))
                .build()
                .expect("src"),
        ))
        .send()
        .await
        .expect("create job")
        .job_arn;
    for _ in 0..600 {
        let j = br
            .get_model_import_job()
            .job_identifier(&job)
            .send()
            .await
            .expect("job");
        match j.status() {
            Some(aws_sdk_bedrock::types::ModelImportJobStatus::InProgress) => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Some(aws_sdk_bedrock::types::ModelImportJobStatus::Completed) => break,
            other => panic!("import failed: {other:?} {:?}", j.failure_message()),
        }
    }
    let m = br
        .get_imported_model()
        .model_identifier(name)
        .send()
        .await
        .expect("get imported model");
    let arn = m.model_arn().expect("arn").to_string();
    let mut e = ModelEntry::new(arn, name, "meta");
    e.availability = Some(Availability {
        base: vec![server.region().to_string()],
    });
    e.instruct_supported = m.instruct_supported();
    e.max_tokens_limit = 24;
    (e, model)
}

fn tools(dir: &Path) -> ToolSet {
    let approver: Approver = Arc::new(|_| Box::pin(async { false }));
    ToolSet::builtin(Workspace::new(dir).expect("workspace"), approver, vec![], false)
}

/// A tool whose input can only be `{}`, so grammar-constrained decoding on random weights ends the call quickly.
struct Ls(std::path::PathBuf);

impl converse_agent::tools::Tool for Ls {
    fn name(&self) -> &str {
        "ls"
    }
    fn description(&self) -> &str {
        "List files"
    }
    fn input_schema(&self) -> serde_json::Value {
        serde_json::json!({"type": "object", "properties": {}, "additionalProperties": false})
    }
    fn call<'a>(
        &'a self,
        _input: &'a serde_json::Value,
    ) -> converse_agent::tools::BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let mut names: Vec<String> = std::fs::read_dir(&self.0)
                .map_err(|e| e.to_string())?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            Ok(names.join("\n"))
        })
    }
}

fn config(entry: &ModelEntry) -> AgentConfig {
    let mut c = AgentConfig::new(entry.base_id.clone(), entry.clone());
    c.temperature = Some(0.0);
    c.retry = RetryPolicy {
        cold_start_timeout: Duration::from_secs(120),
        cold_start_initial_delay: Duration::from_millis(200),
        cold_start_max_delay: Duration::from_secs(1),
        ..RetryPolicy::default()
    };
    c
}

async fn turn(agent: &mut Agent, q: &str) -> (Result<TurnOutcome, Error>, Vec<AgentEvent>, Vec<Message>) {
    let mut events = vec![];
    let mut history = vec![];
    let r = agent
        .run_turn(&mut history, Message::user(q), &mut |e| events.push(e))
        .await;
    (r, events, history)
}

fn apis(events: &[AgentEvent]) -> Vec<Api> {
    events
        .iter()
        .filter_map(|e| {
            if let AgentEvent::Request { api, .. } = e {
                Some(*api)
            } else {
                None
            }
        })
        .collect()
}

fn text_of(events: &[AgentEvent]) -> String {
    events
        .iter()
        .filter_map(|e| {
            if let AgentEvent::Text(t) = e {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_turn() {
    let local = start(true, vec![]).await;
    let (entry, _m) = import(&local.server, Family::Llama, "tiny-llama").await;
    let ws = tempfile::tempdir().expect("ws");
    let mut c = config(&entry);
    c.use_tools = false;
    let mut agent = Agent::new(&runtime(&local.server), c, tools(ws.path()));
    let (r, events, history) = turn(&mut agent, "Say hello.").await;
    let out = r.expect("turn succeeds");
    assert_eq!(apis(&events), vec![Api::ConverseStream]);
    let stream: Vec<&StreamEvent> = events
        .iter()
        .filter_map(|e| if let AgentEvent::Stream(s) = e { Some(s) } else { None })
        .collect();
    assert!(
        matches!(stream.first(), Some(StreamEvent::MessageStart { .. })),
        "{stream:?}"
    );
    assert!(stream.iter().any(|s| matches!(s, StreamEvent::MessageStop { .. })));
    assert!(
        stream
            .iter()
            .filter(|s| matches!(s, StreamEvent::ContentBlockDelta { .. }))
            .count()
            >= 2,
        "streamed in pieces"
    );
    assert_eq!(history.len(), 2);
    assert_eq!(out.text, history[1].text());
    assert_eq!(text_of(&events), out.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_round_trip_with_streaming_tool_use_false() {
    let local = start(true, vec![]).await;
    let (mut entry, _m) = import(&local.server, Family::Llama, "tiny-tools").await;
    entry.supports_streaming_tool_use = Some(false);
    entry.max_tokens_limit = 200;
    let ws = tempfile::tempdir().expect("ws");
    std::fs::write(ws.path().join("hello.txt"), "hi").expect("write");
    let mut c = config(&entry);
    c.first_tool_choice = Some("ls".into());
    c.max_steps = 2;
    let mut ls = ToolSet::new();
    ls.add(Arc::new(Ls(ws.path().to_path_buf())));
    let mut agent = Agent::new(&runtime(&local.server), c, ls);
    let (r, events, history) = turn(&mut agent, "What files are there?").await;
    // The tiny model's second answer is random: it may stop, or call again into the step limit.
    assert!(matches!(r, Ok(_) | Err(Error::StepLimit { .. })), "{r:?}");
    let a = apis(&events);
    assert!(
        a.iter().all(|x| *x == Api::Converse) && !a.is_empty(),
        "non-streaming Converse only: {a:?}"
    );
    // Presented as a stream: a tool block started with its index, its input in deltas, stopped.
    let start = events.iter().find_map(|e| match e {
        AgentEvent::Stream(StreamEvent::ContentBlockStart {
            content_block_index, ..
        }) => Some(*content_block_index),
        _ => None,
    });
    let i = start.unwrap_or_else(|| panic!("a tool block in the synthesised stream: {events:#?}"));
    assert!(events.iter().any(|e| matches!(e, AgentEvent::Stream(StreamEvent::ContentBlockStop { content_block_index }) if *content_block_index == i)));
    let result = events.iter().find_map(|e| match e {
        AgentEvent::ToolResult {
            name, output, is_error, ..
        } if name == "ls" => Some((output.clone(), *is_error)),
        _ => None,
    });
    let shown: Vec<&AgentEvent> = events
        .iter()
        .filter(|e| !matches!(e, AgentEvent::Stream(_) | AgentEvent::Text(_)))
        .collect();
    assert_eq!(result, Some(("hello.txt".to_string(), false)), "{shown:#?}");
    assert!(history.iter().any(|m| m.tool_uses().any(|(_, n, _)| n == "ls")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_over_when_streaming_with_tools_is_refused() {
    let local = start(true, vec![("tiny-refuses".to_string(), false)]).await;
    let (entry, _m) = import(&local.server, Family::Llama, "tiny-refuses").await;
    assert_eq!(entry.supports_streaming_tool_use, None, "the entry does not know yet");
    let ws = tempfile::tempdir().expect("ws");
    let mut c = config(&entry);
    c.max_steps = 1;
    let remembered = Arc::new(Mutex::new(Vec::<String>::new()));
    let r2 = remembered.clone();
    let mut agent = Agent::new(&runtime(&local.server), c, tools(ws.path()))
        .on_streaming_refused(Arc::new(move |id: &str| r2.lock().expect("lock").push(id.to_string())));
    let (r, events, _) = turn(&mut agent, "hello").await;
    assert!(matches!(r, Ok(_) | Err(Error::StepLimit { .. })), "{r:?}");
    assert_eq!(apis(&events)[..2], [Api::ConverseStream, Api::Converse]);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::SwitchedToNonStreaming { reason } if reason.contains("streaming")))
    );
    assert_eq!(*remembered.lock().expect("lock"), vec![entry.base_id.clone()]);
    assert!(!agent.streams_with_tools());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_model_answers_after_model_not_ready() {
    let local = start(false, vec![]).await;
    let (entry, _m) = import(&local.server, Family::Llama, "tiny-cold").await;
    let ws = tempfile::tempdir().expect("ws");
    let mut c = config(&entry);
    c.use_tools = false;
    let mut agent = Agent::new(&runtime(&local.server), c, tools(ws.path()));
    let (r, events, _) = turn(&mut agent, "hello").await;
    r.expect("answers once warm");
    let warm = events
        .iter()
        .filter(|e| matches!(e, AgentEvent::WarmingUp { .. }))
        .count();
    assert!(warm >= 1, "the first call met ModelNotReadyException");
    assert!(apis(&events).len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_model_chat_with_the_models_own_template() {
    let local = start(true, vec![]).await;
    let (mut entry, model) = import(&local.server, Family::Qwen3, "tiny-qwen3").await;
    // Chat goes through InvokeModel whenever the entry says Converse is not available.
    entry.instruct_supported = Some(false);
    let ws = tempfile::tempdir().expect("ws");
    let backend = InvokeBackend::from_model_dir(model.path()).expect("template");
    let prompt = backend
        .render(None, &[Message::user("hi")], &tools(ws.path()).openai_specs())
        .expect("renders");
    assert!(
        prompt.contains("list_files") && prompt.contains("<|im_start|>assistant"),
        "{prompt}"
    );
    let mut agent = Agent::new(&runtime(&local.server), config(&entry), tools(ws.path())).with_invoke(backend);
    let (r, events, history) = turn(&mut agent, "hello").await;
    r.expect("turn succeeds");
    assert!(apis(&events).iter().all(|a| *a == Api::InvokeModel));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::Stream(StreamEvent::MessageStop { .. })))
    );
    assert!(history.len() >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_longer_than_the_context_is_trimmed_at_the_refusal() {
    let local = start(true, vec![]).await;
    let (entry, _m) = import_with_context(&local.server, Family::Llama, "tiny-512", 512).await;
    let ws = tempfile::tempdir().expect("ws");
    let mut c = config(&entry);
    c.use_tools = false;
    let mut agent = Agent::new(&runtime(&local.server), c, tools(ws.path()));
    // The byte-level vocabulary takes a token or more per byte of this text; the agent's estimate counts a quarter
    // of that, so only the local Bedrock's refusal can tell it that four exchanges do not fit in 512 tokens.
    let mut history = vec![];
    for i in 0..4 {
        history.push(Message::user(format!("{i} {}", "äöü€".repeat(40))));
        history.push(Message {
            role: converse_agent::Role::Assistant,
            content: vec![converse_agent::Block::Text(format!("{i} {}", "→←↑↓".repeat(40)))],
        });
    }
    let kept = history.len();
    let history_before = history.clone();
    let mut events = vec![];
    agent
        .run_turn(&mut history, Message::user("And now?"), &mut |e| events.push(e))
        .await
        .expect("answered once the oldest exchanges are left out");
    assert!(
        events
            .iter()
            .any(|e| matches!(e, AgentEvent::ContextTrimmed { left_out } if *left_out > 0)),
        "{events:?}"
    );
    assert!(history.len() > kept, "the question is kept");
    assert_eq!(history[..kept], history_before[..], "the history keeps every message");

    // The next turn is sent trimmed at once: one request, no refusal.
    let mut events = vec![];
    agent
        .run_turn(&mut history, Message::user("And then?"), &mut |e| events.push(e))
        .await
        .expect("answered");
    assert_eq!(apis(&events).len(), 1, "{events:?}");

    // A question that alone does not fit is refused, taken out, and the chat goes on.
    let before = history.len();
    let err = agent
        .run_turn(&mut history, Message::user("€".repeat(600)), &mut |_| {})
        .await
        .expect_err("refused");
    assert!(err.is_context_refusal(), "{err}");
    assert!(err.to_string().contains("context window is 512"), "{err}");
    assert_eq!(history.len(), before);
    agent
        .run_turn(&mut history, Message::user("Short?"), &mut |_| {})
        .await
        .expect("answered");
}

//! End to end on the real demo model, for a model served without Converse (`instructSupported: false`): `cmi chat`
//! talks to it through InvokeModel, renders the prompt itself with the model's own chat template, parses the tool
//! call out of the raw generation, runs the built-in `list_files`, sends the result back the same way and gets an
//! answer that uses it.
//!
//! SmolLM2-135M-Instruct's own template teaches no tools, so the test gives its folder (converted by `cmi convert
//! demo`, the GGUF from the shared cache as in the quickstart test) a ChatML template with Hermes-style tool use,
//! written here: tool signatures in the system turn inside `<tools></tools>`, calls as `<tool_call>` JSON, results in a
//! turn of their own with the role `tool`. The folder is imported into a `cmi serve` the test runs; the local
//! Bedrock reports Converse as working for that template, so the registry entry is then replaced (`cmi models add`)
//! by the same entry with `instructSupported: false`, as `cmi import` registers models that Bedrock serves without
//! Converse (Qwen3, for one).
//!
//! A 135M model does not call tools from the instructions alone, so the chat resumes a saved session (written with
//! the agent's own session code, the format `cmi chat` saves) that holds two earlier complete round trips with the
//! same tool, and asks the same kind of question about `docs/`. Greedy decoding (`--temperature 0`) then calls
//! `list_files` on `docs` and answers from its result; this was found by experiment and is deterministic, so any
//! break in the rendering, the parsing or the round trip fails the test.
//!
//! Checked: the server saw only InvokeModel requests (its debug log of runtime operations); the saved turn is the
//! question, a `list_files` call with path `docs`, its result naming `guide.md`, and an answer naming `guide.md`.

use std::path::Path;
use std::process::{Command, Stdio};

use converse_agent::session::Session;
use converse_agent::{AgentEvent, Block, Message, Role};
use serde_json::{Value, json};

mod common;

use common::{cmi_command, convert_demo, start_serve, text};

/// ChatML with Hermes-style tools, in the shape the agent renders its conversation for chat templates (OpenAI
/// messages: `tool_calls` with object arguments, results as `tool` messages). Without tools it renders as
/// SmolLM2's own template does.
const HERMES_CHATML: &str = r#"{%- if messages and messages[0].role == 'system' %}
    {%- set system_text = messages[0].content %}
    {%- set turns = messages[1:] %}
{%- else %}
    {%- set system_text = '' %}
    {%- set turns = messages %}
{%- endif %}
{{- '<|im_start|>system\n' }}
{%- if tools %}
    {{- (system_text if system_text else 'You are a helpful assistant who can use tools.') + '\n\n# Tools\n\nYou can call the functions whose JSON signatures are listed within <tools></tools> XML tags:\n<tools>' }}
    {%- for tool in tools %}
        {{- '\n' + (tool | tojson) }}
    {%- endfor %}
    {{- '\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' }}
{%- else %}
    {{- system_text if system_text else 'You are a helpful AI assistant named SmolLM, trained by Hugging Face' }}
{%- endif %}
{{- '<|im_end|>\n' }}
{%- for message in turns %}
    {%- if message.role == 'tool' %}
        {%- if loop.first or loop.previtem.role != 'tool' %}
            {{- '<|im_start|>tool' }}
        {%- endif %}
        {{- '\n<tool_response>\n' + message.content + '\n</tool_response>' }}
        {%- if loop.last or loop.nextitem.role != 'tool' %}
            {{- '<|im_end|>\n' }}
        {%- endif %}
    {%- elif message.role == 'assistant' %}
        {{- '<|im_start|>assistant\n' }}
        {%- if message.content %}
            {{- message.content }}
        {%- endif %}
        {%- for call in message.tool_calls or [] %}
            {%- set fn = call.function if call.function is defined else call %}
            {%- if message.content or not loop.first %}
                {{- '\n' }}
            {%- endif %}
            {{- '<tool_call>\n{"name": "' + fn.name + '", "arguments": ' }}
            {%- if fn.arguments is string %}
                {{- fn.arguments }}
            {%- else %}
                {{- fn.arguments | tojson }}
            {%- endif %}
            {{- '}\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\n' }}
    {%- else %}
        {{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

/// The registry name of the imported model.
const MODEL: &str = "smol-hermes";

/// The question asked in the test; the history asks the same about two other folders.
const QUESTION: &str = r#"Which files are in the folder "docs"?"#;

/// `cmi ARGS` with the test's home, its own cache, and the local Bedrock's data in `home/server`.
fn command(home: &Path, args: &[&str]) -> Command {
    let mut c = cmi_command(home, &home.join("cache"), args);
    c.env("CMI_DATA_DIR", home.join("server"));
    c
}

/// Runs `cmi ARGS` to the end; panics with its output when it fails. Returns stdout and stderr.
fn run(c: &mut Command, what: &str) -> String {
    let out = c.stdin(Stdio::null()).output().expect("cmi runs");
    assert!(out.status.success(), "{what} failed\n{}", text(&out));
    text(&out)
}

/// Installs [`HERMES_CHATML`] as the folder's chat template.
fn install_template(model: &Path) {
    let file = model.join("tokenizer_config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&file).expect("tokenizer_config.json"))
        .expect("tokenizer_config.json is JSON");
    cfg["chat_template"] = json!(HERMES_CHATML);
    std::fs::write(&file, serde_json::to_vec_pretty(&cfg).expect("serialise")).expect("write tokenizer_config.json");
}

/// Replaces the registry entry `cmi import` wrote with the same entry marked `instructSupported: false`.
fn register_without_converse(home: &Path) {
    let registry: Value = serde_json::from_slice(
        &std::fs::read(home.join("config/cmi/models.json")).expect("the import wrote the registry"),
    )
    .expect("the registry is JSON");
    let mut entry = registry["models"]
        .as_array()
        .and_then(|m| m.iter().find(|e| e["name"] == MODEL))
        .cloned()
        .unwrap_or_else(|| panic!("`{MODEL}` is not registered: {registry}"));
    assert!(
        entry["modelSource"].is_string(),
        "the entry has no modelSource to read the template from: {entry}"
    );
    entry["instructSupported"] = json!(false);
    let file = home.join("entry.json");
    std::fs::write(&file, entry.to_string()).expect("write entry.json");
    run(
        &mut command(home, &["models", "add", file.to_str().expect("utf-8")]),
        "cmi models add",
    );
}

/// One earlier exchange: the question, the `list_files` call, its result and the answer, as the agent records them.
fn round_trip(folder: &str, file: &str, id: &str) -> Vec<Message> {
    vec![
        Message::user(format!("Which files are in the folder \"{folder}\"?")),
        Message {
            role: Role::Assistant,
            content: vec![Block::ToolUse {
                tool_use_id: id.into(),
                name: "list_files".into(),
                input: json!({"path": folder}),
            }],
        },
        Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: id.into(),
                content: file.into(),
                is_error: false,
            }],
        },
        Message {
            role: Role::Assistant,
            content: vec![Block::Text(format!("The folder \"{folder}\" has {file}."))],
        },
    ]
}

/// Saves the session the chat resumes, in `cmi chat`'s sessions directory; returns its ID.
fn save_history(home: &Path) -> (String, usize) {
    let mut session = Session::create(&home.join("config/cmi/sessions"), MODEL).expect("create the session");
    let history: Vec<Message> = [
        round_trip("src", "main.rs", "tooluse_fewShotSrcCall0000001"),
        round_trip("tests", "e2e.rs", "tooluse_fewShotTestsCall000001"),
    ]
    .concat();
    for m in &history {
        session
            .record(&AgentEvent::Message(m.clone()))
            .expect("record a message");
    }
    (session.id.clone(), history.len())
}

/// The runtime operations (`invoke`, `converse`, …) in the local Bedrock's debug log.
fn runtime_operations(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains("runtime request"))
        .filter_map(|l| {
            let rest = &l[l.find("operation=")? + "operation=".len()..];
            Some(rest.split_whitespace().next()?.trim_matches('"').to_string())
        })
        .collect()
}

#[test]
fn a_model_without_converse_calls_list_files_through_invoke_model_and_answers_from_the_result() {
    let home = tempfile::tempdir().expect("home");
    let home = home.path();
    let model = home.join("smollm2-hermes");
    convert_demo(home, &model);
    install_template(&model);

    let workspace = home.join("workspace");
    std::fs::create_dir_all(workspace.join("docs")).expect("mkdir docs");
    std::fs::write(workspace.join("docs/guide.md"), "# Guide\n").expect("write docs/guide.md");

    // The local Bedrock, logging which runtime operation every request used.
    let server_log = home.join("serve.log");
    let mut serve = command(home, &["serve", "--port", "0", "--warm"]);
    serve.env("CMI_LOG", "warn,bedrock_server::runtime=debug");
    let log = std::fs::File::create(&server_log).expect("create serve.log");
    let _serve = start_serve(serve, log.into(), &home.join("server/endpoint.json"));

    run(
        &mut command(home, &["import", model.to_str().expect("utf-8"), "--name", MODEL]),
        "cmi import",
    );
    register_without_converse(home);
    let (id, earlier) = save_history(home);

    let started = std::time::Instant::now();
    let chat = run(
        &mut command(
            home,
            &[
                "chat",
                "--resume",
                &id,
                "--workspace",
                workspace.to_str().expect("utf-8"),
                "-p",
                QUESTION,
                "--temperature",
                "0",
                "--max-tokens",
                "64",
                "--allow",
                "none",
            ],
        ),
        "cmi chat",
    );
    let chat_time = started.elapsed();

    // What the chat saved: the question, the call, its result, the answer.
    let session = Session::open(&home.join(format!("config/cmi/sessions/{id}.jsonl"))).expect("reopen the session");
    let turn = &session.messages[earlier..];
    let shown = format!("{turn:#?}\n{chat}");
    assert_eq!(turn.first(), Some(&Message::user(QUESTION)), "{shown}");
    let calls: Vec<(&str, &str, &Value)> = turn.iter().flat_map(|m| m.tool_uses()).collect();
    let Some(&(call_id, _, input)) = calls.iter().find(|(_, name, _)| *name == "list_files") else {
        panic!("no list_files call: the tool call was not parsed from the generation\n{shown}");
    };
    assert_eq!(input["path"], "docs", "list_files was called on another path\n{shown}");
    let result = turn.iter().flat_map(|m| &m.content).find_map(|b| match b {
        Block::ToolResult {
            tool_use_id,
            content,
            is_error,
        } if tool_use_id == call_id => Some((content, *is_error)),
        _ => None,
    });
    let Some((content, is_error)) = result else {
        panic!("the list_files call got no result\n{shown}");
    };
    assert!(
        !is_error && content.contains("guide.md"),
        "the list_files result does not name guide.md\n{shown}"
    );
    let last = turn.last().expect("the turn has messages");
    assert_eq!(
        last.role,
        Role::Assistant,
        "the turn did not end with an answer\n{shown}"
    );
    assert!(
        last.tool_uses().next().is_none() && last.text().contains("guide.md"),
        "the answer does not use the tool's result\n{shown}"
    );
    // What the server saw: InvokeModel only, once for the call and once for the answer after the tool's result.
    let log = std::fs::read_to_string(&server_log).expect("read serve.log");
    let ops = runtime_operations(&log);
    assert!(
        ops.len() >= 2,
        "expected at least two runtime requests in the server log, found {ops:?}\n--- serve.log\n{log}\n{chat}"
    );
    assert!(
        ops.iter().all(|o| o == "invoke"),
        "the chat used an API other than InvokeModel: {ops:?}\n{chat}"
    );

    // And the terminal showed it as a person sees it.
    assert!(chat.contains("→ list_files {\"path\":\"docs\"}"), "{chat}");
    assert!(chat.contains("← guide.md"), "{chat}");
    eprintln!(
        "chat turn in {:.1}s: runtime operations {ops:?}, {} messages, answer {:?}",
        chat_time.as_secs_f64(),
        turn.len(),
        last.text()
    );
}

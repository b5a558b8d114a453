//! Unit tests of check/fix/undo: the seed guide's DeepSeek -> Llama 3.1 edit, ChatML with Hermes tools, undo,
//! idempotence and the JSON member scanner.

use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use super::*;
use crate::RenderRequest;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn corpus_template(name: &str) -> String {
    std::fs::read_to_string(corpus().join(format!("templates/{name}.jinja"))).unwrap()
}

/// The `+  "chat_template": ...` line of the guide's diff, decoded.
fn guide_template() -> String {
    let guide = std::fs::read_to_string(corpus().join("seed/custom-model-import-guide.ja.md")).unwrap();
    let line = guide
        .lines()
        .find(|l| l.starts_with("+  \"chat_template\""))
        .expect("the guide has a + chat_template line");
    let member = line[1..].trim().trim_end_matches(',');
    let v: Json = serde_json::from_str(&format!("{{{member}}}")).unwrap();
    v["chat_template"].as_str().unwrap().to_owned()
}

/// The DeepSeek-R1-Distill-Llama-8B tokenizer_config.json from the guide (before the edit), as HF writes it.
fn deepseek_config_text() -> String {
    let tok = |c: &str| json!({"__type": "AddedToken", "content": c, "lstrip": false, "normalized": true, "rstrip": false, "single_word": false});
    let mut m = serde_json::Map::new();
    m.insert("add_bos_token".into(), json!(true));
    m.insert("add_eos_token".into(), json!(false));
    m.insert("bos_token".into(), tok("<｜begin▁of▁sentence｜>"));
    m.insert("clean_up_tokenization_spaces".into(), json!(false));
    m.insert("eos_token".into(), tok("<｜end▁of▁sentence｜>"));
    m.insert("legacy".into(), json!(true));
    m.insert("model_max_length".into(), json!(16384));
    m.insert("pad_token".into(), tok("<｜end▁of▁sentence｜>"));
    m.insert("sp_model_kwargs".into(), json!({}));
    m.insert("unk_token".into(), Json::Null);
    m.insert("tokenizer_class".into(), json!("LlamaTokenizerFast"));
    m.insert(
        "chat_template".into(),
        json!(corpus_template("deepseek-r1-distill-llama-8b")),
    );
    serde_json::to_string_pretty(&Json::Object(m)).unwrap() + "\n"
}

fn model(dir: &Path, config: Json, tokenizer_config: &str) {
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), tokenizer_config).unwrap();
}

fn llama_config() -> Json {
    json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256})
}

fn keys(text: &str) -> Vec<String> {
    let v: Json = serde_json::from_str(text).unwrap();
    v.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn deepseek_fix_matches_the_guide_byte_for_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let before = deepseek_config_text();
    model(d, llama_config(), &before);

    let report = check(d).unwrap();
    assert_eq!(report.family, Family::DeepSeekR1DistillLlama);
    assert!(!report.support.tools, "{report:?}");
    assert!(!report.support.reasons.is_empty());
    assert_eq!(report.fix_family, Some(Family::DeepSeekR1DistillLlama));

    let dry = fix(
        d,
        &FixOptions {
            family: None,
            dry_run: true,
        },
    )
    .unwrap();
    assert!(dry.changed && dry.diff.contains("-  \"chat_template\"") && dry.diff.contains("+  \"chat_template\""));
    assert_eq!(
        std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(),
        before,
        "dry run wrote"
    );

    let out = fix(d, &FixOptions::default()).unwrap();
    assert!(out.changed);
    let after = std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap();
    let v: Json = serde_json::from_str(&after).unwrap();
    assert_eq!(v["chat_template"].as_str().unwrap(), guide_template());
    assert_eq!(
        v[ORIGINAL_KEY].as_str().unwrap(),
        corpus_template("deepseek-r1-distill-llama-8b")
    );
    // Every other field kept, in order; the record sits right after chat_template.
    let mut want = keys(&before);
    want.push(ORIGINAL_KEY.into());
    assert_eq!(keys(&after), want);
    // Only the chat_template line changed (plus the record line).
    let changed: Vec<_> = out
        .diff
        .lines()
        .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
        .collect();
    assert_eq!(changed.len(), 2, "{}", out.diff);

    let report = check(d).unwrap();
    assert!(report.support.converse && report.support.tools, "{report:?}");
    assert_eq!(report.tool_syntax, ToolSyntax::Llama3Json);

    // Idempotent.
    let again = fix(d, &FixOptions::default()).unwrap();
    assert!(!again.changed, "{}", again.diff);
    let again = fix(
        d,
        &FixOptions {
            family: Some(Family::Llama31),
            dry_run: false,
        },
    )
    .unwrap();
    assert!(!again.changed, "{}", again.diff);
    assert_eq!(std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(), after);

    // Undo restores the exact bytes.
    undo(d, false).unwrap();
    assert_eq!(
        std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(),
        before
    );
    assert!(matches!(undo(d, false), Err(Error::NothingToUndo { .. })));
}

#[test]
fn chatml_fix_adds_hermes_tools_and_keeps_plain_chat_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let original = corpus_template("smollm2-135m-instruct");
    let cfg = json!({"add_bos_token": false, "bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                     "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "chat_template": original});
    model(
        d,
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152}),
        &serde_json::to_string_pretty(&cfg).unwrap(),
    );
    let report = check(d).unwrap();
    assert_eq!(report.family, Family::ChatMl);
    assert!(report.support.converse && !report.support.tools, "{report:?}");

    let before_t = ChatTemplate::from_model_dir(d).unwrap();
    fix(d, &FixOptions::default()).unwrap();
    let t = ChatTemplate::from_model_dir(d).unwrap();
    assert_eq!(t.tool_syntax(), ToolSyntax::Hermes);
    let s = converse_support(&t);
    assert!(s.converse && s.tools, "{s:?}");

    // Plain conversations render exactly as before (SmolLM2's default system prompt kept).
    for conv in [
        "c01_single_user",
        "c03_system_user",
        "c05_multi_turn_ends_assistant",
        "c12_japanese",
    ] {
        let v: Json = serde_json::from_str(
            &std::fs::read_to_string(corpus().join(format!("conversations/{conv}.json"))).unwrap(),
        )
        .unwrap();
        let req = RenderRequest::from_json(&v).unwrap();
        assert_eq!(t.render(&req).unwrap(), before_t.render(&req).unwrap(), "{conv}");
    }
    // Tools go into the system prompt; calls and results in Hermes form.
    let req = RenderRequest {
        messages: vec![
            json!({"role": "user", "content": "Weather in Paris?"}),
            json!({"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}),
            json!({"role": "tool", "content": {"temp": 18.5}}),
        ],
        tools: Some(vec![
            json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}),
        ]),
        add_generation_prompt: true,
        ..RenderRequest::default()
    };
    let out = t.render(&req).unwrap();
    assert!(
        out.starts_with(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\n\n# Tools"
        ),
        "{out}"
    );
    assert!(
        out.contains("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\""),
        "{out}"
    );
    assert!(out.contains("<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|im_end|>\n"), "{out}");
    assert!(
        out.contains(
            "<|im_start|>user\n<tool_response>\n{\"temp\": 18.5}\n</tool_response><|im_end|>\n<|im_start|>assistant\n"
        ),
        "{out}"
    );
}

#[test]
fn separate_template_files_are_moved_aside_and_back() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    model(d, llama_config(), "{\n  \"eos_token\": \"<|eot_id|>\"\n}\n");
    std::fs::write(
        d.join("chat_template.jinja"),
        corpus_template("deepseek-r1-distill-llama-8b"),
    )
    .unwrap();
    let out = fix(d, &FixOptions::default()).unwrap();
    assert_eq!(out.moved.len(), 1);
    assert!(!d.join("chat_template.jinja").exists());
    let t = ChatTemplate::from_model_dir(d).unwrap();
    assert_eq!(t.source(), guide_template());
    undo(d, false).unwrap();
    assert!(d.join("chat_template.jinja").exists());
    assert_eq!(
        std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(),
        "{\n  \"eos_token\": \"<|eot_id|>\"\n}\n"
    );
}

#[test]
fn families_without_a_replacement_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    model(
        d,
        json!({"model_type": "t5", "architectures": ["T5ForConditionalGeneration"]}),
        "{\"eos_token\": \"</s>\"}",
    );
    let report = check(d).unwrap();
    assert!(!report.template_found && !report.support.converse);
    assert_eq!(report.family, Family::T5);
    assert!(matches!(
        fix(d, &FixOptions::default()),
        Err(Error::NoTemplateForFamily { .. })
    ));
    // An explicit family installs a template even where none existed.
    let out = fix(
        d,
        &FixOptions {
            family: Some(Family::ChatMl),
            dry_run: false,
        },
    )
    .unwrap();
    assert!(out.changed);
    assert!(ChatTemplate::from_model_dir(d).is_ok());
}

#[test]
fn member_scanner_edits_only_the_value() {
    let text = "{ \"a\" : [1, {\"x\": \"}\"}], \"chat_template\":\"old\\\"q\" ,\"z\":null}";
    let m = json_members(text).unwrap();
    assert_eq!(
        m.iter().map(|m| m.key.as_str()).collect::<Vec<_>>(),
        ["a", "chat_template", "z"]
    );
    let out = set_member(text, &m, "chat_template", "\"new\"");
    assert_eq!(
        out,
        "{ \"a\" : [1, {\"x\": \"}\"}], \"chat_template\":\"new\" ,\"z\":null}"
    );
    let out = remove_member(text, &m, "a");
    assert_eq!(out, "{ \"chat_template\":\"old\\\"q\" ,\"z\":null}");
}

/// A folder holding a corpus template with its special tokens, as Hugging Face writes `tokenizer_config.json`.
fn corpus_model(dir: &Path, name: &str, config: Json) -> String {
    let meta: Json =
        serde_json::from_str(&std::fs::read_to_string(corpus().join(format!("templates/{name}.json"))).unwrap())
            .unwrap();
    let mut cfg = meta["special_tokens"].as_object().cloned().unwrap();
    cfg.insert("chat_template".into(), json!(corpus_template(name)));
    cfg.insert("tokenizer_class".into(), json!("PreTrainedTokenizerFast"));
    let text = serde_json::to_string_pretty(&Json::Object(cfg)).unwrap() + "\n";
    model(dir, config, &text);
    text
}

fn weather_tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather & <units>.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}),
    ]
}

/// System, user, an assistant turn with two tool calls (object and string arguments), their two results.
fn tool_round_trip() -> RenderRequest {
    RenderRequest {
        messages: vec![
            json!({"role": "system", "content": "You are terse."}),
            json!({"role": "user", "content": "Weather in Paris and Lyon?"}),
            json!({"role": "assistant", "content": "", "tool_calls": [
                {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"id": "call00002", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Lyon\"}"}}]}),
            json!({"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "{\"temp\": 18.5}"}),
            json!({"role": "tool", "tool_call_id": "call00002", "name": "get_weather", "content": {"temp": 12}}),
        ],
        tools: Some(weather_tools()),
        add_generation_prompt: true,
        ..RenderRequest::default()
    }
}

/// The same after the final answer, plus a user turn that carries tool results and text (what Converse sends when a
/// user message holds `toolResult` and text blocks).
fn tool_then_user() -> RenderRequest {
    RenderRequest {
        messages: vec![
            json!({"role": "user", "content": "Weather in Paris?"}),
            json!({"role": "assistant", "content": "Let me check.", "tool_calls": [
                {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}),
            json!({"role": "tool", "tool_call_id": "call00001", "name": "get_weather", "content": "sunny"}),
            json!({"role": "user", "content": "In Celsius, please."}),
        ],
        tools: Some(weather_tools()),
        add_generation_prompt: true,
        ..RenderRequest::default()
    }
}

/// Corpus conversations without tools, tool calls or tool results.
fn plain_conversations() -> Vec<(String, RenderRequest)> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(corpus().join("conversations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        let v: Json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let req = RenderRequest::from_json(&v).unwrap();
        let tooly = req.tools.is_some()
            || req
                .messages
                .iter()
                .any(|m| m["role"] == "tool" || m.get("tool_calls").is_some_and(|c| !c.is_null()));
        if !tooly {
            out.push((v["id"].as_str().unwrap().to_owned(), req));
        }
    }
    assert!(out.len() >= 10, "{}", out.len());
    out
}

/// Feeds `text` byte by byte to a grammar (single-byte vocabulary); true if it is accepted whole.
fn grammar_accepts(grammar: &str, text: &str) -> bool {
    use llguidance::api::TopLevelGrammar;
    use llguidance::{Matcher, ParserFactory};
    use toktrie::{ApproximateTokEnv, InferenceCapabilities};
    let env = ApproximateTokEnv::single_byte_env();
    let factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[]).expect("factory");
    let mut m = Matcher::new(factory.create_parser(TopLevelGrammar::from_lark(grammar.to_string())));
    assert!(!m.is_error(), "grammar does not compile: {:?}", m.get_error());
    let toks: Vec<u32> = text.bytes().map(u32::from).collect();
    m.validate_tokens(&toks).is_ok_and(|n| n == toks.len())
        && m.consume_tokens(&toks).is_ok()
        && m.is_accepting().unwrap_or(false)
}

/// `fix` on a folder holding the family's original template, and everything the rest of the system needs from the
/// result: Converse with Hermes tools in `check`, family detection, plain chats unchanged, the golden tool
/// rendering, a grammar and a parser for the calls, idempotence and undo.
fn no_tool_family_fix(name: &str, config: Json, family: Family, round_trip: &str, then_user: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let before = corpus_model(d, name, config);
    let report = check(d).unwrap();
    assert_eq!(report.family, family, "{name}");
    assert!(!report.support.tools, "{name}: {report:?}");
    assert_eq!(report.fix_family, Some(family), "{name}");
    let original = ChatTemplate::from_model_dir(d).unwrap();

    let out = fix(d, &FixOptions::default()).unwrap();
    assert!(out.changed && out.family == family, "{name}: {out:?}");
    let t = ChatTemplate::from_model_dir(d).unwrap();
    assert_eq!(t.source(), template_for_family(family, None).unwrap());
    let report = check(d).unwrap();
    assert!(report.support.converse && report.support.tools, "{name}: {report:?}");
    assert_eq!(report.tool_syntax, ToolSyntax::Hermes, "{name}");
    assert_eq!(report.family, family, "{name}");
    assert_eq!(report.fix_family, None, "{name}");
    // The replacement names its family on its own too (model-folder detects from the current template).
    assert_eq!(detect_family(None, Some(t.source())), family, "{name}");

    // Plain chats: what the original renders, byte for byte; what it refuses, refused with the same message.
    // StarCoder2's original refuses every system message, which Converse needs: the replacement accepts it.
    let mut compared = 0;
    for (conv, req) in plain_conversations() {
        match (original.render(&req), t.render(&req)) {
            (Ok(want), got) => {
                assert_eq!(got.as_ref().ok(), Some(&want), "{name} {conv}");
                compared += 1;
            }
            (Err(Error::Raised { message }), _) if message.contains("System messages") => {}
            (Err(Error::Raised { message }), got) => {
                assert!(
                    matches!(&got, Err(Error::Raised { message: m }) if *m == message),
                    "{name} {conv}: {got:?}"
                );
            }
            (Err(_), got) => assert!(got.is_err(), "{name} {conv}: {got:?}"),
        }
    }
    assert!(compared >= 5, "{name}: only {compared} plain conversations render");

    // Tools: the golden renders.
    assert_eq!(t.render(&tool_round_trip()).unwrap(), round_trip, "{name}");
    assert_eq!(t.render(&tool_then_user()).unwrap(), then_user, "{name}");

    // What the prompt teaches, the grammar allows and the parser reads back.
    let call = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert!(round_trip.contains(call), "{name}");
    let grammar = crate::grammar::tool_call_lark(t.tool_syntax(), &weather_tools(), None);
    assert!(grammar_accepts(&grammar, call), "{name}: {grammar}");
    let mut parser = crate::parse::OutputParser::new(t.tool_syntax(), false);
    let mut events = parser.feed(call);
    events.extend(parser.finish());
    assert_eq!(
        events,
        vec![crate::parse::ParseEvent::ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"})
        }],
        "{name}"
    );

    // Idempotent, with or without the family named.
    let after = std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap();
    assert!(!fix(d, &FixOptions::default()).unwrap().changed, "{name}");
    let again = fix(
        d,
        &FixOptions {
            family: Some(family),
            dry_run: false,
        },
    )
    .unwrap();
    assert!(!again.changed && again.family == family, "{name}: {}", again.diff);
    assert_eq!(std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(), after);

    // Undo restores the exact bytes.
    let undone = undo(d, false).unwrap();
    assert_eq!(undone.family, family, "{name}");
    assert_eq!(
        std::fs::read_to_string(d.join("tokenizer_config.json")).unwrap(),
        before,
        "{name}"
    );
}

/// The tools part of the system prompt the three replacements write for `weather_tools()` (a literal, for `concat!`).
macro_rules! weather_tools_prompt {
    () => {
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Current weather & <units>.\", \"parameters\": {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}\n</tools>\n\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>"
    };
}

/// `tool_round_trip()` / `tool_then_user()` in the Llama 2 format (CodeLlama renders them the same: nothing to trim).
const INST_ROUND_TRIP: &str = concat!(
    "<s>[INST] <<SYS>>\nYou are terse.\n\n",
    weather_tools_prompt!(),
    "\n<</SYS>>\n\nWeather in Paris and Lyon? [/INST] ",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call> </s>",
    "<s>[INST] <tool_response>\n{\"temp\": 18.5}\n</tool_response>\n<tool_response>\n{\"temp\": 12}\n</tool_response> [/INST]"
);
const INST_THEN_USER: &str = concat!(
    "<s>[INST] <<SYS>>\n",
    weather_tools_prompt!(),
    "\n<</SYS>>\n\nWeather in Paris? [/INST] Let me check.\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call> </s>",
    "<s>[INST] <tool_response>\nsunny\n</tool_response>\nIn Celsius, please. [/INST]"
);
const STARCODER2_ROUND_TRIP: &str = concat!(
    "<|endoftext|>You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable responses to user instructions.\n\n",
    "You are terse.\n\n",
    weather_tools_prompt!(),
    "\n\n### Instruction\nWeather in Paris and Lyon?\n\n### Response\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lyon\"}}\n</tool_call><|endoftext|>\n\n",
    "### Instruction\n<tool_response>\n{\"temp\": 18.5}\n</tool_response>\n<tool_response>\n{\"temp\": 12}\n</tool_response>\n\n",
    "### Response\n"
);
const STARCODER2_THEN_USER: &str = concat!(
    "<|endoftext|>You are an exceptionally intelligent coding assistant that consistently delivers accurate and reliable responses to user instructions.\n\n",
    weather_tools_prompt!(),
    "\n\n### Instruction\nWeather in Paris?\n\n### Response\nLet me check.\n",
    "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call><|endoftext|>\n\n",
    "### Instruction\n<tool_response>\nsunny\n</tool_response>\n\n",
    "### Instruction\nIn Celsius, please.\n\n### Response\n"
);

#[test]
fn llama2_fix_keeps_the_inst_format_and_adds_hermes_tools() {
    no_tool_family_fix(
        "llama-2-7b-chat",
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32000}),
        Family::Llama2,
        INST_ROUND_TRIP,
        INST_THEN_USER,
    );
}

#[test]
fn codellama_fix_keeps_the_inst_format_and_adds_hermes_tools() {
    no_tool_family_fix(
        "codellama-34b-instruct",
        json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 32016}),
        Family::CodeLlama,
        INST_ROUND_TRIP,
        INST_THEN_USER,
    );
}

#[test]
fn starcoder2_fix_keeps_the_instruction_format_and_adds_hermes_tools() {
    no_tool_family_fix(
        "starcoder2-15b-instruct-v0.1",
        json!({"architectures": ["Starcoder2ForCausalLM"], "model_type": "starcoder2", "vocab_size": 49152}),
        Family::StarCoder2,
        STARCODER2_ROUND_TRIP,
        STARCODER2_THEN_USER,
    );
}

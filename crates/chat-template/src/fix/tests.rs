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

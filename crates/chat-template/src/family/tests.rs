//! Family detection from config.json and template fingerprints; Converse support predictions on real templates.

use std::path::Path;

use serde_json::json;

use super::*;
use crate::SpecialTokens;
use crate::{ChatTemplate, converse_support};

fn corpus_template(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/corpus/templates/{name}.jinja")))
        .unwrap()
}

fn corpus_special(name: &str) -> SpecialTokens {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/corpus/templates/{name}.json"));
    let meta: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    SpecialTokens::from_json(&meta["special_tokens"])
}

#[test]
fn families_from_templates_and_configs() {
    let llama = json!({"model_type": "llama", "architectures": ["LlamaForCausalLM"], "vocab_size": 128256});
    let qwen = json!({"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], "vocab_size": 152064});
    let mixtral = json!({"model_type": "mixtral", "architectures": ["MixtralForCausalLM"], "vocab_size": 32000});
    let smol = json!({"model_type": "llama", "vocab_size": 49152});
    let cases = [
        ("llama-2-7b-chat", None, Family::Llama2),
        ("codellama-34b-instruct", None, Family::CodeLlama),
        ("llama-3.1-8b-instruct", Some(&llama), Family::Llama31),
        ("llama-3.2-3b-instruct", Some(&llama), Family::Llama32),
        ("mistral-7b-instruct-v0.3", None, Family::MistralV3),
        ("mistral-nemo-instruct-2407", None, Family::MistralNemo),
        ("mistral-7b-instruct-v0.3", Some(&mixtral), Family::Mixtral),
        ("qwen2.5-7b-instruct", Some(&qwen), Family::Qwen2),
        ("qwen3-0.6b", None, Family::Qwen3),
        (
            "deepseek-r1-distill-llama-8b",
            Some(&llama),
            Family::DeepSeekR1DistillLlama,
        ),
        (
            "deepseek-r1-distill-llama-8b",
            Some(&qwen),
            Family::DeepSeekR1DistillQwen,
        ),
        ("smollm2-135m-instruct", Some(&smol), Family::ChatMl),
        ("starcoder2-15b-instruct-v0.1", None, Family::StarCoder2),
    ];
    for (name, cfg, want) in cases {
        assert_eq!(detect_family(cfg, Some(&corpus_template(name))), want, "{name}");
    }
    // Config only.
    assert_eq!(detect_family(Some(&json!({"model_type": "t5"})), None), Family::T5);
    assert_eq!(
        detect_family(Some(&json!({"model_type": "gpt_bigcode"})), None),
        Family::StarCoder2
    );
    assert_eq!(
        detect_family(Some(&json!({"model_type": "mistral", "vocab_size": 32000})), None),
        Family::Mistral
    );
    assert_eq!(
        detect_family(Some(&json!({"model_type": "mistral", "vocab_size": 131072})), None),
        Family::MistralNemo
    );
    assert_eq!(
        detect_family(Some(&json!({"model_type": "llama", "vocab_size": 32016})), None),
        Family::CodeLlama
    );
    assert_eq!(detect_family(None, None), Family::Unknown);
    // Names round-trip.
    for f in Family::all() {
        assert_eq!(f.name().parse::<Family>().unwrap(), f);
    }
    assert_eq!("llama3.3".parse::<Family>().unwrap(), Family::Llama31);
    assert!("gpt5".parse::<Family>().is_err());
}

#[test]
fn tool_syntax_and_converse_support_on_real_templates() {
    let cases = [
        ("llama-3.1-8b-instruct", ToolSyntax::Llama3Json, true),
        ("llama-3.2-3b-instruct", ToolSyntax::Llama3Json, true),
        ("qwen2.5-7b-instruct", ToolSyntax::Hermes, true),
        ("qwen3-0.6b", ToolSyntax::Hermes, true),
        ("mistral-7b-instruct-v0.3", ToolSyntax::MistralToolCalls, true),
        ("deepseek-r1-distill-llama-8b", ToolSyntax::DeepSeek, false),
        ("smollm2-135m-instruct", ToolSyntax::None, false),
        ("llama-2-7b-chat", ToolSyntax::None, false),
    ];
    for (name, syntax, tools) in cases {
        let t = ChatTemplate::new(&corpus_template(name), corpus_special(name)).unwrap();
        assert_eq!(t.tool_syntax(), syntax, "{name}");
        let s = converse_support(&t);
        assert_eq!(s.tools, tools, "{name}: {s:?}");
        assert!(s.converse, "{name}: {s:?}");
        if !s.tools {
            assert!(!s.reasons.is_empty(), "{name}: no reason given");
        }
    }
    // StarCoder2 rejects system messages: no Converse with a system prompt.
    let t = ChatTemplate::new(
        &corpus_template("starcoder2-15b-instruct-v0.1"),
        SpecialTokens::default(),
    )
    .unwrap();
    assert!(!converse_support(&t).converse);
}

#[test]
fn gpt_oss_is_detected_from_its_own_template_and_renders_like_transformers() {
    let gpt_oss = json!({"model_type": "gpt_oss", "architectures": ["GptOssForCausalLM"], "vocab_size": 201088});
    let t = crate::templates::GPT_OSS;
    assert_eq!(detect_family(Some(&gpt_oss), Some(t)), Family::GptOss);
    // The template alone says harmony, whatever config.json says; config.json alone says GPT-OSS too.
    assert_eq!(detect_family(None, Some(t)), Family::GptOss);
    assert_eq!(detect_family(Some(&gpt_oss), None), Family::GptOss);
    assert_eq!(ToolSyntax::from_template(t), ToolSyntax::Harmony);
    assert_eq!("harmony".parse::<Family>().unwrap(), Family::GptOss);
    assert_eq!("gpt_oss".parse::<Family>().unwrap(), Family::GptOss);

    // A tool round trip, byte for byte as transformers renders it (Jinja2's sandbox with transformers' settings and
    // `tojson`, the clock at 2025-01-15): the earlier call in the form the template renders history
    // (`to=functions.NAME<|channel|>commentary json`), the tool's answer as a JSON string, and the open
    // `<|start|>assistant` the model continues.
    let template = ChatTemplate::new(t, SpecialTokens::default()).unwrap();
    assert_eq!(template.tool_syntax(), ToolSyntax::Harmony);
    let tools = vec![json!({"type": "function", "function": {"name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "City name"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}})];
    let messages = vec![
        json!({"role": "system", "content": "Answer briefly."}),
        json!({"role": "user", "content": "Weather in Tokyo?"}),
        json!({"role": "assistant", "content": "", "reasoning_content": "Need the weather.", "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Tokyo"}}}]}),
        json!({"role": "tool", "tool_call_id": "call_1", "content": "{\"temp\": 21}"}),
    ];
    let out = template
        .render(&crate::RenderRequest {
            messages,
            tools: Some(tools),
            add_generation_prompt: true,
            template_kwargs: serde_json::Map::new(),
            now: chrono::NaiveDate::from_ymd_opt(2025, 1, 15).and_then(|d| d.and_hms_opt(12, 0, 0)),
        })
        .unwrap();
    assert_eq!(out, include_str!("gpt-oss-20b.tool-round-trip.txt"));
}

#[test]
fn qwen3_moe_uses_the_qwen3_family() {
    let moe = json!({"model_type": "qwen3_moe", "architectures": ["Qwen3MoeForCausalLM"], "vocab_size": 151936});
    assert_eq!(
        detect_family(Some(&moe), Some(&corpus_template("qwen3-0.6b"))),
        Family::Qwen3
    );
    assert_eq!(detect_family(Some(&moe), None), Family::Qwen3);
    // Qwen2.5's template on a Qwen3-MoE is still the Qwen3 family (the architecture is Qwen3).
    assert_eq!(
        detect_family(Some(&moe), Some(&corpus_template("qwen2.5-7b-instruct"))),
        Family::Qwen3
    );
}

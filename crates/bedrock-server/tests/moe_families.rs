//! GPT-OSS and Qwen3-MoE through the local Bedrock with the real AWS SDK clients, as Custom Model Import serves them:
//! each imports, reports `instructSupported: false` and refuses Converse and ConverseStream; GPT-OSS answers an
//! OpenAIChatCompletion InvokeModel request with tools, forced, as `tool_calls` with `reasoning_content` (harmony's
//! analysis channel), whole and streamed; Qwen3-MoE answers InvokeModel with a `<tool_call>` read back as
//! `tool_calls`.
//!
//! The tiny models of both families are `model-synth`'s, run by the engine's own forward passes. The harmony serving
//! path is also proved on a tiny Qwen3 whose tokenizer's added tokens are renamed to harmony's and whose template is
//! GPT-OSS's own, so that a failure of it is told apart from one of the GPT-OSS forward pass.

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{ContentBlock, ConversationRole, Message, ResponseStream};
use common::{runtime, start};
use serde_json::{Value, json};

/// The tiny-model family named `name` (compared without `-` and `_`), or a panic naming what is missing.
fn family(name: &str) -> test_support::Family {
    let norm = |s: &str| s.replace(['-', '_'], "").to_ascii_lowercase();
    test_support::Family::ALL
        .into_iter()
        .find(|f| norm(f.as_str()) == norm(name))
        .unwrap_or_else(|| panic!("test-support has no `{name}` tiny-model family (the engine half of issue 23)"))
}

/// Imports a tiny model of `family` with a context long enough for a tool prompt; returns its ARN.
async fn import(local: &bedrock_server::testing::TestServer, family: test_support::Family, name: &str) -> String {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), family).expect("tiny model");
    import_dir(local, model.path(), name).await
}

/// Imports the model folder `dir` with a context long enough for a tool prompt; returns its ARN.
async fn import_dir(local: &bedrock_server::testing::TestServer, dir: &std::path::Path, name: &str) -> String {
    bedrock_server::testing::set_context_length(dir, 4096);
    let m = bedrock_server::testing::import_dir(&local.server, dir, "moe-models", name).await;
    assert_eq!(
        m.instruct_supported,
        Some(false),
        "{name}: Converse is not served for it"
    );
    m.model_arn
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"]}}})
}

fn forced_chat() -> Value {
    json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [weather_tool()],
        "tool_choice": "required", "max_tokens": 400, "temperature": 0})
}

/// The arguments of a `get_weather` call, checked against its schema.
fn weather_args(call: &Value) -> Value {
    assert_eq!(call["type"], "function", "{call}");
    assert_eq!(call["function"]["name"], "get_weather", "{call}");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments string"))
        .expect("arguments are JSON");
    assert!(matches!(args["city"].as_str(), Some("Paris" | "Oslo")), "{args}");
    assert_eq!(args.as_object().map(|o| o.len()), Some(1), "an undeclared key: {args}");
    args
}

/// Converse and ConverseStream are refused as the service refuses them for a model without `instructSupported`.
async fn converse_is_refused(rt: &aws_sdk_bedrockruntime::Client, arn: &str) {
    let msg = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("Hello".into()))
        .build()
        .expect("message");
    let e = rt
        .converse()
        .model_id(arn)
        .messages(msg.clone())
        .send()
        .await
        .expect_err("Converse is refused");
    let se = e.into_service_error();
    assert!(se.is_validation_exception(), "{se:?}");
    assert!(
        se.meta()
            .message()
            .is_some_and(|m| m.contains("doesn't support the Converse API")),
        "{se:?}"
    );
    let e = rt
        .converse_stream()
        .model_id(arn)
        .messages(msg)
        .send()
        .await
        .expect_err("ConverseStream is refused");
    let se = e.into_service_error();
    assert!(se.is_validation_exception(), "{se:?}");
}

async fn invoke(rt: &aws_sdk_bedrockruntime::Client, arn: &str, body: &Value) -> Value {
    let out = rt
        .invoke_model()
        .model_id(arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string().into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {body}: {e:?}"));
    serde_json::from_slice(out.body().as_ref()).expect("json body")
}

async fn invoke_stream(rt: &aws_sdk_bedrockruntime::Client, arn: &str, body: &Value) -> Vec<Value> {
    let mut s = rt
        .invoke_model_with_response_stream()
        .model_id(arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string().into_bytes()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke stream {body}: {e:?}"));
    let mut chunks = Vec::new();
    while let Some(ev) = s.body.recv().await.expect("stream event") {
        if let ResponseStream::Chunk(p) = ev {
            chunks.push(serde_json::from_slice(p.bytes().expect("bytes").as_ref()).expect("chunk json"));
        }
    }
    chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gpt_oss_answers_openai_chat_with_reasoning_and_forced_tool_calls() {
    let local = start(true).await;
    let arn = import(&local, family("gpt-oss"), "tiny-gpt-oss").await;
    forced_harmony_call(&local, &arn).await;
}

/// A tiny Qwen3 that speaks harmony: its added tokens renamed to harmony's control tokens (all special, as in
/// GPT-OSS's tokenizer; `<|return|>` and `<|call|>` end generation, as GPT-OSS's eos ids do) and GPT-OSS's template.
fn harmony_qwen3(dir: &std::path::Path) {
    test_support::tiny_model(dir, test_support::Family::Qwen3).expect("tiny model");
    let renames = [
        ("<|im_start|>", "<|start|>"),
        ("<|im_end|>", "<|return|>"),
        ("<tool_call>", "<|channel|>"),
        ("</tool_call>", "<|message|>"),
        ("<tool_response>", "<|end|>"),
        ("</tool_response>", "<|call|>"),
        ("<think>", "<|constrain|>"),
    ];
    let rename = |s: &str| renames.iter().find(|(a, _)| *a == s).map(|(_, b)| b.to_string());
    let edit = |name: &str, f: &dyn Fn(&mut Value)| {
        let p = dir.join(name);
        let mut v: Value = serde_json::from_slice(&std::fs::read(&p).expect(name)).expect("json");
        f(&mut v);
        std::fs::write(&p, v.to_string()).expect("write");
    };
    let mut eos = Vec::new();
    edit("tokenizer.json", &|v| {
        for t in v["added_tokens"].as_array_mut().expect("added_tokens") {
            if let Some(new) = t["content"].as_str().and_then(rename) {
                t["content"] = new.into();
                t["special"] = true.into();
            }
        }
    });
    let tok: Value =
        serde_json::from_slice(&std::fs::read(dir.join("tokenizer.json")).expect("tokenizer")).expect("json");
    for t in tok["added_tokens"].as_array().expect("added_tokens") {
        if matches!(t["content"].as_str(), Some("<|return|>" | "<|call|>")) {
            eos.push(t["id"].clone());
        }
    }
    assert_eq!(eos.len(), 2, "{tok}");
    edit("tokenizer_config.json", &|v| {
        for t in v["added_tokens_decoder"].as_object_mut().expect("decoder").values_mut() {
            if let Some(new) = t["content"].as_str().and_then(rename) {
                t["content"] = new.into();
                t["special"] = true.into();
            }
        }
        v["eos_token"] = "<|return|>".into();
        v["chat_template"] = chat_template::templates::GPT_OSS.into();
    });
    edit("generation_config.json", &|v| {
        v["eos_token_id"] = Value::Array(eos.clone())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn harmony_is_served_through_openai_chat_with_reasoning_and_forced_tool_calls() {
    let local = start(true).await;
    let model = tempfile::tempdir().expect("tempdir");
    harmony_qwen3(model.path());
    let arn = import_dir(&local, model.path(), "tiny-harmony").await;
    forced_harmony_call(&local, &arn).await;
}

/// Converse refused, then a forced call answered whole and streamed with `reasoning_content` and `tool_calls`.
async fn forced_harmony_call(local: &bedrock_server::testing::TestServer, arn: &str) {
    let arn = arn.to_string();
    let rt = runtime(&local.server, 1);
    converse_is_refused(&rt, &arn).await;

    // Whole: the analysis channel is reasoning_content, the commentary call to functions.get_weather a tool call.
    let v = invoke(&rt, &arn, &forced_chat()).await;
    assert_eq!(v["object"], "chat.completion", "{v}");
    let choice = &v["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{v}");
    let message = &choice["message"];
    assert_eq!(message["role"], "assistant", "{v}");
    assert!(
        message["reasoning_content"].as_str().is_some_and(|r| !r.is_empty()),
        "no reasoning_content: {v}"
    );
    let calls = message["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{v}");
    let whole_args = weather_args(&calls[0]);
    assert!(calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()), "{v}");
    // No harmony markup leaks into what the client reads.
    assert!(!v.to_string().contains("<|channel|>"), "{v}");

    // Streamed: reasoning deltas, the call whole with its index, then the finish.
    let chunks = invoke_stream(&rt, &arn, &forced_chat()).await;
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{chunks:?}");
    let reasoning: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["reasoning_content"].as_str())
        .collect();
    assert!(!reasoning.is_empty(), "no reasoning_content deltas: {chunks:?}");
    assert_eq!(
        reasoning,
        message["reasoning_content"].as_str().unwrap_or(""),
        "greedy: as the whole answer"
    );
    let streamed: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(streamed.len(), 1, "{chunks:?}");
    assert_eq!(streamed[0]["index"], 0, "{chunks:?}");
    assert_eq!(weather_args(streamed[0]), whole_args);
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"][0]["finish_reason"], "tool_calls", "{last}");
    assert!(last.get("amazon-bedrock-invocationMetrics").is_some(), "{last}");
    assert!(
        chunks.iter().all(|c| c["choices"][0]["delta"]["content"]
            .as_str()
            .is_none_or(|t| !t.contains("<|"))),
        "{chunks:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qwen3_moe_answers_invoke_model_with_a_tool_call_and_refuses_converse() {
    let local = start(true).await;
    let arn = import(&local, family("qwen3-moe"), "tiny-qwen3-moe").await;
    let rt = runtime(&local.server, 1);
    converse_is_refused(&rt, &arn).await;

    // A forced call in Qwen3's `<tool_call>` form, read back as tool_calls.
    let v = invoke(&rt, &arn, &forced_chat()).await;
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let calls = v["choices"][0]["message"]["tool_calls"].as_array().expect("tool_calls");
    assert_eq!(calls.len(), 1, "{v}");
    weather_args(&calls[0]);
    assert!(!v.to_string().contains("<tool_call>"), "{v}");
    // The completion formats answer too.
    let v = invoke(
        &rt,
        &arn,
        &json!({"prompt": "Hello", "max_gen_len": 5, "temperature": 0}),
    )
    .await;
    assert!(v["generation"].is_string(), "{v}");
}

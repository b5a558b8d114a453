//! The runtime with a real (tiny, random-weight) model through `aws-sdk-bedrockruntime`: Converse, ConverseStream with
//! a forced tool call and its round trip, InvokeModel in the three body formats, InvokeModelWithResponseStream, a cold
//! start answered after `ModelNotReadyException`s, and a model timeout.

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    AnyToolChoice, ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message, Tool,
    ToolChoice, ToolConfiguration, ToolInputSchema, ToolResultBlock, ToolResultContentBlock, ToolSpecification,
    ToolUseBlock,
};
use aws_smithy_types::Document;
use common::{import, runtime, start};
use test_support::Family;

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.into()))
        .build()
        .expect("message")
}

fn ic(max: i32) -> InferenceConfiguration {
    InferenceConfiguration::builder()
        .max_tokens(max)
        .temperature(0.0)
        .build()
}

fn tools(forced: bool) -> ToolConfiguration {
    let schema = Document::Object(
        [
            ("type".to_string(), Document::String("object".into())),
            (
                "properties".to_string(),
                Document::Object(
                    [(
                        "city".to_string(),
                        Document::Object(
                            [
                                ("type".to_string(), Document::String("string".into())),
                                (
                                    "enum".to_string(),
                                    Document::Array(vec![
                                        Document::String("Paris".into()),
                                        Document::String("Oslo".into()),
                                    ]),
                                ),
                            ]
                            .into(),
                        ),
                    )]
                    .into(),
                ),
            ),
            (
                "required".to_string(),
                Document::Array(vec![Document::String("city".into())]),
            ),
            ("additionalProperties".to_string(), Document::Bool(false)),
        ]
        .into(),
    );
    let mut b = ToolConfiguration::builder().tools(Tool::ToolSpec(
        ToolSpecification::builder()
            .name("get_weather")
            .description("Weather for a city")
            .input_schema(ToolInputSchema::Json(schema))
            .build()
            .expect("spec"),
    ));
    if forced {
        b = b.tool_choice(ToolChoice::Any(AnyToolChoice::builder().build()));
    }
    b.build().expect("tool config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_and_invoke_on_a_warm_model() {
    let local = start(true).await;
    let (_, job) = import(&local.server, Family::Qwen2, "rt-models", "warm-qwen").await;
    assert_eq!(
        job.status(),
        Some(&aws_sdk_bedrock::types::ModelImportJobStatus::Completed),
        "{:?}",
        job.failure_message()
    );
    let arn = job.imported_model_arn().expect("arn").to_string();
    let rt = runtime(&local.server, 1);

    let r = rt
        .converse()
        .model_id(&arn)
        .messages(user("Hello"))
        .inference_config(ic(8))
        .send()
        .await
        .expect("converse");
    let usage = r.usage().expect("usage");
    assert!(
        usage.input_tokens() > 0 && usage.output_tokens() > 0 && usage.output_tokens() <= 8,
        "{usage:?}"
    );
    assert_eq!(usage.total_tokens(), usage.input_tokens() + usage.output_tokens());
    let stop = r.stop_reason().as_str().to_string();
    assert!(
        ["end_turn", "max_tokens", "tool_use"].contains(&stop.as_str()),
        "{stop}"
    );
    assert!(r.metrics().is_some());

    // By name too.
    rt.converse()
        .model_id("warm-qwen")
        .messages(user("Hi"))
        .inference_config(ic(2))
        .send()
        .await
        .expect("by name");

    // InvokeModel in each body format.
    for (body, key) in [
        (r#"{"prompt":"Hello","max_gen_len":5,"temperature":0}"#, "generation"),
        (r#"{"prompt":"Hello","max_tokens":5,"temperature":0}"#, "choices"),
        (
            r#"{"messages":[{"role":"user","content":"Hello"}],"max_tokens":5,"temperature":0}"#,
            "choices",
        ),
    ] {
        let out = rt
            .invoke_model()
            .model_id(&arn)
            .content_type("application/json")
            .body(Blob::new(body.as_bytes().to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("invoke {body}: {e:?}"));
        let v: serde_json::Value = serde_json::from_slice(out.body().as_ref()).expect("json body");
        assert!(v.get(key).is_some(), "{body} -> {v}");
        if key == "generation" {
            assert!(
                v["generation_token_count"]
                    .as_u64()
                    .is_some_and(|n| (1..=5).contains(&n)),
                "{v}"
            );
            assert!(matches!(v["stop_reason"].as_str(), Some("stop" | "length")), "{v}");
        } else {
            assert!(v["usage"]["completion_tokens"].as_u64().is_some_and(|n| n <= 5), "{v}");
        }
    }

    // InvokeModelWithResponseStream: chunks, the last with invocation metrics.
    let mut s = rt
        .invoke_model_with_response_stream()
        .model_id(&arn)
        .content_type("application/json")
        .body(Blob::new(
            br#"{"prompt":"Hello","max_gen_len":6,"temperature":0}"#.to_vec(),
        ))
        .send()
        .await
        .expect("invoke stream");
    let mut chunks = Vec::new();
    while let Some(ev) = s.body.recv().await.expect("stream event") {
        if let aws_sdk_bedrockruntime::types::ResponseStream::Chunk(p) = ev {
            let v: serde_json::Value = serde_json::from_slice(p.bytes().expect("bytes").as_ref()).expect("chunk json");
            chunks.push(v);
        }
    }
    let last = chunks.last().expect("chunks");
    assert!(last.get("amazon-bedrock-invocationMetrics").is_some(), "{last}");
    assert!(last["stop_reason"].is_string(), "{last}");
    // As Bedrock's Llama stream: the prompt's count in the first chunk (and the last), null in between.
    let prompt_tokens = last["prompt_token_count"].as_u64().expect("last prompt_token_count");
    assert_eq!(
        chunks[0]["prompt_token_count"].as_u64(),
        Some(prompt_tokens),
        "{chunks:?}"
    );
    for c in &chunks[1..chunks.len() - 1] {
        assert!(c["prompt_token_count"].is_null(), "{c}");
    }

    // InvokeModel's usage headers carry the model's own counts (LiteLLM reads usage from them).
    let path = format!(
        "/model/{}/invoke",
        percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC)
    );
    let (status, headers, body) = common::raw(
        &local.server,
        "POST",
        &path,
        &[("content-type", "application/json"), ("accept", "application/json")],
        br#"{"prompt":"Hello","max_gen_len":4,"temperature":0}"#.to_vec(),
        Some(common::Sign::good(&local.server, "bedrock")),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    let header = |name: &str| -> u64 {
        headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {headers:?}"))
            .to_str()
            .expect("ascii")
            .parse()
            .expect("a number")
    };
    assert_eq!(
        header("x-amzn-bedrock-input-token-count"),
        v["prompt_token_count"].as_u64().expect("prompt count")
    );
    assert_eq!(
        header("x-amzn-bedrock-output-token-count"),
        v["generation_token_count"].as_u64().expect("generation count")
    );
    header("x-amzn-bedrock-invocation-latency");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_stream_tool_round_trip() {
    let local = start(true).await;
    // The tiny model's 512-token window is too small for Qwen's tool prompt in a byte-level vocabulary: widen it.
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), Family::Qwen2).expect("tiny model");
    let cfg_path = model.path().join("config.json");
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
    cfg["max_position_embeddings"] = 4096.into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let (_, job) = common::run_import_job(&local.server, model.path(), "rt-models", "tool-qwen").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let rt = runtime(&local.server, 1);

    // toolChoice any: constrained decoding makes even random weights write a well-formed call.
    let mut out = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("What is the weather in Paris?"))
        .tool_config(tools(true))
        .inference_config(ic(200))
        .send()
        .await
        .expect("converse stream");
    let mut kinds = Vec::new();
    let mut tool_id = None;
    let mut tool_name = None;
    let mut input = String::new();
    let mut text = String::new();
    let mut stop = None;
    while let Some(ev) = out.stream.recv().await.expect("event") {
        match &ev {
            ConverseStreamOutput::MessageStart(_) => kinds.push("messageStart"),
            ConverseStreamOutput::ContentBlockStart(s) => {
                kinds.push("contentBlockStart");
                if let Some(aws_sdk_bedrockruntime::types::ContentBlockStart::ToolUse(t)) = s.start() {
                    tool_id = Some(t.tool_use_id().to_string());
                    tool_name = Some(t.name().to_string());
                }
            }
            ConverseStreamOutput::ContentBlockDelta(d) => {
                kinds.push("contentBlockDelta");
                match d.delta() {
                    Some(aws_sdk_bedrockruntime::types::ContentBlockDelta::ToolUse(t)) => input.push_str(t.input()),
                    Some(aws_sdk_bedrockruntime::types::ContentBlockDelta::Text(t)) => text.push_str(t),
                    _ => {}
                }
            }
            ConverseStreamOutput::ContentBlockStop(_) => kinds.push("contentBlockStop"),
            ConverseStreamOutput::MessageStop(m) => {
                kinds.push("messageStop");
                stop = Some(m.stop_reason().as_str().to_string());
            }
            ConverseStreamOutput::Metadata(m) => {
                kinds.push("metadata");
                assert!(m.usage().is_some_and(|u| u.output_tokens() > 0));
            }
            _ => kinds.push("other"),
        }
    }
    assert_eq!(kinds.first(), Some(&"messageStart"), "{kinds:?}");
    assert_eq!(&kinds[kinds.len() - 2..], ["messageStop", "metadata"], "{kinds:?}");
    assert_eq!(stop.as_deref(), Some("tool_use"), "{kinds:?} text={text:?}");
    assert_eq!(tool_name.as_deref(), Some("get_weather"));
    let args: serde_json::Value = serde_json::from_str(&input).expect("tool input is JSON");
    assert!(matches!(args["city"].as_str(), Some("Paris" | "Oslo")), "{args}");

    // Round trip: send the tool result back.
    let tool_id = tool_id.expect("tool id");
    let call = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::ToolUse(
            ToolUseBlock::builder()
                .tool_use_id(&tool_id)
                .name("get_weather")
                .input(Document::Object(
                    [("city".to_string(), Document::String("Paris".into()))].into(),
                ))
                .build()
                .expect("tool use"),
        ))
        .build()
        .expect("assistant");
    let result = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::ToolResult(
            ToolResultBlock::builder()
                .tool_use_id(&tool_id)
                .content(ToolResultContentBlock::Text("18 C and sunny".into()))
                .build()
                .expect("tool result"),
        ))
        .build()
        .expect("user");
    let r = rt
        .converse()
        .model_id(&arn)
        .messages(user("What is the weather in Paris?"))
        .messages(call)
        .messages(result)
        .tool_config(tools(false))
        .inference_config(ic(8))
        .send()
        .await
        .expect("round trip");
    assert!(r.usage().is_some_and(|u| u.input_tokens() > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_is_answered_after_model_not_ready() {
    let local = start(false).await;
    let (_, job) = import(&local.server, Family::Llama, "rt-models", "cold-llama").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    // One attempt: the typed ModelNotReadyException.
    let e = runtime(&local.server, 1)
        .converse()
        .model_id(&arn)
        .messages(user("Hi"))
        .send()
        .await
        .expect_err("cold");
    assert!(e.into_service_error().is_model_not_ready_exception());
    // With retries, the SDK's own retry path gets the answer once the background load finishes.
    let r = runtime(&local.server, 10)
        .converse()
        .model_id(&arn)
        .messages(user("Hi"))
        .inference_config(ic(3))
        .send()
        .await
        .expect("answered after retries");
    assert!(r.usage().is_some_and(|u| u.output_tokens() > 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_generation_times_out() {
    let local = common::TestServer::start_with(|c| {
        c.warm = true;
        c.model_timeout = Some(std::time::Duration::from_micros(1));
    })
    .await;
    let server = &local.server;
    let (_, job) = import(server, Family::Llama, "rt-models", "slow").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let e = runtime(server, 1)
        .converse()
        .model_id(&arn)
        .messages(user("Hi"))
        .inference_config(ic(64))
        .send()
        .await
        .expect_err("timeout");
    let e = e.into_service_error();
    assert!(e.is_model_timeout_exception(), "{e:?}");
}

//! Runtime errors the SDK must decode into typed errors, for failures decided before the model generates: unknown and
//! foundation-model ids, malformed bodies, the per-model stream-tools switch, the invocation quota, cold starts, and
//! a full engine queue.

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ConversationRole, ConverseStreamOutput, InferenceConfiguration, Message, StopReason, Tool,
    ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::Document;
use common::{bedrock, import, runtime, start};
use test_support::Family;

fn user(text: &str) -> Message {
    Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text(text.into()))
        .build()
        .expect("message")
}

fn weather_tool() -> ToolConfiguration {
    let schema = Document::Object(
        [
            ("type".to_string(), Document::String("object".into())),
            (
                "properties".to_string(),
                Document::Object(
                    [(
                        "city".to_string(),
                        Document::Object([("type".to_string(), Document::String("string".into()))].into()),
                    )]
                    .into(),
                ),
            ),
        ]
        .into(),
    );
    ToolConfiguration::builder()
        .tools(Tool::ToolSpec(
            ToolSpecification::builder()
                .name("get_weather")
                .description("Weather for a city")
                .input_schema(ToolInputSchema::Json(schema))
                .build()
                .expect("tool spec"),
        ))
        .build()
        .expect("tool config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_errors_before_generation() {
    let local = start(false).await;
    let (_, job) = import(&local.server, Family::Llama, "rt-models", "tiny").await;
    let model_arn = job.imported_model_arn().expect("model arn").to_string();
    let rt = runtime(&local.server, 1);

    // A foundation model: the local Bedrock has no access to it.
    let e = rt
        .converse()
        .model_id("anthropic.claude-3-haiku-20240307-v1:0")
        .messages(user("hi"))
        .send()
        .await;
    let e = e.expect_err("foundation model").into_service_error();
    assert!(e.is_access_denied_exception(), "{e:?}");

    // An imported-model ARN that does not exist.
    let missing = model_arn
        .rsplit_once('/')
        .map(|(a, _)| format!("{a}/zzzzzzzzzzzz"))
        .expect("arn");
    let e = rt
        .converse()
        .model_id(&missing)
        .messages(user("hi"))
        .send()
        .await
        .expect_err("missing");
    assert!(e.into_service_error().is_resource_not_found_exception());

    // A conversation that starts with the assistant.
    let assistant = Message::builder()
        .role(ConversationRole::Assistant)
        .content(ContentBlock::Text("hi".into()))
        .build()
        .expect("m");
    let e = rt
        .converse()
        .model_id(&model_arn)
        .messages(assistant)
        .send()
        .await
        .expect_err("bad conversation");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");

    // InvokeModel with a body that is not JSON.
    let e = rt
        .invoke_model()
        .model_id(&model_arn)
        .content_type("application/json")
        .body(Blob::new(b"not json".to_vec()))
        .send()
        .await
        .expect_err("bad body")
        .into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");

    // Cold start: the first request finds the model unloaded.
    let e = rt
        .converse()
        .model_id(&model_arn)
        .messages(user("hi"))
        .send()
        .await
        .expect_err("cold");
    let e = e.into_service_error();
    assert!(e.is_model_not_ready_exception(), "{e:?}");
    // The model name is accepted as the id too.
    let e = rt
        .converse()
        .model_id("no-such-model")
        .messages(user("hi"))
        .send()
        .await
        .expect_err("unknown name");
    assert!(e.into_service_error().is_resource_not_found_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_tools_switch_refuses_converse_stream_with_tools() {
    let local =
        common::TestServer::start_with(|c| c.model_stream_tools = vec![("no-stream-tools".to_string(), false)]).await;
    let server = &local.server;
    let (_, job) = import(server, Family::Llama, "rt-models", "no-stream-tools").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let rt = runtime(server, 1);
    let e = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("weather in Paris?"))
        .tool_config(weather_tool())
        .send()
        .await
        .expect_err("refused");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert!(format!("{e:?}").contains("streaming mode"), "{e:?}");
    // Without tools the same model is not refused for that reason (it is cold, so it answers ModelNotReady).
    let e = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("hi"))
        .send()
        .await
        .expect_err("cold");
    assert!(e.into_service_error().is_model_not_ready_exception());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invocation_quota_gives_service_quota_exceeded() {
    let local = common::TestServer::start_with(|c| c.max_concurrent_requests = 0).await;
    let server = &local.server;
    let (_, job) = import(server, Family::Mistral, "rt-models", "quota").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let rt = runtime(server, 1);
    let e = rt
        .invoke_model()
        .model_id(&arn)
        .content_type("application/json")
        .body(Blob::new(br#"{"prompt":"hi","max_tokens":4}"#.to_vec()))
        .send()
        .await
        .expect_err("quota")
        .into_service_error();
    assert!(e.is_service_quota_exceeded_exception(), "{e:?}");
    let _ = bedrock(server);
}

fn greedy(max_tokens: i32) -> InferenceConfiguration {
    InferenceConfiguration::builder()
        .max_tokens(max_tokens)
        .temperature(0.0)
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_engine_queue_gives_throttling_and_the_server_recovers() {
    // One sequence generates at a time and one request may wait: while A generates and B waits, the queue is full.
    let local = common::TestServer::start_with(|c| {
        c.warm = true;
        c.max_batch = 1;
        c.max_queue = 1;
    })
    .await;
    let server = &local.server;
    let model = tempfile::tempdir().expect("tempdir");
    // A must not finish while the test runs: greedy decoding of this model never picks an end token (a random
    // model otherwise ends within a few dozen tokens, racing the flood), and its context is long.
    let opts = test_support::TinyOptions {
        endless: true,
        ..test_support::TinyOptions::new(Family::Llama)
    };
    test_support::tiny_model_with(model.path(), &opts).expect("tiny model");
    bedrock_server::testing::set_context_length(model.path(), 1 << 16);
    let (_, job) = common::run_import_job(server, model.path(), "rt-models", "queue").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    // One attempt per call: the SDK retries throttling, which would hide it.
    let rt = runtime(server, 1);

    // A: a long generation; its first delta proves the scheduler took it off the queue into the batch.
    let mut a = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("hi"))
        .inference_config(greedy(1 << 16))
        .send()
        .await
        .expect("A starts");
    loop {
        match a.stream.recv().await {
            Ok(Some(ConverseStreamOutput::ContentBlockDelta(_))) => break,
            Ok(Some(_)) => {}
            other => panic!("A ended before its first delta: {other:?}"),
        }
    }
    // B: accepted into the queue, where it waits for A's sequence.
    let mut b = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("hello"))
        .inference_config(greedy(4))
        .send()
        .await
        .expect("B is queued");

    // The flood: with the batch and the queue both taken, every request is refused at once, typed.
    let flood = futures::future::join_all((0..4).map(|_| {
        rt.converse()
            .model_id(&arn)
            .messages(user("hi"))
            .inference_config(greedy(4))
            .send()
    }))
    .await;
    for r in flood {
        let e = r.expect_err("the queue is full").into_service_error();
        assert!(e.is_throttling_exception(), "{e:?}");
    }
    let e = rt
        .converse_stream()
        .model_id(&arn)
        .messages(user("hi"))
        .inference_config(greedy(4))
        .send()
        .await
        .expect_err("the queue is full")
        .into_service_error();
    assert!(e.is_throttling_exception(), "{e:?}");

    // A has been streaming all along; dropping it cancels it and frees the sequence, and B, queued all along,
    // generates to its end.
    assert!(a.stream.recv().await.expect("A still streams").is_some());
    drop(a);
    let mut stop = None;
    while let Some(ev) = b.stream.recv().await.expect("B's events") {
        if let ConverseStreamOutput::MessageStop(m) = ev {
            stop = Some(m.stop_reason().clone());
        }
    }
    assert!(
        matches!(stop, Some(StopReason::MaxTokens | StopReason::EndTurn)),
        "B did not finish: {stop:?}"
    );

    // The server keeps serving.
    let r = rt
        .converse()
        .model_id(&arn)
        .messages(user("hi again"))
        .inference_config(greedy(4))
        .send()
        .await
        .expect("served after the flood");
    assert!(r.usage().is_some_and(|u| u.output_tokens() > 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_longer_than_the_context_is_refused_with_both_numbers() {
    let local = start(true).await;
    let (_, job) = import(&local.server, Family::Llama, "rt-models", "short-context").await;
    let arn = job.imported_model_arn().expect("model arn").to_string();
    let rt = runtime(&local.server, 1);
    // The tiny models declare a 512-token context.
    let long = "many words here ".repeat(400);
    let e = rt
        .converse()
        .model_id(&arn)
        .messages(user(&long))
        .send()
        .await
        .expect_err("too long");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("the context window is 512") && msg.contains("tokens"),
        "{msg}"
    );
    let n: usize = msg
        .split("the prompt has ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no prompt length in {msg}"));
    assert!(n > 512, "{msg}");
    // The same through InvokeModel; the model still answers a short prompt afterwards.
    let body = serde_json::json!({"prompt": long, "max_gen_len": 4});
    let e = rt
        .invoke_model()
        .model_id(&arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string().into_bytes()))
        .send()
        .await
        .expect_err("too long")
        .into_service_error();
    assert!(e.is_validation_exception() && e.to_string().contains("512"), "{e:?}");
    rt.converse()
        .model_id(&arn)
        .messages(user("Hi"))
        .inference_config(InferenceConfiguration::builder().max_tokens(2).build())
        .send()
        .await
        .expect("a short prompt");
}

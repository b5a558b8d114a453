//! The OpenAI-compatible surfaces on a tiny random-weight model, over plain HTTP with the server's Bedrock API key as
//! a bearer token: Chat Completions (whole and streamed, a forced tool call, a JSON schema), the Responses API (whole
//! and streamed, a forced function call), OpenAI-shaped errors, and the refusals without a valid key.

mod common;

use common::{import, raw, run_import_job, start};
use serde_json::{Value, json};
use test_support::Family;

async fn post(
    local: &common::TestServer,
    path: &str,
    body: &Value,
    key: Option<&str>,
) -> (u16, http::HeaderMap, Vec<u8>) {
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    raw(
        &local.server,
        "POST",
        path,
        &headers,
        body.to_string().into_bytes(),
        None,
    )
    .await
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(body)))
}

/// The `data:` payloads of a server-sent-event body, with each event's name when it has one.
fn events(body: &[u8]) -> Vec<(Option<String>, String)> {
    let text = String::from_utf8_lossy(body);
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = None;
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_string());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            (name, data)
        })
        .collect()
}

fn weather_tool() -> Value {
    // As pydantic writes a schema: no `additionalProperties`.
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Oslo"]}},
            "required": ["city"]}}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_and_responses_answer_as_openai_does() {
    let local = start(true).await;
    // Qwen's tool prompt needs more than the tiny model's 512-token window in a byte-level vocabulary.
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), Family::Qwen2).expect("tiny model");
    let cfg_path = model.path().join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).expect("config")).expect("json");
    cfg["max_position_embeddings"] = 4096.into();
    std::fs::write(&cfg_path, cfg.to_string()).expect("write config");
    let (_, job) = run_import_job(&local.server, model.path(), "oa-models", "oa-qwen").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let key = local.server.api_key().to_string();
    assert!(key.starts_with("ABSK"), "{key}");

    // A whole chat completion, the model named by its ARN.
    let body = json!({"model": arn, "messages": [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello"}], "max_tokens": 6, "temperature": 0});
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    assert_eq!(v["object"], "chat.completion", "{v}");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-")), "{v}");
    assert_eq!(v["model"], arn.as_str());
    assert_eq!(v["choices"][0]["message"]["role"], "assistant", "{v}");
    let usage = &v["usage"];
    assert!(
        usage["completion_tokens"]
            .as_u64()
            .is_some_and(|n| (1..=6).contains(&n)),
        "{v}"
    );
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0))
    );

    // By name, under /openai/v1, streamed with usage.
    let body = json!({"model": "oa-qwen", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 5,
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true}});
    let (status, headers, b) = post(&local, "/openai/v1/chat/completions", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    assert_eq!(headers["content-type"], "text/event-stream");
    let evs = events(&b);
    assert_eq!(evs.last().map(|e| e.1.as_str()), Some("[DONE]"), "{evs:?}");
    let chunks: Vec<Value> = evs[..evs.len() - 1].iter().map(|e| json_of(e.1.as_bytes())).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "{chunks:?}");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let finish = &chunks[chunks.len() - 2];
    assert!(finish["choices"][0]["finish_reason"].is_string(), "{finish}");
    let usage = chunks.last().expect("usage chunk");
    assert_eq!(usage["choices"], json!([]), "{usage}");
    assert!(
        usage["usage"]["completion_tokens"].as_u64().is_some_and(|n| n <= 5),
        "{usage}"
    );

    // A forced tool call comes back as tool_calls whose arguments hold to the schema.
    let body = json!({"model": arn, "messages": [{"role": "user", "content": "Weather in Paris?"}],
        "tools": [weather_tool()], "tool_choice": "required", "max_tokens": 64, "temperature": 0});
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather", "{v}");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().expect("arguments")).expect("json");
    assert!(matches!(args["city"].as_str(), Some("Paris" | "Oslo")), "{args}");
    assert_eq!(args.as_object().map(|o| o.len()), Some(1), "an undeclared key: {args}");

    // Structured output.
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
        "additionalProperties": false});
    let body = json!({"model": arn, "messages": [{"role": "user", "content": "A number"}], "max_tokens": 40,
        "temperature": 0, "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}});
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    let content = v["choices"][0]["message"]["content"].as_str().expect("content");
    let answer: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
    assert!(answer["n"].is_i64(), "{answer}");

    // The Responses API: whole, then a forced function call, then streamed.
    let body = json!({"model": arn, "instructions": "Be brief.", "input": "Hello", "max_output_tokens": 6,
        "temperature": 0});
    let (status, _, b) = post(&local, "/openai/v1/responses", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    assert_eq!(v["object"], "response", "{v}");
    assert!(v["id"].as_str().is_some_and(|id| id.starts_with("resp_")), "{v}");
    assert!(matches!(v["status"].as_str(), Some("completed" | "incomplete")), "{v}");
    let message = v["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "message"))
        .expect("message");
    assert_eq!(message["content"][0]["type"], "output_text", "{v}");
    assert!(
        v["usage"]["output_tokens"]
            .as_u64()
            .is_some_and(|n| (1..=6).contains(&n)),
        "{v}"
    );

    let body = json!({"model": arn, "input": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [{"type": "function", "name": "get_weather", "parameters": weather_tool()["function"]["parameters"]}],
        "tool_choice": "required", "max_output_tokens": 64, "temperature": 0});
    let (status, _, b) = post(&local, "/openai/v1/responses", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    let call = v["output"]
        .as_array()
        .and_then(|o| o.iter().find(|i| i["type"] == "function_call"))
        .expect("call");
    assert_eq!(call["name"], "get_weather", "{v}");
    assert!(call["call_id"].as_str().is_some_and(|id| !id.is_empty()), "{v}");

    let body = json!({"model": arn, "input": "Hello", "max_output_tokens": 5, "temperature": 0, "stream": true});
    let (status, _, b) = post(&local, "/openai/v1/responses", &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    let evs = events(&b);
    let names: Vec<&str> = evs.iter().filter_map(|e| e.0.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"), "{names:?}");
    assert!(
        matches!(names.last(), Some(&("response.completed" | "response.incomplete"))),
        "{names:?}"
    );
    let text: String = evs
        .iter()
        .filter(|e| e.0.as_deref() == Some("response.output_text.delta"))
        .map(|e| {
            json_of(e.1.as_bytes())["delta"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    let last = json_of(evs.last().expect("last").1.as_bytes());
    let whole = last["response"]["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap_or_default();
    assert_eq!(text, whole, "the deltas make the whole text");

    // Errors in OpenAI's shape, with the service's statuses.
    let body = json!({"model": "no-such-model", "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, Some(&key)).await;
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&b));
    let v = json_of(&b);
    assert_eq!(v["error"]["code"], "ResourceNotFoundException", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("no-such-model")),
        "{v}"
    );
    let (status, _, b) = post(&local, "/v1/chat/completions", &json!({"messages": []}), Some(&key)).await;
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&b));

    // Without a key, or with another one, nothing runs.
    let body = json!({"model": arn, "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, None).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json_of(&b)["error"]["code"], "MissingAuthenticationTokenException");
    let (status, _, b) = post(&local, "/v1/chat/completions", &body, Some("ABSKbm90LXRoaXMtb25l")).await;
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&b));
    assert_eq!(json_of(&b)["error"]["code"], "UnrecognizedClientException");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_key_works_on_the_bedrock_routes_too() {
    let local = start(true).await;
    let (_, job) = import(&local.server, Family::Llama, "key-models", "key-llama").await;
    let arn = job.imported_model_arn().expect("arn").to_string();
    let key = local.server.api_key().to_string();
    let path = format!(
        "/model/{}/invoke",
        percent_encoding::utf8_percent_encode(&arn, percent_encoding::NON_ALPHANUMERIC)
    );
    let body = json!({"prompt": "Hello", "max_gen_len": 3, "temperature": 0});
    let (status, _, b) = post(&local, &path, &body, Some(&key)).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&b));
    assert!(json_of(&b)["generation"].is_string());
    let (status, headers, _) = post(&local, &path, &body, Some("ABSKd3Jvbmc=")).await;
    assert_eq!(status, 403);
    assert_eq!(headers["x-amzn-errortype"], "UnrecognizedClientException");
}

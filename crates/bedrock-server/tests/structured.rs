//! Structured output through the real `aws-sdk-bedrockruntime` client, on a tiny random-weight model: whatever the
//! weights, constrained decoding makes InvokeModel's `response_format` (JSON object, JSON schema), `structured_outputs`
//! (regex, choice, grammar) and `tool_choice`, and Converse's `outputConfig` and named `toolChoice`, come back in the shape asked for. Bad
//! schemas, regexes, grammars and tool choices are a `ValidationException` naming them, and the server keeps serving.

mod common;

use aws_sdk_bedrockruntime::primitives::Blob;
use aws_sdk_bedrockruntime::types::{
    ContentBlock, ContentBlockDelta, ConversationRole, ConverseStreamOutput, InferenceConfiguration,
    JsonSchemaDefinition, Message, OutputConfig, OutputFormat, OutputFormatStructure, OutputFormatType,
    SpecificToolChoice, Tool, ToolChoice, ToolConfiguration, ToolInputSchema, ToolSpecification,
};
use aws_smithy_types::Document;
use bedrock_server::testing::set_context_length;
use common::{run_import_job, runtime, start};
use serde_json::{Value, json};
use test_support::Family;

/// A schema whose every answer is short (so the random model finishes well within the token limit).
fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 0, "maximum": 999},
            "ok": {"type": "boolean"},
            "unit": {"enum": ["kg", "lb"]}
        },
        "required": ["n", "ok", "unit"],
        "additionalProperties": false
    })
}

/// A JSON value as an SDK document.
fn doc(v: &Value) -> Document {
    match v {
        Value::Null => Document::Null,
        Value::Bool(b) => Document::Bool(*b),
        Value::Number(n) => Document::Number(aws_smithy_types::Number::Float(n.as_f64().unwrap_or_default())),
        Value::String(s) => Document::String(s.clone()),
        Value::Array(a) => Document::Array(a.iter().map(doc).collect()),
        Value::Object(o) => Document::Object(o.iter().map(|(k, v)| (k.clone(), doc(v))).collect()),
    }
}

/// Checks `v` against [`schema`] by hand (the schema is small enough).
fn assert_matches_schema(v: &Value) {
    let o = v.as_object().unwrap_or_else(|| panic!("not an object: {v}"));
    assert_eq!(o.len(), 3, "{v}");
    assert!(o["n"].as_u64().is_some_and(|n| n <= 999), "{v}");
    assert!(o["ok"].is_boolean(), "{v}");
    assert!(matches!(o["unit"].as_str(), Some("kg" | "lb")), "{v}");
}

/// Imports a tiny model of `family` as `name`; returns its ARN. The tools' specs render longer than the 512 tokens
/// the tiny models declare, so they declare 4096 here (their rotary positions run at any length).
async fn import_tiny(local: &common::TestServer, family: Family, name: &str) -> String {
    let model = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(model.path(), family).expect("tiny model");
    set_context_length(model.path(), 4096);
    let (_, job) = run_import_job(&local.server, model.path(), "so-models", name).await;
    job.imported_model_arn().expect("arn").to_string()
}

/// InvokeModel with a JSON `body`.
fn invoke_request(
    rt: &aws_sdk_bedrockruntime::Client,
    arn: &str,
    body: &Value,
) -> aws_sdk_bedrockruntime::operation::invoke_model::builders::InvokeModelFluentBuilder {
    rt.invoke_model()
        .model_id(arn)
        .content_type("application/json")
        .body(Blob::new(body.to_string().into_bytes()))
}

async fn invoke(rt: &aws_sdk_bedrockruntime::Client, arn: &str, body: Value) -> Value {
    let out = invoke_request(rt, arn, &body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("invoke {body}: {e:?}"));
    serde_json::from_slice(out.body().as_ref()).expect("json body")
}

/// The text of an OpenAI-completion-format answer.
async fn completion_text(rt: &aws_sdk_bedrockruntime::Client, arn: &str, body: Value) -> String {
    let v = invoke(rt, arn, body).await;
    v["choices"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {v}"))
        .to_string()
}

async fn invoke_error(rt: &aws_sdk_bedrockruntime::Client, arn: &str, body: Value) -> String {
    let e = invoke_request(rt, arn, &body)
        .send()
        .await
        .expect_err("a validation error");
    let service = e.into_service_error();
    assert!(service.is_validation_exception(), "{service:?}");
    service.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_model_output_follows_the_requested_format() {
    let local = start(true).await;
    let arn = import_tiny(&local, Family::Qwen2, "so-qwen").await;
    let rt = runtime(&local.server, 1);

    // response_format json_schema, in the Bedrock completion format, sampled (not greedy) with several seeds' worth
    // of temperature: every answer validates.
    for temperature in [0.0, 1.0, 1.5] {
        let v = invoke(
            &rt,
            &arn,
            json!({"prompt": "Weigh it:", "max_gen_len": 200, "temperature": temperature,
                   "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema()}}}),
        )
        .await;
        assert_eq!(v["stop_reason"], "stop", "{v}");
        let out: Value = serde_json::from_str(v["generation"].as_str().expect("generation")).expect("JSON answer");
        assert_matches_schema(&out);
    }

    // response_format json_object in the OpenAI chat format: the content is one JSON object, not a tool call.
    let v = invoke(
        &rt,
        &arn,
        json!({"messages": [{"role": "user", "content": "Answer in JSON"}], "max_tokens": 300, "temperature": 0.7,
               "seed": 7, "response_format": {"type": "json_object"}}),
    )
    .await;
    let choice = &v["choices"][0];
    if choice["finish_reason"] == "stop" {
        let content = choice["message"]["content"].as_str().expect("content");
        let out: Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{e}: {content}"));
        assert!(out.is_object(), "{out}");
    } else {
        // An unbounded object may run out of tokens; what was written is still a JSON object's beginning.
        assert_eq!(choice["finish_reason"], "length", "{v}");
        assert!(
            choice["message"]["content"]
                .as_str()
                .is_some_and(|c| c.starts_with('{')),
            "{v}"
        );
    }

    // structured_outputs in the OpenAI completion format: a regex and a choice.
    let text = completion_text(
        &rt,
        &arn,
        json!({"prompt": "Code:", "max_tokens": 40, "temperature": 1.0, "seed": 3,
               "structured_outputs": {"regex": "[0-9]{3}-[a-z]{2}/(x|y)"}}),
    )
    .await;
    let ok = text.len() == 8
        && text[..3].bytes().all(|b| b.is_ascii_digit())
        && &text[3..4] == "-"
        && text[4..6].bytes().all(|b| b.is_ascii_lowercase())
        && matches!(&text[6..], "/x" | "/y");
    assert!(ok, "{text:?} does not match the regex");
    for seed in 0..3 {
        let text = completion_text(
            &rt,
            &arn,
            json!({"prompt": "Pick:", "max_tokens": 20, "temperature": 1.0, "seed": seed,
                   "structured_outputs": {"choice": ["alpha", "beta", "gamma delta"]}}),
        )
        .await;
        assert!(["alpha", "beta", "gamma delta"].contains(&text.as_str()), "{text:?}");
    }
    let text = completion_text(
        &rt,
        &arn,
        json!({"prompt": "Say:", "max_tokens": 20, "temperature": 1.0, "seed": 1,
               "structured_outputs": {"grammar": "start: greeting \" \" name\ngreeting: \"hello\" | \"hi\"\nname: /[A-Z][a-z]{1,5}/\n"}}),
    )
    .await;
    let (greeting, name) = text.split_once(' ').unwrap_or_else(|| panic!("{text:?}"));
    assert!(["hello", "hi"].contains(&greeting), "{text:?}");
    assert!(
        (2..=6).contains(&name.len()) && name.chars().next().is_some_and(|c| c.is_ascii_uppercase()),
        "{text:?}"
    );

    // tool_choice "required" and a named function: the answer is a tool call with valid arguments.
    let tools = json!([
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object",
            "properties": {"city": {"enum": ["Paris", "Oslo"]}}, "required": ["city"], "additionalProperties": false}}},
        {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object",
            "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"], "additionalProperties": false}}}
    ]);
    for (choice, expect) in [
        (json!("required"), None),
        (
            json!({"type": "function", "function": {"name": "get_time"}}),
            Some("get_time"),
        ),
    ] {
        let v = invoke(
            &rt,
            &arn,
            json!({"messages": [{"role": "user", "content": "Weather in Paris?"}], "max_tokens": 120,
                   "temperature": 0.8, "seed": 11, "tools": tools, "tool_choice": choice}),
        )
        .await;
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls", "{v}");
        let call = &c["message"]["tool_calls"][0]["function"];
        let name = call["name"].as_str().expect("name");
        if let Some(e) = expect {
            assert_eq!(name, e, "{v}");
        }
        let args: Value = serde_json::from_str(call["arguments"].as_str().expect("arguments")).expect("JSON");
        match name {
            "get_weather" => assert!(matches!(args["city"].as_str(), Some("Paris" | "Oslo")), "{args}"),
            "get_time" => assert!(matches!(args["zone"].as_str(), Some("UTC" | "CET")), "{args}"),
            other => panic!("unknown tool {other}"),
        }
    }

    // Bad requests name what is wrong; the model keeps serving afterwards.
    for (body, expected) in [
        (
            json!({"prompt": "x", "max_tokens": 5, "structured_outputs": {"regex": "[0-9"}}),
            &["output format cannot be enforced"][..],
        ),
        (
            json!({"prompt": "x", "max_tokens": 5, "structured_outputs": {"grammar": "start: undefined_rule"}}),
            &["undefined_rule"][..],
        ),
        (
            json!({"prompt": "x", "max_gen_len": 5, "response_format": {"type": "xml"}}),
            &["#/response_format/type", "xml"][..],
        ),
        (
            json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 5, "tools": tools,
                   "tool_choice": {"type": "function", "function": {"name": "launch"}}}),
            &["\"launch\"", "get_weather"][..],
        ),
    ] {
        let e = invoke_error(&rt, &arn, body).await;
        assert!(expected.iter().all(|x| e.contains(x)), "{e}");
    }
    let v = invoke(
        &rt,
        &arn,
        json!({"prompt": "Hello", "max_gen_len": 3, "temperature": 0}),
    )
    .await;
    assert!(v["generation"].is_string(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converse_output_config_constrains_the_answer() {
    let local = start(true).await;
    let arn = import_tiny(&local, Family::Llama, "so-llama").await;
    let rt = runtime(&local.server, 1);
    let output = |schema: &str| {
        OutputConfig::builder()
            .text_format(
                OutputFormat::builder()
                    .r#type(OutputFormatType::JsonSchema)
                    .structure(OutputFormatStructure::JsonSchema(
                        JsonSchemaDefinition::builder()
                            .schema(schema)
                            .name("weight")
                            .build()
                            .expect("schema"),
                    ))
                    .build()
                    .expect("format"),
            )
            .build()
    };
    let message = Message::builder()
        .role(ConversationRole::User)
        .content(ContentBlock::Text("How heavy?".into()))
        .build()
        .expect("message");
    for temperature in [0.0, 1.0] {
        let r = rt
            .converse()
            .model_id(&arn)
            .messages(message.clone())
            .inference_config(
                InferenceConfiguration::builder()
                    .max_tokens(200)
                    .temperature(temperature)
                    .build(),
            )
            .output_config(output(&schema().to_string()))
            .send()
            .await
            .expect("converse");
        assert_eq!(r.stop_reason().as_str(), "end_turn");
        let msg = r.output().expect("output").as_message().expect("message");
        let text: String = msg.content().iter().filter_map(|b| b.as_text().ok().cloned()).collect();
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert_matches_schema(&v);
    }
    // ConverseStream: the text deltas add up to an answer that validates.
    let mut out = rt
        .converse_stream()
        .model_id(&arn)
        .messages(message.clone())
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(200)
                .temperature(0.8)
                .build(),
        )
        .output_config(output(&schema().to_string()))
        .send()
        .await
        .expect("converse stream");
    let (mut text, mut deltas) = (String::new(), 0);
    while let Some(ev) = out.stream.recv().await.expect("event") {
        if let ConverseStreamOutput::ContentBlockDelta(d) = &ev
            && let Some(ContentBlockDelta::Text(t)) = d.delta()
        {
            text.push_str(t);
            deltas += 1;
        }
    }
    assert!(deltas > 1, "{deltas} deltas");
    assert_matches_schema(&serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}")));

    // A named tool (Converse toolChoice `tool`), beside a structured format: the tool call wins, in Llama 3's syntax,
    // with input that validates.
    let tool = |name: &str, prop: &str, choices: [&str; 2]| {
        Tool::ToolSpec(
            ToolSpecification::builder()
                .name(name)
                .input_schema(ToolInputSchema::Json(doc(&json!({"type": "object",
                    "properties": {prop: {"enum": choices}}, "required": [prop], "additionalProperties": false}))))
                .build()
                .expect("tool spec"),
        )
    };
    let r = rt
        .converse()
        .model_id(&arn)
        .messages(message.clone())
        .inference_config(
            InferenceConfiguration::builder()
                .max_tokens(60)
                .temperature(0.9)
                .build(),
        )
        .tool_config(
            ToolConfiguration::builder()
                .tools(tool("get_weather", "city", ["Paris", "Oslo"]))
                .tools(tool("get_time", "zone", ["UTC", "CET"]))
                .tool_choice(ToolChoice::Tool(
                    SpecificToolChoice::builder().name("get_time").build().expect("choice"),
                ))
                .build()
                .expect("tool config"),
        )
        .output_config(output(&schema().to_string()))
        .send()
        .await
        .expect("converse with a named tool");
    assert_eq!(r.stop_reason().as_str(), "tool_use");
    let msg = r.output().expect("output").as_message().expect("message");
    let call = msg
        .content()
        .iter()
        .find_map(|b| b.as_tool_use().ok())
        .unwrap_or_else(|| panic!("no tool use in {msg:?}"));
    assert_eq!(call.name(), "get_time");
    let zone = match call.input() {
        Document::Object(o) => o.get("zone").and_then(Document::as_string).map(str::to_string),
        _ => None,
    };
    assert!(matches!(zone.as_deref(), Some("UTC" | "CET")), "{:?}", call.input());

    let e = rt
        .converse()
        .model_id(&arn)
        .messages(message)
        .output_config(output("{not json"))
        .send()
        .await
        .expect_err("a bad schema");
    let e = e.into_service_error();
    assert!(e.is_validation_exception(), "{e:?}");
    assert!(
        e.to_string()
            .contains("outputConfig.textFormat.structure.jsonSchema.schema"),
        "{e}"
    );
}

//! Converse request/response JSON: member names, unions, blobs, round trips, error paths.

use bedrock_wire::converse::{
    Blob, ContentBlock, ConverseMetrics, ConverseOutput, ConverseResponse, ImageSource, Message, ReasoningContentBlock,
    Role, StopReason, TokenUsage, ToolChoice, ToolResultContentBlock, ToolResultStatus,
};
use bedrock_wire::{WireError, parse_converse_request};
use serde_json::{Value, json};

/// A request using every member the SDKs send for text, images, documents, tools and reasoning.
fn full_request() -> Value {
    json!({
        "messages": [
            {"role": "user", "content": [
                {"text": "Describe this and check the weather."},
                {"image": {"format": "png", "source": {"bytes": "iVBORw0KGgo="}}},
                {"document": {"format": "txt", "name": "notes", "source": {"bytes": "aGVsbG8="}}},
                {"cachePoint": {"type": "default"}}
            ]},
            {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Need weather.", "signature": "sig=="}}},
                {"reasoningContent": {"redactedContent": "AAEC"}},
                {"text": "Let me check."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather", "input": {"city": "Paris"}}}
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "tooluse_1", "content": [
                    {"json": {"temperature": 18.5}}, {"text": "sunny"}
                ], "status": "success"}}
            ]}
        ],
        "system": [{"text": "Be brief."}, {"cachePoint": {"type": "default"}}],
        "inferenceConfig": {"maxTokens": 256, "temperature": 0.5, "topP": 0.9, "stopSequences": ["</s>"]},
        "toolConfig": {
            "tools": [{"toolSpec": {
                "name": "get_weather",
                "description": "Weather for a city",
                "inputSchema": {"json": {"type": "object", "properties": {"city": {"type": "string"}}}}
            }}],
            "toolChoice": {"auto": {}}
        },
        "additionalModelRequestFields": {"top_k": 40},
        "additionalModelResponseFieldPaths": ["/stop_sequence"],
        "performanceConfig": {"latency": "standard"},
        "requestMetadata": {"team": "cmi"}
    })
}

#[test]
fn full_request_parses_into_typed_members() {
    let body = serde_json::to_vec(&full_request()).unwrap();
    let req = parse_converse_request(&body).unwrap();
    assert_eq!(req.messages.len(), 3);
    assert_eq!(req.messages[1].role, Role::Assistant);
    let ContentBlock::Image(image) = &req.messages[0].content[1] else {
        panic!("expected image");
    };
    assert_eq!(image.format, "png");
    assert_eq!(
        image.source,
        ImageSource::Bytes(Blob(vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n']))
    );
    let ContentBlock::ReasoningContent(ReasoningContentBlock::ReasoningText(r)) = &req.messages[1].content[0] else {
        panic!("expected reasoning text");
    };
    assert_eq!(
        (r.text.as_str(), r.signature.as_deref()),
        ("Need weather.", Some("sig=="))
    );
    assert_eq!(
        req.messages[1].content[1],
        ContentBlock::ReasoningContent(ReasoningContentBlock::RedactedContent(Blob(vec![0, 1, 2])))
    );
    let ContentBlock::ToolUse(tool_use) = &req.messages[1].content[3] else {
        panic!("expected toolUse");
    };
    assert_eq!(tool_use.input, json!({"city": "Paris"}));
    let ContentBlock::ToolResult(result) = &req.messages[2].content[0] else {
        panic!("expected toolResult");
    };
    assert_eq!(result.status, Some(ToolResultStatus::Success));
    assert_eq!(
        result.content,
        vec![
            ToolResultContentBlock::Json(json!({"temperature": 18.5})),
            ToolResultContentBlock::Text("sunny".into())
        ]
    );
    let config = req.inference_config.as_ref().unwrap();
    assert_eq!(config.max_tokens, Some(256));
    assert_eq!(config.temperature, Some(0.5));
    assert_eq!(config.stop_sequences.as_deref(), Some(&["</s>".to_owned()][..]));
    let tools = req.tool_config.as_ref().unwrap();
    assert!(matches!(tools.tool_choice, Some(ToolChoice::Auto(_))));
    assert_eq!(req.additional_model_request_fields, Some(json!({"top_k": 40})));
    assert_eq!(req.performance_config.as_ref().unwrap().latency, "standard");
}

#[test]
fn request_serializes_back_to_the_same_json() {
    let original = full_request();
    let req = parse_converse_request(&serde_json::to_vec(&original).unwrap()).unwrap();
    // Through text: Smithy floats are f32 (as in the Rust SDK), and serde_json writes them in f32 shortest form.
    let text = serde_json::to_string(&req).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), original);
}

#[test]
fn unknown_top_level_fields_are_ignored_and_tool_choice_variants_parse() {
    let req = parse_converse_request(
        br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],"someFutureField":1,
            "toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}],"toolChoice":{"tool":{"name":"f"}}}}"#,
    )
    .unwrap();
    match &req.tool_config.unwrap().tool_choice {
        Some(ToolChoice::Tool(t)) => assert_eq!(t.name, "f"),
        other => panic!("expected tool choice, got {other:?}"),
    }
    let req = parse_converse_request(
        br#"{"toolConfig":{"tools":[{"toolSpec":{"name":"f","inputSchema":{"json":{}}}}],"toolChoice":{"any":{}}}}"#,
    )
    .unwrap();
    assert!(matches!(req.tool_config.unwrap().tool_choice, Some(ToolChoice::Any(_))));
    assert!(req.messages.is_empty());
}

fn json_error(body: &str) -> (String, String) {
    match parse_converse_request(body.as_bytes()) {
        Err(WireError::Json { path, reason }) => (path, reason),
        other => panic!("expected a JSON error for {body}, got {other:?}"),
    }
}

#[test]
fn parse_errors_name_the_member() {
    let (path, reason) = json_error(
        r#"{"messages":[{"role":"user","content":[{"text":"a"}]},{"role":"assistant","content":[{"text":"b"},{"toolUse":{"toolUseId":"x","name":"f"}}]}]}"#,
    );
    assert_eq!(path, "messages.1.content.1.toolUse");
    assert!(reason.contains("missing field `input`"), "{reason}");

    let (path, reason) = json_error(r#"{"messages":[{"role":"user","content":[{"video2":{}}]}]}"#);
    assert_eq!(path, "messages.0.content.0");
    assert!(reason.contains("unknown variant `video2`"), "{reason}");

    let (path, reason) =
        json_error(r#"{"messages":[{"role":"user","content":[{"image":{"format":"png","source":{"bytes":"***"}}}]}]}"#);
    assert_eq!(path, "messages.0.content.0.image.source.bytes");
    assert!(reason.contains("invalid base64"), "{reason}");

    let (path, _) = json_error(r#"{"inferenceConfig":{"maxTokens":"many"}}"#);
    assert_eq!(path, "inferenceConfig.maxTokens");

    let (path, _) = json_error(r#"{"messages":[]} trailing"#);
    assert_eq!(path, ".");
}

#[test]
fn response_json_uses_the_sdk_member_names() {
    let response = ConverseResponse {
        output: ConverseOutput::Message(Message {
            role: Role::Assistant,
            content: vec![
                ContentBlock::Text("Checking.".into()),
                ContentBlock::ToolUse(bedrock_wire::converse::ToolUseBlock {
                    tool_use_id: "tooluse_a".into(),
                    name: "get_weather".into(),
                    input: json!({"city": "Paris"}),
                    kind: None,
                }),
            ],
        }),
        stop_reason: StopReason::ToolUse,
        usage: TokenUsage::new(12, 7),
        metrics: ConverseMetrics { latency_ms: 42 },
        additional_model_response_fields: None,
        trace: None,
        performance_config: None,
        service_tier: None,
    };
    assert_eq!(
        serde_json::to_string(&response).unwrap(),
        r#"{"output":{"message":{"role":"assistant","content":[{"text":"Checking."},{"toolUse":{"toolUseId":"tooluse_a","name":"get_weather","input":{"city":"Paris"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19},"metrics":{"latencyMs":42}}"#
    );
    let back: ConverseResponse = serde_json::from_str(&serde_json::to_string(&response).unwrap()).unwrap();
    assert_eq!(back, response);
}

#[test]
fn stop_reasons_serialize_to_their_wire_values() {
    for (reason, wire) in [
        (StopReason::EndTurn, "end_turn"),
        (StopReason::ToolUse, "tool_use"),
        (StopReason::MaxTokens, "max_tokens"),
        (StopReason::StopSequence, "stop_sequence"),
        (StopReason::GuardrailIntervened, "guardrail_intervened"),
        (StopReason::ContentFiltered, "content_filtered"),
        (StopReason::MalformedModelOutput, "malformed_model_output"),
        (StopReason::MalformedToolUse, "malformed_tool_use"),
        (StopReason::ModelContextWindowExceeded, "model_context_window_exceeded"),
    ] {
        assert_eq!(serde_json::to_value(reason).unwrap(), Value::String(wire.into()));
        assert_eq!(reason.as_str(), wire);
        assert_eq!(serde_json::from_value::<StopReason>(wire.into()).unwrap(), reason);
    }
}

#[test]
fn response_fields_are_selected_by_json_pointer() {
    use bedrock_wire::converse::select_response_fields;
    let raw = json!({"generation": "x", "stop_reason": "stop", "meta": {"a/b": 1, "c": [10, 20]}});
    assert_eq!(
        select_response_fields(
            &raw,
            &[
                "/stop_reason".into(),
                "/meta/a~1b".into(),
                "/meta/c/1".into(),
                "/nope".into()
            ]
        ),
        Some(json!({"stop_reason": "stop", "meta": {"a/b": 1, "c": {"1": 20}}}))
    );
    assert_eq!(select_response_fields(&raw, &["/nope".into()]), None);
}

//! converse_to_template_input: the HF / OpenAI message shape, and Bedrock's validation rules.

use bedrock_wire::ToolRequirement;
use bedrock_wire::{WireError, converse_to_template_input, parse_converse_request};
use serde_json::{Value, json};

fn convert(request: Value) -> Result<bedrock_wire::TemplateInput, WireError> {
    let req = parse_converse_request(&serde_json::to_vec(&request).unwrap()).unwrap();
    converse_to_template_input(&req)
}

fn validation(request: Value) -> (String, String) {
    match convert(request) {
        Err(WireError::Validation { field, message }) => (field, message),
        other => panic!("expected a validation error, got {other:?}"),
    }
}

fn weather_tool_config() -> Value {
    json!({"tools": [{"toolSpec": {
        "name": "get_current_weather",
        "description": "Get the current weather for a city.",
        "inputSchema": {"json": {"type": "object",
            "properties": {"location": {"type": "string"}}, "required": ["location"]}}
    }}]})
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": [{"text": text}]})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": [{"text": text}]})
}

/// The Converse form of corpus conversation c17 (tool round trip); the expected messages are the corpus's own
/// (shared/chat-templates/conversations/c17_tool_round_trip_no_gen.json), minus its final assistant turn, which a
/// Converse request cannot end with.
#[test]
fn tool_round_trip_matches_the_corpus_message_shape() {
    let input = convert(json!({
        "system": [{"text": "You are a helpful assistant. Answer briefly."}],
        "messages": [
            user("What's the weather like in Paris right now?"),
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call0A1b2", "name": "get_current_weather",
                "input": {"location": "Paris, France"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "call0A1b2",
                "content": [{"text": "{\"temperature\": 18.5, \"condition\": \"sunny\"}"}]}}]}
        ],
        "toolConfig": weather_tool_config()
    }))
    .unwrap();
    let expected = r#"[{"role":"system","content":"You are a helpful assistant. Answer briefly."},{"role":"user","content":"What's the weather like in Paris right now?"},{"role":"assistant","content":"","tool_calls":[{"id":"call0A1b2","type":"function","function":{"name":"get_current_weather","arguments":{"location":"Paris, France"}}}]},{"role":"tool","tool_call_id":"call0A1b2","name":"get_current_weather","content":"{\"temperature\": 18.5, \"condition\": \"sunny\"}"}]"#;
    assert_eq!(serde_json::to_string(&input.messages).unwrap(), expected);
    assert_eq!(
        serde_json::to_string(&input.tools.unwrap()).unwrap(),
        r#"[{"type":"function","function":{"name":"get_current_weather","description":"Get the current weather for a city.","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}}]"#
    );
    assert_eq!(input.tool_choice, ToolRequirement::Auto);
}

/// Corpus conversation c07 keeps reasoning in `reasoning_content`, before `content`.
#[test]
fn reasoning_is_kept_as_reasoning_content() {
    let input = convert(json!({"messages": [
        user("Is 17 prime?"),
        {"role": "assistant", "content": [
            {"reasoningContent": {"reasoningText": {"text": "17 is not divisible by 2, 3 or 4, so it is prime.",
                                                    "signature": "abc"}}},
            {"reasoningContent": {"redactedContent": "AAAA"}},
            {"text": "Yes, 17 is prime."}
        ]},
        user("And 21?")
    ]}))
    .unwrap();
    assert_eq!(
        serde_json::to_string(&input.messages[1]).unwrap(),
        r#"{"role":"assistant","reasoning_content":"17 is not divisible by 2, 3 or 4, so it is prime.","content":"Yes, 17 is prime."}"#
    );
    assert_eq!(input.tools, None);
}

#[test]
fn parallel_tool_results_become_tool_messages_then_the_user_text() {
    let mut config = weather_tool_config();
    config["tools"].as_array_mut().unwrap().push(json!({"toolSpec": {
        "name": "get_time", "inputSchema": {"json": {"type": "object"}}}}));
    config["toolChoice"] = json!({"any": {}});
    let input = convert(json!({
        "messages": [
            user("Weather and time in Paris?"),
            {"role": "assistant", "content": [
                {"text": "Let me check both."},
                {"toolUse": {"toolUseId": "t1", "name": "get_current_weather", "input": {"location": "Paris"}}},
                {"toolUse": {"toolUseId": "t2", "name": "get_time", "input": {}}}
            ]},
            {"role": "user", "content": [
                {"toolResult": {"toolUseId": "t2", "content": [{"json": {"time": "12:00", "dst": false}}]}},
                {"toolResult": {"toolUseId": "t1", "content": [{"text": "sunny"}, {"text": "18C"}], "status": "error"}},
                {"text": "Thanks!"}
            ]}
        ],
        "toolConfig": config
    }))
    .unwrap();
    assert_eq!(
        input.messages,
        vec![
            json!({"role": "user", "content": "Weather and time in Paris?"}),
            json!({"role": "assistant", "content": "Let me check both.", "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "get_current_weather", "arguments": {"location": "Paris"}}},
                {"id": "t2", "type": "function", "function": {"name": "get_time", "arguments": {}}}
            ]}),
            json!({"role": "tool", "tool_call_id": "t2", "name": "get_time", "content": "{\"time\":\"12:00\",\"dst\":false}"}),
            json!({"role": "tool", "tool_call_id": "t1", "name": "get_current_weather", "content": "sunny\n18C"}),
            json!({"role": "user", "content": "Thanks!"}),
        ]
    );
    assert_eq!(
        input.tools.as_ref().unwrap()[1],
        json!({"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}})
    );
    assert_eq!(input.tool_choice, ToolRequirement::Any);
}

#[test]
fn system_blocks_system_messages_and_documents() {
    let input = convert(json!({
        "system": [{"text": "Rule one."}, {"cachePoint": {"type": "default"}}, {"text": "Rule two."}],
        "messages": [
            {"role": "user", "content": [
                {"document": {"name": "notes", "format": "txt", "source": {"bytes": "aGVsbG8gd29ybGQ="}}},
                {"text": "Summarise."}
            ]},
            assistant("Hello world."),
            {"role": "system", "content": [{"text": "Now be formal."}]},
            user("Again.")
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "pick", "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"tool": {"name": "pick"}}}
    }))
    .unwrap();
    assert_eq!(
        input.messages,
        vec![
            json!({"role": "system", "content": "Rule one.\nRule two."}),
            json!({"role": "user", "content": "notes:\nhello world\nSummarise."}),
            json!({"role": "assistant", "content": "Hello world."}),
            json!({"role": "system", "content": "Now be formal."}),
            json!({"role": "user", "content": "Again."}),
        ]
    );
    assert_eq!(input.tool_choice, ToolRequirement::Named("pick".into()));
}

#[test]
fn conversation_must_start_with_user_and_alternate() {
    let (field, message) = validation(json!({"messages": [assistant("hi"), user("hello")]}));
    assert_eq!(field, "messages.0");
    assert_eq!(
        message,
        "A conversation must start with a user message. Try again with a conversation that starts with a user message."
    );
    let (field, message) = validation(json!({"messages": [user("a"), assistant("b"), user("c"), user("d")]}));
    assert_eq!(field, "messages.3");
    assert_eq!(
        message,
        "A conversation must alternate between user and assistant roles. Make sure the conversation alternates between user and assistant roles and try again."
    );
    let (field, message) = validation(json!({"messages": [user("a"), assistant("b")]}));
    assert_eq!(field, "messages.1");
    assert!(
        message.contains("last turn in the conversation to be a user message"),
        "{message}"
    );
    let (field, _) = validation(json!({"messages": []}));
    assert_eq!(field, "messages");
    let (field, message) = validation(json!({"messages": [{"role": "system", "content": [{"text": "s"}]}]}));
    assert_eq!(field, "messages");
    assert!(message.starts_with("A conversation must start with a user message."));
}

#[test]
fn blank_text_and_empty_content_name_the_block() {
    let (field, message) = validation(json!({"messages": [
        user("a"), assistant("b"),
        {"role": "user", "content": [{"text": "ok"}, {"text": "  "}]}
    ]}));
    assert_eq!(field, "messages.2.content.1");
    assert_eq!(
        message,
        "The text field in the ContentBlock object at messages.2.content.1 is blank. Add text to the text field, and try again."
    );
    let (field, message) = validation(json!({"messages": [{"role": "user", "content": []}]}));
    assert_eq!(field, "messages.0.content");
    assert!(message.contains("messages.0 is empty"), "{message}");
    let (field, _) = validation(json!({"system": [{"text": ""}], "messages": [user("a")]}));
    assert_eq!(field, "system.0.text");
}

#[test]
fn tool_rules() {
    let call = json!({"role": "assistant", "content": [
        {"toolUse": {"toolUseId": "t1", "name": "get_current_weather", "input": {}}}]});
    let (field, message) = validation(json!({"messages": [user("a"), call.clone(),
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}]}]}));
    assert_eq!(field, "toolConfig");
    assert_eq!(
        message,
        "The toolConfig field must be defined when using toolUse and toolResult content blocks."
    );

    let (field, message) = validation(json!({"messages": [user("a"), call.clone(), user("no results")],
        "toolConfig": weather_tool_config()}));
    assert_eq!(field, "messages.2.content");
    assert_eq!(
        message,
        "Expected toolResult blocks at messages.2.content for the following Ids: t1"
    );

    let (field, message) = validation(json!({"messages": [user("a"), call.clone(),
        {"role": "user", "content": [
            {"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}},
            {"toolResult": {"toolUseId": "t9", "content": [{"text": "y"}]}}]}],
        "toolConfig": weather_tool_config()}));
    assert_eq!(field, "messages.2.content");
    assert!(message.contains("exceeds the number of toolUse blocks"), "{message}");

    let (field, message) = validation(json!({"messages": [user("a"), assistant("plain"),
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t1", "content": [{"text": "x"}]}}]}],
        "toolConfig": weather_tool_config()}));
    assert_eq!(field, "messages.2.content");
    assert!(message.contains("exceeds the number of toolUse blocks"), "{message}");

    let (field, _) = validation(json!({"messages": [
        {"role": "user", "content": [{"toolUse": {"toolUseId": "t1", "name": "get_current_weather", "input": {}}}]}],
        "toolConfig": weather_tool_config()}));
    assert_eq!(field, "messages.0.content.0");
}

#[test]
fn tool_config_rules() {
    let (field, message) = validation(json!({"messages": [user("a")], "toolConfig": {"tools": [
        {"toolSpec": {"name": "bad name", "inputSchema": {"json": {"type": "object"}}}}]}}));
    assert_eq!(field, "toolConfig.tools.1.member.toolSpec.name");
    assert!(
        message
            .starts_with("1 validation error detected: Value 'bad name' at 'toolConfig.tools.1.member.toolSpec.name'"),
        "{message}"
    );

    let (field, _) = validation(json!({"messages": [user("a")], "toolConfig": {"tools": [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "array"}}}}]}}));
    assert_eq!(field, "toolConfig.tools.0.toolSpec.inputSchema.json");

    let (field, _) = validation(json!({"messages": [user("a")], "toolConfig": {"tools": [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {}}}},
        {"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}]}}));
    assert_eq!(field, "toolConfig.tools.1.toolSpec.name");

    let (field, _) = validation(json!({"messages": [user("a")], "toolConfig": {"tools": [
        {"toolSpec": {"name": "f", "inputSchema": {"json": {}}}}], "toolChoice": {"tool": {"name": "g"}}}}));
    assert_eq!(field, "toolConfig.toolChoice.tool.name");

    let (field, _) = validation(json!({"messages": [user("a")], "toolConfig": {"tools": []}}));
    assert_eq!(field, "toolConfig.tools");
}

#[test]
fn inference_config_ranges() {
    let (field, message) = validation(json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.5}}));
    assert_eq!(field, "inferenceConfig.temperature");
    assert_eq!(
        message,
        "1 validation error detected: Value '1.5' at 'inferenceConfig.temperature' failed to satisfy constraint: Member must have value less than or equal to 1"
    );
    let (field, _) = validation(json!({"messages": [user("a")], "inferenceConfig": {"topP": -0.1}}));
    assert_eq!(field, "inferenceConfig.topP");
    let (field, _) = validation(json!({"messages": [user("a")], "inferenceConfig": {"maxTokens": 0}}));
    assert_eq!(field, "inferenceConfig.maxTokens");
    let (field, _) = validation(json!({"messages": [user("a")], "inferenceConfig": {"stopSequences": ["x", ""]}}));
    assert_eq!(field, "inferenceConfig.stopSequences.2.member");
    assert!(
        convert(json!({"messages": [user("a")], "inferenceConfig": {"temperature": 1.0, "topP": 0.0, "maxTokens": 1}}))
            .is_ok()
    );
}

#[test]
fn unsupported_blocks_are_refused_by_path() {
    let (field, message) = validation(json!({"messages": [{"role": "user", "content": [
        {"text": "look"}, {"image": {"format": "png", "source": {"bytes": "AAAA"}}}]}]}));
    assert_eq!(field, "messages.0.content.1");
    assert!(message.contains("image"), "{message}");
    let (field, _) = validation(json!({"messages": [user("a"), {"role": "assistant", "content": [
        {"image": {"format": "png", "source": {"bytes": "AAAA"}}}]}, user("b")]}));
    assert_eq!(field, "messages.1.content.0");
    let (field, _) = validation(json!({"messages": [{"role": "user", "content": [{"video": {}}]}]}));
    assert_eq!(field, "messages.0.content.0");
    let (field, _) = validation(json!({"messages": [{"role": "user", "content": [
        {"document": {"name": "d", "format": "pdf", "source": {"bytes": "AAAA"}}}]}]}));
    assert_eq!(field, "messages.0.content.0.document.format");
}

#[test]
fn response_field_paths_and_request_metadata_are_checked() {
    let (field, message) = validation(json!({"messages": [user("a")], "additionalModelResponseFieldPaths": ["stop"]}));
    assert_eq!(field, "additionalModelResponseFieldPaths.0");
    assert!(message.contains("'stop'"), "{message}");
    let (field, _) = validation(json!({"messages": [user("a")], "requestMetadata": {}}));
    assert_eq!(field, "requestMetadata");
    assert!(
        convert(
            json!({"messages": [user("a")], "additionalModelResponseFieldPaths": ["/stop_reason"],
                           "requestMetadata": {"k": "v"}})
        )
        .is_ok()
    );
}

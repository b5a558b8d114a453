//! InvokeModel bodies: format selection, parameters, response and chunk shapes.

use bedrock_wire::invoke::{
    BedrockCompletionChunk, BedrockCompletionResponse, ChatCompletionChunk, ChatCompletionResponse, ChatDelta,
    CompletionChunk, CompletionResponse, FinishReason, InvocationMetrics, InvokeParams, OpenAiToolCall, OpenAiUsage,
};
use bedrock_wire::{InvokeFormat, InvokeRequest, WireError, parse_invoke_request};
use serde_json::json;

fn parse(v: serde_json::Value) -> Result<InvokeRequest, WireError> {
    parse_invoke_request(&serde_json::to_vec(&v).unwrap())
}

#[test]
fn format_is_chosen_by_the_fields_present() {
    let r = parse(json!({"prompt": "Hi", "max_gen_len": 64, "temperature": 0.2, "top_p": 0.9})).unwrap();
    assert_eq!(r.format(), InvokeFormat::BedrockCompletion);
    assert_eq!(
        r.params(),
        InvokeParams {
            max_tokens: Some(64),
            temperature: Some(0.2),
            top_p: Some(0.9),
            ..InvokeParams::default()
        }
    );
    let r = parse(json!({"prompt": "Hi"})).unwrap();
    assert_eq!(r.format(), InvokeFormat::BedrockCompletion);
    let r = parse(json!({"prompt": "[INST] Hi [/INST]", "max_tokens": 32, "stop": ["</s>"], "top_k": 5})).unwrap();
    assert_eq!(r.format(), InvokeFormat::OpenAiCompletion);
    assert_eq!(r.params().stop, vec!["</s>".to_owned()]);
    assert_eq!(r.params().top_k, Some(5));
    let r = parse(json!({"prompt": "x", "max_gen_len": 5, "max_tokens": 7})).unwrap();
    assert_eq!(r.format(), InvokeFormat::OpenAiCompletion);
    assert_eq!(r.params().max_tokens, Some(7));
    let r = parse(json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10, "stop": "END"})).unwrap();
    assert_eq!(r.format(), InvokeFormat::OpenAiChat);
    assert_eq!(r.params().stop, vec!["END".to_owned()]);
    assert_eq!(r.params().max_tokens, Some(10));
}

#[test]
fn malformed_bodies_are_validation_errors() {
    for (body, needle) in [
        (json!({"max_tokens": 5}), "required key [prompt] not found"),
        (json!([1, 2]), "expected type: JSONObject"),
        (json!({"prompt": 5}), "#/prompt"),
        (json!({"prompt": "x", "max_gen_len": 0}), "max_tokens"),
        (json!({"prompt": "x", "top_p": 1.5}), "top_p"),
    ] {
        match parse(body.clone()) {
            Err(WireError::Validation { message, .. }) => {
                assert!(message.starts_with("Malformed input request: "), "{message}");
                assert!(message.contains(needle), "{body}: {message}");
            }
            other => panic!("{body}: expected validation error, got {other:?}"),
        }
    }
    assert!(matches!(
        parse_invoke_request(b"not json"),
        Err(WireError::Validation { .. })
    ));
}

#[test]
fn chat_messages_are_flattened_for_the_template() {
    let InvokeRequest::OpenAiChat(chat) = parse(json!({"messages": [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
            "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c", "content": "42"}
    ]}))
    .unwrap() else {
        panic!("expected chat");
    };
    assert_eq!(
        chat.template_messages().unwrap(),
        vec![
            json!({"role": "system", "content": "Be brief.\nBe kind."}),
            json!({"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "f", "arguments": "{}"}}]}),
            json!({"role": "tool", "tool_call_id": "c", "content": "42"}),
        ]
    );
    let InvokeRequest::OpenAiChat(chat) = parse(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}))
    .unwrap() else {
        panic!("expected chat");
    };
    let err = chat.template_messages().unwrap_err().to_string();
    assert!(
        err.contains("#/messages/0/content/0") && err.contains("image_url"),
        "{err}"
    );
}

#[test]
fn response_shapes() {
    assert_eq!(
        serde_json::to_value(BedrockCompletionResponse::new(
            "Paris.".into(),
            9,
            2,
            FinishReason::Stop
        ))
        .unwrap(),
        json!({"generation": "Paris.", "prompt_token_count": 9, "generation_token_count": 2,
               "stop_reason": "stop", "logprobs": null})
    );
    assert_eq!(
        serde_json::to_value(CompletionResponse::new(
            "cmpl-1".into(),
            1_700_000_000,
            Some("m".into()),
            "Paris.".into(),
            FinishReason::Length,
            OpenAiUsage::new(9, 2)
        ))
        .unwrap(),
        json!({"id": "cmpl-1", "object": "text_completion", "created": 1_700_000_000u64, "model": "m",
               "choices": [{"index": 0, "text": "Paris.", "finish_reason": "length", "logprobs": null}],
               "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
               "outputs": [{"text": "Paris.", "stop_reason": "length"}]})
    );
    let call = OpenAiToolCall::new("call_1".into(), "get_weather".into(), &json!({"city": "Paris"}));
    assert_eq!(
        serde_json::to_value(ChatCompletionResponse::new(
            "chatcmpl-1".into(),
            5,
            "m".into(),
            None,
            None,
            vec![call],
            FinishReason::Stop,
            OpenAiUsage::new(3, 4)
        ))
        .unwrap(),
        json!({"id": "chatcmpl-1", "object": "chat.completion", "created": 5, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                   "tool_calls": [{"id": "call_1", "type": "function",
                       "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                   "finish_reason": "tool_calls", "logprobs": null}],
               "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}})
    );
}

#[test]
fn chunk_shapes() {
    let last = BedrockCompletionChunk {
        generation: "!".into(),
        prompt_token_count: None,
        generation_token_count: 3,
        stop_reason: Some("stop".into()),
        invocation_metrics: Some(InvocationMetrics {
            input_token_count: 9,
            output_token_count: 3,
            invocation_latency: 120,
            first_byte_latency: 40,
        }),
    };
    assert_eq!(
        serde_json::to_value(&last).unwrap(),
        json!({"generation": "!", "prompt_token_count": null, "generation_token_count": 3, "stop_reason": "stop",
               "amazon-bedrock-invocationMetrics": {"inputTokenCount": 9, "outputTokenCount": 3,
                   "invocationLatency": 120, "firstByteLatency": 40}})
    );
    assert_eq!(
        serde_json::to_value(CompletionChunk::new("cmpl-1".into(), 5, None, "Pa".into(), None)).unwrap(),
        json!({"id": "cmpl-1", "object": "text_completion", "created": 5,
               "choices": [{"index": 0, "text": "Pa", "finish_reason": null, "logprobs": null}],
               "outputs": [{"text": "Pa", "stop_reason": null}]})
    );
    let delta = ChatDelta {
        role: Some("assistant".into()),
        content: Some("Hi".into()),
        ..ChatDelta::default()
    };
    assert_eq!(
        serde_json::to_value(ChatCompletionChunk::new(
            "c".into(),
            5,
            "m".into(),
            delta,
            Some(FinishReason::Stop)
        ))
        .unwrap(),
        json!({"id": "c", "object": "chat.completion.chunk", "created": 5, "model": "m",
               "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"},
                            "finish_reason": "stop", "logprobs": null}]})
    );
    let call = OpenAiToolCall::new("id".into(), "f".into(), &json!({}));
    assert_eq!(
        ChatCompletionChunk::tool_call_delta(0, &call),
        json!({"index": 0, "id": "id", "type": "function", "function": {"name": "f", "arguments": "{}"}})
    );
}

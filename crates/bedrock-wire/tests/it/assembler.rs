//! StreamAssembler: exact ConverseStream sequences, and stream ≡ non-streaming response.

use bedrock_wire::converse::{StopReason, TokenUsage};
use bedrock_wire::stream::ConverseStreamEvent;
use bedrock_wire::{Piece, StreamAssembler, decode_all, fold_stream_events};
use proptest::prelude::*;
use serde_json::{Value, json};

fn run(pieces: Vec<Piece>, stop: StopReason) -> (StreamAssembler, Vec<ConverseStreamEvent>) {
    let mut a = StreamAssembler::new();
    let mut events = Vec::new();
    for p in pieces {
        events.extend(a.push(p));
    }
    events.extend(a.finish(stop, TokenUsage::new(10, 5), 33));
    (a, events)
}

fn as_json(events: &[ConverseStreamEvent]) -> Vec<Value> {
    events.iter().map(|e| serde_json::to_value(e).unwrap()).collect()
}

fn tool(id: &str, name: &str, input: Value) -> Piece {
    Piece::ToolCall {
        id: id.into(),
        name: name.into(),
        input,
    }
}

#[test]
fn text_only_stream() {
    let (a, events) = run(
        vec![Piece::Text("Hel".into()), Piece::Text("lo".into())],
        StopReason::EndTurn,
    );
    assert_eq!(
        as_json(&events),
        vec![
            json!({"messageStart": {"role": "assistant"}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "Hel"}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "lo"}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 0}}),
            json!({"messageStop": {"stopReason": "end_turn"}}),
            json!({"metadata": {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                                "metrics": {"latencyMs": 33}}}),
        ]
    );
    assert_eq!(
        serde_json::to_value(a.response(StopReason::EndTurn, TokenUsage::new(10, 5), 33)).unwrap(),
        json!({
            "output": {"message": {"role": "assistant", "content": [{"text": "Hello"}]}},
            "stopReason": "end_turn",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
            "metrics": {"latencyMs": 33}
        })
    );
}

#[test]
fn reasoning_text_and_tool_call_stream() {
    let (a, events) = run(
        vec![
            Piece::Reasoning("Need ".into()),
            Piece::Reasoning("weather.".into()),
            Piece::Text("Checking.".into()),
            tool("tooluse_1", "get_weather", json!({"city": "Paris", "unit": "c"})),
        ],
        StopReason::EndTurn,
    );
    assert_eq!(
        as_json(&events),
        vec![
            json!({"messageStart": {"role": "assistant"}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Need "}}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "weather."}}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 0}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"text": "Checking."}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 1}}),
            json!({"contentBlockStart": {"contentBlockIndex": 2,
                   "start": {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather"}}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 2,
                   "delta": {"toolUse": {"input": "{\"city\":\"Paris\",\"unit\":\"c\"}"}}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 2}}),
            json!({"messageStop": {"stopReason": "tool_use"}}),
            json!({"metadata": {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                                "metrics": {"latencyMs": 33}}}),
        ]
    );
    assert_eq!(
        serde_json::to_value(a.response(StopReason::EndTurn, TokenUsage::new(10, 5), 33)).unwrap(),
        json!({
            "output": {"message": {"role": "assistant", "content": [
                {"reasoningContent": {"reasoningText": {"text": "Need weather."}}},
                {"text": "Checking."},
                {"toolUse": {"toolUseId": "tooluse_1", "name": "get_weather",
                             "input": {"city": "Paris", "unit": "c"}}}
            ]}},
            "stopReason": "tool_use",
            "usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
            "metrics": {"latencyMs": 33}
        })
    );
}

#[test]
fn two_tool_calls_then_text_get_their_own_blocks() {
    let (_, events) = run(
        vec![
            tool("a", "f", json!({})),
            tool("b", "g", json!({"x": [1, 2]})),
            Piece::Text("done".into()),
        ],
        StopReason::EndTurn,
    );
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            let (name, body) = v.as_object().unwrap().iter().next().unwrap();
            match body.get("contentBlockIndex") {
                Some(i) => format!("{name}:{i}"),
                None => name.clone(),
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "messageStart",
            "contentBlockStart:0",
            "contentBlockDelta:0",
            "contentBlockStop:0",
            "contentBlockStart:1",
            "contentBlockDelta:1",
            "contentBlockStop:1",
            "contentBlockDelta:2",
            "contentBlockStop:2",
            "messageStop",
            "metadata"
        ]
    );
    let response = fold_stream_events(&events).unwrap();
    assert_eq!(response.stop_reason, StopReason::ToolUse);
}

#[test]
fn empty_generation_and_empty_pieces() {
    let (a, events) = run(
        vec![Piece::Text(String::new()), Piece::Reasoning(String::new())],
        StopReason::MaxTokens,
    );
    assert_eq!(
        as_json(&events),
        vec![
            json!({"messageStart": {"role": "assistant"}}),
            json!({"messageStop": {"stopReason": "max_tokens"}}),
            json!({"metadata": {"usage": {"inputTokens": 10, "outputTokens": 5, "totalTokens": 15},
                                "metrics": {"latencyMs": 33}}}),
        ]
    );
    assert!(a.content().is_empty());
}

#[test]
fn max_tokens_is_kept_even_after_a_tool_call_and_start_is_sent_once() {
    let mut a = StreamAssembler::new();
    assert_eq!(a.start().len(), 1);
    assert!(a.start().is_empty());
    let first = a.push(tool("t", "f", json!({"a": 1})));
    assert!(matches!(first[0], ConverseStreamEvent::ContentBlockStart(_)));
    let end = a.finish(StopReason::MaxTokens, TokenUsage::new(1, 1), 0);
    assert_eq!(
        serde_json::to_value(&end[0]).unwrap(),
        json!({"messageStop": {"stopReason": "max_tokens"}})
    );
    assert!(a.push(Piece::Text("late".into())).is_empty());
    assert!(a.finish(StopReason::EndTurn, TokenUsage::new(1, 1), 0).is_empty());
    assert_eq!(a.content().len(), 1);
}

#[test]
fn frames_decode_back_to_the_same_events() {
    let (_, events) = run(
        vec![Piece::Text("hi".into()), tool("t", "f", json!({"q": "ü"}))],
        StopReason::EndTurn,
    );
    let mut body = Vec::new();
    for e in &events {
        body.extend_from_slice(&e.to_frame().unwrap());
    }
    let decoded: Vec<ConverseStreamEvent> = decode_all(&body)
        .unwrap()
        .into_iter()
        .map(|m| match m {
            bedrock_wire::StreamMessage::Event { event_type, payload } => {
                ConverseStreamEvent::from_parts(&event_type, &payload).unwrap().unwrap()
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(decoded, events);
    assert!(
        ConverseStreamEvent::from_parts("somethingNew", b"{}")
            .unwrap()
            .is_none()
    );
}

#[test]
fn fold_rejects_incomplete_streams() {
    let (_, events) = run(vec![Piece::Text("x".into())], StopReason::EndTurn);
    assert!(fold_stream_events(&events[..events.len() - 1]).is_err());
    assert!(fold_stream_events(&events[..events.len() - 2]).is_err());
}

fn piece_strategy() -> impl Strategy<Value = Piece> {
    prop_oneof![
        "[a-z ]{0,6}".prop_map(Piece::Text),
        "[a-z ]{0,6}".prop_map(Piece::Reasoning),
        (
            "[a-z]{1,8}",
            "[a-z_]{1,10}",
            proptest::collection::btree_map("[a-z]{1,4}", 0i64..100, 0..3)
        )
            .prop_map(|(id, name, m)| Piece::ToolCall {
                id,
                name,
                input: serde_json::to_value(m).unwrap()
            }),
    ]
}

proptest! {
    #[test]
    fn stream_and_response_always_agree(
        pieces in proptest::collection::vec(piece_strategy(), 0..12),
        engine_stop in prop_oneof![Just(StopReason::EndTurn), Just(StopReason::MaxTokens), Just(StopReason::StopSequence)],
        input in 0u32..1000, output in 0u32..1000, latency in 0u64..10_000,
    ) {
        let usage = TokenUsage::new(input, output);
        let mut a = StreamAssembler::new();
        let mut events = Vec::new();
        for p in pieces.clone() {
            events.extend(a.push(p));
        }
        events.extend(a.finish(engine_stop, usage, latency));
        let folded = fold_stream_events(&events).unwrap();
        prop_assert_eq!(&folded, &a.response(engine_stop, usage, latency));

        // Structure: one messageStart first, messageStop then metadata last; every block index is used by one
        // contiguous run of events, indices increase by one, and each block ends with exactly one stop.
        prop_assert!(matches!(events[0], ConverseStreamEvent::MessageStart(_)));
        prop_assert!(matches!(events[events.len() - 2], ConverseStreamEvent::MessageStop(_)));
        prop_assert!(matches!(events[events.len() - 1], ConverseStreamEvent::Metadata(_)));
        let mut expected_index = 0u32;
        let mut open = false;
        for e in &events[1..events.len() - 2] {
            let (index, is_stop) = match e {
                ConverseStreamEvent::ContentBlockStart(s) => (s.content_block_index, false),
                ConverseStreamEvent::ContentBlockDelta(d) => (d.content_block_index, false),
                ConverseStreamEvent::ContentBlockStop(s) => (s.content_block_index, true),
                other => { prop_assert!(false, "unexpected {:?}", other); unreachable!() }
            };
            prop_assert_eq!(index, expected_index);
            open = !is_stop;
            if is_stop { expected_index += 1; }
        }
        prop_assert!(!open);
        prop_assert_eq!(expected_index as usize, a.content().len());
        // Text is never lost or reordered (only whitespace that would form a blank block is dropped), and no
        // text block is blank.
        let text_in: String = pieces.iter().filter_map(|p| match p { Piece::Text(t) => Some(t.as_str()), _ => None }).collect();
        let text_out: String = a.content().iter().filter_map(|b| match b {
            bedrock_wire::ContentBlock::Text(t) => Some(t.as_str()), _ => None }).collect();
        prop_assert_eq!(text_in.replace(' ', ""), text_out.replace(' ', ""));
        for b in a.content() {
            if let bedrock_wire::ContentBlock::Text(t) = b {
                prop_assert!(!t.trim().is_empty());
            }
        }
        let has_tool = pieces.iter().any(|p| matches!(p, Piece::ToolCall { .. }));
        let expected_stop = if has_tool && engine_stop == StopReason::EndTurn { StopReason::ToolUse } else { engine_stop };
        prop_assert_eq!(folded.stop_reason, expected_stop);
    }
}

#[test]
fn whitespace_only_text_never_forms_a_block() {
    let (a, events) = run(
        vec![
            Piece::Text("\n\n".into()),
            Piece::Text("Hi".into()),
            Piece::Text("\n".into()),
            tool("t", "f", json!({})),
            Piece::Text("\n".into()),
            Piece::Text(" ".into()),
        ],
        StopReason::EndTurn,
    );
    assert_eq!(
        as_json(&events[1..events.len() - 2]),
        vec![
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "\n\nHi"}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": "\n"}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 0}}),
            json!({"contentBlockStart": {"contentBlockIndex": 1, "start": {"toolUse": {"toolUseId": "t", "name": "f"}}}}),
            json!({"contentBlockDelta": {"contentBlockIndex": 1, "delta": {"toolUse": {"input": "{}"}}}}),
            json!({"contentBlockStop": {"contentBlockIndex": 1}}),
        ]
    );
    assert_eq!(a.content().len(), 2);
    // The response can be sent back as the assistant turn of the next request.
    let response = a.response(StopReason::EndTurn, TokenUsage::new(1, 1), 1);
    let next = json!({
        "messages": [
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "assistant", "content": serde_json::to_value(&response.message().content).unwrap()},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "ok"}]}}]}
        ],
        "toolConfig": {"tools": [{"toolSpec": {"name": "f", "inputSchema": {"json": {"type": "object"}}}}]}
    });
    let req = bedrock_wire::parse_converse_request(&serde_json::to_vec(&next).unwrap()).unwrap();
    bedrock_wire::converse_to_template_input(&req).expect("our own answer is a valid assistant turn");
}

proptest! {
    /// Whatever the model produced, the answer can be sent back as the assistant turn of the next request (as the
    /// converse-agent loop does), followed by the tool results it asks for.
    #[test]
    fn every_non_empty_answer_is_a_valid_assistant_turn(pieces in proptest::collection::vec(piece_strategy(), 1..10)) {
        let mut a = StreamAssembler::new();
        let mut tools = Vec::new();
        for (i, p) in pieces.into_iter().enumerate() {
            let p = match p {
                Piece::ToolCall { name, input, .. } => {
                    tools.push(json!({"toolSpec": {"name": name.clone(), "inputSchema": {"json": {"type": "object"}}}}));
                    Piece::ToolCall { id: format!("tooluse_{i}"), name, input }
                }
                other => other,
            };
            a.push(p);
        }
        prop_assume!(!a.content().is_empty());
        let response = a.response(StopReason::EndTurn, TokenUsage::new(1, 1), 1);
        let results: Vec<Value> = a.content().iter().filter_map(|b| match b {
            bedrock_wire::ContentBlock::ToolUse(t) => Some(json!({"toolResult": {"toolUseId": t.tool_use_id, "content": [{"text": "ok"}]}})),
            _ => None,
        }).collect();
        let last = if results.is_empty() { vec![json!({"text": "more"})] } else { results };
        let mut names = std::collections::HashSet::new();
        tools.retain(|t| names.insert(t["toolSpec"]["name"].as_str().unwrap().to_owned()));
        let mut next = json!({"messages": [
            {"role": "user", "content": [{"text": "q"}]},
            {"role": "assistant", "content": serde_json::to_value(&response.message().content).unwrap()},
            {"role": "user", "content": last}
        ]});
        if !tools.is_empty() {
            next["toolConfig"] = json!({"tools": tools});
        }
        let req = bedrock_wire::parse_converse_request(&serde_json::to_vec(&next).unwrap()).unwrap();
        let converted = bedrock_wire::converse_to_template_input(&req);
        prop_assert!(converted.is_ok(), "{:?}", converted);
    }
}

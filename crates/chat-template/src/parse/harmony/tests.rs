//! Harmony output read back: reasoning, answer text and tool calls, with chunk boundaries anywhere, both places a
//! recipient is written, calls the eos token cut short, and output that is not harmony at all.

use serde_json::json;

use super::*;

/// `(text, reasoning, calls)` the parser makes of `chunks`.
fn parse(chunks: &[&str]) -> (String, String, Vec<(String, Json)>) {
    let mut p = HarmonyParser::new();
    let mut events: Vec<ParseEvent> = chunks.iter().flat_map(|c| p.feed(c)).collect();
    events.extend(p.finish());
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for e in events {
        match e {
            ParseEvent::Text(t) => text.push_str(&t),
            ParseEvent::Reasoning(r) => reasoning.push_str(&r),
            ParseEvent::ToolCall { name, arguments } => calls.push((name, arguments)),
        }
    }
    (text, reasoning, calls)
}

/// Every way of cutting `s` into two chunks (at char boundaries), the whole string included.
fn two_chunks(s: &str) -> Vec<[&str; 2]> {
    (0..=s.len())
        .filter(|&i| s.is_char_boundary(i))
        .map(|i| [&s[..i], &s[i..]])
        .collect()
}

/// `s` in chunks of one character each.
fn chars(s: &str) -> Vec<&str> {
    s.char_indices().map(|(i, c)| &s[i..i + c.len_utf8()]).collect()
}

fn call(name: &str, args: Json) -> Vec<(String, Json)> {
    vec![(name.to_owned(), args)]
}

#[test]
fn analysis_is_reasoning_and_final_is_the_answer_however_the_text_is_cut() {
    let out = "<|channel|>analysis<|message|>User wants 2+2. Easy.<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4 (四).";
    let want = ("2 + 2 = 4 (四).".to_owned(), "User wants 2+2. Easy.".to_owned(), vec![]);
    for chunks in two_chunks(out) {
        assert_eq!(parse(&chunks), want, "{chunks:?}");
    }
    assert_eq!(parse(&chars(out)), want);
    // A `<|return|>` the engine decodes ends the turn like the eos that usually stops it.
    assert_eq!(parse(&[out, "<|return|>"]), want);
}

#[test]
fn a_call_to_functions_is_a_tool_call_in_either_header_form() {
    let args = json!({"location": "Tokyo", "unit": "celsius"});
    let as_written = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Tokyo\", \"unit\": \"celsius\"}";
    let as_rendered = "<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"location\": \"Tokyo\", \"unit\": \"celsius\"}";
    for out in [as_written, as_rendered] {
        let want = (
            String::new(),
            "Need weather.".to_owned(),
            call("get_weather", args.clone()),
        );
        for chunks in two_chunks(out) {
            assert_eq!(parse(&chunks), want, "{chunks:?}");
        }
        assert_eq!(parse(&chars(out)), want);
        // Ended by `<|call|>` in the text instead of at the end of output; the call is read as soon as it closes.
        let closed = format!("{out}<|call|>");
        assert_eq!(parse(&[&closed]), want);
        let mut p = HarmonyParser::new();
        let events = p.feed(&closed);
        assert!(
            events.iter().any(|e| matches!(e, ParseEvent::ToolCall { .. })),
            "{events:?}"
        );
    }
    // Straight to the call, and a preamble in commentary before it (text, as the user sees it).
    let direct = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{}";
    assert_eq!(parse(&[direct]), (String::new(), String::new(), call("f", json!({}))));
    let preamble = "<|channel|>commentary<|message|>Checking…<|end|><|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": [1, 2]}<|call|>";
    for chunks in two_chunks(preamble) {
        assert_eq!(
            parse(&chunks),
            ("Checking…".to_owned(), String::new(), call("f", json!({"a": [1, 2]}))),
            "{chunks:?}"
        );
    }
}

#[test]
fn a_call_that_is_not_json_comes_back_as_text() {
    let out = "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": ";
    let (text, reasoning, calls) = parse(&[out]);
    assert!(calls.is_empty());
    assert_eq!(reasoning, "");
    assert_eq!(
        text,
        "<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"a\": "
    );
}

#[test]
fn output_that_is_not_harmony_is_text_as_written() {
    for out in ["Hello there", "4", "a", "assist", "a < b <| c", "", "日本語"] {
        for chunks in two_chunks(out) {
            assert_eq!(parse(&chunks), (out.to_owned(), String::new(), vec![]), "{chunks:?}");
        }
    }
    // Reasoning cut off by the token limit is all reasoning, a partial marker included.
    assert_eq!(
        parse(&["<|channel|>analysis<|message|>thinking <|en"]),
        (String::new(), "thinking <|en".to_owned(), vec![])
    );
    // A header the limit cut off says nothing.
    assert_eq!(
        parse(&["<|channel|>analysis<|message|>r<|end|><|start|>assistant<|chan"]),
        (String::new(), "r".to_owned(), vec![])
    );
}

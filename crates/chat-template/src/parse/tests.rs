//! Parser tests: each syntax, reasoning, malformed input, and chunk-split invariance (proptest).

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn parse_all(syntax: ToolSyntax, thinking_open: bool, text: &str) -> Vec<ParseEvent> {
    let mut p = OutputParser::new(syntax, thinking_open);
    let mut ev = p.feed(text);
    ev.extend(p.finish());
    merge(ev)
}

fn parse_chunks(syntax: ToolSyntax, thinking_open: bool, chunks: &[&str]) -> Vec<ParseEvent> {
    let mut p = OutputParser::new(syntax, thinking_open);
    let mut ev = Vec::new();
    for c in chunks {
        ev.extend(p.feed(c));
    }
    ev.extend(p.finish());
    merge(ev)
}

fn text(s: &str) -> ParseEvent {
    ParseEvent::Text(s.into())
}
fn reasoning(s: &str) -> ParseEvent {
    ParseEvent::Reasoning(s.into())
}
fn call(name: &str, args: serde_json::Value) -> ParseEvent {
    ParseEvent::ToolCall {
        name: name.into(),
        arguments: args,
    }
}

#[test]
fn hermes_calls_with_text_and_thinking() {
    let out = "<think>need weather</think>\n\nLet me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
    assert_eq!(
        parse_all(ToolSyntax::Hermes, false, out),
        vec![
            reasoning("need weather"),
            text("Let me check."),
            call("get_weather", json!({"city": "Paris"}))
        ]
    );
    // Stopped at the stop sequence "</tool_call>": still a call. Arguments given as a JSON string are decoded.
    let out = "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"a\\\": 1}\"}\n";
    assert_eq!(
        parse_all(ToolSyntax::Hermes, false, out),
        vec![call("f", json!({"a": 1}))]
    );
}

#[test]
fn deepseek_r1_prompt_opened_thinking() {
    assert!(prompt_opens_thinking("<｜User｜>hi<｜Assistant｜><think>\n"));
    assert!(!prompt_opens_thinking("<|im_start|>assistant\n<think>\n\n</think>\n\n"));
    let out = "Okay, the user says hi.\n</think>\n\nHello!";
    assert_eq!(
        parse_all(ToolSyntax::DeepSeek, true, out),
        vec![reasoning("Okay, the user says hi.\n"), text("Hello!")]
    );
}

#[test]
fn deepseek_tool_calls() {
    let out = format!(
        "{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n```json\n{{\"city\": \"Paris\"}}\n```{DS_CALL_END}\n{DS_CALL_BEGIN}function{DS_SEP}convert\n```json\n{{\"amount\": 100.0}}\n```{DS_CALL_END}{DS_CALLS_END}"
    );
    assert_eq!(
        parse_all(ToolSyntax::DeepSeek, false, &out),
        vec![
            call("get_weather", json!({"city": "Paris"})),
            call("convert", json!({"amount": 100.0}))
        ]
    );
}

#[test]
fn mistral_tool_calls() {
    let out = "[TOOL_CALLS] [{\"name\": \"a\", \"arguments\": {\"x\": \"]\"}}, {\"name\": \"b\", \"arguments\": {}}]";
    assert_eq!(
        parse_all(ToolSyntax::MistralToolCalls, false, out),
        vec![call("a", json!({"x": "]"})), call("b", json!({}))]
    );
}

#[test]
fn llama3_json_and_python_tag() {
    let out = "  {\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}";
    assert_eq!(
        parse_all(ToolSyntax::Llama3Json, false, out),
        vec![call("get_weather", json!({"city": "Paris"}))]
    );
    let out = "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": 1}}; {\"name\": \"g\", \"parameters\": {}}";
    assert_eq!(
        parse_all(ToolSyntax::Llama3Json, false, out),
        vec![call("f", json!({"q": 1})), call("g", json!({}))]
    );
    // A JSON answer that is not a call stays text; so does JSON later in the text.
    let out = "{\"answer\": 42} and {\"name\": \"f\", \"parameters\": {}}";
    assert_eq!(parse_all(ToolSyntax::Llama3Json, false, out), vec![text(out)]);
    assert_eq!(parse_all(ToolSyntax::Llama3Json, false, " Hi"), vec![text(" Hi")]);
}

#[test]
fn malformed_json_comes_back_as_text() {
    let out = "<tool_call>\n{\"name\": \"f\", \"arguments\": {oops}\n</tool_call> after";
    assert_eq!(parse_all(ToolSyntax::Hermes, false, out), vec![text(out)]);
    let out = "[TOOL_CALLS] not json";
    assert_eq!(parse_all(ToolSyntax::MistralToolCalls, false, out), vec![text(out)]);
    let out = "{\"name\": \"f\", \"parameters\": {";
    assert_eq!(parse_all(ToolSyntax::Llama3Json, false, out), vec![text(out)]);
}

#[test]
fn markers_are_never_emitted_early() {
    let mut p = OutputParser::new(ToolSyntax::Hermes, false);
    assert_eq!(p.feed("Hello <tool_"), vec![text("Hello ")]);
    assert_eq!(p.feed("call>\n{\"name\": \"f\", \"argu"), vec![]);
    assert_eq!(p.feed("ments\": {}}\n</tool_call>"), vec![call("f", json!({}))]);
    let mut p = OutputParser::new(ToolSyntax::Hermes, false);
    assert_eq!(p.feed("a <thin"), vec![text("a ")]);
    assert_eq!(p.feed("g"), vec![text("<thing")]);
}

/// Pieces a model might write, per syntax.
fn piece(syntax: ToolSyntax) -> impl Strategy<Value = String> {
    let call = match syntax {
        ToolSyntax::Hermes | ToolSyntax::None => {
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"P<a>ris\", \"n\": [1, 2]}}\n</tool_call>".to_string()
        }
        ToolSyntax::MistralToolCalls => "[TOOL_CALLS] [{\"name\": \"f\", \"arguments\": {\"s\": \"}]\"}}]".to_string(),
        ToolSyntax::Llama3Json => "<|python_tag|>{\"name\": \"f\", \"parameters\": {\"q\": \"x\"}}".to_string(),
        ToolSyntax::DeepSeek => format!(
            "{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}f\n```json\n{{\"a\": 1}}\n```{DS_CALL_END}{DS_CALLS_END}"
        ),
        ToolSyntax::Harmony => {
            "<|start|>assistant<|channel|>commentary to=functions.f <|constrain|>json<|message|>{\"q\": \"<|x\"}<|call|>".to_string()
        }
    };
    prop_oneof![
        "[a-z <>/{}\\[\\]\"\n]{0,12}",
        Just("<think>".to_string()),
        Just("</think>".to_string()),
        Just("<tool_call>{broken".to_string()),
        Just("{\"name\": \"g\", \"parameters\": {}}".to_string()),
        Just("[TOOL_CALLS]".to_string()),
        Just("日本語".to_string()),
        Just("<|channel|>analysis<|message|>".to_string()),
        Just("<|end|><|start|>assistant".to_string()),
        Just(call),
    ]
}

fn syntax() -> impl Strategy<Value = ToolSyntax> {
    prop_oneof![
        Just(ToolSyntax::Hermes),
        Just(ToolSyntax::MistralToolCalls),
        Just(ToolSyntax::Llama3Json),
        Just(ToolSyntax::DeepSeek),
        Just(ToolSyntax::Harmony),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]
    #[test]
    fn chunking_never_changes_the_parse(
        syn in syntax(),
        open in any::<bool>(),
        pieces in prop::collection::vec(syntax().prop_flat_map(piece), 0..8),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let whole: String = pieces.concat();
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|i| i.index(whole.len() + 1))
            .filter(|p| whole.is_char_boundary(*p))
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut chunks = Vec::new();
        let mut last = 0;
        for p in points {
            chunks.push(&whole[last..p]);
            last = p;
        }
        chunks.push(&whole[last..]);
        let one = parse_all(syn, open, &whole);
        let many = parse_chunks(syn, open, &chunks);
        prop_assert_eq!(&one, &many);
        // Nothing is lost: with no tool calls, text + reasoning + markers account for the input.
        if one.iter().all(|e| !matches!(e, ParseEvent::ToolCall { .. })) && !open {
            let joined: String = one.iter().map(|e| match e { ParseEvent::Text(t) | ParseEvent::Reasoning(t) => t.as_str(), _ => "" }).collect();
            prop_assert!(joined.len() <= whole.len());
        }
    }
}

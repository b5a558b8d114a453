//! Round trip with the chat-template crate: its tool-call grammars drive the constraint, random generations come
//! out, and its output parser reads back exactly one valid tool call from each.

mod common;

use chat_template::ToolSyntax;
use chat_template::grammar::tool_call_lark;
use chat_template::parse::{OutputParser, ParseEvent};
use common::{random_run, validate};
use infer_constraint::ConstraintFactory;
use serde_json::{Value, json};
use test_support::Family;

fn tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 24},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
              "required": ["city", "unit"], "additionalProperties": false}}}),
        json!({"type": "function", "function": {"name": "add", "description": "Add two integers",
            "parameters": {"type": "object", "properties": {
                "a": {"type": "integer", "minimum": -1000, "maximum": 1000},
                "b": {"type": "integer", "minimum": -1000, "maximum": 1000}},
              "required": ["a", "b"], "additionalProperties": false}}}),
    ]
}

fn params(name: &str) -> Value {
    tools()
        .into_iter()
        .find(|t| t["function"]["name"] == name)
        .map(|t| t["function"]["parameters"].clone())
        .unwrap_or_else(|| panic!("generated a call to unknown tool {name}"))
}

fn round_trip(family: Family, syntax: ToolSyntax, text_tokens: &[&str], forced: Option<&str>) {
    let (tok, eos) = common::tiny(family);
    let f = ConstraintFactory::with_text_tokens(&tok, &eos, text_tokens).expect("factory");
    let grammar = tool_call_lark(syntax, &tools(), forced);
    for seed in 0..4 {
        let mut c = f
            .constraint(&grammar)
            .unwrap_or_else(|e| panic!("{syntax:?}: {e}\n{grammar}"));
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 4000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        let mut parser = OutputParser::new(syntax, false);
        let mut events = parser.feed(&text);
        events.extend(parser.finish());
        let calls: Vec<(String, Value)> = events
            .into_iter()
            .filter_map(|e| match e {
                ParseEvent::ToolCall { name, arguments } => Some((name, arguments)),
                ParseEvent::Text(t) if t.trim().is_empty() => None,
                other => panic!("{syntax:?}/{seed}: unexpected {other:?} in {text:?}"),
            })
            .collect();
        assert!(!calls.is_empty(), "{syntax:?}/{seed}: no tool call in {text:?}");
        for (name, arguments) in calls {
            if let Some(forced) = forced {
                assert_eq!(name, forced);
            }
            validate(&arguments, &params(&name), "$").unwrap_or_else(|e| panic!("{syntax:?}/{seed}: {e}: {text}"));
        }
    }
}

#[test]
fn hermes_tool_calls_parse_back() {
    round_trip(Family::Qwen2, ToolSyntax::Hermes, &[], None);
}

#[test]
fn llama3_json_tool_calls_parse_back() {
    round_trip(Family::Llama, ToolSyntax::Llama3Json, &[], None);
}

#[test]
fn forced_tool_is_the_one_called() {
    round_trip(Family::Llama, ToolSyntax::Llama3Json, &[], Some("add"));
    round_trip(Family::Qwen2, ToolSyntax::Hermes, &[], Some("get_weather"));
}

#[test]
fn mistral_tool_calls_parse_back() {
    round_trip(Family::Mistral, ToolSyntax::MistralToolCalls, &["[TOOL_CALLS]"], None);
}

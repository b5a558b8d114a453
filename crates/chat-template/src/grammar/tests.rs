//! The grammars compile in llguidance, accept the tool calls the templates teach (byte for byte), reject calls to
//! unknown tools, and the parser reads back what they accept.

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use serde_json::json;
use toktrie::{ApproximateTokEnv, InferenceCapabilities};

use super::*;
use crate::parse::{OutputParser, ParseEvent, merge};

fn tools() -> Vec<Json> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather & <stuff>",
            "parameters": {"type": "object", "properties": {"location": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["location"]}}}),
        json!({"type": "function", "function": {"name": "convert", "parameters": {"type": "object",
            "properties": {"amount": {"type": "number"}}, "required": ["amount"]}}}),
    ]
}

/// Feeds `text` byte by byte (single-byte vocabulary); true if every byte is allowed and the grammar can end.
fn accepts(grammar: &str, text: &str) -> bool {
    let env = ApproximateTokEnv::single_byte_env();
    let factory = ParserFactory::new(&env, InferenceCapabilities::default(), &[]).expect("factory");
    let mut m = Matcher::new(factory.create_parser(TopLevelGrammar::from_lark(grammar.to_string())));
    assert!(
        !m.is_error(),
        "grammar does not compile: {:?}\n{grammar}",
        m.get_error()
    );
    let toks: Vec<u32> = text.bytes().map(u32::from).collect();
    let n = m.validate_tokens(&toks).expect("validate");
    if n != toks.len() {
        return false;
    }
    m.consume_tokens(&toks).is_ok() && m.is_accepting().unwrap_or(false)
}

fn read_back(syntax: ToolSyntax, text: &str) -> Vec<ParseEvent> {
    let mut p = OutputParser::new(syntax, false);
    let mut ev = p.feed(text);
    ev.extend(p.finish());
    merge(ev)
}

#[test]
fn grammars_accept_what_the_parser_reads_back() {
    let args = json!({"location": "Paris, France", "unit": "celsius"});
    let cases = [
        (
            ToolSyntax::Hermes,
            "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": \"celsius\"}}\n</tool_call>".to_string(),
        ),
        (
            ToolSyntax::Llama3Json,
            "{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Paris, France\", \"unit\": \"celsius\"}}".to_string(),
        ),
        (
            ToolSyntax::MistralToolCalls,
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris, France\", \"unit\": \"celsius\"}}]".to_string(),
        ),
        (
            ToolSyntax::DeepSeek,
            format!("{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}get_weather\n```json\n{{\"location\": \"Paris, France\", \"unit\": \"celsius\"}}\n```{DS_CALL_END}{DS_CALLS_END}"),
        ),
    ];
    for (syntax, text) in cases {
        let g = tool_call_lark(syntax, &tools(), None);
        assert!(accepts(&g, &text), "{syntax}: grammar rejects {text:?}\n{g}");
        assert_eq!(
            read_back(syntax, &text),
            vec![ParseEvent::ToolCall {
                name: "get_weather".into(),
                arguments: args.clone()
            }],
            "{syntax}"
        );
        // Unknown tool, wrong argument type, or a forced other tool: rejected.
        assert!(!accepts(&g, &text.replace("get_weather", "get_wether")), "{syntax}");
        assert!(!accepts(&g, &text.replace("\"Paris, France\"", "42")), "{syntax}");
        let forced = tool_call_lark(syntax, &tools(), Some("convert"));
        assert!(
            !accepts(&forced, &text),
            "{syntax}: forced grammar accepts another tool"
        );
    }
}

#[test]
fn json_grammar_constrains_to_the_schema() {
    let g = json_lark(&json!({"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}));
    assert!(accepts(&g, "{\"n\": 3}"));
    assert!(!accepts(&g, "{\"n\": \"3\"}"));
}

#[test]
fn regex_grammar_matches_in_full_and_keeps_slashes() {
    let g = regex_lark(r"[0-9]{4}-[0-9]{2}");
    assert!(accepts(&g, "2025-01"));
    assert!(!accepts(&g, "2025-1"));
    assert!(!accepts(&g, "2025-01x"));
    // A `/` in the pattern, bare or already escaped, is a literal slash, not the end of the Lark literal.
    for pattern in [r"[a-z]+/[0-9]+", r"[a-z]+\/[0-9]+"] {
        let g = regex_lark(pattern);
        assert!(accepts(&g, "path/42"), "{pattern}: {g}");
        assert!(!accepts(&g, "path42"), "{pattern}: {g}");
    }
}

#[test]
fn choice_grammar_accepts_exactly_the_choices() {
    let g = choice_lark(&["yes".to_string(), "no \"way\"".to_string()]);
    assert!(accepts(&g, "yes"));
    assert!(accepts(&g, "no \"way\""));
    assert!(!accepts(&g, "ye"));
    assert!(!accepts(&g, "yes no"));
}

#[test]
fn a_forced_call_is_held_to_the_declared_properties() {
    // A schema as pydantic writes it: no `additionalProperties`, a nested object, an object without properties.
    let tools = vec![
        json!({"type": "function", "function": {"name": "report", "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "when": {"type": "object", "properties": {"day": {"type": "string"}}},
            "extra": {"type": "object"}
        },
        "required": ["city"]}}}),
    ];
    let g = tool_call_lark(ToolSyntax::Hermes, &tools, None);
    let call = |args: &str| format!("<tool_call>\n{{\"name\": \"report\", \"arguments\": {args}}}\n</tool_call>");
    assert!(accepts(&g, &call("{\"city\": \"Paris\"}")));
    assert!(accepts(
        &g,
        &call("{\"city\": \"Paris\", \"when\": {\"day\": \"Monday\"}}")
    ));
    assert!(
        !accepts(&g, &call("{\"city\": \"Paris\", \"temperature_f\": \"60\"}")),
        "an undeclared key"
    );
    assert!(
        !accepts(
            &g,
            &call("{\"city\": \"Paris\", \"when\": {\"day\": \"Monday\", \"hour\": \"9\"}}")
        ),
        "an undeclared nested key"
    );
    // An object that declares no properties is left open, and an explicit `additionalProperties` is kept.
    assert!(accepts(
        &g,
        &call("{\"city\": \"Paris\", \"extra\": {\"anything\": \"goes\"}}")
    ));
    let open = vec![
        json!({"type": "function", "function": {"name": "report", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "additionalProperties": true}}}),
    ];
    let g = tool_call_lark(ToolSyntax::Hermes, &open, None);
    assert!(accepts(&g, &call("{\"city\": \"Paris\", \"note\": \"x\"}")));
}

#[test]
fn a_callers_x_guidance_is_kept_the_same_way_from_every_entry_point() {
    // The caller sets compact separators and says nothing of whitespace: its separators are kept, and our
    // `whitespace_flexible: false` fills the gap (llguidance alone would make whitespace free).
    let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
        "required": ["a", "b"], "additionalProperties": false,
        "x-guidance": {"item_separator": ",", "key_separator": ":"}});
    let entry_points = [
        ("json_lark", json_lark(&schema), ""),
        ("json_fragment", format!("start: {}\n", json_fragment(&schema)), ""),
        (
            "json_fragment, wrapped",
            format!("start: \"<answer>\" {} \"</answer>\"\n", json_fragment(&schema)),
            "<answer>",
        ),
    ];
    for (what, g, open) in &entry_points {
        let wrap = |s: &str| {
            if open.is_empty() {
                s.to_owned()
            } else {
                format!("<answer>{s}</answer>")
            }
        };
        assert!(
            accepts(g, &wrap("{\"a\":1,\"b\":2}")),
            "{what}: the caller's separators\n{g}"
        );
        assert!(
            !accepts(g, &wrap("{\"a\": 1, \"b\": 2}")),
            "{what}: ours replaced the caller's\n{g}"
        );
        assert!(!accepts(g, &wrap("{\"a\":1, \"b\":2}")), "{what}: free whitespace\n{g}");
        assert!(!accepts(g, &wrap("{ \"a\":1,\"b\":2}")), "{what}: free whitespace\n{g}");
    }
    // A key set to our own value, and a key we do not set, are kept too.
    let g = json_lark(&json!({"type": "array", "items": {"type": "integer"},
        "x-guidance": {"whitespace_flexible": false, "coerce_one_of": true}}));
    assert!(g.contains("\"coerce_one_of\":true"), "{g}");
    assert!(accepts(&g, "[1, 2]"), "{g}");
    // No settings of the caller's: ours.
    let g = json_lark(&json!({"type": "array", "items": {"type": "integer"}}));
    assert!(accepts(&g, "[1, 2]") && !accepts(&g, "[1,2]"), "{g}");

    // A forced tool call: the tool's own settings give way to ours in every syntax alike.
    let tools = vec![json!({"type": "function", "function": {"name": "f", "parameters": schema}})];
    let args = "{\"a\": 1, \"b\": 2}";
    let cases = [
        (
            ToolSyntax::Hermes,
            format!("<tool_call>\n{{\"name\": \"f\", \"arguments\": {args}}}\n</tool_call>"),
        ),
        (
            ToolSyntax::None,
            format!("<tool_call>\n{{\"name\": \"f\", \"arguments\": {args}}}\n</tool_call>"),
        ),
        (
            ToolSyntax::Llama3Json,
            format!("{{\"name\": \"f\", \"parameters\": {args}}}"),
        ),
        (
            ToolSyntax::MistralToolCalls,
            format!("[TOOL_CALLS] [{{\"name\": \"f\", \"arguments\": {args}}}]"),
        ),
        (
            ToolSyntax::DeepSeek,
            format!(
                "{DS_CALLS_BEGIN}{DS_CALL_BEGIN}function{DS_SEP}f\n```json\n{args}\n```{DS_CALL_END}{DS_CALLS_END}"
            ),
        ),
    ];
    for (syntax, text) in cases {
        let g = tool_call_lark(syntax, &tools, None);
        assert!(
            !g.contains("\"item_separator\":\",\""),
            "{syntax}: the tool's settings\n{g}"
        );
        assert!(accepts(&g, &text), "{syntax}: rejects {text:?}\n{g}");
        let compact = text.replace("\": ", "\":").replace(", \"", ",\"");
        assert!(!accepts(&g, &compact), "{syntax}: accepts {compact:?}\n{g}");
    }
}

#[test]
fn the_forced_harmony_call_reasons_first_and_reads_back_as_one_call() {
    let g = tool_call_lark(ToolSyntax::Harmony, &tools(), None);
    let call = "<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\": \"Paris, France\", \"unit\": \"celsius\"}";
    let text = format!("<|channel|>analysis<|message|>Need the weather.<|end|><|start|>assistant{call}");
    assert!(accepts(&g, &text), "grammar rejects {text:?}\n{g}");
    assert_eq!(
        read_back(ToolSyntax::Harmony, &text),
        vec![
            ParseEvent::Reasoning("Need the weather.".into()),
            ParseEvent::ToolCall {
                name: "get_weather".into(),
                arguments: json!({"location": "Paris, France", "unit": "celsius"})
            }
        ]
    );
    // The analysis message is required and not empty; unknown tools, wrong types and other tools are rejected.
    assert!(!accepts(&g, call), "a call without reasoning");
    assert!(!accepts(&g, &text.replace("Need the weather.", "")));
    assert!(!accepts(&g, &text.replace("get_weather", "get_wether")));
    assert!(!accepts(&g, &text.replace("\"Paris, France\"", "42")));
    assert!(!accepts(
        &tool_call_lark(ToolSyntax::Harmony, &tools(), Some("convert")),
        &text
    ));
    // The final channel is not a call.
    assert!(!accepts(
        &g,
        "<|channel|>analysis<|message|>x<|end|><|start|>assistant<|channel|>final<|message|>Sunny."
    ));
}

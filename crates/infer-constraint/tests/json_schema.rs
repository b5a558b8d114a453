//! Random generations under JSON-schema grammars: every finished output parses and validates.

mod common;

use chat_template::grammar::json_lark;
use common::{factory, random_run, validate};
use serde_json::{Value, json};
use test_support::Family;

fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        (
            "weather",
            json!({
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 40},
                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            }),
        ),
        (
            "all_types",
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 30},
                    "age": {"type": "integer", "minimum": 0, "maximum": 150},
                    "score": {"type": "number", "minimum": -1000, "maximum": 1000},
                    "active": {"type": "boolean"},
                    "level": {"enum": ["low", "medium", "high", 3, null]},
                    "tags": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 4},
                    "note": {"type": "string", "maxLength": 20}
                },
                "required": ["name", "age", "score", "active", "level", "tags"],
                "additionalProperties": false
            }),
        ),
        (
            "nested",
            json!({
                "type": "object",
                "properties": {
                    "query": {"type": "string", "minLength": 1, "maxLength": 20},
                    "filters": {
                        "type": "array",
                        "minItems": 1,
                        "maxItems": 3,
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"enum": ["date", "author", "size"]},
                                "value": {"type": "integer", "minimum": -50, "maximum": 50},
                                "exact": {"type": "boolean"}
                            },
                            "required": ["field", "value"],
                            "additionalProperties": false
                        }
                    }
                },
                "required": ["query", "filters"],
                "additionalProperties": false
            }),
        ),
        (
            "top_level_array",
            json!({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9999}, "minItems": 2, "maxItems": 5}),
        ),
    ]
}

/// For each schema and several seeds: sample uniformly among allowed tokens until the grammar finishes, decode with
/// the Hugging Face tokenizer, parse as JSON, validate against the schema.
#[test]
fn random_generations_validate_against_schemas() {
    let (f, tok, eos) = factory(Family::Llama);
    for (name, schema) in schemas() {
        for seed in 0..6 {
            let mut c = f.constraint(&json_lark(&schema)).expect("schema compiles");
            let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
            let text = tok.decode(&run.tokens, false).expect("decode");
            assert_eq!(text, c.generated_text().trim_end_matches("<|eot_id|>"), "{name}/{seed}");
            let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/{seed}: {e}: {text}"));
            validate(&v, &schema, "$").unwrap_or_else(|e| panic!("{name}/{seed}: {e}: {text}"));
            eprintln!("{name}/{seed}: {} tokens: {text}", run.tokens.len());
        }
    }
}

/// The grammar also holds up with the Qwen tokenizer (EOS ids listed first in the vocabulary order differ, added
/// non-special tokens present).
#[test]
fn random_generations_validate_with_qwen_tokenizer() {
    let (f, tok, eos) = factory(Family::Qwen2);
    let (name, schema) = schemas().swap_remove(1);
    for seed in 100..104 {
        let mut c = f.constraint(&json_lark(&schema)).expect("schema compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}/{seed}: {e}: {text}"));
        validate(&v, &schema, "$").unwrap_or_else(|e| panic!("{name}/{seed}: {e}: {text}"));
    }
}

/// Numbers without bounds in the schema still come out as numbers every JSON parser reads back as finite (no
/// `1e99999`): the grammar bounds them.
#[test]
fn unbounded_numbers_parse_back() {
    let (f, tok, eos) = factory(Family::Llama);
    let schema = json!({
        "type": "object",
        "properties": {
            "x": {"type": "number"},
            "n": {"type": "integer"},
            "list": {"type": "array", "items": {"type": ["number", "null"]}, "maxItems": 3}
        },
        "required": ["x", "n", "list"],
        "additionalProperties": false
    });
    for seed in 0..12 {
        let mut c = f.constraint(&json_lark(&schema)).expect("schema compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{seed}: {e}: {text}"));
        let x = v["x"]
            .as_f64()
            .unwrap_or_else(|| panic!("{seed}: x is a number: {text}"));
        assert!(x.is_finite() && x.abs() <= 1e15, "{seed}: {text}");
        assert!(v["n"].as_i64().is_some(), "{seed}: n is an integer: {text}");
    }
}

/// The checker the tests rely on does reject wrong values (so the tests above can fail).
#[test]
fn checker_rejects_violations() {
    let schemas = schemas();
    let weather = &schemas[0].1;
    assert!(validate(&json!({"city": "paris", "unit": "celsius"}), weather, "$").is_ok());
    assert!(validate(&json!({"city": "paris"}), weather, "$").is_err());
    assert!(validate(&json!({"city": "paris", "unit": "kelvin"}), weather, "$").is_err());
    assert!(validate(&json!({"city": 3, "unit": "celsius"}), weather, "$").is_err());
    assert!(validate(&json!({"city": "x", "unit": "celsius", "extra": 1}), weather, "$").is_err());
    let nested = &schemas[2].1;
    assert!(validate(&json!({"query": "q", "filters": []}), nested, "$").is_err());
    assert!(
        validate(
            &json!({"query": "q", "filters": [{"field": "date", "value": 1.5}]}),
            nested,
            "$"
        )
        .is_err()
    );
}

/// Compact separators: the output is exactly what `json.dumps` would write for the same value (no stray whitespace).
#[test]
fn json_output_uses_compact_python_separators() {
    let (f, tok, eos) = factory(Family::Llama);
    let schema = &schemas()[2].1;
    for seed in 0..3 {
        let mut c = f.constraint(&json_lark(schema)).expect("schema compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        assert!(!text.contains('\n') && !text.contains("  "), "{text}");
        assert!(
            text.contains("\"query\": ") && text.contains("\"filters\": [{"),
            "{text}"
        );
    }
}

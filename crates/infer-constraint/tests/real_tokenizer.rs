//! Optional: the same checks and timing on a real tokenizer (`CMI_CONSTRAINT_TOKENIZER=path/to/tokenizer.json`,
//! `CMI_CONSTRAINT_EOS=2,0`); ignored by default because the file is not part of the repository.

mod common;

use std::time::Instant;

use chat_template::grammar::{json_fragment, json_lark};
use common::{random_run, validate};
use infer_constraint::ConstraintFactory;
use serde_json::{Value, json};

#[test]
#[ignore = "needs CMI_CONSTRAINT_TOKENIZER pointing at a real tokenizer.json"]
fn real_tokenizer_generations_validate_and_mask_time() {
    let path = std::env::var("CMI_CONSTRAINT_TOKENIZER").expect("CMI_CONSTRAINT_TOKENIZER is set");
    let eos: Vec<u32> = std::env::var("CMI_CONSTRAINT_EOS")
        .unwrap_or_else(|_| "2".into())
        .split(',')
        .map(|s| s.trim().parse().expect("eos id"))
        .collect();
    let tok = tokenizers::Tokenizer::from_file(&path).expect("tokenizer loads");
    let t0 = Instant::now();
    let f = ConstraintFactory::new(&tok, &eos).expect("factory");
    eprintln!("{path}: {} tokens, factory built in {:?}", f.vocab_size(), t0.elapsed());
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"const": "get_weather"},
            "arguments": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 30},
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "days": {"type": "integer", "minimum": 1, "maximum": 14}
                },
                "required": ["city", "unit"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"],
        "additionalProperties": false
    });
    for (label, grammar, wrapped) in [
        ("json", json_lark(&schema), false),
        (
            "hermes",
            format!(
                "start: \"<tool_call>\\n\" {} \"\\n</tool_call>\"",
                json_fragment(&schema)
            ),
            true,
        ),
    ] {
        for seed in 0..3 {
            let t0 = Instant::now();
            let mut c = f.constraint(&grammar).expect("grammar compiles");
            let compile = t0.elapsed();
            let run = random_run(&mut c, f.vocab_size() + 64, &eos, seed, 5000);
            let text = tok.decode(&run.tokens, false).expect("decode");
            let inner = if wrapped {
                text.strip_prefix("<tool_call>\n")
                    .and_then(|t| t.strip_suffix("\n</tool_call>"))
                    .unwrap_or_else(|| panic!("not wrapped: {text:?}"))
            } else {
                text.as_str()
            };
            let v: Value = serde_json::from_str(inner).unwrap_or_else(|e| panic!("{e}: {text}"));
            validate(&v, &schema, "$").unwrap_or_else(|e| panic!("{e}: {text}"));
            eprintln!(
                "{label}/{seed}: compile {compile:?}, {} steps, mask {:?}/token: {text}",
                run.steps,
                run.mask_time / run.steps as u32
            );
        }
    }
}

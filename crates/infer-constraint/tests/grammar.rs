//! Grammar-level behaviour: tool-call wrappers, masks, commits, errors, timing.

mod common;

use std::time::Instant;

use chat_template::grammar::json_fragment;
use common::{factory, random_run, validate};
use infer_constraint::{ConstraintFactory, Error, TokenConstraint};
use serde_json::{Value, json};
use test_support::Family;

fn weather_schema() -> Value {
    json!({
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
                "required": ["city"],
                "additionalProperties": false
            }
        },
        "required": ["name", "arguments"],
        "additionalProperties": false
    })
}

fn hermes_grammar(schema: &Value) -> String {
    format!(
        "start: \"<tool_call>\\n\" {} \"\\n</tool_call>\"",
        json_fragment(schema)
    )
}

fn check_hermes(text: &str, schema: &Value) {
    let inner = text
        .strip_prefix("<tool_call>\n")
        .and_then(|t| t.strip_suffix("\n</tool_call>"))
        .unwrap_or_else(|| panic!("not wrapped: {text:?}"));
    let v: Value = serde_json::from_str(inner).unwrap_or_else(|e| panic!("{e}: {inner}"));
    validate(&v, schema, "$").unwrap_or_else(|e| panic!("{e}: {inner}"));
    assert_eq!(v["name"], "get_weather");
}

/// Hermes-style wrapper around a tool-call schema, with the Llama tiny tokenizer (tags spelled in bytes).
#[test]
fn hermes_wrapper_random_generations_validate() {
    let (f, tok, eos) = factory(Family::Llama);
    let schema = weather_schema();
    for seed in 0..6 {
        let mut c = f.constraint(&hermes_grammar(&schema)).expect("grammar compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        assert!(c.is_finished(), "the grammar ends after </tool_call>");
        let text = tok.decode(&run.tokens, false).expect("decode");
        check_hermes(&text, &schema);
    }
}

/// With the Qwen tokenizer `<tool_call>` and `</tool_call>` are (non-special) added tokens: the constraint allows
/// them and forces them as single tokens, as the model was trained to write them.
#[test]
fn hermes_wrapper_allows_the_added_tool_call_token() {
    let (f, tok, eos) = factory(Family::Qwen2);
    let tool_call = tok.token_to_id("<tool_call>").expect("qwen has <tool_call>");
    let end_tool_call = tok.token_to_id("</tool_call>").expect("qwen has </tool_call>");
    let schema = weather_schema();
    let mut c = f.constraint(&hermes_grammar(&schema)).expect("grammar compiles");
    assert!(c.allowed_tokens().expect("mask").contains(&tool_call));
    for seed in 10..14 {
        let mut c = f.constraint(&hermes_grammar(&schema)).expect("grammar compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        check_hermes(&text, &schema);
        // llguidance forces the canonical tokenisation of fixed text: the added tokens, not their spelling.
        assert_eq!(run.tokens.first(), Some(&tool_call), "{text:?}");
        assert_eq!(run.tokens.last(), Some(&end_tool_call), "{text:?}");
    }
}

/// The mask after each prefix is exactly the set of tokens whose text keeps the output a prefix of an allowed
/// sentence (computed independently from the vocabulary), plus EOS exactly when the output is complete.
#[test]
fn mask_is_exactly_the_viable_tokens() {
    let (f, _tok, eos) = factory(Family::Llama);
    let sentences = ["yes", "no", "maybe not"];
    let mut c = f
        .constraint(r#"start: "yes" | "no" | "maybe not""#)
        .expect("grammar compiles");
    let mut out = String::new();
    loop {
        let complete = sentences.contains(&out.as_str());
        let mut expected: Vec<u32> = (0..f.vocab_size() as u32)
            .filter(|&t| {
                let b = f.token_bytes(t);
                !b.is_empty()
                    && !eos.contains(&t)
                    && std::str::from_utf8(&b)
                        .is_ok_and(|s| sentences.iter().any(|x| x.starts_with(&format!("{out}{s}"))))
            })
            .collect();
        if complete {
            expected.extend(&eos);
            expected.sort_unstable();
        }
        if c.is_finished() {
            assert!(complete);
            break;
        }
        // Longer than the vocabulary by more than the mask's last 32-bit word (a padded embedding).
        let mut logits = vec![0.0f32; f.vocab_size().div_ceil(32) * 32 + 40];
        c.mask_logits(&mut logits).expect("mask");
        let allowed: Vec<u32> = (0..logits.len() as u32)
            .filter(|&t| logits[t as usize] == 0.0)
            .collect();
        assert_eq!(allowed, expected, "after {out:?}");
        assert!(
            logits[f.vocab_size()..].iter().all(|l| *l == f32::NEG_INFINITY),
            "padding is masked"
        );
        // Walk towards "maybe not" one token at a time, picking the shortest viable token.
        let next = *expected
            .iter()
            .filter(|t| !eos.contains(t))
            .filter(|&&t| "maybe not".starts_with(&format!("{out}{}", String::from_utf8_lossy(&f.token_bytes(t)))))
            .min_by_key(|&&t| f.token_bytes(t).len())
            .expect("a way forward");
        c.commit(next).expect("commit");
        out.push_str(&String::from_utf8_lossy(&f.token_bytes(next)));
    }
    assert_eq!(out, "maybe not");
}

fn token_for(f: &ConstraintFactory, text: &str) -> u32 {
    (0..f.vocab_size() as u32)
        .find(|&t| f.token_bytes(t) == text.as_bytes())
        .unwrap_or_else(|| panic!("no token spells {text:?}"))
}

/// A disallowed token is refused with an error naming it, and the constraint stays usable afterwards; EOS before the
/// grammar is complete is refused; after it finished only EOS commits.
#[test]
fn commit_of_disallowed_token_errors() {
    let (f, _tok, eos) = factory(Family::Llama);
    let mut c: TokenConstraint = f.constraint(r#"start: "yes" | "no""#).expect("grammar compiles");
    let x = token_for(&f, "x");
    match c.commit(x) {
        Err(Error::TokenNotAllowed { token, text, .. }) => {
            assert_eq!(token, x);
            assert!(text.contains('x'), "{text}");
        }
        other => panic!("expected TokenNotAllowed, got {other:?}"),
    }
    let err = c.commit(eos[0]).expect_err("eos before the grammar is complete");
    assert!(matches!(err, Error::TokenNotAllowed { .. }), "{err}");
    assert!(matches!(c.commit(u32::MAX), Err(Error::TokenOutOfRange { .. })));
    c.commit(token_for(&f, "n")).expect("n is allowed");
    assert!(!c.is_finished());
    c.commit(token_for(&f, "o")).expect("o is allowed");
    assert!(c.is_finished(), "nothing can follow \"no\"");
    assert_eq!(c.generated_text(), "no");
    assert!(matches!(c.commit(x), Err(Error::AlreadyFinished { .. })));
    c.commit(eos[0]).expect("eos after the end is a no-op");
    let mut logits = vec![0.0f32; f.vocab_size()];
    c.mask_logits(&mut logits).expect("mask when finished");
    let allowed: Vec<u32> = (0..logits.len() as u32)
        .filter(|&t| logits[t as usize] == 0.0)
        .collect();
    let mut eos_sorted = eos.clone();
    eos_sorted.sort_unstable();
    assert_eq!(allowed, eos_sorted, "only EOS once finished");
}

/// A grammar that may continue or stop allows EOS exactly when complete; committing EOS then finishes it.
#[test]
fn eos_finishes_an_open_grammar() {
    let (f, _tok, eos) = factory(Family::Llama);
    let mut c = f.constraint(r#"start: /[a-z]+/"#).expect("grammar compiles");
    assert!(!c.allowed_tokens().expect("mask").contains(&eos[0]));
    c.commit(token_for(&f, "a")).expect("a");
    let allowed = c.allowed_tokens().expect("mask");
    assert!(eos.iter().all(|e| allowed.contains(e)), "eos allowed once complete");
    assert!(!c.is_finished());
    c.commit(eos[2]).expect("eos commits");
    assert!(c.is_finished());
}

/// Bad grammars are errors naming the problem.
#[test]
fn bad_grammar_errors() {
    let (f, _tok, _eos) = factory(Family::Llama);
    for (grammar, needle) in [
        ("start: undefined_rule", "undefined_rule"),
        ("start: \"a\" ( ", ""),
        ("", ""),
        (r#"start: %json{"type": "no_such_type"}"#, "no_such_type"),
    ] {
        match f.constraint(grammar) {
            Err(Error::Grammar { message }) => {
                assert!(message.contains(needle), "{grammar:?}: {message}");
                eprintln!("{grammar:?} -> {message}");
            }
            other => panic!("{grammar:?}: expected a grammar error, got {other:?}"),
        }
    }
}

/// Bad factory inputs: no EOS, EOS outside the vocabulary.
#[test]
fn factory_refuses_bad_eos() {
    let (tok, _eos) = common::tiny(Family::Llama);
    assert!(matches!(ConstraintFactory::new(&tok, &[]), Err(Error::NoEosToken)));
    let err = ConstraintFactory::new(&tok, &[1_000_000]).expect_err("out of range");
    assert!(err.to_string().contains("1000000"), "{err}");
}

/// The factory and constraints can move across threads (the engine shares one factory and moves sequences).
#[test]
fn thread_safety() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<ConstraintFactory>();
    send::<TokenConstraint>();
}

/// Mask time per token for the tiny tokenizer, printed (run with `--nocapture`).
#[test]
fn mask_time_per_token_tiny_vocab() {
    let t0 = Instant::now();
    let (f, _tok, eos) = factory(Family::Llama);
    let build = t0.elapsed();
    let schema = weather_schema();
    let mut c = f.constraint(&hermes_grammar(&schema)).expect("grammar compiles");
    let run = random_run(&mut c, f.vocab_size(), &eos, 7, 3000);
    let per_token = run.mask_time / run.steps as u32;
    eprintln!(
        "tiny vocab ({} tokens): factory {:?}, {} steps, mask {:?}/token",
        f.vocab_size(),
        build,
        run.steps,
        per_token
    );
    assert!(run.steps > 10);
}

/// A byte-level BPE `tokenizer.json` with `n` tokens (the 256 bytes, then random ASCII pieces with and without a
/// leading space, as a real English/code vocabulary has), for timing masks at the demo model's vocabulary size.
fn synthetic_tokenizer(n: usize, seed: u64) -> tokenizers::Tokenizer {
    use rand::{Rng, SeedableRng};
    // GPT-2 alphabet: printable ASCII is itself, space is 'Ġ'; the other bytes follow from 0x100 upwards.
    let byte_char = |b: u8| {
        let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
        if printable(b) {
            char::from(b)
        } else {
            char::from_u32(256 + (0..b).filter(|&x| !printable(x)).count() as u32).expect("valid scalar")
        }
    };
    let mut vocab = serde_json::Map::new();
    for b in 0..=255u8 {
        vocab.insert(byte_char(b).to_string(), json!(b));
    }
    let pieces = "etaoinshrdlucmfwypvbgkqjxzETAOINSHRDLU0123456789{}[]\":,._-'()/";
    let pieces: Vec<char> = pieces.chars().collect();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    while vocab.len() < n - 2 {
        let len = rng.random_range(2..9);
        let mut s = String::new();
        if rng.random_bool(0.5) {
            s.push(byte_char(b' '));
        }
        for _ in 0..len {
            s.push(pieces[rng.random_range(0..pieces.len())]);
        }
        let id = vocab.len();
        vocab.entry(s).or_insert(json!(id));
    }
    let added: Vec<Value> = ["<|endoftext|>", "<|im_end|>"]
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": n - 2 + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                             "normalized": false, "special": true})
        })
        .collect();
    let doc = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": null,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": []}
    });
    doc.to_string().parse().expect("synthetic tokenizer loads")
}

/// At the demo model's vocabulary size (49152): outputs still validate; factory build, grammar compile and mask time
/// per token are printed (run with `--nocapture`).
#[test]
fn mask_time_per_token_49152_vocab() {
    let tok = synthetic_tokenizer(49152, 3);
    let eos = [49151, 49150];
    let t0 = Instant::now();
    let f = ConstraintFactory::new(&tok, &eos).expect("factory");
    let build = t0.elapsed();
    assert_eq!(f.vocab_size(), 49152);
    let schema = weather_schema();
    let mut total = std::time::Duration::ZERO;
    let mut steps = 0;
    for seed in 0..3 {
        let t0 = Instant::now();
        let mut c = f.constraint(&hermes_grammar(&schema)).expect("grammar compiles");
        let compile = t0.elapsed();
        let run = random_run(&mut c, 49152 + 64, &eos, seed, 3000);
        let text = tok.decode(&run.tokens, false).expect("decode");
        check_hermes(&text, &schema);
        eprintln!("49152 vocab seed {seed}: compile {compile:?}, {} steps", run.steps);
        total += run.mask_time;
        steps += run.steps;
    }
    eprintln!(
        "49152 vocab: factory {build:?}, {steps} steps, mask {:?}/token",
        total / steps as u32
    );
}

/// Special tokens are reached only by llguidance's special-token references, never by grammar text.
#[test]
fn special_tokens_only_by_reference() {
    let (f, tok, _eos) = factory(Family::Llama);
    let tag = tok.token_to_id("<|python_tag|>").expect("llama has <|python_tag|>");
    let mut c = f.constraint(r#"start: <|python_tag|> "x""#).expect("grammar compiles");
    assert_eq!(c.allowed_tokens().expect("mask"), vec![tag]);
    c.commit(tag).expect("the referenced special token commits");
    c.commit(token_for(&f, "x")).expect("x");
    assert!(c.is_finished());
    let mut c = f.constraint(r#"start: "<|python_tag|>x""#).expect("grammar compiles");
    let allowed = c.allowed_tokens().expect("mask");
    assert!(
        !allowed.contains(&tag) && allowed.contains(&token_for(&f, "<")),
        "{allowed:?}"
    );
}

/// `with_text_tokens` lets a string literal match a special control token: the Mistral tool-call marker is then
/// written as its single `[TOOL_CALLS]` token; without it that token is never allowed.
#[test]
fn text_tokens_let_literals_match_special_tokens() {
    let (tok, eos) = common::tiny(Family::Mistral);
    let marker = tok.token_to_id("[TOOL_CALLS]").expect("mistral has [TOOL_CALLS]");
    let schema = json!({"type": "array", "minItems": 1, "maxItems": 2, "items": weather_schema()});
    let grammar = format!("start: \"[TOOL_CALLS] \" {}", json_fragment(&schema));

    let plain = ConstraintFactory::new(&tok, &eos).expect("factory");
    let mut c = plain.constraint(&grammar).expect("grammar compiles");
    assert!(!c.allowed_tokens().expect("mask").contains(&marker));

    let f = ConstraintFactory::with_text_tokens(&tok, &eos, &["[TOOL_CALLS]"]).expect("factory");
    for seed in 0..3 {
        let mut c = f.constraint(&grammar).expect("grammar compiles");
        let run = random_run(&mut c, f.vocab_size(), &eos, seed, 3000);
        assert_eq!(run.tokens.first(), Some(&marker));
        let text = tok.decode(&run.tokens, false).expect("decode");
        let body = text.strip_prefix("[TOOL_CALLS] ").unwrap_or_else(|| panic!("{text:?}"));
        let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
        validate(&v, &schema, "$").unwrap_or_else(|e| panic!("{e}: {body}"));
    }
    let err = ConstraintFactory::with_text_tokens(&tok, &eos, &["[NOPE]"]).expect_err("unknown token");
    assert!(
        matches!(err, Error::UnknownAddedToken { .. }) && err.to_string().contains("[NOPE]"),
        "{err}"
    );
}

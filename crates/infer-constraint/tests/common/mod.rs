//! Shared helpers for the integration tests: the tiny tokenizer, a random sampler and a small JSON-schema checker.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use infer_constraint::{ConstraintFactory, TokenConstraint};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use tokenizers::Tokenizer;

/// A tiny model's tokenizer and its EOS ids.
pub fn tiny(family: test_support::Family) -> (Tokenizer, Vec<u32>) {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    let tok = Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer.json loads");
    let generation: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("generation_config.json")).expect("generation_config.json"),
    )
    .expect("generation_config.json parses");
    let eos = generation["eos_token_id"]
        .as_array()
        .expect("eos list")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    (tok, eos)
}

/// Result of one constrained random generation.
pub struct Run {
    pub tokens: Vec<u32>,
    pub mask_time: Duration,
    pub steps: usize,
}

/// Draws random logits (seeded), masks them, takes the best remaining token (so every allowed token is equally
/// likely), commits it, until the grammar is finished or EOS is drawn. Panics after `max_steps`.
pub fn random_run(c: &mut TokenConstraint, vocab: usize, eos: &[u32], seed: u64, max_steps: usize) -> Run {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut logits = vec![0f32; vocab];
    let mut tokens = Vec::new();
    let mut mask_time = Duration::ZERO;
    for step in 0..max_steps {
        if c.is_finished() {
            return Run {
                tokens,
                mask_time,
                steps: step,
            };
        }
        for l in logits.iter_mut() {
            *l = rng.random_range(-8.0..8.0);
        }
        let t0 = Instant::now();
        c.mask_logits(&mut logits).expect("mask");
        mask_time += t0.elapsed();
        let (best, &v) = logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .expect("non-empty logits");
        assert!(v.is_finite(), "mask left no token at step {step}");
        let token = best as u32;
        c.commit(token).expect("a masked-in token commits");
        if eos.contains(&token) {
            return Run {
                tokens,
                mask_time,
                steps: step + 1,
            };
        }
        tokens.push(token);
    }
    panic!("not finished after {max_steps} steps: {:?}", c.generated_text());
}

/// Checks `v` against the subset of JSON Schema the tests use: type, properties, required, additionalProperties,
/// enum, items, minItems, maxItems, minLength, maxLength, minimum, maximum. Returns the first violation.
pub fn validate(v: &Value, schema: &Value, path: &str) -> Result<(), String> {
    if let Some(options) = schema["enum"].as_array()
        && !options.contains(v)
    {
        return Err(format!("{path}: {v} not in enum {options:?}"));
    }
    if let Some(ty) = schema["type"].as_str() {
        let ok = match ty {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            other => return Err(format!("{path}: checker does not know type {other}")),
        };
        if !ok {
            return Err(format!("{path}: {v} is not of type {ty}"));
        }
    }
    if let Some(s) = v.as_str() {
        let n = s.chars().count() as u64;
        if schema["minLength"].as_u64().is_some_and(|m| n < m) || schema["maxLength"].as_u64().is_some_and(|m| n > m) {
            return Err(format!("{path}: string length {n} outside bounds"));
        }
    }
    if let Some(x) = v.as_f64()
        && (schema["minimum"].as_f64().is_some_and(|m| x < m) || schema["maximum"].as_f64().is_some_and(|m| x > m))
    {
        return Err(format!("{path}: {x} outside bounds"));
    }
    if let Some(obj) = v.as_object() {
        let props = schema["properties"].as_object();
        for req in schema["required"].as_array().into_iter().flatten() {
            let key = req.as_str().expect("required names are strings");
            if !obj.contains_key(key) {
                return Err(format!("{path}: missing required key {key}"));
            }
        }
        for (k, item) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(sub) => validate(item, sub, &format!("{path}.{k}"))?,
                None if schema["additionalProperties"] == Value::Bool(false) => {
                    return Err(format!("{path}: unexpected key {k}"));
                }
                None => {}
            }
        }
    }
    if let Some(items) = v.as_array() {
        let n = items.len() as u64;
        if schema["minItems"].as_u64().is_some_and(|m| n < m) || schema["maxItems"].as_u64().is_some_and(|m| n > m) {
            return Err(format!("{path}: {n} items outside bounds"));
        }
        if schema["items"].is_object() {
            for (i, item) in items.iter().enumerate() {
                validate(item, &schema["items"], &format!("{path}[{i}]"))?;
            }
        }
    }
    Ok(())
}

/// A factory for `family`'s tiny tokenizer, with the tokenizer and EOS ids.
pub fn factory(family: test_support::Family) -> (ConstraintFactory, Tokenizer, Vec<u32>) {
    let (tok, eos) = tiny(family);
    let f = ConstraintFactory::new(&tok, &eos).expect("factory");
    (f, tok, eos)
}

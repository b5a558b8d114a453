//! Logits conformance: our forward pass against transformers' logits for the same tiny weights (fixtures written by
//! fixtures/gen.py; this test needs no Python).

use std::path::PathBuf;

use infer_models::CausalLm;
use sha2::Digest;
use test_support::Family;

const TOLERANCE: f32 = 1e-4;

fn check(family: Family) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/logits-{family}.json"));
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture json");
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    let weights = std::fs::read(dir.path().join("model.safetensors")).expect("weights");
    assert_eq!(
        hex::encode(sha2::Sha256::digest(&weights)),
        fixture["weights_sha256"].as_str().expect("sha"),
        "{family}: the tiny-model generator changed; rerun fixtures/gen.py"
    );
    // transformers' tokenizer and ours agree on the prompt.
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
    let ids: Vec<u32> = fixture["input_ids"]
        .as_array()
        .expect("ids")
        .iter()
        .map(|v| v.as_u64().expect("id") as u32)
        .collect();
    let prompt = fixture["prompt"].as_str().expect("prompt");
    assert_eq!(
        tok.encode(prompt, true).expect("encode").get_ids(),
        ids.as_slice(),
        "{family} tokens"
    );
    let model = infer_models::load(dir.path(), None).expect("load");
    let mut cache = model.new_cache();
    let ours: Vec<Vec<f32>> = model
        .forward_all(&ids, &mut cache)
        .expect("forward")
        .to_vec2()
        .expect("vec");
    let theirs = fixture["logits"].as_array().expect("logits");
    assert_eq!(ours.len(), theirs.len());
    let mut worst = 0f32;
    for (row, trow) in ours.iter().zip(theirs) {
        let trow = trow.as_array().expect("row");
        assert_eq!(row.len(), trow.len());
        for (a, b) in row.iter().zip(trow) {
            worst = worst.max((a - b.as_f64().expect("num") as f32).abs());
        }
    }
    assert!(worst < TOLERANCE, "{family}: max |logit difference| {worst}");
}

#[test]
fn llama_logits_match_transformers() {
    check(Family::Llama);
}

#[test]
fn mistral_logits_match_transformers() {
    check(Family::Mistral);
}

#[test]
fn mixtral_logits_match_transformers() {
    check(Family::Mixtral);
}

#[test]
fn qwen2_logits_match_transformers() {
    check(Family::Qwen2);
}

#[test]
fn qwen3_logits_match_transformers() {
    check(Family::Qwen3);
}

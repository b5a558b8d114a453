//! Logits conformance: our forward pass against transformers' logits for the same tiny weights (fixtures written by
//! fixtures/gen.py; this test needs no Python).

use std::path::PathBuf;

use infer_models::CausalLm;
use sha2::Digest;
use test_support::Family;

const TOLERANCE: f32 = 1e-4;

fn check(family: Family) {
    check_variant(family, &family.to_string(), &[]);
}

/// `variant` names the fixture; `config` holds the `config.json` fields gen.py changed for it.
/// A tiny model of `family` with `config` patched into its `config.json`.
fn tiny_with(family: Family, config: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model(dir.path(), family).expect("tiny model");
    if !config.is_empty() {
        let path = dir.path().join("config.json");
        let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("json");
        for (k, v) in config {
            c[*k] = v.clone();
        }
        std::fs::write(&path, serde_json::to_vec(&c).expect("json")).expect("write config");
    }
    dir
}

fn check_variant(family: Family, variant: &str, config: &[(&str, serde_json::Value)]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/logits-{variant}.json"));
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture json");
    let dir = tiny_with(family, config);
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

/// Mistral-7B-v0.1 attends over a sliding window of 4096 tokens; a window of 4 on the fixture's 24-token prompt
/// checks the mask in the prefill, and 17 decode steps after a 3-token prefill check that they see the same window.
#[test]
fn mistral_sliding_window_logits_match_transformers() {
    let window = [("sliding_window", serde_json::json!(4))];
    check_variant(Family::Mistral, "mistral-window", &window);
    let dir = tiny_with(Family::Mistral, &window);
    let model = infer_models::load(dir.path(), None).expect("load");
    let ids: Vec<u32> = (40..60).collect();
    let full: Vec<Vec<f32>> = model
        .forward_all(&ids, &mut model.new_cache())
        .expect("forward")
        .to_vec2()
        .expect("vec");
    let mut cache = model.new_cache();
    model.forward_all(&ids[..3], &mut cache).expect("prefill");
    for (i, t) in ids.iter().enumerate().skip(3) {
        let step: Vec<Vec<f32>> = model
            .forward_last(&mut [infer_models::SeqInput {
                tokens: std::slice::from_ref(t),
                cache: &mut cache,
            }])
            .expect("step")
            .to_vec2()
            .expect("vec");
        let worst = step[0]
            .iter()
            .zip(&full[i])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < TOLERANCE, "decode step at {i}: {worst}");
    }
}

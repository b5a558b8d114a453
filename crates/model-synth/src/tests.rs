//! Tests of the tiny-model generator: the folder is complete, the tokenizer loads and matches the config.

use std::path::Path;

use serde_json::Value;

use super::*;

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
}

#[test]
fn every_family_writes_a_loadable_folder_whose_vocab_matches_the_config() {
    for family in Family::ALL {
        let dir = tempfile::tempdir().expect("tempdir");
        tiny_model(dir.path(), family).expect("tiny model");
        let config = read_json(&dir.path().join("config.json"));
        let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer loads");
        assert_eq!(
            tok.get_vocab_size(true) as u64,
            config["vocab_size"].as_u64().expect("vocab_size"),
            "{family}"
        );
        // Every special token of the family is one token.
        let tc = read_json(&dir.path().join("tokenizer_config.json"));
        let eos = tc["eos_token"].as_str().expect("eos_token");
        let enc = tok.encode(eos, false).expect("encode");
        assert_eq!(enc.get_ids().len(), 1, "{family}: {eos} is one token");
        let generation = read_json(&dir.path().join("generation_config.json"));
        let eos_ids: Vec<u64> = generation["eos_token_id"]
            .as_array()
            .expect("eos list")
            .iter()
            .filter_map(Value::as_u64)
            .collect();
        assert!(
            eos_ids.contains(&u64::from(enc.get_ids()[0])),
            "{family}: eos id in generation_config"
        );
        // The template is the family's real one.
        assert_eq!(tc["chat_template"].as_str(), Some(family.chat_template()));
        // Weight shapes follow the config.
        let bytes = std::fs::read(dir.path().join("model.safetensors")).expect("weights");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        let emb = st.tensor("model.embed_tokens.weight").expect("embeddings");
        assert_eq!(emb.shape(), [config["vocab_size"].as_u64().unwrap_or(0) as usize, 64]);
        assert_eq!(
            st.tensor("lm_head.weight").is_ok(),
            !config["tie_word_embeddings"].as_bool().unwrap_or(false)
        );
    }
}

#[test]
fn tokenizer_round_trips_multibyte_text_and_uses_merges() {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny_model(dir.path(), Family::Qwen2).expect("tiny model");
    let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
    let text = "the weather in paris: こんにちは 🙂 café";
    let enc = tok.encode(text, false).expect("encode");
    assert!(enc.get_ids().len() < text.len(), "merges shorten the byte sequence");
    assert_eq!(tok.decode(enc.get_ids(), false).expect("decode"), text);
    let enc = tok.encode("<|im_start|>user\nhi<|im_end|>", false).expect("encode");
    assert_eq!(
        enc.get_ids()[0],
        TinyTokenizer::new(Family::Qwen2)
            .special_id("<|im_start|>")
            .expect("id")
    );
}

#[test]
fn llama_and_mistral_prepend_bos_and_qwen_does_not() {
    for (family, bos) in [
        (Family::Llama, Some("<|begin_of_text|>")),
        (Family::Mistral, Some("<s>")),
        (Family::Qwen3, None),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        tiny_model(dir.path(), family).expect("tiny model");
        let tok = tokenizers::Tokenizer::from_file(dir.path().join("tokenizer.json")).expect("tokenizer");
        let enc = tok.encode("hello", true).expect("encode");
        let first = tok.id_to_token(enc.get_ids()[0]);
        match bos {
            Some(b) => assert_eq!(first.as_deref(), Some(b), "{family}"),
            None => assert_ne!(first.as_deref(), Some("<|endoftext|>"), "{family}"),
        }
    }
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let write = |seed| {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut o = TinyOptions::new(Family::Mixtral);
        o.seed = seed;
        tiny_model_with(dir.path(), &o).expect("tiny model");
        std::fs::read(dir.path().join("model.safetensors")).expect("read")
    };
    assert_eq!(write(7), write(7));
    assert_ne!(write(7), write(8));
}

#[test]
fn sharded_bf16_index_names_every_tensor_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut o = TinyOptions::new(Family::Llama);
    o.sharded = true;
    o.dtype = DType::BF16;
    o.chat_template = Some("{{ messages[0].content }}".into());
    tiny_model_with(dir.path(), &o).expect("tiny model");
    assert!(!dir.path().join("model.safetensors").exists());
    let index = read_json(&dir.path().join("model.safetensors.index.json"));
    let map = index["weight_map"].as_object().expect("weight_map");
    let mut seen = 0;
    for file in ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"] {
        let bytes = std::fs::read(dir.path().join(file)).expect("shard");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        for (name, view) in st.tensors() {
            assert_eq!(map[&name], file);
            assert_eq!(view.dtype(), safetensors::Dtype::BF16);
            seen += 1;
        }
    }
    assert_eq!(seen, map.len());
    let tc = read_json(&dir.path().join("tokenizer_config.json"));
    assert_eq!(tc["chat_template"], "{{ messages[0].content }}");
    assert_eq!(read_json(&dir.path().join("config.json"))["torch_dtype"], "bfloat16");
}

#[test]
fn family_names_parse_and_print() {
    for f in Family::ALL {
        assert_eq!(f.to_string().parse::<Family>(), Ok(f));
    }
    assert!("t5".parse::<Family>().unwrap_err().to_string().contains("`t5`"));
}

#[test]
fn gpt_oss_experts_are_mxfp4_blocks_or_their_dequantisation_transposed() {
    let write = |mxfp4| {
        let dir = tempfile::tempdir().expect("tempdir");
        let o = TinyOptions {
            mxfp4,
            ..TinyOptions::new(Family::GptOss)
        };
        tiny_model_with(dir.path(), &o).expect("tiny model");
        let config = read_json(&dir.path().join("config.json"));
        (
            std::fs::read(dir.path().join("model.safetensors")).expect("read"),
            config,
        )
    };
    let ((dense, dense_config), (packed, packed_config)) = (write(false), write(true));
    assert!(dense_config.get("quantization_config").is_none());
    assert_eq!(packed_config["quantization_config"]["quant_method"], "mxfp4");
    let dense = safetensors::SafeTensors::deserialize(&dense).expect("dense");
    let packed = safetensors::SafeTensors::deserialize(&packed).expect("mxfp4");
    let (e, h, i) = (4usize, 64usize, 64usize);
    let x = "model.layers.1.mlp.experts";
    let blocks = packed.tensor(&format!("{x}.gate_up_proj_blocks")).expect("blocks");
    let scales = packed.tensor(&format!("{x}.gate_up_proj_scales")).expect("scales");
    assert_eq!(
        (blocks.dtype(), blocks.shape()),
        (safetensors::Dtype::U8, &[e, 2 * i, h / 32, 16][..])
    );
    assert_eq!(
        (scales.dtype(), scales.shape()),
        (safetensors::Dtype::U8, &[e, 2 * i, h / 32][..])
    );
    let wide = dense.tensor(&format!("{x}.gate_up_proj")).expect("dense experts");
    assert_eq!(wide.shape(), [e, h, 2 * i]);
    let wide: Vec<f32> = wide
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    // Value (expert 3, output row 5, input column 33): the high nibble of block 1's byte 0 of that row.
    let (ex, row, col) = (3usize, 5usize, 33usize);
    let byte = blocks.data()[((ex * 2 * i + row) * (h / 32) + col / 32) * 16 + (col % 32) / 2];
    let scale = 2f32.powi(i32::from(scales.data()[(ex * 2 * i + row) * (h / 32) + col / 32]) - 127);
    let want = E2M1_FOR_TESTS[usize::from(byte >> 4)] * scale;
    assert_eq!(wide[(ex * h + col) * 2 * i + row], want);
    // Everything else is the same tensors.
    for name in [
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.sinks",
        "model.layers.0.mlp.router.bias",
    ] {
        assert_eq!(
            dense.tensor(name).expect(name).data(),
            packed.tensor(name).expect(name).data(),
            "{name}"
        );
    }
}

const E2M1_FOR_TESTS: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

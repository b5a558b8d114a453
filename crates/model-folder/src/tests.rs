//! Unit tests: tiny generated folders, each broken in one way, must produce exactly the expected finding.

use std::path::Path;

use serde_json::{Value, json};
use test_support::{Family, TinyOptions, tiny_model, tiny_model_with};

use crate::{Severity, check};

fn tiny(family: Family) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    tiny_model(dir.path(), family).expect("tiny model");
    dir
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).expect("ser")).expect("write");
}

/// The error codes of a check, sorted.
fn error_codes(dir: &Path) -> Vec<String> {
    let r = check(dir).expect("check");
    let mut codes: Vec<String> = r.errors().map(|f| f.code.clone()).collect();
    codes.sort();
    codes
}

/// Writes a safetensors file whose data section is a hole (sparse): the header is real, the bytes are zeros.
fn write_sparse_safetensors(path: &Path, tensors: &[(&str, &str, Vec<usize>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape) in tensors {
        let bytes = shape.iter().product::<usize>() * if *dtype == "F32" { 4 } else { 2 };
        header.insert(
            (*name).into(),
            json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let json = serde_json::to_vec(&Value::Object(header)).expect("ser");
    let mut buf = (json.len() as u64).to_le_bytes().to_vec();
    buf.extend_from_slice(&json);
    std::fs::write(path, &buf).expect("write");
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open");
    f.set_len((buf.len() + offset) as u64).expect("set_len");
}

#[test]
fn every_tiny_family_passes_without_errors() {
    for family in Family::ALL {
        let dir = tiny(family);
        let r = check(dir.path()).expect("check");
        let errors: Vec<_> = r.errors().collect();
        assert!(errors.is_empty(), "{family}: unexpected errors {errors:#?}");
        assert!(r.weight_bytes > 0, "{family}");
        assert_eq!(r.context_length, Some(512), "{family}");
        assert!(r.tensor_count > 10, "{family}");
        assert!(
            r.files.contains(&"model.safetensors".to_string()),
            "{family}: {:?}",
            r.files
        );
        assert!(r.files.contains(&"tokenizer.json".to_string()));
    }
}

#[test]
fn sharded_folder_with_index_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = TinyOptions::new(Family::Qwen2);
    opts.sharded = true;
    tiny_model_with(dir.path(), &opts).expect("tiny");
    assert_eq!(error_codes(dir.path()), Vec::<String>::new());
}

#[test]
fn converse_prediction_follows_architecture_and_template() {
    // Llama with its real template: Converse and tools.
    let r = check(tiny(Family::Llama).path()).expect("check");
    assert!(r.instruct_supported);
    assert!(r.converse_tools);
    // Qwen3 imports, but Bedrock serves no Converse for it.
    let r = check(tiny(Family::Qwen3).path()).expect("check");
    assert!(!r.instruct_supported);
    assert!(r.find("converse-unsupported-architecture").is_some());
}

#[test]
fn missing_template_is_a_warning_and_no_converse() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v.as_object_mut().expect("object").remove("chat_template");
    });
    let r = check(dir.path()).expect("check");
    assert!(!r.has_errors());
    let f = r.find("missing-chat-template").expect("finding");
    assert_eq!(f.severity, Severity::Warning);
    assert!(f.fix.as_deref().is_some_and(|s| s.contains("cmi template fix")));
    assert!(!r.instruct_supported);
}

#[test]
fn not_a_folder_is_an_err() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("x");
    std::fs::write(&file, "x").expect("write");
    assert!(matches!(check(&file), Err(crate::Error::NotADirectory { .. })));
    assert!(matches!(
        check(&dir.path().join("nope")),
        Err(crate::Error::NotADirectory { .. })
    ));
}

#[test]
fn empty_folder_reports_every_missing_piece() {
    let dir = tempfile::tempdir().expect("tempdir");
    let codes = error_codes(dir.path());
    for code in [
        "missing-config",
        "missing-weights",
        "missing-tokenizer-config",
        "missing-tokenizer",
    ] {
        assert!(codes.contains(&code.to_string()), "{code} not in {codes:?}");
    }
}

#[test]
fn pytorch_bin_weights_are_named() {
    let dir = tiny(Family::Llama);
    std::fs::rename(
        dir.path().join("model.safetensors"),
        dir.path().join("pytorch_model.bin"),
    )
    .expect("rename");
    let r = check(dir.path()).expect("check");
    let f = r.find("weights-not-safetensors").expect("finding");
    assert!(f.message.contains("pytorch_model.bin"), "{}", f.message);
}

#[test]
fn unsupported_architecture() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["model_type"] = json!("phi3");
        v["architectures"] = json!(["Phi3ForCausalLM"]);
    });
    let r = check(dir.path()).expect("check");
    let f = r.find("unsupported-architecture").expect("finding");
    assert!(f.message.contains("phi3"), "{}", f.message);
    assert_eq!(r.architecture.as_deref(), Some("Phi3ForCausalLM"));
}

#[test]
fn embedding_head_is_rejected() {
    let dir = tiny(Family::Qwen3);
    edit_json(&dir.path().join("config.json"), |v| {
        v["architectures"] = json!(["Qwen3Model"])
    });
    assert!(error_codes(dir.path()).contains(&"embedding-model".to_string()));
}

#[test]
fn config_that_does_not_match_weights() {
    let dir = tiny(Family::Mistral);
    edit_json(&dir.path().join("config.json"), |v| v["intermediate_size"] = json!(96));
    let r = check(dir.path()).expect("check");
    let f = r.find("shape-mismatch").expect("finding");
    assert!(f.message.contains("mlp.gate_proj.weight"), "{}", f.message);
    assert!(f.message.contains("[96, 64]"), "{}", f.message);
}

#[test]
fn more_layers_in_config_than_in_weights() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| v["num_hidden_layers"] = json!(3));
    let r = check(dir.path()).expect("check");
    let f = r.find("missing-tensor").expect("finding");
    assert!(f.message.contains("model.layers.2."), "{}", f.message);
}

#[test]
fn fewer_layers_in_config_is_a_warning() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| v["num_hidden_layers"] = json!(1));
    let r = check(dir.path()).expect("check");
    assert!(!r.has_errors(), "{:?}", r.findings);
    assert!(
        r.find("unexpected-tensor")
            .is_some_and(|f| f.message.contains("model.layers.1."))
    );
}

#[test]
fn untied_model_needs_lm_head() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["tie_word_embeddings"] = json!(false)
    });
    let r = check(dir.path()).expect("check");
    assert!(
        r.find("missing-tensor")
            .is_some_and(|f| f.message.contains("lm_head.weight")),
        "{:?}",
        r.findings
    );
}

#[test]
fn mixtral_experts_are_checked() {
    let dir = tiny(Family::Mixtral);
    edit_json(&dir.path().join("config.json"), |v| v["num_local_experts"] = json!(5));
    let r = check(dir.path()).expect("check");
    assert!(
        r.find("missing-tensor")
            .is_some_and(|f| f.message.contains("experts.4.w1")),
        "{:?}",
        r.findings
    );
    assert!(
        r.find("shape-mismatch")
            .is_some_and(|f| f.message.contains("block_sparse_moe.gate"))
    );
}

#[test]
fn truncated_safetensors_is_reported_by_name() {
    let dir = tiny(Family::Qwen2);
    let path = dir.path().join("model.safetensors");
    let len = std::fs::metadata(&path).expect("md").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open")
        .set_len(len - 10)
        .expect("truncate");
    let r = check(dir.path()).expect("check");
    let f = r.find("invalid-safetensors").expect("finding");
    assert!(f.message.starts_with("model.safetensors:"), "{}", f.message);
    assert!(f.message.contains("truncated"), "{}", f.message);
}

#[test]
fn garbage_header_is_reported() {
    let dir = tiny(Family::Qwen2);
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7fnot json",
    )
    .expect("write");
    assert!(error_codes(dir.path()).contains(&"invalid-safetensors".to_string()));
}

#[test]
fn missing_shard_and_index_mismatch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = TinyOptions::new(Family::Llama);
    opts.sharded = true;
    tiny_model_with(dir.path(), &opts).expect("tiny");
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("model.safetensors.index.json")).expect("read"))
            .expect("json");
    let shard = index["weight_map"]["model.norm.weight"]
        .as_str()
        .expect("shard")
        .to_string();
    std::fs::remove_file(dir.path().join(&shard)).expect("rm");
    let r = check(dir.path()).expect("check");
    assert!(
        r.find("missing-shard").is_some_and(|f| f.message.contains(&shard)),
        "{:?}",
        r.findings
    );

    // Point a tensor at the other shard: index and header disagree.
    let dir = tempfile::tempdir().expect("tempdir");
    tiny_model_with(dir.path(), &opts).expect("tiny");
    edit_json(&dir.path().join("model.safetensors.index.json"), |v| {
        let map = v["weight_map"].as_object_mut().expect("map");
        let files: Vec<String> = map.values().filter_map(|v| v.as_str().map(String::from)).collect();
        let current = map["model.norm.weight"].as_str().expect("str").to_string();
        let other = files.into_iter().find(|f| *f != current).expect("two shards");
        map.insert("model.norm.weight".into(), json!(other));
    });
    assert!(error_codes(dir.path()).contains(&"index-shard-mismatch".to_string()));
}

#[test]
fn several_shards_without_index() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = TinyOptions::new(Family::Llama);
    opts.sharded = true;
    tiny_model_with(dir.path(), &opts).expect("tiny");
    std::fs::remove_file(dir.path().join("model.safetensors.index.json")).expect("rm");
    assert!(error_codes(dir.path()).contains(&"missing-index".to_string()));
}

#[test]
fn context_over_128k() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["max_position_embeddings"] = json!(131073)
    });
    let r = check(dir.path()).expect("check");
    assert!(r.find("context-too-long").is_some_and(|f| f.message.contains("131073")));
    // 128K itself (Llama 3.1) imports.
    edit_json(&dir.path().join("config.json"), |v| {
        v["max_position_embeddings"] = json!(131072)
    });
    assert!(check(dir.path()).expect("check").find("context-too-long").is_none());
}

#[test]
fn tokenizer_class_outside_the_list() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v["tokenizer_class"] = json!("CohereTokenizerFast")
    });
    let r = check(dir.path()).expect("check");
    assert!(
        r.find("unsupported-tokenizer-class")
            .is_some_and(|f| f.message.contains("CohereTokenizerFast"))
    );
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v["tokenizer_class"] = json!("Qwen2TokenizerFast")
    });
    assert!(
        check(dir.path())
            .expect("check")
            .find("unsupported-tokenizer-class")
            .is_none()
    );
}

#[test]
fn vocab_smaller_than_tokenizer() {
    let dir = tiny(Family::Qwen2);
    edit_json(&dir.path().join("config.json"), |v| v["vocab_size"] = json!(100));
    let codes = error_codes(dir.path());
    assert!(codes.contains(&"vocab-mismatch".to_string()), "{codes:?}");
    assert!(codes.contains(&"shape-mismatch".to_string()), "{codes:?}");
}

#[test]
fn dtype_declared_differs_from_weights() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["torch_dtype"] = json!("bfloat16")
    });
    let r = check(dir.path()).expect("check");
    assert!(r.find("dtype-mismatch").is_some_and(|f| f.message.contains("F32")));
}

#[test]
fn gpt_oss_needs_three_eos_ids() {
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["model_type"] = json!("gpt_oss");
        v["architectures"] = json!(["GptOssForCausalLM"]);
    });
    edit_json(&dir.path().join("generation_config.json"), |v| {
        v["eos_token_id"] = json!([200002, 199999])
    });
    let r = check(dir.path()).expect("check");
    assert!(
        r.find("gpt-oss-generation-config")
            .is_some_and(|f| f.severity == Severity::Error)
    );
    edit_json(&dir.path().join("generation_config.json"), |v| {
        v["eos_token_id"] = json!([200002, 199999, 200012])
    });
    assert!(
        check(dir.path())
            .expect("check")
            .find("gpt-oss-generation-config")
            .is_none()
    );
}

#[test]
fn transformers_5_config_without_rope_theta() {
    let dir = tiny(Family::Qwen2);
    edit_json(&dir.path().join("config.json"), |v| {
        let theta = v["rope_theta"].clone();
        v.as_object_mut().expect("object").remove("rope_theta");
        v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": theta});
    });
    let r = check(dir.path()).expect("check");
    let f = r.find("transformers-5-config").expect("finding");
    assert!(f.fix.as_deref().is_some_and(|s| s.contains("1000000")), "{f:?}");
}

#[test]
fn weight_limit_on_a_sparse_file() {
    let dir = tiny(Family::Llama);
    // A 200 GB (decimal) BF16 tensor in a sparse file: only the header is real.
    write_sparse_safetensors(
        &dir.path().join("extra.safetensors"),
        &[("extra.weight", "BF16", vec![100_000, 1_000_000])],
    );
    let r = check(dir.path()).expect("check");
    assert!(r.weight_bytes > crate::MAX_TEXT_BYTES);
    assert!(r.find("weights-too-large").is_some(), "{:?}", r.findings);
}

#[test]
fn import_files_skip_docs_and_other_formats() {
    let dir = tiny(Family::Llama);
    for extra in ["README.md", ".gitattributes", "pytorch_model.bin", "model.gguf"] {
        std::fs::write(dir.path().join(extra), "x").expect("write");
    }
    let files = crate::import_files(dir.path()).expect("list");
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with(".md") && !f.ends_with(".bin") && !f.starts_with('.') && !f.ends_with(".gguf"))
    );
    assert!(files.contains(&"config.json".to_string()));
}

#[test]
fn report_serializes_as_json() {
    let r = check(tiny(Family::Mistral).path()).expect("check");
    let v = serde_json::to_value(&r).expect("ser");
    assert_eq!(v["model_type"], "mistral");
    assert!(v["findings"].is_array());
    assert!(v["family"].is_string());
}

#[test]
fn repository_files_an_import_needs() {
    for name in [
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "chat_template.jinja",
        "chat_template.json",
        "model.safetensors",
        "model-00001-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.model",
    ] {
        assert!(crate::is_import_file(name), "{name} should be fetched");
    }
    for name in [
        "pytorch_model.bin",
        "model.pt",
        "model.gguf",
        "onnx/model.onnx",
        "onnx/config.json",
        "original/consolidated.safetensors",
        "README.md",
        ".gitattributes",
    ] {
        assert!(!crate::is_import_file(name), "{name} should not be fetched");
    }
}

#[test]
fn gpt_oss_and_qwen3_moe_are_accepted_without_converse() {
    // GPT-OSS with its own harmony template and the three-id generation config: accepted, harmony family, no Converse.
    let dir = tiny(Family::Llama);
    edit_json(&dir.path().join("config.json"), |v| {
        v["model_type"] = json!("gpt_oss");
        v["architectures"] = json!(["GptOssForCausalLM"]);
    });
    edit_json(&dir.path().join("generation_config.json"), |v| {
        v["eos_token_id"] = json!([200002, 199999, 200012])
    });
    edit_json(&dir.path().join("tokenizer_config.json"), |v| {
        v["chat_template"] = json!(chat_template::templates::GPT_OSS)
    });
    let r = check(dir.path()).expect("check");
    assert_eq!(error_codes(dir.path()), Vec::<String>::new());
    assert_eq!(r.architecture.as_deref(), Some("GptOssForCausalLM"));
    assert_eq!(r.family, chat_template::Family::GptOss);
    assert!(!r.instruct_supported && !r.converse_tools);
    let f = r.find("converse-unsupported-architecture").expect("finding");
    assert!(f.message.contains("gpt_oss"), "{f:?}");

    // Qwen3-MoE: the class is accepted, the family is Qwen3's, and Converse is not served.
    let dir = tiny(Family::Qwen3);
    edit_json(&dir.path().join("config.json"), |v| {
        v["model_type"] = json!("qwen3_moe");
        v["architectures"] = json!(["Qwen3MoeForCausalLM"]);
    });
    let r = check(dir.path()).expect("check");
    let codes = error_codes(dir.path());
    assert!(!codes.contains(&"unsupported-architecture".to_string()), "{codes:?}");
    assert_eq!(r.family, chat_template::Family::Qwen3);
    assert!(!r.instruct_supported);
    assert!(r.find("converse-unsupported-architecture").is_some());
}

#[test]
fn gpt_oss_with_mxfp4_experts_and_its_own_eos_ids_passes() {
    // As published: MXFP4 experts (U8 `_blocks` and `_scales`) under a `quantization_config`, bf16 elsewhere, and the
    // generation config's three eos ids of the tokenizer's <|return|>, <|endoftext|> and <|call|>.
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = TinyOptions {
        mxfp4: true,
        dtype: test_support::DType::BF16,
        ..TinyOptions::new(Family::GptOss)
    };
    tiny_model_with(dir.path(), &opts).expect("tiny");
    edit_json(&dir.path().join("config.json"), |v| {
        v["torch_dtype"] = json!("bfloat16")
    });
    let r = check(dir.path()).expect("check");
    assert_eq!(error_codes(dir.path()), Vec::<String>::new(), "{:#?}", r.findings);
    assert!(r.find("dtype-mismatch").is_none(), "{:#?}", r.findings);
    assert!(!r.instruct_supported);

    // Without the quantization_config, U8 tensors are a quantised checkpoint that does not import.
    edit_json(&dir.path().join("config.json"), |v| {
        v.as_object_mut().expect("object").remove("quantization_config");
    });
    assert!(error_codes(dir.path()).contains(&"unsupported-dtype".to_string()));

    // The tokenizer's ids are what the generation config must list.
    let dir = tiny(Family::GptOss);
    edit_json(&dir.path().join("generation_config.json"), |v| {
        let ids = v["eos_token_id"].as_array().expect("ids").clone();
        v["eos_token_id"] = json!(ids[..2]);
    });
    let r = check(dir.path()).expect("check");
    let f = r.find("gpt-oss-generation-config").expect("finding");
    assert_eq!(f.severity, Severity::Error);
}

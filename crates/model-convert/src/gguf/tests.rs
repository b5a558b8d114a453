//! Unit tests on tiny GGUF files written with candle's GGUF writer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use proptest::prelude::*;
use tokenizers::Tokenizer;

use super::*;

const HIDDEN: usize = 32;
const HEADS: usize = 4;
const KV_HEADS: usize = 2;
const HEAD_DIM: usize = HIDDEN / HEADS;
const FFN: usize = 64;
const LAYERS: usize = 2;

/// GPT-2's byte → printable character table (`bytes_to_unicode`), written out from its definition.
fn bytes_to_unicode() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut next = 256u32;
    (0u32..256)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap()
            } else {
                let c = char::from_u32(next).unwrap();
                next += 1;
                c
            }
        })
        .collect()
}

fn byte_token(s: &str) -> String {
    let table = bytes_to_unicode();
    s.bytes().map(|b| table[b as usize]).collect()
}

/// Vocabulary: three control tokens, 256 byte tokens, then merged tokens; with the merges producing them.
fn vocab() -> (Vec<String>, Vec<i32>, Vec<String>) {
    let mut tokens: Vec<String> = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut types = vec![3, 3, 3];
    for c in bytes_to_unicode() {
        tokens.push(c.to_string());
        types.push(1);
    }
    let merges_plain = [
        ("h", "e"),
        ("l", "l"),
        ("he", "ll"),
        ("hell", "o"),
        (" ", "w"),
        ("1", "2"),
    ];
    let mut merges = Vec::new();
    for (a, b) in merges_plain {
        let (a, b) = (byte_token(a), byte_token(b));
        merges.push(format!("{a} {b}"));
        tokens.push(format!("{a}{b}"));
        types.push(1);
    }
    tokens.push("<think>".into());
    types.push(4);
    (tokens, types, merges)
}

/// A deterministic matrix with distinct entries.
fn matrix(rows: usize, cols: usize, seed: f32) -> Vec<f32> {
    (0..rows * cols).map(|i| ((i as f32 + seed) * 0.37).sin()).collect()
}

/// llama.cpp's `permute` (convert_hf_to_gguf.py), written from its numpy definition by index arithmetic:
/// `w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn llama_cpp_permute(w: &[f32], rows: usize, cols: usize, heads: usize) -> Vec<f32> {
    let half = rows / heads / 2;
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let dst = h * 2 * half + i * 2 + j;
                let src = h * 2 * half + j * half + i;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

struct Tiny {
    /// Hugging Face name → (shape, values) of what the converted folder must hold (for F32 tensors, exactly).
    hf: HashMap<String, (Vec<usize>, Vec<f32>)>,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy)]
struct TinyOpts {
    tied: bool,
    quant: GgmlDType,
    pre: &'static str,
    arch: &'static str,
    /// A sentencepiece vocabulary (`tokenizer.ggml.model = llama`, scores, no merges) from spm_reference.json.
    spm: bool,
    /// A `rope_freqs.weight` tensor with these factors (Llama 3.1+ GGUFs).
    rope_freqs: Option<[f32; HEAD_DIM / 2]>,
}

impl Default for TinyOpts {
    fn default() -> Self {
        TinyOpts {
            tied: true,
            quant: GgmlDType::F32,
            pre: "smollm",
            arch: "llama",
            spm: false,
            rope_freqs: None,
        }
    }
}

/// transformers' tokenization of a sentencepiece GGUF vocabulary (fixtures/gen_spm.py).
fn spm_reference() -> serde_json::Value {
    serde_json::from_str(include_str!("../../fixtures/spm_reference.json")).unwrap()
}

fn tiny_gguf(opts: TinyOpts) -> Tiny {
    let reference = opts.spm.then(spm_reference);
    let (tokens, types, merges) = match &reference {
        None => vocab(),
        Some(r) => (
            r["tokens"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap().to_owned())
                .collect(),
            r["token_type"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_i64().unwrap() as i32)
                .collect(),
            Vec::new(),
        ),
    };
    let vocab_size = tokens.len();
    let mut hf = HashMap::new();
    let mut gguf_tensors: Vec<(String, QTensor)> = Vec::new();
    let mut add =
        |gguf: String, hf_name: String, shape: Vec<usize>, hf_values: Vec<f32>, stored: Vec<f32>, q: GgmlDType| {
            let t = Tensor::from_vec(stored, shape.clone(), &Device::Cpu).unwrap();
            gguf_tensors.push((gguf, QTensor::quantize(&t, q).unwrap()));
            hf.insert(hf_name, (shape, hf_values));
        };
    let mut seed = 0.0;
    let mut next = |rows: usize, cols: usize| {
        seed += 1000.0;
        matrix(rows, cols, seed)
    };
    let m = next(vocab_size, HIDDEN);
    add(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![vocab_size, HIDDEN],
        m.clone(),
        m,
        GgmlDType::F32,
    );
    for l in 0..LAYERS {
        let b = |s: &str| format!("blk.{l}.{s}");
        let h = |s: &str| format!("model.layers.{l}.{s}");
        for (g, f) in [
            ("attn_norm.weight", "input_layernorm.weight"),
            ("ffn_norm.weight", "post_attention_layernorm.weight"),
        ] {
            let v = next(1, HIDDEN);
            add(b(g), h(f), vec![HIDDEN], v.clone(), v, GgmlDType::F32);
        }
        let q = next(HEADS * HEAD_DIM, HIDDEN);
        // Only llama.cpp's llama converter permutes Q/K rows.
        let permuted = opts.arch == "llama";
        let qp = if permuted {
            llama_cpp_permute(&q, HEADS * HEAD_DIM, HIDDEN, HEADS)
        } else {
            q.clone()
        };
        add(
            b("attn_q.weight"),
            h("self_attn.q_proj.weight"),
            vec![HEADS * HEAD_DIM, HIDDEN],
            q,
            qp,
            opts.quant,
        );
        let k = next(KV_HEADS * HEAD_DIM, HIDDEN);
        let kp = if permuted {
            llama_cpp_permute(&k, KV_HEADS * HEAD_DIM, HIDDEN, KV_HEADS)
        } else {
            k.clone()
        };
        if opts.arch == "qwen2" {
            for (g, f, n) in [("q", "q", HEADS), ("k", "k", KV_HEADS), ("v", "v", KV_HEADS)] {
                let bias = next(1, n * HEAD_DIM);
                let shape = vec![n * HEAD_DIM];
                add(
                    b(&format!("attn_{g}.bias")),
                    h(&format!("self_attn.{f}_proj.bias")),
                    shape,
                    bias.clone(),
                    bias,
                    GgmlDType::F32,
                );
            }
        }
        if opts.arch == "qwen3" {
            for g in ["q", "k"] {
                let norm = next(1, HEAD_DIM);
                let shape = vec![HEAD_DIM];
                add(
                    b(&format!("attn_{g}_norm.weight")),
                    h(&format!("self_attn.{g}_norm.weight")),
                    shape,
                    norm.clone(),
                    norm,
                    GgmlDType::F32,
                );
            }
        }
        add(
            b("attn_k.weight"),
            h("self_attn.k_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, HIDDEN],
            k,
            kp,
            opts.quant,
        );
        let v = next(KV_HEADS * HEAD_DIM, HIDDEN);
        add(
            b("attn_v.weight"),
            h("self_attn.v_proj.weight"),
            vec![KV_HEADS * HEAD_DIM, HIDDEN],
            v.clone(),
            v,
            opts.quant,
        );
        let o = next(HIDDEN, HEADS * HEAD_DIM);
        add(
            b("attn_output.weight"),
            h("self_attn.o_proj.weight"),
            vec![HIDDEN, HIDDEN],
            o.clone(),
            o,
            opts.quant,
        );
        for (g, f) in [
            ("ffn_gate.weight", "mlp.gate_proj.weight"),
            ("ffn_up.weight", "mlp.up_proj.weight"),
        ] {
            let w = next(FFN, HIDDEN);
            add(b(g), h(f), vec![FFN, HIDDEN], w.clone(), w, opts.quant);
        }
        let d = next(HIDDEN, FFN);
        add(
            b("ffn_down.weight"),
            h("mlp.down_proj.weight"),
            vec![HIDDEN, FFN],
            d.clone(),
            d,
            opts.quant,
        );
    }
    let n = next(1, HIDDEN);
    add(
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        vec![HIDDEN],
        n.clone(),
        n,
        GgmlDType::F32,
    );
    if !opts.tied {
        let o = next(vocab_size, HIDDEN);
        add(
            "output.weight".into(),
            "lm_head.weight".into(),
            vec![vocab_size, HIDDEN],
            o.clone(),
            o,
            GgmlDType::F32,
        );
    }

    let s = |x: &str| Value::String(x.to_owned());
    let a = opts.arch;
    let meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), s(a)),
        (format!("{a}.context_length"), Value::U32(2048)),
        (format!("{a}.embedding_length"), Value::U32(HIDDEN as u32)),
        (format!("{a}.feed_forward_length"), Value::U32(FFN as u32)),
        (format!("{a}.block_count"), Value::U32(LAYERS as u32)),
        (format!("{a}.attention.head_count"), Value::U32(HEADS as u32)),
        (format!("{a}.attention.head_count_kv"), Value::U32(KV_HEADS as u32)),
        (format!("{a}.rope.freq_base"), Value::F32(100000.0)),
        (format!("{a}.attention.layer_norm_rms_epsilon"), Value::F32(1e-5)),
        ("tokenizer.ggml.model".into(), s("gpt2")),
        ("tokenizer.ggml.pre".into(), s(opts.pre)),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(types.iter().map(|t| Value::I32(*t)).collect()),
        ),
        (
            "tokenizer.ggml.merges".into(),
            Value::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.padding_token_id".into(), Value::U32(2)),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(false)),
        (
            "tokenizer.chat_template".into(),
            s("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"),
        ),
    ];
    let mut meta = meta;
    if let Some(r) = &reference {
        // The vocabulary as gen_spm.py wrote it: scores instead of merges, BOS added, no pad token.
        meta.retain(|(k, _)| !k.ends_with(".merges") && !k.ends_with(".pre") && !k.ends_with("padding_token_id"));
        for (k, v) in &mut meta {
            match k.as_str() {
                "tokenizer.ggml.model" => *v = s("llama"),
                "tokenizer.ggml.add_bos_token" => *v = Value::Bool(true),
                _ => {}
            }
        }
        let scores = r["scores"].as_array().unwrap();
        meta.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(scores.iter().map(|x| Value::F32(x.as_f64().unwrap() as f32)).collect()),
        ));
    }
    if let Some(f) = opts.rope_freqs {
        let t = Tensor::from_slice(&f, HEAD_DIM / 2, &Device::Cpu).unwrap();
        gguf_tensors.push((
            "rope_freqs.weight".into(),
            QTensor::quantize(&t, GgmlDType::F32).unwrap(),
        ));
    }
    let meta_refs: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = gguf_tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut cursor = std::io::Cursor::new(Vec::new());
    gguf_file::write(&mut cursor, &meta_refs, &tensor_refs).unwrap();
    Tiny {
        hf,
        bytes: cursor.into_inner(),
    }
}

/// Every tensor of a GGUF file's bytes, as `content` (read from them) describes it.
fn read_tensors(bytes: &[u8], content: &gguf_file::Content) -> Vec<(String, QTensor)> {
    let mut reader = std::io::Cursor::new(bytes);
    content
        .tensor_infos
        .iter()
        .map(|(k, info)| {
            let t = info
                .read(&mut reader, content.tensor_data_offset, &Device::Cpu)
                .unwrap();
            (k.clone(), t)
        })
        .collect()
}

fn write_tiny(dir: &Path, opts: TinyOpts) -> (PathBuf, Tiny) {
    let tiny = tiny_gguf(opts);
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, &tiny.bytes).unwrap();
    (path, tiny)
}

fn read_safetensors(dir: &Path) -> HashMap<String, (Vec<usize>, safetensors::Dtype, Vec<u8>)> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "safetensors") {
            let bytes = std::fs::read(&p).unwrap();
            let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            for (name, view) in st.tensors() {
                out.insert(name, (view.shape().to_vec(), view.dtype(), view.data().to_vec()));
            }
        }
    }
    out
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn f32_conversion_restores_hf_tensors_exactly_and_undoes_qk_permutation() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, tiny) = write_tiny(dir.path(), TinyOpts::default());
    let out = dir.path().join("hf");
    let report = convert(&gguf, &out, DType::F32).unwrap();
    assert!(report.tied_embeddings);
    let written = read_safetensors(&out);
    assert_eq!(
        written.len(),
        tiny.hf.len(),
        "tensor names: {:?}",
        written.keys().collect::<Vec<_>>()
    );
    for (name, (shape, values)) in &tiny.hf {
        let (wshape, dtype, data) = written.get(name).unwrap_or_else(|| panic!("{name} not written"));
        assert_eq!(wshape, shape, "{name}");
        assert_eq!(*dtype, safetensors::Dtype::F32);
        assert_eq!(&f32s(data), values, "{name} differs");
    }
    assert!(!written.contains_key("lm_head.weight"));
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions();
    assert_eq!(
        mode("model.safetensors"),
        mode("config.json"),
        "weights get the same mode as the other files"
    );
    assert_eq!(
        report.parameters,
        tiny.hf.values().map(|(_, v)| v.len() as u64).sum::<u64>()
    );
}

#[test]
fn quantized_q8_0_q4_1_q5_0_f16_tensors_dequantize_close_to_the_original() {
    for (quant, tol) in [
        (GgmlDType::Q8_0, 0.01),
        (GgmlDType::Q4_1, 0.1),
        (GgmlDType::Q5_0, 0.07),
        (GgmlDType::F16, 1e-3),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, tiny) = write_tiny(
            dir.path(),
            TinyOpts {
                quant,
                ..Default::default()
            },
        );
        let out = dir.path().join("hf");
        convert(&gguf, &out, DType::F32).unwrap();
        let written = read_safetensors(&out);
        let (_, _, data) = &written["model.layers.1.self_attn.k_proj.weight"];
        let want = &tiny.hf["model.layers.1.self_attn.k_proj.weight"].1;
        let got = f32s(data);
        let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < tol, "{quant:?}: max error {worst} (tolerance {tol})");
    }
}

#[test]
fn qwen2_and_qwen3_keep_qk_rows_and_map_biases_and_head_norms() {
    for (arch, class) in [("qwen2", "Qwen2ForCausalLM"), ("qwen3", "Qwen3ForCausalLM")] {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, tiny) = write_tiny(
            dir.path(),
            TinyOpts {
                arch,
                pre: "qwen2",
                ..Default::default()
            },
        );
        let out = dir.path().join("hf");
        let report = convert(&gguf, &out, DType::F32).unwrap();
        assert_eq!(report.hf_architecture, class);
        let written = read_safetensors(&out);
        assert_eq!(
            written.len(),
            tiny.hf.len(),
            "{arch}: {:?}",
            written.keys().collect::<Vec<_>>()
        );
        for (name, (shape, values)) in &tiny.hf {
            let (wshape, _, data) = written
                .get(name)
                .unwrap_or_else(|| panic!("{arch}: {name} not written"));
            assert_eq!(wshape, shape, "{arch}: {name}");
            assert_eq!(&f32s(data), values, "{arch}: {name} differs");
        }
        let c = read_json(&out.join("config.json"));
        assert_eq!(c["model_type"], arch);
        assert_eq!(c["attention_bias"], arch == "qwen2");
        // The qwen2 split regex keeps digits apart, so the "12" merge never applies.
        let tok = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
        assert_eq!(tok.encode("12", false).unwrap().get_ids().len(), 2);
    }
}

#[test]
fn bf16_and_f16_outputs_round_the_f32_values() {
    for (dtype, st) in [
        (DType::BF16, safetensors::Dtype::BF16),
        (DType::F16, safetensors::Dtype::F16),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (gguf, tiny) = write_tiny(
            dir.path(),
            TinyOpts {
                tied: false,
                ..Default::default()
            },
        );
        let out = dir.path().join("hf");
        let report = convert(&gguf, &out, dtype).unwrap();
        assert!(!report.tied_embeddings);
        let written = read_safetensors(&out);
        let (shape, got_dtype, data) = &written["lm_head.weight"];
        assert_eq!(*got_dtype, st);
        let want = &tiny.hf["lm_head.weight"];
        assert_eq!(shape, &want.0);
        let got: Vec<u16> = data.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect();
        let expected: Vec<u16> = match dtype {
            DType::BF16 => want.1.iter().map(|x| half::bf16::from_f32(*x).to_bits()).collect(),
            _ => want.1.iter().map(|x| half::f16::from_f32(*x).to_bits()).collect(),
        };
        assert_eq!(got, expected);
        let config = read_json(&out.join("config.json"));
        assert_eq!(config["torch_dtype"], dtype.torch_name());
        assert_eq!(config["tie_word_embeddings"], false);
    }
}

#[test]
fn config_json_has_the_fields_transformers_4_51_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, tiny) = write_tiny(dir.path(), TinyOpts::default());
    let out = dir.path().join("hf");
    convert(&gguf, &out, DType::BF16).unwrap();
    let c = read_json(&out.join("config.json"));
    assert_eq!(c["architectures"], serde_json::json!(["LlamaForCausalLM"]));
    assert_eq!(c["model_type"], "llama");
    assert_eq!(c["hidden_size"], HIDDEN);
    assert_eq!(c["intermediate_size"], FFN);
    assert_eq!(c["num_hidden_layers"], LAYERS);
    assert_eq!(c["num_attention_heads"], HEADS);
    assert_eq!(c["num_key_value_heads"], KV_HEADS);
    assert_eq!(c["head_dim"], HEAD_DIM);
    assert_eq!(c["max_position_embeddings"], 2048);
    assert_eq!(c["rope_theta"], 100000.0);
    assert_eq!(c["rms_norm_eps"], 1e-5, "f32 1e-5 must be written as 1e-5, not 9.99e-6");
    assert_eq!(c["tie_word_embeddings"], true);
    assert_eq!(c["torch_dtype"], "bfloat16");
    assert_eq!(c["bos_token_id"], 1);
    assert_eq!(c["eos_token_id"], 2);
    assert_eq!(c["vocab_size"], tiny.hf["model.embed_tokens.weight"].0[0]);
    assert!(c.get("rope_parameters").is_none());
    let g = read_json(&out.join("generation_config.json"));
    assert_eq!(g["eos_token_id"], 2);
    assert_eq!(g["bos_token_id"], 1);
}

#[test]
fn tokenizer_json_loads_and_encodes_with_merges_control_tokens_and_single_digits() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = write_tiny(dir.path(), TinyOpts::default());
    let out = dir.path().join("hf");
    convert(&gguf, &out, DType::BF16).unwrap();
    let (tokens, _, _) = vocab();
    let id = |t: &str| tokens.iter().position(|x| x == t).unwrap() as u32;
    let tok = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let enc = tok.encode("<|im_start|>hello world<|im_end|>", false).unwrap();
    assert_eq!(
        enc.get_ids(),
        &[
            id("<|im_start|>"),
            id("hello"),
            id(&byte_token(" w")),
            id("o"),
            id("r"),
            id("l"),
            id("d"),
            id("<|im_end|>")
        ]
    );
    // smollm splits every digit: the "12" merge must not apply.
    let enc = tok.encode("12", false).unwrap();
    assert_eq!(enc.get_ids(), &[id("1"), id("2")]);
    // User-defined tokens stay whole but are not special.
    let enc = tok.encode("<think>", false).unwrap();
    assert_eq!(enc.get_ids(), &[id("<think>")]);
    // Byte-level round trip of non-ASCII text; special tokens are skipped when asked.
    let text = "héllo 日本語 🙂";
    let enc = tok.encode(text, false).unwrap();
    assert_eq!(tok.decode(enc.get_ids(), true).unwrap(), text);
    assert_eq!(tok.decode(&[id("<|im_end|>"), id("hello")], true).unwrap(), "hello");

    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tc["bos_token"], "<|im_start|>");
    assert_eq!(tc["eos_token"], "<|im_end|>");
    assert_eq!(tc["unk_token"], "<|endoftext|>");
    assert_eq!(tc["pad_token"], "<|im_end|>");
    assert_eq!(tc["add_bos_token"], false);
    assert_eq!(tc["model_max_length"], 2048);
    assert!(tc["chat_template"].as_str().unwrap().contains("<|im_start|>"));
    assert_eq!(tc["added_tokens_decoder"]["2"]["special"], true);
    assert_eq!(tc["added_tokens_decoder"][id("<think>").to_string()]["special"], false);
}

/// A sentencepiece vocabulary (Llama 2, Mistral, CodeLlama GGUFs): merges rebuilt from the scores, `▁` spaces,
/// byte fallback, BOS; every text encodes and decodes exactly as transformers' GGUF loader does.
#[test]
fn sentencepiece_vocabularies_tokenize_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = write_tiny(
        dir.path(),
        TinyOpts {
            spm: true,
            ..TinyOpts::default()
        },
    );
    let out = dir.path().join("hf");
    convert(&gguf, &out, DType::BF16).unwrap();
    let tok = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let reference = spm_reference();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let enc = tok.encode(text, true).unwrap();
        assert_eq!(enc.get_ids(), want.as_slice(), "ids of {text:?}");
        assert_eq!(
            tok.decode(&want, false).unwrap(),
            case["decoded"].as_str().unwrap(),
            "decode of {text:?}"
        );
        assert_eq!(
            tok.decode(&want, true).unwrap(),
            case["decoded_skip_special"].as_str().unwrap(),
            "decode of {text:?} without special tokens"
        );
    }
    let tc = read_json(&out.join("tokenizer_config.json"));
    assert_eq!(tc["add_bos_token"], true);
    assert_eq!(tc["bos_token"], "<s>");
    assert_eq!(tc["tokenizer_class"], "LlamaTokenizer");
    assert!(tc.get("add_prefix_space").is_none());

    // Without merges the scores are required; another tokenizer model is named.
    let rewrite = |edit: &dyn Fn(&mut HashMap<String, Value>)| {
        let bytes = std::fs::read(&gguf).unwrap();
        let mut content = gguf_file::Content::read(&mut std::io::Cursor::new(&bytes)).unwrap();
        edit(&mut content.metadata);
        let tensors = read_tensors(&bytes, &content);
        let meta: Vec<(&str, &Value)> = content.metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        let path = dir.path().join("edited.gguf");
        gguf_file::write(&mut std::fs::File::create(&path).unwrap(), &meta, &t).unwrap();
        convert(&path, &dir.path().join("edited"), DType::BF16)
            .unwrap_err()
            .to_string()
    };
    let msg = rewrite(&|m| {
        m.remove("tokenizer.ggml.scores");
    });
    assert!(msg.contains("tokenizer.ggml.scores"), "{msg}");
    let msg = rewrite(&|m| {
        m.insert("tokenizer.ggml.model".into(), Value::String("bert".into()));
    });
    assert!(msg.contains("bert") && msg.contains("sentencepiece"), "{msg}");
}

#[test]
fn gpt2_pre_tokenizer_applies_digit_merges() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = write_tiny(
        dir.path(),
        TinyOpts {
            pre: "gpt-2",
            ..Default::default()
        },
    );
    let out = dir.path().join("hf");
    convert(&gguf, &out, DType::BF16).unwrap();
    let (tokens, _, _) = vocab();
    let tok = Tokenizer::from_file(out.join("tokenizer.json")).unwrap();
    let enc = tok.encode("12", false).unwrap();
    assert_eq!(enc.get_ids(), &[tokens.iter().position(|x| x == "12").unwrap() as u32]);
}

#[test]
fn sharding_writes_an_index_covering_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, tiny) = write_tiny(dir.path(), TinyOpts::default());
    let out = dir.path().join("hf");
    let opts = ConvertOptions {
        dtype: DType::F32,
        shard_bytes: 20_000,
        ..Default::default()
    };
    let report = convert_with(&gguf, &out, &opts, &mut |_| {}).unwrap();
    assert!(report.shards > 2, "{} shards", report.shards);
    assert!(!out.join("model.safetensors").exists());
    let index = read_json(&out.join("model.safetensors.index.json"));
    let map = index["weight_map"].as_object().unwrap();
    assert_eq!(map.len(), tiny.hf.len());
    let written = read_safetensors(&out);
    for (name, file) in map {
        let file = file.as_str().unwrap();
        assert!(out.join(file).exists(), "{file}");
        assert!(written.contains_key(name));
    }
    let total: u64 = written.values().map(|(_, _, d)| d.len() as u64).sum();
    assert_eq!(index["metadata"]["total_size"], total);
}

#[test]
fn existing_output_is_refused_unless_overwrite_and_nothing_half_written_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = write_tiny(dir.path(), TinyOpts::default());
    let out = dir.path().join("hf");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "x").unwrap();
    let err = convert(&gguf, &out, DType::BF16).unwrap_err();
    assert!(matches!(err, Error::OutputExists { .. }), "{err}");
    assert!(out.join("keep.txt").exists());
    let opts = ConvertOptions {
        overwrite: true,
        ..Default::default()
    };
    convert_with(&gguf, &out, &opts, &mut |_| {}).unwrap();
    assert!(!out.join("keep.txt").exists());
    assert!(out.join("model.safetensors").exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn progress_reports_every_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let (gguf, tiny) = write_tiny(dir.path(), TinyOpts::default());
    let mut seen = Vec::new();
    convert_with(&gguf, &dir.path().join("hf"), &ConvertOptions::default(), &mut |p| {
        seen.push(p)
    })
    .unwrap();
    let tensors = seen.iter().filter(|p| matches!(p, Progress::Tensor { .. })).count();
    assert_eq!(tensors, tiny.hf.len());
    assert!(matches!(seen[0], Progress::Started { tensors, .. } if tensors == tiny.hf.len()));
}

/// Converting must fail without panicking, and leave neither the output nor a temporary directory behind.
fn assert_clean_failure(dir: &Path, bytes: &[u8]) -> Option<Error> {
    let path = dir.join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    let out = dir.join("out");
    let result = convert(&path, &out, DType::BF16);
    match result {
        Ok(_) => {
            std::fs::remove_dir_all(&out).unwrap();
            None
        }
        Err(e) => {
            assert!(!out.exists(), "failed conversion left {}", out.display());
            let names: Vec<_> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names.len(), 1, "leftovers: {names:?}");
            Some(e)
        }
    }
}

#[test]
fn truncated_files_fail_with_an_error_at_every_length() {
    let tiny = tiny_gguf(TinyOpts::default());
    let dir = tempfile::tempdir().unwrap();
    let len = tiny.bytes.len();
    let mut cut = 0;
    while cut < len {
        let err = assert_clean_failure(dir.path(), &tiny.bytes[..cut]);
        let err = err.unwrap_or_else(|| panic!("a file cut at {cut} of {len} bytes converted"));
        let msg = err.to_string();
        assert!(
            !msg.is_empty() && !msg.contains('\n'),
            "one-line message without backtrace: {msg}"
        );
        cut += if cut < 4096 { 7 } else { 331 };
    }
    // Cutting inside the tensor data names the tensor.
    let err = assert_clean_failure(dir.path(), &tiny.bytes[..len - 100]).unwrap();
    assert!(
        matches!(&err, Error::Tensor { tensor, .. } if tensor == "output_norm.weight"),
        "{err}"
    );
    assert!(err.to_string().contains("past the end of the file"), "{err}");
}

#[test]
fn errors_name_the_missing_key_or_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    let write = |meta: Vec<(&str, Value)>, tensors: Vec<(&str, QTensor)>| {
        let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (*k, v)).collect();
        let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
        let mut f = std::fs::File::create(&path).unwrap();
        gguf_file::write(&mut f, &m, &t).unwrap();
    };
    write(vec![("general.architecture", Value::String("gptneox".into()))], vec![]);
    let err = convert(&path, &dir.path().join("o"), DType::BF16).unwrap_err();
    assert!(err.to_string().contains("gptneox"), "{err}");
    write(vec![("general.architecture", Value::String("llama".into()))], vec![]);
    let err = convert(&path, &dir.path().join("o"), DType::BF16).unwrap_err();
    assert!(
        matches!(&err, Error::MissingKey { key, .. } if key == "llama.embedding_length"),
        "{err}"
    );

    // A tensor with the wrong shape.
    let tiny = tiny_gguf(TinyOpts::default());
    let mut content = gguf_file::Content::read(&mut std::io::Cursor::new(&tiny.bytes)).unwrap();
    content.tensor_infos.get_mut("blk.1.ffn_up.weight").unwrap().shape = candle_core::Shape::from((HIDDEN, FFN));
    let meta: Vec<(String, Value)> = content.metadata.clone().into_iter().collect();
    let meta: Vec<(&str, Value)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let tensors = read_tensors(&tiny.bytes, &content);
    write(
        meta,
        tensors
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    QTensor::quantize(&v.dequantize(&Device::Cpu).unwrap(), GgmlDType::F32).unwrap(),
                )
            })
            .collect(),
    );
    let err = convert(&path, &dir.path().join("o"), DType::BF16).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("blk.1.ffn_up.weight") && msg.contains(&format!("[{FFN}, {HIDDEN}]")),
        "{msg}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random byte mutations (header, metadata, tensor table or data) never panic: conversion succeeds or fails
    /// cleanly.
    #[test]
    fn mutated_files_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let tiny = tiny_gguf(TinyOpts::default());
        let mut bytes = tiny.bytes.clone();
        // Bias mutations towards the header, where the structure is.
        let header = bytes.len().min(40_000);
        for (i, b) in edits {
            let at = i.index(header);
            bytes[at] = b;
        }
        let dir = tempfile::tempdir().unwrap();
        let _ = assert_clean_failure(dir.path(), &bytes);
    }

    /// Random bytes are rejected.
    #[test]
    fn random_bytes_are_rejected(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let dir = tempfile::tempdir().unwrap();
        prop_assert!(assert_clean_failure(dir.path(), &bytes).is_some());
    }
}

#[test]
fn llama3_frequency_factors_become_config_rope_scaling_and_others_are_refused() {
    // The tiny model's heads (8 dimensions, rope base 100000) against Llama 3.1's scaling (original context 8192):
    // wavelengths 6.3, 112 and 1987 are below 8192 / 4 (factor 1), 35330 is above 8192 (the full factor).
    let dir = tempfile::tempdir().unwrap();
    let (gguf, _) = write_tiny(
        dir.path(),
        TinyOpts {
            rope_freqs: Some([1.0, 1.0, 1.0, 8.0]),
            ..TinyOpts::default()
        },
    );
    let out = dir.path().join("hf");
    let report = convert(&gguf, &out, DType::F32).unwrap();
    let cfg = read_json(&out.join("config.json"));
    assert_eq!(
        cfg["rope_scaling"],
        serde_json::json!({"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
        "{cfg}"
    );
    assert!(
        !read_safetensors(&out).keys().any(|k| k.contains("rope")),
        "the factors are not a model tensor"
    );
    assert!(
        report.skipped.iter().any(|(n, _)| n == "rope_freqs.weight"),
        "{:?}",
        report.skipped
    );

    // Factors no llama3 rope_scaling gives: refused, naming the tensor and the first factor that disagrees.
    let (gguf, _) = write_tiny(
        dir.path(),
        TinyOpts {
            rope_freqs: Some([1.0, 2.0, 1.0, 8.0]),
            ..TinyOpts::default()
        },
    );
    let out = dir.path().join("hf2");
    let e = convert(&gguf, &out, DType::F32).unwrap_err().to_string();
    assert!(e.contains("rope_freqs.weight") && e.contains("factor 1 is 2"), "{e}");
    assert!(!out.exists(), "nothing is written for a refused file");
}

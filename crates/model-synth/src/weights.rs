//! Seeded random weights with the family's Hugging Face tensor names, written as safetensors (one file or two shards).

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use safetensors::{Dtype, tensor::TensorView};
use serde_json::json;

use crate::{DType, Family, ModelSpec, TinyOptions};

/// One generated tensor: name, shape and f32 values (converted to the requested dtype when written).
struct Tensor {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
    /// Bytes written as they are, whatever the dtype asked for (MXFP4 blocks and scales, U8).
    raw: Option<Vec<u8>>,
    /// Which shard (0 or 1) it goes to when sharded.
    shard: usize,
}

/// Values per MXFP4 block.
const MXFP4_BLOCK: usize = 32;

/// The e2m1 values by nibble (bit 3 the sign).
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Seeded MXFP4 experts: `experts` matrices of `rows × cols` (output × input) as blocks (`cols / 2` bytes a row,
/// the low nibble the even value) and e8m0 scales (2^-5 to 2^-3, so values stay within ±0.75), and the same values
/// dequantised, `[experts, rows, cols]`.
fn mxfp4_experts(rng: &mut StdRng, experts: usize, rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>, Vec<f32>) {
    let blocks: Vec<u8> = (0..experts * rows * cols / 2).map(|_| rng.random()).collect();
    let scales: Vec<u8> = (0..experts * rows * cols / MXFP4_BLOCK)
        .map(|_| rng.random_range(122u8..=124))
        .collect();
    let mut values = Vec::with_capacity(experts * rows * cols);
    for (i, &byte) in blocks.iter().enumerate() {
        let scale = 2f32.powi(i32::from(scales[i * 2 / MXFP4_BLOCK]) - 127);
        values.push(E2M1[usize::from(byte & 15)] * scale);
        values.push(E2M1[usize::from(byte >> 4)] * scale);
    }
    (blocks, scales, values)
}

/// `[experts, rows, cols]` as `[experts, cols, rows]` (how transformers holds GPT-OSS's dense experts: input × output).
fn transpose_experts(values: &[f32], experts: usize, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; values.len()];
    for e in 0..experts {
        for r in 0..rows {
            for c in 0..cols {
                out[(e * cols + c) * rows + r] = values[(e * rows + r) * cols + c];
            }
        }
    }
    out
}

fn tensors(spec: &ModelSpec, seed: u64, mxfp4: bool) -> Vec<Tensor> {
    let mut rng = StdRng::seed_from_u64(seed);
    // GPT-OSS's experts come from a generator of their own, so that the other tensors are the same with them or
    // without them.
    let mut expert_rng = StdRng::seed_from_u64(seed ^ 0x006d_7866_7034);
    let mut out = Vec::new();
    let mut experts_out = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, kind: Init, shard: usize| {
        let n: usize = shape.iter().product();
        let values = (0..n)
            .map(|_| {
                let u: f32 = rng.random_range(-1.0f32..1.0);
                match kind {
                    Init::Embed => 0.5 * u,
                    Init::Matrix => 0.35 * u,
                    Init::Bias => 0.05 * u,
                    Init::Norm => 1.0 + 0.1 * u,
                    Init::Sink => u,
                }
            })
            .collect();
        out.push(Tensor {
            name,
            shape,
            values,
            raw: None,
            shard,
        });
    };
    let (h, hd, i) = (spec.hidden, spec.head_dim, spec.inter);
    let (q, kv) = (spec.heads * hd, spec.kv_heads * hd);
    add("model.embed_tokens.weight".into(), vec![spec.vocab, h], Init::Embed, 0);
    for l in 0..spec.layers {
        let shard = usize::from(l > 0);
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![h], Init::Norm, shard);
        add(format!("{p}.self_attn.q_proj.weight"), vec![q, h], Init::Matrix, shard);
        add(format!("{p}.self_attn.k_proj.weight"), vec![kv, h], Init::Matrix, shard);
        add(format!("{p}.self_attn.v_proj.weight"), vec![kv, h], Init::Matrix, shard);
        add(format!("{p}.self_attn.o_proj.weight"), vec![h, q], Init::Matrix, shard);
        if matches!(spec.family, Family::Qwen2 | Family::GptOss) {
            add(format!("{p}.self_attn.q_proj.bias"), vec![q], Init::Bias, shard);
            add(format!("{p}.self_attn.k_proj.bias"), vec![kv], Init::Bias, shard);
            add(format!("{p}.self_attn.v_proj.bias"), vec![kv], Init::Bias, shard);
        }
        if spec.family == Family::GptOss {
            add(format!("{p}.self_attn.o_proj.bias"), vec![h], Init::Bias, shard);
            add(format!("{p}.self_attn.sinks"), vec![spec.heads], Init::Sink, shard);
        }
        if matches!(spec.family, Family::Qwen3 | Family::Qwen3Moe) {
            add(format!("{p}.self_attn.q_norm.weight"), vec![hd], Init::Norm, shard);
            add(format!("{p}.self_attn.k_norm.weight"), vec![hd], Init::Norm, shard);
        }
        add(
            format!("{p}.post_attention_layernorm.weight"),
            vec![h],
            Init::Norm,
            shard,
        );
        let (n, mi) = (spec.experts, spec.moe_inter);
        if spec.family == Family::GptOss {
            let m = format!("{p}.mlp");
            add(format!("{m}.router.weight"), vec![n, h], Init::Embed, shard);
            add(format!("{m}.router.bias"), vec![n], Init::Bias, shard);
            add(
                format!("{m}.experts.gate_up_proj_bias"),
                vec![n, 2 * mi],
                Init::Bias,
                shard,
            );
            add(format!("{m}.experts.down_proj_bias"), vec![n, h], Init::Bias, shard);
            // (name, rows, cols): gate and up rows interleaved, as GPT-OSS's checkpoints hold them.
            for (name, rows, cols) in [("gate_up_proj", 2 * mi, h), ("down_proj", h, mi)] {
                let (blocks, scales, values) = mxfp4_experts(&mut expert_rng, n, rows, cols);
                let x = format!("{m}.experts.{name}");
                if mxfp4 {
                    let per_row = cols / MXFP4_BLOCK;
                    for (suffix, shape, bytes) in [
                        ("blocks", vec![n, rows, per_row, 16], blocks),
                        ("scales", vec![n, rows, per_row], scales),
                    ] {
                        experts_out.push(Tensor {
                            name: format!("{x}_{suffix}"),
                            shape,
                            values: Vec::new(),
                            raw: Some(bytes),
                            shard,
                        });
                    }
                } else {
                    experts_out.push(Tensor {
                        name: x,
                        shape: vec![n, cols, rows],
                        values: transpose_experts(&values, n, rows, cols),
                        raw: None,
                        shard,
                    });
                }
            }
        } else if spec.moe_layers.get(l).copied().unwrap_or(false) && spec.family == Family::Qwen3Moe {
            add(format!("{p}.mlp.gate.weight"), vec![n, h], Init::Embed, shard);
            for e in 0..n {
                let x = format!("{p}.mlp.experts.{e}");
                add(format!("{x}.gate_proj.weight"), vec![mi, h], Init::Matrix, shard);
                add(format!("{x}.up_proj.weight"), vec![mi, h], Init::Matrix, shard);
                add(format!("{x}.down_proj.weight"), vec![h, mi], Init::Matrix, shard);
            }
        } else if spec.family == Family::Mixtral {
            let m = format!("{p}.block_sparse_moe");
            add(format!("{m}.gate.weight"), vec![spec.experts, h], Init::Embed, shard);
            for e in 0..spec.experts {
                add(format!("{m}.experts.{e}.w1.weight"), vec![i, h], Init::Matrix, shard);
                add(format!("{m}.experts.{e}.w2.weight"), vec![h, i], Init::Matrix, shard);
                add(format!("{m}.experts.{e}.w3.weight"), vec![i, h], Init::Matrix, shard);
            }
        } else {
            add(format!("{p}.mlp.gate_proj.weight"), vec![i, h], Init::Matrix, shard);
            add(format!("{p}.mlp.up_proj.weight"), vec![i, h], Init::Matrix, shard);
            add(format!("{p}.mlp.down_proj.weight"), vec![h, i], Init::Matrix, shard);
        }
    }
    add("model.norm.weight".into(), vec![h], Init::Norm, 1);
    if !spec.tied {
        add("lm_head.weight".into(), vec![spec.vocab, h], Init::Matrix, 1);
    }
    out.extend(experts_out);
    out
}

#[derive(Clone, Copy)]
enum Init {
    Embed,
    Matrix,
    Bias,
    Norm,
    /// GPT-OSS's attention sinks: logits of the order of the scores'.
    Sink,
}

fn encode(values: &[f32], dtype: DType) -> (Dtype, Vec<u8>) {
    match dtype {
        DType::F32 => (Dtype::F32, values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        DType::F16 => (
            Dtype::F16,
            values
                .iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        ),
        DType::BF16 => (
            Dtype::BF16,
            values
                .iter()
                .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
                .collect(),
        ),
    }
}

fn write_file(path: &Path, tensors: &[(&Tensor, Dtype, Vec<u8>)]) -> io::Result<()> {
    let views = tensors
        .iter()
        .map(|(t, dt, bytes)| {
            TensorView::new(*dt, t.shape.clone(), bytes)
                .map(|v| (t.name.clone(), v))
                .map_err(io::Error::other)
        })
        .collect::<io::Result<Vec<_>>>()?;
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(meta), path).map_err(io::Error::other)
}

/// Writes the weights; the output-embedding rows of the `silent` token ids are zero (see [`TinyOptions::endless`]).
pub(crate) fn write(dir: &Path, spec: &ModelSpec, opts: &TinyOptions, silent: &[u32]) -> io::Result<()> {
    let mut all = tensors(spec, opts.seed, opts.mxfp4);
    let output = if spec.tied {
        "model.embed_tokens.weight"
    } else {
        "lm_head.weight"
    };
    if let Some(t) = all.iter_mut().find(|t| t.name == output) {
        for &id in silent {
            let row = id as usize * spec.hidden;
            t.values[row..row + spec.hidden].fill(0.0);
        }
    }
    let encoded: Vec<(&Tensor, Dtype, Vec<u8>)> = all
        .iter()
        .map(|t| {
            let (dt, bytes) = match &t.raw {
                Some(raw) => (Dtype::U8, raw.clone()),
                None => encode(&t.values, opts.dtype),
            };
            (t, dt, bytes)
        })
        .collect();
    if !opts.sharded {
        return write_file(&dir.join("model.safetensors"), &encoded);
    }
    let names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"];
    let mut weight_map = BTreeMap::new();
    let mut total = 0usize;
    for (shard, name) in names.iter().enumerate() {
        let part: Vec<_> = encoded
            .iter()
            .filter(|(t, _, _)| t.shard == shard)
            .map(|(t, dt, b)| (*t, *dt, b.clone()))
            .collect();
        for (t, _, b) in &part {
            weight_map.insert(t.name.clone(), json!(name));
            total += b.len();
        }
        write_file(&dir.join(name), &part)?;
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    crate::write_json(&dir.join("model.safetensors.index.json"), &index)
}

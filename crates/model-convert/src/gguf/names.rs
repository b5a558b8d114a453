//! GGUF tensor names → Hugging Face names, with the shape each must have.

use std::collections::{HashMap, HashSet};

use candle_core::quantized::gguf_file::TensorInfo;

use super::config::{Arch, Hparams};
use crate::Error;

/// One tensor to write: where it comes from, where it goes, its Hugging Face shape.
#[derive(Debug, Clone)]
pub(crate) struct Planned {
    pub(crate) gguf: String,
    pub(crate) hf: String,
    pub(crate) shape: Vec<usize>,
    /// `Some(heads)` when llama.cpp permuted the rows of this tensor in groups of `heads` (Q and K).
    pub(crate) unpermute_heads: Option<usize>,
}

/// The full plan: tensors in Hugging Face order, tied embeddings, tensors skipped on purpose.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) tensors: Vec<Planned>,
    pub(crate) tied: bool,
    pub(crate) vocab_rows: usize,
    pub(crate) skipped: Vec<(String, String)>,
}

/// What a per-layer tensor is, which fixes its expected shape.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Norm,
    Q,
    K,
    V,
    O,
    QBias,
    KBias,
    VBias,
    HeadNorm,
    GateUp,
    Down,
}

/// Per-layer tensors: GGUF suffix (after `blk.N.`), Hugging Face suffix (after `model.layers.N.`), kind.
const LAYER_TENSORS: [(&str, &str, Kind); 14] = [
    ("attn_norm.weight", "input_layernorm.weight", Kind::Norm),
    ("attn_q.weight", "self_attn.q_proj.weight", Kind::Q),
    ("attn_k.weight", "self_attn.k_proj.weight", Kind::K),
    ("attn_v.weight", "self_attn.v_proj.weight", Kind::V),
    ("attn_output.weight", "self_attn.o_proj.weight", Kind::O),
    ("attn_q.bias", "self_attn.q_proj.bias", Kind::QBias),
    ("attn_k.bias", "self_attn.k_proj.bias", Kind::KBias),
    ("attn_v.bias", "self_attn.v_proj.bias", Kind::VBias),
    ("attn_q_norm.weight", "self_attn.q_norm.weight", Kind::HeadNorm),
    ("attn_k_norm.weight", "self_attn.k_norm.weight", Kind::HeadNorm),
    ("ffn_norm.weight", "post_attention_layernorm.weight", Kind::Norm),
    ("ffn_gate.weight", "mlp.gate_proj.weight", Kind::GateUp),
    ("ffn_up.weight", "mlp.up_proj.weight", Kind::GateUp),
    ("ffn_down.weight", "mlp.down_proj.weight", Kind::Down),
];

struct Expect<'a> {
    gguf: &'a str,
    hf: &'a str,
    shape: Vec<usize>,
    permute: Option<usize>,
    required: bool,
}

/// Builds the plan from the hyperparameters and the GGUF tensor table; errors name the tensor and what was expected.
pub(crate) fn plan(h: &Hparams, infos: &HashMap<String, TensorInfo>) -> Result<Plan, Error> {
    let embd = infos.get("token_embd.weight").ok_or_else(|| {
        Error::tensor(
            "token_embd.weight",
            "missing (expected the token embedding matrix [vocab, hidden])",
        )
    })?;
    let vocab_rows = match embd.shape.dims() {
        [v, hsz] if *hsz == h.hidden_size && *v > 0 => *v,
        dims => {
            return Err(Error::tensor(
                "token_embd.weight",
                format!("has shape {dims:?} (expected [vocab, {}])", h.hidden_size),
            ));
        }
    };
    let (hs, nh, nkv, hd, ff) = (
        h.hidden_size,
        h.num_heads,
        h.num_kv_heads,
        h.head_dim,
        h.intermediate_size,
    );
    let permute = h.arch.qk_permuted();
    let tied = !infos.contains_key("output.weight");

    let mut expects = vec![Expect {
        gguf: "token_embd.weight",
        hf: "model.embed_tokens.weight",
        shape: vec![vocab_rows, hs],
        permute: None,
        required: true,
    }];
    let layer_names: Vec<(String, String, Kind)> = (0..h.num_layers)
        .flat_map(|n| {
            LAYER_TENSORS
                .iter()
                .map(move |(g, f, kind)| (format!("blk.{n}.{g}"), format!("model.layers.{n}.{f}"), *kind))
        })
        .collect();
    for (g, f, kind) in &layer_names {
        let (shape, perm, required) = match kind {
            Kind::Norm => (vec![hs], None, true),
            Kind::Q => (vec![nh * hd, hs], permute.then_some(nh), true),
            Kind::K => (vec![nkv * hd, hs], permute.then_some(nkv), true),
            Kind::V => (vec![nkv * hd, hs], None, true),
            Kind::O => (vec![hs, nh * hd], None, true),
            Kind::QBias => (vec![nh * hd], permute.then_some(nh), h.arch == Arch::Qwen2),
            Kind::KBias => (vec![nkv * hd], permute.then_some(nkv), h.arch == Arch::Qwen2),
            Kind::VBias => (vec![nkv * hd], None, h.arch == Arch::Qwen2),
            Kind::HeadNorm => (vec![hd], None, h.arch == Arch::Qwen3),
            Kind::GateUp => (vec![ff, hs], None, true),
            Kind::Down => (vec![hs, ff], None, true),
        };
        expects.push(Expect {
            gguf: g,
            hf: f,
            shape,
            permute: perm,
            required,
        });
    }
    expects.push(Expect {
        gguf: "output_norm.weight",
        hf: "model.norm.weight",
        shape: vec![hs],
        permute: None,
        required: true,
    });
    expects.push(Expect {
        gguf: "output.weight",
        hf: "lm_head.weight",
        shape: vec![vocab_rows, hs],
        permute: None,
        required: false,
    });

    let mut used = HashSet::new();
    let mut tensors = Vec::new();
    for e in expects {
        let Some(info) = infos.get(e.gguf) else {
            if e.required {
                return Err(Error::tensor(e.gguf, format!("missing (expected shape {:?})", e.shape)));
            }
            continue;
        };
        used.insert(e.gguf);
        let dims = info.shape.dims();
        if dims != e.shape.as_slice() {
            return Err(Error::tensor(
                e.gguf,
                format!("has shape {dims:?} (expected {:?})", e.shape),
            ));
        }
        // Planned shapes are 1-D or 2-D, never empty, so `shape[0]` exists.
        if let Some(heads) = e.permute
            && e.shape[0] % (2 * heads) != 0
        {
            return Err(Error::tensor(
                e.gguf,
                format!(
                    "has {} rows, not a multiple of 2 × {heads} heads (needed to undo the Q/K permutation)",
                    e.shape[0]
                ),
            ));
        }
        tensors.push(Planned {
            gguf: e.gguf.to_owned(),
            hf: e.hf.to_owned(),
            shape: e.shape,
            unpermute_heads: e.permute,
        });
    }

    let mut skipped = Vec::new();
    let mut unknown: Vec<&String> = infos.keys().filter(|k| !used.contains(k.as_str())).collect();
    unknown.sort();
    for name in unknown {
        if name == "rope_freqs.weight" {
            // Llama 3.1 GGUFs store the llama3 rope scaling as precomputed frequency factors; transformers derives
            // them from `rope_scaling` in config.json instead, which `convert_with` writes from these factors.
            skipped.push((
                name.clone(),
                "rope frequency factors, written as config.json's llama3 rope_scaling".into(),
            ));
            continue;
        }
        return Err(Error::tensor(
            name,
            format!(
                "is not a tensor of a {} model with {} layers (expected token_embd, blk.N.*, output_norm, output)",
                h.gguf_arch, h.num_layers
            ),
        ));
    }
    Ok(Plan {
        tensors,
        tied,
        vocab_rows,
        skipped,
    })
}

//! Hyperparameters from GGUF metadata, and the `config.json` / `generation_config.json` transformers 4.51 reads.

use serde_json::{Map, Value as Json, json};

use super::meta::Meta;
use crate::{DType, Error};

/// The GGUF architectures this converter maps, with what differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arch {
    /// `llama` (Llama 1/2/3, SmolLM2, Mistral 7B as llama.cpp writes it): Q/K rows permuted by llama.cpp.
    Llama,
    /// `qwen2`: Q/K/V biases, no permutation.
    Qwen2,
    /// `qwen3`: per-head Q/K RMS norms, no biases, no permutation.
    Qwen3,
}

/// The GGUF architectures [`convert`](super::convert) maps.
pub const SUPPORTED_ARCHS: &str = "llama, qwen2, qwen3";

impl Arch {
    pub(crate) fn from_gguf(name: &str) -> Result<Arch, Error> {
        match name {
            "llama" => Ok(Arch::Llama),
            "qwen2" => Ok(Arch::Qwen2),
            "qwen3" => Ok(Arch::Qwen3),
            _ => Err(Error::UnsupportedArchitecture {
                architecture: name.to_owned(),
                supported: SUPPORTED_ARCHS,
            }),
        }
    }

    pub(crate) fn hf_architecture(self) -> &'static str {
        match self {
            Arch::Llama => "LlamaForCausalLM",
            Arch::Qwen2 => "Qwen2ForCausalLM",
            Arch::Qwen3 => "Qwen3ForCausalLM",
        }
    }

    fn model_type(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }

    /// Whether llama.cpp's `convert_hf_to_gguf.py` permuted the Q and K rows (its `LlamaModel.permute`).
    pub(crate) fn qk_permuted(self) -> bool {
        matches!(self, Arch::Llama)
    }
}

/// The model hyperparameters the conversion needs (and writes to `config.json`).
#[derive(Debug, Clone)]
pub(crate) struct Hparams {
    pub(crate) arch: Arch,
    pub(crate) gguf_arch: String,
    pub(crate) context_length: usize,
    pub(crate) hidden_size: usize,
    pub(crate) intermediate_size: usize,
    pub(crate) num_layers: usize,
    pub(crate) num_heads: usize,
    pub(crate) num_kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) rope_theta: f64,
    pub(crate) rms_norm_eps: f64,
    pub(crate) rope_scaling: Option<Json>,
}

impl Hparams {
    pub(crate) fn read(meta: &Meta<'_>) -> Result<Hparams, Error> {
        let gguf_arch = meta.str("general.architecture")?.to_owned();
        let arch = Arch::from_gguf(&gguf_arch)?;
        let k = |suffix: &str| format!("{gguf_arch}.{suffix}");
        let hidden_size = meta.count(&k("embedding_length"))?;
        let num_heads = meta.count(&k("attention.head_count"))?;
        let num_kv_heads = meta.count_opt(&k("attention.head_count_kv"))?.unwrap_or(num_heads);
        if num_heads % num_kv_heads != 0 {
            return Err(Error::BadKey {
                key: k("attention.head_count_kv"),
                expected: "a divisor of attention.head_count",
                found: format!("{num_kv_heads} with {num_heads} attention heads"),
            });
        }
        let head_dim = match meta.count_opt(&k("attention.key_length"))? {
            Some(d) => d,
            None => {
                if hidden_size % num_heads != 0 {
                    return Err(Error::BadKey {
                        key: k("embedding_length"),
                        expected: "a multiple of attention.head_count (or attention.key_length set)",
                        found: format!("{hidden_size} with {num_heads} heads"),
                    });
                }
                hidden_size / num_heads
            }
        };
        let rope_theta = meta.f64_opt(&k("rope.freq_base"))?.unwrap_or(10_000.0);
        let rms_norm_eps = meta.f64_opt(&k("attention.layer_norm_rms_epsilon"))?.unwrap_or(1e-6);
        let rope_scaling = rope_scaling(meta, &gguf_arch)?;
        Ok(Hparams {
            arch,
            context_length: meta.count(&k("context_length"))?,
            hidden_size,
            intermediate_size: meta.count(&k("feed_forward_length"))?,
            num_layers: meta.count(&k("block_count"))?,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_theta,
            rms_norm_eps,
            rope_scaling,
            gguf_arch,
        })
    }
}

fn rope_scaling(meta: &Meta<'_>, arch: &str) -> Result<Option<Json>, Error> {
    let type_key = format!("{arch}.rope.scaling.type");
    let Some(kind) = meta.str_opt(&type_key)? else {
        return Ok(None);
    };
    let factor = meta.f64_opt(&format!("{arch}.rope.scaling.factor"))?;
    let original = meta.u64_opt(&format!("{arch}.rope.scaling.original_context_length"))?;
    match kind {
        "none" => Ok(None),
        "linear" | "yarn" => {
            let factor = factor.ok_or_else(|| Error::MissingKey {
                key: format!("{arch}.rope.scaling.factor"),
                expected: "the rope scaling factor (a number)",
            })?;
            let mut m = Map::new();
            m.insert("rope_type".into(), json!(kind));
            m.insert("factor".into(), json!(factor));
            if let Some(o) = original {
                m.insert("original_max_position_embeddings".into(), json!(o));
            }
            Ok(Some(Json::Object(m)))
        }
        other => Err(Error::BadKey {
            key: type_key,
            expected: "none, linear or yarn",
            found: format!("the string {other:?}"),
        }),
    }
}

/// Token ids `config.json` and `generation_config.json` carry.
#[derive(Debug, Clone, Default)]
pub(crate) struct SpecialIds {
    pub(crate) bos: Option<u32>,
    pub(crate) eos: Option<u32>,
    pub(crate) pad: Option<u32>,
    /// EOS first, then end-of-turn / end-of-message ids, without duplicates.
    pub(crate) stop: Vec<u32>,
}

fn one_or_many(ids: &[u32]) -> Json {
    match ids {
        [one] => json!(one),
        many => json!(many),
    }
}

/// `config.json` in the shape transformers 4.51 reads (top-level `rope_theta`, `torch_dtype`).
pub(crate) fn config_json(h: &Hparams, vocab_size: usize, tied: bool, ids: &SpecialIds, dtype: DType) -> Json {
    let mut c = Map::new();
    c.insert("architectures".into(), json!([h.arch.hf_architecture()]));
    c.insert("model_type".into(), json!(h.arch.model_type()));
    c.insert("attention_bias".into(), json!(h.arch == Arch::Qwen2));
    c.insert("attention_dropout".into(), json!(0.0));
    c.insert("bos_token_id".into(), json!(ids.bos));
    c.insert("eos_token_id".into(), json!(ids.eos));
    if let Some(pad) = ids.pad {
        c.insert("pad_token_id".into(), json!(pad));
    }
    c.insert("head_dim".into(), json!(h.head_dim));
    c.insert("hidden_act".into(), json!("silu"));
    c.insert("hidden_size".into(), json!(h.hidden_size));
    c.insert("initializer_range".into(), json!(0.02));
    c.insert("intermediate_size".into(), json!(h.intermediate_size));
    c.insert("max_position_embeddings".into(), json!(h.context_length));
    if h.arch == Arch::Llama {
        c.insert("mlp_bias".into(), json!(false));
        c.insert("pretraining_tp".into(), json!(1));
    } else {
        c.insert("max_window_layers".into(), json!(h.num_layers));
        c.insert("sliding_window".into(), json!(h.context_length));
        c.insert("use_sliding_window".into(), json!(false));
    }
    c.insert("num_attention_heads".into(), json!(h.num_heads));
    c.insert("num_hidden_layers".into(), json!(h.num_layers));
    c.insert("num_key_value_heads".into(), json!(h.num_kv_heads));
    c.insert("rms_norm_eps".into(), json!(h.rms_norm_eps));
    c.insert("rope_scaling".into(), h.rope_scaling.clone().unwrap_or(Json::Null));
    c.insert("rope_theta".into(), json!(h.rope_theta));
    c.insert("tie_word_embeddings".into(), json!(tied));
    c.insert("torch_dtype".into(), json!(dtype.torch_name()));
    c.insert("use_cache".into(), json!(true));
    c.insert("vocab_size".into(), json!(vocab_size));
    Json::Object(c)
}

/// `generation_config.json`: BOS, EOS ids (every stop id), pad.
pub(crate) fn generation_config_json(ids: &SpecialIds) -> Json {
    let mut c = Map::new();
    if let Some(bos) = ids.bos {
        c.insert("bos_token_id".into(), json!(bos));
    }
    if !ids.stop.is_empty() {
        c.insert("eos_token_id".into(), one_or_many(&ids.stop));
    }
    if let Some(pad) = ids.pad {
        c.insert("pad_token_id".into(), json!(pad));
    }
    Json::Object(c)
}

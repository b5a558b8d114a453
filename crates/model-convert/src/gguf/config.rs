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

/// Llama 3's rope scaling, as transformers computes its frequencies from `config.json`: the inverse frequency of
/// each pair of dimensions divided by the factor that llama.cpp stores per pair in `rope_freqs.weight`.
fn llama3_factors(theta: f64, head_dim: usize, factor: f64, low: f64, high: f64, original: f64) -> Vec<f64> {
    let (low_wavelen, high_wavelen) = (original / low, original / high);
    (0..head_dim / 2)
        .map(|i| {
            let inv_freq = theta.powf(-((2 * i) as f64) / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / inv_freq;
            if wavelen < high_wavelen {
                1.0
            } else if wavelen > low_wavelen {
                factor
            } else {
                let smooth = (original / wavelen - low) / (high - low);
                1.0 / ((1.0 - smooth) / factor + smooth)
            }
        })
        .collect()
}

/// The `rope_scaling` of `config.json` that gives the per-pair frequency factors a Llama 3.1+ GGUF stores in
/// `rope_freqs.weight` (the GGUF keeps no rope-scaling keys for them). The factor is the largest one stored; the
/// other parameters are Llama 3.1's (low 1, high 4, original context 8192, or the GGUF's
/// `rope.scaling.original_context_length`), and every stored factor must agree with them: factors that do not are
/// refused rather than converted into a model that runs differently.
pub(crate) fn llama3_rope_scaling(h: &Hparams, factors: &[f32], original: Option<u64>) -> Result<Json, Error> {
    let bad = |why: String| Error::tensor("rope_freqs.weight", why);
    if factors.len() != h.head_dim / 2 {
        return Err(bad(format!(
            "has {} factors, expected one per pair of the {} dimensions of a head",
            factors.len(),
            h.head_dim
        )));
    }
    let factor = factors.iter().copied().fold(f32::MIN, f32::max) as f64;
    let original = original.unwrap_or(8192) as f64;
    let (low, high) = (1.0, 4.0);
    let want = llama3_factors(h.rope_theta, h.head_dim, factor, low, high, original);
    if let Some((i, (got, want))) = factors
        .iter()
        .zip(&want)
        .enumerate()
        .find(|(_, (g, w))| (f64::from(**g) - **w).abs() > 1e-3 * w.abs())
    {
        return Err(bad(format!(
            "factor {i} is {got}, but Llama 3 rope scaling (factor {factor}, low_freq_factor {low}, \
             high_freq_factor {high}, original_max_position_embeddings {original}) gives {want:.6}: expected \
             llama3 frequency factors, which is all config.json can express"
        )));
    }
    Ok(json!({
        "factor": factor,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": original as u64,
        "rope_type": "llama3"
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_3_1_frequency_factors_give_back_its_rope_scaling() {
        // Llama 3.1 8B: rope base 500000, heads of 128 dimensions, factor 8, low 1, high 4, original context 8192.
        let factors = llama3_factors(500_000.0, 128, 8.0, 1.0, 4.0, 8192.0);
        let smooth = factors.iter().filter(|f| **f > 1.0 && **f < 8.0).count();
        assert!(smooth > 0 && factors[0] == 1.0 && factors[63] == 8.0, "{factors:?}");
        let h = Hparams {
            arch: Arch::Llama,
            gguf_arch: "llama".into(),
            context_length: 131_072,
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_layers: 32,
            num_heads: 32,
            num_kv_heads: 8,
            head_dim: 128,
            rope_theta: 500_000.0,
            rms_norm_eps: 1e-5,
            rope_scaling: None,
        };
        let stored: Vec<f32> = factors.iter().map(|f| *f as f32).collect();
        let rs = llama3_rope_scaling(&h, &stored, None).unwrap();
        assert_eq!(rs["rope_type"], "llama3");
        assert_eq!(rs["factor"], 8.0);
        assert_eq!(rs["original_max_position_embeddings"], 8192);
        // Llama 3.2 1B/3B: factor 32.
        let stored: Vec<f32> = llama3_factors(500_000.0, 64, 32.0, 1.0, 4.0, 8192.0)
            .iter()
            .map(|f| *f as f32)
            .collect();
        let h = Hparams { head_dim: 64, ..h };
        assert_eq!(llama3_rope_scaling(&h, &stored, None).unwrap()["factor"], 32.0);
        // A factor off in the smooth band, and a wrong count.
        let mut off = stored.clone();
        let i = off.iter().position(|f| *f > 1.0 && *f < 32.0).unwrap();
        off[i] *= 1.1;
        let e = llama3_rope_scaling(&h, &off, None).unwrap_err().to_string();
        assert!(e.contains(&format!("factor {i} is")), "{e}");
        let e = llama3_rope_scaling(&h, &stored[..10], None).unwrap_err().to_string();
        assert!(e.contains("has 10 factors"), "{e}");
    }
}

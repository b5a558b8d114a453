//! Reading `config.json` into the few numbers a decoder-only transformer needs, and refusing what we do not run.

use std::path::Path;

use serde_json::Value;

use crate::Error;

/// Which decoder variant a config describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LlamaForCausalLM (Llama 2/3.x, CodeLlama, SmolLM2, DeepSeek-R1-Distill-Llama).
    Llama,
    /// MistralForCausalLM.
    Mistral,
    /// MixtralForCausalLM (sparse MoE).
    Mixtral,
    /// Qwen2ForCausalLM (q/k/v biases).
    Qwen2,
    /// Qwen3ForCausalLM (per-head q/k RMS norms).
    Qwen3,
    /// Qwen3MoeForCausalLM: Qwen3's attention, sparse MoE blocks (dense MLPs in `mlp_only_layers` and off the
    /// `decoder_sparse_step`).
    Qwen3Moe,
    /// GptOssForCausalLM: attention with learned sinks and biases, alternating sliding and full layers, YaRN rope,
    /// a biased top-k router and clamped-SwiGLU experts (stored as MXFP4 blocks, or dequantised).
    GptOss,
}

/// Rotary-embedding frequency scaling.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1 frequency-dependent scaling (`rope_type: llama3`).
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Positions divided by `factor` (`rope_type: linear`).
    Linear { factor: f64 },
    /// YaRN (`rope_type: yarn`): frequencies blended between interpolated and extrapolated across the correction
    /// range of `beta_fast`..`beta_slow` rotations, and cos/sin scaled by `attention_factor`.
    Yarn {
        factor: f64,
        beta_fast: f64,
        beta_slow: f64,
        original_max_position_embeddings: f64,
        /// Round the correction range outwards to whole dimensions (transformers' default; GPT-OSS says false).
        truncate: bool,
        /// The cos/sin scale (given, or from `factor`, `mscale` and `mscale_all_dim` as transformers computes it).
        attention_factor: f64,
    },
}

/// The model hyperparameters, checked.
#[derive(Debug, Clone)]
pub struct ModelConfig {
    /// The architecture variant.
    pub arch: Arch,
    /// `architectures[0]` (or `model_type`) as written.
    pub arch_name: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rope_theta: f64,
    pub rope_scaling: Option<RopeScaling>,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    /// q/k/v projections carry biases (Qwen2, or `attention_bias: true`).
    pub attention_bias: bool,
    /// Per-head RMS norm on q and k (Qwen3).
    pub qk_norm: bool,
    /// Mixture of experts (Mixtral, Qwen3-MoE, GPT-OSS): number of experts and experts used per token.
    pub num_local_experts: usize,
    pub num_experts_per_tok: usize,
    /// Width of an expert's MLP (Qwen3-MoE's `moe_intermediate_size`; `intermediate_size` for the others).
    pub moe_intermediate_size: usize,
    /// Renormalise the top-k routing weights to sum to 1 (Mixtral always; Qwen3-MoE's `norm_topk_prob`).
    pub norm_topk_prob: bool,
    /// Per layer: whether its MLP is a mixture of experts (empty: none is).
    pub moe_layers: Vec<bool>,
    /// GPT-OSS: attention with one learned sink logit per head (`self_attn.sinks`).
    pub attention_sinks: bool,
    /// GPT-OSS: the clamp of its experts' SwiGLU (`swiglu_limit`).
    pub swiglu_limit: f32,
    /// `eos_token_id` of config.json (one or many).
    pub eos_token_ids: Vec<u32>,
    /// Sliding-window attention: a token sees itself and the `window - 1` tokens before it, in the layers from
    /// [`ModelConfig::window_from_layer`] on (`None`: every layer sees the whole context).
    pub sliding_window: Option<usize>,
    /// The first layer that uses the sliding window (Mistral and Mixtral: 0; Qwen2/Qwen3 with
    /// `use_sliding_window`: `max_window_layers`, as transformers' and vLLM's per-layer rule).
    pub window_from_layer: usize,
    /// Per layer: whether it uses the sliding window (GPT-OSS's `layer_types`); when given, it replaces
    /// [`ModelConfig::window_from_layer`].
    pub window_layers: Option<Vec<bool>>,
}

impl ModelConfig {
    /// The attention window of layer `layer`, if it has one.
    pub fn window(&self, layer: usize) -> Option<usize> {
        let windowed = match &self.window_layers {
            Some(layers) => layers.get(layer).copied().unwrap_or(false),
            None => layer >= self.window_from_layer,
        };
        self.sliding_window.filter(|_| windowed)
    }

    /// Whether layer `layer`'s MLP is a mixture of experts.
    pub fn is_moe_layer(&self, layer: usize) -> bool {
        self.moe_layers.get(layer).copied().unwrap_or(false)
    }
}

/// Architectures (or model types) the engine refuses, with the reason shown to the user.
const REFUSED: &[(&str, &str)] = &[
    (
        "T5ForConditionalGeneration",
        "encoder-decoder models (T5) are not run by the local engine",
    ),
    ("t5", "encoder-decoder models (T5) are not run by the local engine"),
    (
        "GPTBigCodeForCausalLM",
        "GPTBigCode (StarCoder 1) is not run by the local engine",
    ),
    ("gpt_bigcode", "GPTBigCode (StarCoder 1) is not run by the local engine"),
    (
        "MllamaForConditionalGeneration",
        "Mllama (Llama 3.2 Vision) is multimodal and not run by the local engine",
    ),
    (
        "mllama",
        "Mllama (Llama 3.2 Vision) is multimodal and not run by the local engine",
    ),
    (
        "Qwen2VLForConditionalGeneration",
        "Qwen-VL models are multimodal and not run by the local engine",
    ),
    (
        "Qwen2_5_VLForConditionalGeneration",
        "Qwen-VL models are multimodal and not run by the local engine",
    ),
    (
        "qwen2_vl",
        "Qwen-VL models are multimodal and not run by the local engine",
    ),
    (
        "qwen2_5_vl",
        "Qwen-VL models are multimodal and not run by the local engine",
    ),
];

fn arch_names(config: &Value) -> Vec<String> {
    let mut names: Vec<String> = config["architectures"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    if let Some(t) = config["model_type"].as_str() {
        names.push(t.to_string());
    }
    names
}

/// The `model_type` of every family the engine runs, for messages that list them (a test checks each is detected).
pub const MODEL_TYPES: &[&str] = &["llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gpt_oss"];

/// `Some(architecture)` when the engine will not run this config (a refused or unknown architecture).
pub fn unsupported_architecture(config: &Value) -> Option<String> {
    let names = arch_names(config);
    if let Some(n) = names.iter().find(|n| REFUSED.iter().any(|(r, _)| r == n)) {
        return Some(n.clone());
    }
    if detect(config).is_some() {
        return None;
    }
    Some(
        names
            .into_iter()
            .next()
            .unwrap_or_else(|| "unknown (no architectures or model_type)".into()),
    )
}

fn detect(config: &Value) -> Option<Arch> {
    for n in arch_names(config) {
        let a = match n.as_str() {
            "LlamaForCausalLM" | "llama" => Arch::Llama,
            "MistralForCausalLM" | "mistral" => Arch::Mistral,
            "MixtralForCausalLM" | "mixtral" => Arch::Mixtral,
            "Qwen2ForCausalLM" | "qwen2" => Arch::Qwen2,
            "Qwen3ForCausalLM" | "qwen3" => Arch::Qwen3,
            "Qwen3MoeForCausalLM" | "qwen3_moe" => Arch::Qwen3Moe,
            "GptOssForCausalLM" | "gpt_oss" => Arch::GptOss,
            _ => continue,
        };
        return Some(a);
    }
    None
}

fn ids(v: &Value) -> Vec<u32> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| vec![n as u32]).unwrap_or_default(),
        Value::Array(a) => a.iter().filter_map(Value::as_u64).map(|n| n as u32).collect(),
        _ => Vec::new(),
    }
}

/// transformers' YaRN parameters from a `rope_scaling` object `rs` of `config` (`bad` makes the error).
fn yarn(rs: &Value, config: &Value, bad: &dyn Fn(&str) -> Error) -> Result<RopeScaling, Error> {
    let num = |k: &str| rs.get(k).and_then(Value::as_f64);
    let max_positions = config["max_position_embeddings"].as_f64();
    let original = num("original_max_position_embeddings")
        .or(max_positions)
        .ok_or_else(|| bad("original_max_position_embeddings or max_position_embeddings"))?;
    // As transformers: without a factor, the ratio of the context to the original one.
    let factor = match (num("factor"), max_positions) {
        (Some(f), _) => f,
        (None, Some(max)) => max / original,
        (None, None) => return Err(bad("a yarn rope_scaling with factor")),
    };
    let mscale = |scale: f64, m: f64| if scale <= 1.0 { 1.0 } else { 0.1 * m * scale.ln() + 1.0 };
    let attention_factor = match (num("attention_factor"), num("mscale"), num("mscale_all_dim")) {
        (Some(a), _, _) => a,
        (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => mscale(factor, m) / mscale(factor, all),
        _ => mscale(factor, 1.0),
    };
    let truncate = match rs.get("truncate") {
        None | Some(Value::Null) => true,
        Some(v) => v.as_bool().ok_or_else(|| bad("truncate: true or false"))?,
    };
    Ok(RopeScaling::Yarn {
        factor,
        beta_fast: num("beta_fast").filter(|&b| b != 0.0).unwrap_or(32.0),
        beta_slow: num("beta_slow").filter(|&b| b != 0.0).unwrap_or(1.0),
        original_max_position_embeddings: original,
        truncate,
        attention_factor,
    })
}

/// Reads `eos_token_id` (a number or a list) from a JSON document.
pub fn eos_ids(v: &Value) -> Vec<u32> {
    ids(&v["eos_token_id"])
}

impl ModelConfig {
    /// Parses and checks `config.json` (`path` is only used in error messages).
    pub fn from_json(config: &Value, path: &Path) -> Result<ModelConfig, Error> {
        let names = arch_names(config);
        if let Some((n, why)) = names
            .iter()
            .find_map(|n| REFUSED.iter().find(|(r, _)| r == n).map(|(_, w)| (n, w)))
        {
            return Err(Error::UnsupportedArchitecture {
                arch: n.clone(),
                reason: (*why).to_string(),
            });
        }
        let Some(arch) = detect(config) else {
            return Err(Error::UnsupportedArchitecture {
                arch: names.first().cloned().unwrap_or_else(|| "unknown".into()),
                reason: "expected one of LlamaForCausalLM, MistralForCausalLM, MixtralForCausalLM, \
                         Qwen2ForCausalLM, Qwen3ForCausalLM, Qwen3MoeForCausalLM, GptOssForCausalLM"
                    .into(),
            });
        };
        let field = |name: &str, expected: &str| Error::ConfigField {
            path: path.to_path_buf(),
            field: name.to_string(),
            expected: expected.to_string(),
            found: config.get(name).map_or_else(|| "nothing".into(), Value::to_string),
        };
        let usize_field = |name: &str| -> Result<usize, Error> {
            config[name]
                .as_u64()
                .filter(|n| *n > 0)
                .map(|n| n as usize)
                .ok_or_else(|| field(name, "a positive integer"))
        };
        let f64_or = |name: &str, default: f64| -> Result<f64, Error> {
            match config.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_f64().ok_or_else(|| field(name, "a number")),
            }
        };
        let bool_or = |name: &str, default: bool| -> Result<bool, Error> {
            match config.get(name) {
                None | Some(Value::Null) => Ok(default),
                Some(v) => v.as_bool().ok_or_else(|| field(name, "true or false")),
            }
        };
        let hidden_size = usize_field("hidden_size")?;
        let num_attention_heads = usize_field("num_attention_heads")?;
        let num_key_value_heads = match config.get("num_key_value_heads") {
            None | Some(Value::Null) => num_attention_heads,
            Some(_) => usize_field("num_key_value_heads")?,
        };
        if num_attention_heads % num_key_value_heads != 0 {
            return Err(field(
                "num_key_value_heads",
                &format!("a divisor of num_attention_heads ({num_attention_heads})"),
            ));
        }
        let head_dim = match config.get("head_dim") {
            None | Some(Value::Null) => {
                if hidden_size % num_attention_heads != 0 {
                    return Err(field(
                        "num_attention_heads",
                        &format!("a divisor of hidden_size ({hidden_size})"),
                    ));
                }
                hidden_size / num_attention_heads
            }
            Some(_) => usize_field("head_dim")?,
        };
        if head_dim % 2 != 0 {
            return Err(field("head_dim", "an even number"));
        }
        if let Some(act) = config.get("hidden_act").and_then(Value::as_str)
            && act != "silu"
        {
            return Err(field("hidden_act", "\"silu\""));
        }
        // Llama configs may give the MLP biases; the engine runs none, and ignoring their tensors would be wrong.
        if bool_or("mlp_bias", false)? {
            return Err(field(
                "mlp_bias",
                "false (MLP projections with biases are not supported)",
            ));
        }
        let rope_scaling = match config.get("rope_scaling") {
            None | Some(Value::Null) => None,
            Some(rs) => {
                let kind = rs
                    .get("rope_type")
                    .or_else(|| rs.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let num = |k: &str| rs.get(k).and_then(Value::as_f64);
                let bad = |what: &str| Error::ConfigField {
                    path: path.to_path_buf(),
                    field: "rope_scaling".into(),
                    expected: what.into(),
                    found: rs.to_string(),
                };
                match kind {
                    "llama3" => Some(RopeScaling::Llama3 {
                        factor: num("factor").ok_or_else(|| bad("a llama3 rope_scaling with factor"))?,
                        low_freq_factor: num("low_freq_factor").ok_or_else(|| bad("low_freq_factor"))?,
                        high_freq_factor: num("high_freq_factor").ok_or_else(|| bad("high_freq_factor"))?,
                        original_max_position_embeddings: num("original_max_position_embeddings")
                            .ok_or_else(|| bad("original_max_position_embeddings"))?,
                    }),
                    "linear" => Some(RopeScaling::Linear {
                        factor: num("factor").ok_or_else(|| bad("factor"))?,
                    }),
                    "yarn" => Some(yarn(rs, config, &bad)?),
                    "default" => None,
                    _ => {
                        return Err(bad(
                            "rope_type llama3, linear, yarn or default (dynamic and longrope are not supported)",
                        ));
                    }
                }
            }
        };
        let layers = usize_field("num_hidden_layers")?;
        // Which layers are mixtures of experts, and the experts' shape.
        let (moe_layers, experts, experts_per_tok, moe_inter) = match arch {
            Arch::Mixtral | Arch::GptOss => (
                vec![true; layers],
                usize_field("num_local_experts")?,
                usize_field("num_experts_per_tok")?,
                usize_field("intermediate_size")?,
            ),
            Arch::Qwen3Moe => {
                let experts = match config.get("num_experts") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v
                        .as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| field("num_experts", "a non-negative integer"))?,
                };
                let step = match config.get("decoder_sparse_step") {
                    None | Some(Value::Null) => 1,
                    Some(_) => usize_field("decoder_sparse_step")?,
                };
                let only: Vec<usize> = match config.get("mlp_only_layers") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|v| v.as_u64().map(|n| n as usize))
                        .collect::<Option<_>>()
                        .ok_or_else(|| field("mlp_only_layers", "a list of layer indices"))?,
                    Some(_) => return Err(field("mlp_only_layers", "a list of layer indices")),
                };
                // transformers' rule: sparse unless listed in mlp_only_layers, and then every step-th layer.
                let moe: Vec<bool> = (0..layers)
                    .map(|l| experts > 0 && !only.contains(&l) && (l + 1) % step == 0)
                    .collect();
                if moe.iter().any(|&m| m) {
                    (
                        moe,
                        experts,
                        usize_field("num_experts_per_tok")?,
                        usize_field("moe_intermediate_size")?,
                    )
                } else {
                    (moe, 0, 0, 0)
                }
            }
            _ => (Vec::new(), 0, 0, 0),
        };
        if experts_per_tok > experts {
            return Err(field(
                "num_experts_per_tok",
                &format!("at most the number of experts ({experts})"),
            ));
        }
        // A dense MLP's width; a model whose every layer is a mixture of experts need not give one.
        let intermediate_size = if !moe_layers.is_empty() && moe_layers.iter().all(|&m| m) {
            config["intermediate_size"].as_u64().map_or(moe_inter, |n| n as usize)
        } else {
            usize_field("intermediate_size")?
        };
        // Mistral and Mixtral use `sliding_window` whenever it is set (v0.1: 4096; later versions write null);
        // Qwen2 and Qwen3 only with `use_sliding_window`, and then from layer `max_window_layers` on.
        let window = || -> Result<Option<usize>, Error> {
            match config.get("sliding_window") {
                None | Some(Value::Null) => Ok(None),
                Some(_) => usize_field("sliding_window").map(Some),
            }
        };
        let (sliding_window, window_from_layer) = match arch {
            Arch::Mistral | Arch::Mixtral => (window()?, 0),
            Arch::GptOss => (window()?, 0),
            Arch::Qwen2 | Arch::Qwen3 | Arch::Qwen3Moe if bool_or("use_sliding_window", false)? => {
                let from = match config.get("max_window_layers") {
                    None | Some(Value::Null) => 0,
                    Some(v) => v
                        .as_u64()
                        .map(|n| n as usize)
                        .ok_or_else(|| field("max_window_layers", "a non-negative integer"))?,
                };
                (window()?, from)
            }
            _ => (None, 0),
        };
        // GPT-OSS alternates sliding and full attention, as `layer_types` says (transformers' default when absent:
        // the even layers slide).
        let window_layers = if arch == Arch::GptOss {
            Some(match config.get("layer_types") {
                None | Some(Value::Null) => (0..layers).map(|l| l % 2 == 0).collect(),
                Some(Value::Array(a)) if a.len() == layers => a
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("sliding_attention") => Some(true),
                        Some("full_attention") => Some(false),
                        _ => None,
                    })
                    .collect::<Option<Vec<bool>>>()
                    .ok_or_else(|| field("layer_types", "a list of \"sliding_attention\" and \"full_attention\""))?,
                Some(_) => {
                    return Err(field(
                        "layer_types",
                        &format!("a list of {layers} layer types (one per layer)"),
                    ));
                }
            })
        } else {
            None
        };
        if window_layers.as_ref().is_some_and(|w| w.iter().any(|&s| s)) && sliding_window.is_none() {
            return Err(field(
                "sliding_window",
                "a positive integer (layer_types has sliding layers)",
            ));
        }
        let swiglu_limit = f64_or("swiglu_limit", 7.0)? as f32;
        Ok(ModelConfig {
            arch,
            arch_name: names.first().cloned().unwrap_or_default(),
            vocab_size: usize_field("vocab_size")?,
            hidden_size,
            intermediate_size,
            num_hidden_layers: layers,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rope_theta: f64_or("rope_theta", 10000.0)?,
            rope_scaling,
            rms_norm_eps: f64_or("rms_norm_eps", 1e-6)?,
            tie_word_embeddings: bool_or("tie_word_embeddings", false)?,
            max_position_embeddings: usize_field("max_position_embeddings")?,
            attention_bias: arch == Arch::Qwen2 || bool_or("attention_bias", arch == Arch::GptOss)?,
            qk_norm: matches!(arch, Arch::Qwen3 | Arch::Qwen3Moe),
            num_local_experts: experts,
            num_experts_per_tok: experts_per_tok,
            moe_intermediate_size: moe_inter,
            norm_topk_prob: match arch {
                Arch::Qwen3Moe => bool_or("norm_topk_prob", false)?,
                _ => true,
            },
            moe_layers,
            attention_sinks: arch == Arch::GptOss,
            swiglu_limit,
            eos_token_ids: eos_ids(config),
            sliding_window,
            window_from_layer,
            window_layers,
        })
    }

    /// Reads and parses `dir/config.json`.
    pub fn from_dir(dir: &Path) -> Result<ModelConfig, Error> {
        let path = dir.join("config.json");
        let v = crate::read_json(&path)?;
        ModelConfig::from_json(&v, &path)
    }
}

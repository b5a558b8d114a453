//! Generated, complete Hugging Face model folders: seeded weights, a real byte-level BPE tokenizer and the family's
//! real chat template. Tiny ones make the fast tests; the benches and `cmi dev tiny-model` use them too, which is why
//! this is a shipped crate and not part of `test-support`.
//!
//! `tiny_model(dir, Family::Llama)` writes `config.json`, `model.safetensors` (or shards plus
//! `model.safetensors.index.json`), `tokenizer.json`, `tokenizer_config.json` and `generation_config.json` in a few
//! milliseconds. The folder loads in `transformers` as well as in our engine, which is what the logits fixtures rely on.

pub mod shape;
mod tokenizer;
mod weights;

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use serde_json::{Value, json};

pub use shape::{Shape, UnknownShape, write_shape};
pub use tokenizer::TinyTokenizer;

/// A model family the tiny-model generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Llama 3.x (rope_scaling `llama3`, tied embeddings), Llama 3.1 chat template.
    Llama,
    /// Mistral (v0.3 chat template).
    Mistral,
    /// Qwen2 / Qwen2.5 (q/k/v biases, tied embeddings).
    Qwen2,
    /// Qwen3 (q/k norms, explicit head_dim, tied embeddings).
    Qwen3,
    /// Mixtral (sparse mixture of experts), Mistral v0.3 chat template.
    Mixtral,
    /// Qwen3-MoE (Qwen3's attention, sparse MoE blocks with a dense layer in `mlp_only_layers`), Qwen3's template.
    Qwen3Moe,
    /// GPT-OSS (attention sinks and biases, a sliding layer and a full one, YaRN rope, biased router, clamped-SwiGLU
    /// experts; dense experts, or MXFP4 blocks with [`TinyOptions::mxfp4`]), the harmony chat template.
    GptOss,
}

impl Family {
    /// Every family, in a stable order.
    pub const ALL: [Family; 7] = [
        Family::Llama,
        Family::Mistral,
        Family::Qwen2,
        Family::Qwen3,
        Family::Mixtral,
        Family::Qwen3Moe,
        Family::GptOss,
    ];

    /// The lowercase name used on the command line and in fixture file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Llama => "llama",
            Family::Mistral => "mistral",
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
            Family::Mixtral => "mixtral",
            Family::Qwen3Moe => "qwen3-moe",
            Family::GptOss => "gpt-oss",
        }
    }

    /// The real chat template of the family (copied byte-exact from the conformance corpus).
    pub fn chat_template(self) -> &'static str {
        match self {
            Family::Llama => chat_template::templates::LLAMA_3_1,
            Family::Qwen2 => chat_template::templates::QWEN_2_5,
            Family::Qwen3 | Family::Qwen3Moe => chat_template::templates::QWEN_3,
            Family::GptOss => chat_template::templates::GPT_OSS,
            Family::Mistral | Family::Mixtral => chat_template::templates::MISTRAL_V3,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of [`Family::from_str`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown model family `{0}`: expected one of llama, mistral, qwen2, qwen3, mixtral, qwen3-moe, gpt-oss")]
pub struct UnknownFamily(pub String);

impl FromStr for Family {
    type Err = UnknownFamily;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "llama" => Ok(Family::Llama),
            "mistral" => Ok(Family::Mistral),
            "qwen2" => Ok(Family::Qwen2),
            "qwen3" => Ok(Family::Qwen3),
            "mixtral" => Ok(Family::Mixtral),
            "qwen3-moe" | "qwen3_moe" => Ok(Family::Qwen3Moe),
            "gpt-oss" | "gpt_oss" => Ok(Family::GptOss),
            _ => Err(UnknownFamily(s.to_string())),
        }
    }
}

/// Storage type of the generated weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DType {
    /// 32-bit float (the default; what the logits fixtures use).
    #[default]
    F32,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
}

impl DType {
    fn torch_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::BF16 => "bfloat16",
        }
    }
}

/// Options of [`tiny_model_with`].
#[derive(Debug, Clone)]
pub struct TinyOptions {
    /// The family to generate.
    pub family: Family,
    /// Seed of the weights (same seed, same bytes).
    pub seed: u64,
    /// Storage type of the weights.
    pub dtype: DType,
    /// Write two shards and `model.safetensors.index.json` instead of one `model.safetensors`.
    pub sharded: bool,
    /// Replace the family's chat template in `tokenizer_config.json`.
    pub chat_template: Option<String>,
    /// Zero the output-embedding rows of the end tokens (every `eos_token_id`), so their logit is always 0 while
    /// the largest of the other few hundred random logits is positive: greedy generation then never ends on its
    /// own and runs to `max_tokens`. For tests that need a generation to keep its place in the batch.
    pub endless: bool,
    /// GPT-OSS: write the experts as the published checkpoints do, MXFP4 blocks and scales (U8), with the
    /// `quantization_config` that says so. The same seed gives the same experts either way: the dense ones are the
    /// blocks dequantised (exact in every dtype).
    pub mxfp4: bool,
}

impl TinyOptions {
    /// Defaults for `family`: seed 0, f32, one file, the family's real template.
    pub fn new(family: Family) -> Self {
        TinyOptions {
            family,
            seed: 0,
            dtype: DType::F32,
            sharded: false,
            chat_template: None,
            endless: false,
            mxfp4: false,
        }
    }
}

/// Writes a complete tiny HF folder of `family` into `dir` (created if missing) with the default options.
pub fn tiny_model(dir: &Path, family: Family) -> io::Result<()> {
    tiny_model_with(dir, &TinyOptions::new(family))
}

/// Writes a complete tiny HF folder into `dir` (created if missing).
pub fn tiny_model_with(dir: &Path, opts: &TinyOptions) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tok = TinyTokenizer::new(opts.family);
    let config = config_json(opts, tok.vocab_size());
    write_json(&dir.join("config.json"), &config)?;
    write_json(&dir.join("tokenizer.json"), &tok.tokenizer_json())?;
    let template = opts
        .chat_template
        .clone()
        .unwrap_or_else(|| opts.family.chat_template().to_string());
    write_json(
        &dir.join("tokenizer_config.json"),
        &tok.tokenizer_config_json(&template),
    )?;
    write_json(&dir.join("generation_config.json"), &tok.generation_config_json())?;
    let spec = ModelSpec::from_config(&config);
    let silent = if opts.endless { tok.eos_ids() } else { Vec::new() };
    weights::write(dir, &spec, opts, &silent)?;
    Ok(())
}

/// The dimensions of the tiny model, read back from its config (so weights and config can never disagree).
#[derive(Debug, Clone)]
pub(crate) struct ModelSpec {
    pub(crate) family: Family,
    pub(crate) vocab: usize,
    pub(crate) hidden: usize,
    pub(crate) inter: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) experts: usize,
    /// Width of an expert's MLP.
    pub(crate) moe_inter: usize,
    /// Per layer: whether its MLP is a mixture of experts.
    pub(crate) moe_layers: Vec<bool>,
    pub(crate) tied: bool,
}

impl ModelSpec {
    fn from_config(c: &Value) -> Self {
        let u = |k: &str| c[k].as_u64().unwrap_or(0) as usize;
        let family = match c["model_type"].as_str() {
            Some("mistral") => Family::Mistral,
            Some("qwen2") => Family::Qwen2,
            Some("qwen3") => Family::Qwen3,
            Some("mixtral") => Family::Mixtral,
            Some("qwen3_moe") => Family::Qwen3Moe,
            Some("gpt_oss") => Family::GptOss,
            _ => Family::Llama,
        };
        let layers = u("num_hidden_layers");
        let only: Vec<u64> = c["mlp_only_layers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        let moe_layers = (0..layers)
            .map(|l| match family {
                Family::Mixtral | Family::GptOss => true,
                Family::Qwen3Moe => !only.contains(&(l as u64)),
                _ => false,
            })
            .collect();
        ModelSpec {
            family,
            vocab: u("vocab_size"),
            hidden: u("hidden_size"),
            inter: u("intermediate_size"),
            layers,
            heads: u("num_attention_heads"),
            kv_heads: u("num_key_value_heads"),
            head_dim: u("head_dim"),
            experts: u("num_local_experts").max(u("num_experts")),
            moe_inter: match family {
                Family::Qwen3Moe => u("moe_intermediate_size"),
                _ => u("intermediate_size"),
            },
            moe_layers,
            tied: c["tie_word_embeddings"].as_bool().unwrap_or(false),
        }
    }
}

fn config_json(opts: &TinyOptions, vocab_size: usize) -> Value {
    let tok = TinyTokenizer::new(opts.family);
    let (bos, eos) = (tok.bos_id(), tok.eos_ids()[0]);
    let mut c = json!({
        "architectures": [],
        "model_type": "",
        "vocab_size": vocab_size,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "max_position_embeddings": 512,
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.02,
        "use_cache": true,
        "attention_dropout": 0.0,
        "torch_dtype": opts.dtype.torch_name(),
        "bos_token_id": bos,
        "eos_token_id": eos,
    });
    let m = c.as_object_mut().expect("json! object literal");
    match opts.family {
        Family::Llama => {
            m.insert("architectures".into(), json!(["LlamaForCausalLM"]));
            m.insert("model_type".into(), json!("llama"));
            m.insert("rope_theta".into(), json!(500000.0));
            // Small original context so that the llama3 frequency rewrite changes some of the 8 frequencies.
            m.insert(
                "rope_scaling".into(),
                json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                       "high_freq_factor": 4.0, "original_max_position_embeddings": 64}),
            );
            m.insert("attention_bias".into(), json!(false));
            m.insert("mlp_bias".into(), json!(false));
            m.insert("pretraining_tp".into(), json!(1));
            m.insert("tie_word_embeddings".into(), json!(true));
            m.insert("eos_token_id".into(), json!(tok.eos_ids()));
        }
        Family::Mistral | Family::Mixtral => {
            let mixtral = opts.family == Family::Mixtral;
            m.insert(
                "architectures".into(),
                json!([if mixtral {
                    "MixtralForCausalLM"
                } else {
                    "MistralForCausalLM"
                }]),
            );
            m.insert("model_type".into(), json!(if mixtral { "mixtral" } else { "mistral" }));
            m.insert("rope_theta".into(), json!(1000000.0));
            m.insert("sliding_window".into(), Value::Null);
            m.insert("tie_word_embeddings".into(), json!(false));
            if mixtral {
                m.insert("num_local_experts".into(), json!(4));
                m.insert("num_experts_per_tok".into(), json!(2));
                m.insert("router_aux_loss_coef".into(), json!(0.02));
                m.insert("output_router_logits".into(), json!(false));
            }
        }
        Family::Qwen2 | Family::Qwen3 | Family::Qwen3Moe => {
            let q3 = opts.family != Family::Qwen2;
            let moe = opts.family == Family::Qwen3Moe;
            let (class, model_type) = match opts.family {
                Family::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
                Family::Qwen3 => ("Qwen3ForCausalLM", "qwen3"),
                _ => ("Qwen3MoeForCausalLM", "qwen3_moe"),
            };
            m.insert("architectures".into(), json!([class]));
            m.insert("model_type".into(), json!(model_type));
            m.insert("rope_theta".into(), json!(1000000.0));
            m.insert("sliding_window".into(), Value::Null);
            m.insert("use_sliding_window".into(), json!(false));
            m.insert("max_window_layers".into(), json!(2));
            m.insert("tie_word_embeddings".into(), json!(true));
            m.insert("bos_token_id".into(), json!(tok.special_id("<|endoftext|>")));
            if q3 {
                m.insert("attention_bias".into(), json!(false));
            }
            if moe {
                // Eight experts, two a token, so that positions go to different experts; layer 1 dense (the
                // `mlp_only_layers` switch); untied, as Qwen3-30B-A3B.
                m.insert("num_experts".into(), json!(8));
                m.insert("num_experts_per_tok".into(), json!(2));
                m.insert("moe_intermediate_size".into(), json!(32));
                m.insert("decoder_sparse_step".into(), json!(1));
                m.insert("mlp_only_layers".into(), json!([1]));
                m.insert("norm_topk_prob".into(), json!(true));
                m.insert("router_aux_loss_coef".into(), json!(0.001));
                m.insert("output_router_logits".into(), json!(false));
                m.insert("tie_word_embeddings".into(), json!(false));
            }
        }
        Family::GptOss => {
            m.insert("architectures".into(), json!(["GptOssForCausalLM"]));
            m.insert("model_type".into(), json!("gpt_oss"));
            // Experts as wide as the model (GPT-OSS-20B: 2880 both), whole MXFP4 blocks of 32.
            m.insert("intermediate_size".into(), json!(64));
            m.insert("num_local_experts".into(), json!(4));
            m.insert("num_experts_per_tok".into(), json!(2));
            m.insert("experts_per_token".into(), json!(2));
            m.insert("attention_bias".into(), json!(true));
            // A sliding layer and a full one, the window shorter than the fixtures' prompt.
            m.insert("layer_types".into(), json!(["sliding_attention", "full_attention"]));
            m.insert("sliding_window".into(), json!(4));
            m.insert("rope_theta".into(), json!(150000.0));
            // YaRN with a small original context, so that the 8 frequencies are extrapolated, blended and
            // interpolated; `truncate: false` as the published configs say.
            m.insert(
                "rope_scaling".into(),
                json!({"rope_type": "yarn", "factor": 8.0, "beta_fast": 32.0, "beta_slow": 1.0,
                       "original_max_position_embeddings": 64, "truncate": false}),
            );
            m.insert("swiglu_limit".into(), json!(7.0));
            m.insert("router_aux_loss_coef".into(), json!(0.9));
            m.insert("output_router_logits".into(), json!(false));
            m.insert("tie_word_embeddings".into(), json!(false));
            m.insert("eos_token_id".into(), json!(tok.special_id("<|return|>")));
            m.insert("pad_token_id".into(), json!(tok.special_id("<|endoftext|>")));
            if opts.mxfp4 {
                m.insert(
                    "quantization_config".into(),
                    json!({"quant_method": "mxfp4", "modules_to_not_convert": ["model.layers.*.self_attn",
                           "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"]}),
                );
            }
        }
    }
    c
}

fn write_json(path: &Path, v: &Value) -> io::Result<()> {
    let mut s = serde_json::to_string_pretty(v).map_err(io::Error::other)?;
    s.push('\n');
    std::fs::write(path, s)
}

#[cfg(test)]
mod tests;

//! The architectures Custom Model Import accepts, and the tensors each text family must carry.

use serde_json::Value;

/// One accepted architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    /// `model_type` in `config.json`.
    pub(crate) model_type: &'static str,
    /// Class names in `architectures` that CMI takes for it (empty: any class of that model type).
    pub(crate) classes: &'static [&'static str],
    /// Multimodal models have a lower size cap (100 GB instead of 200 GB).
    pub(crate) multimodal: bool,
    /// Converse works for imported models of this type (bedrock-cmi.md §1.2).
    pub(crate) converse: bool,
}

/// The CMI list (bedrock-cmi.md §1.2, from the user guide); `model_type` values as transformers writes them.
pub(crate) const ACCEPTED: &[Accepted] = &[
    Accepted {
        model_type: "llama",
        classes: &["LlamaForCausalLM"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "mistral",
        classes: &["MistralForCausalLM"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "mixtral",
        classes: &["MixtralForCausalLM"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "t5",
        classes: &["T5ForConditionalGeneration"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "gpt_bigcode",
        classes: &["GPTBigCodeForCausalLM"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "mllama",
        classes: &["MllamaForConditionalGeneration"],
        multimodal: true,
        converse: true,
    },
    Accepted {
        model_type: "qwen2",
        classes: &["Qwen2ForCausalLM"],
        multimodal: false,
        converse: true,
    },
    Accepted {
        model_type: "qwen2_vl",
        classes: &["Qwen2VLForConditionalGeneration"],
        multimodal: true,
        converse: false,
    },
    Accepted {
        model_type: "qwen2_5_vl",
        classes: &["Qwen2_5_VLForConditionalGeneration"],
        multimodal: true,
        converse: false,
    },
    Accepted {
        model_type: "qwen3",
        classes: &["Qwen3ForCausalLM"],
        multimodal: false,
        converse: false,
    },
    Accepted {
        model_type: "qwen3_moe",
        classes: &["Qwen3MoeForCausalLM"],
        multimodal: false,
        converse: false,
    },
    Accepted {
        model_type: "gpt_oss",
        classes: &["GptOssForCausalLM"],
        multimodal: false,
        converse: false,
    },
];

/// Looks up `model_type` in the accepted list.
pub(crate) fn accepted(model_type: &str) -> Option<&'static Accepted> {
    ACCEPTED.iter().find(|a| a.model_type == model_type)
}

/// The names users know, for messages.
pub(crate) fn accepted_names() -> String {
    ACCEPTED.iter().map(|a| a.model_type).collect::<Vec<_>>().join(", ")
}

/// Text families whose full tensor list we know (decoder-only, transformers naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    Llama,
    Mistral,
    Mixtral,
    Qwen2,
    Qwen3,
    Qwen3Moe,
}

impl Layout {
    pub(crate) fn for_model_type(model_type: &str) -> Option<Layout> {
        Some(match model_type {
            "llama" => Layout::Llama,
            "mistral" => Layout::Mistral,
            "mixtral" => Layout::Mixtral,
            "qwen2" => Layout::Qwen2,
            "qwen3" => Layout::Qwen3,
            "qwen3_moe" => Layout::Qwen3Moe,
            _ => return None,
        })
    }
}

/// Dimensions read from `config.json`.
#[derive(Debug, Clone)]
pub(crate) struct Dims {
    pub(crate) hidden: usize,
    pub(crate) vocab: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) intermediate: usize,
    pub(crate) tie_embeddings: bool,
    pub(crate) experts: usize,
    pub(crate) moe_intermediate: usize,
    /// Qwen3-MoE: layers listed here (or off the sparse step) use a dense MLP.
    pub(crate) dense_layers: Vec<bool>,
}

/// A config key that is missing or not a positive integer.
#[derive(Debug)]
pub(crate) struct BadKey(pub(crate) &'static str, pub(crate) Option<Value>);

fn uint(config: &Value, key: &'static str) -> Result<usize, BadKey> {
    match config.get(key) {
        Some(v) => v
            .as_u64()
            .filter(|&n| n > 0)
            .map(|n| n as usize)
            .ok_or_else(|| BadKey(key, Some(v.clone()))),
        None => Err(BadKey(key, None)),
    }
}

impl Dims {
    /// Reads the dimensions a layout needs; every missing or malformed key is reported.
    pub(crate) fn from_config(layout: Layout, config: &Value) -> Result<Dims, Vec<BadKey>> {
        let mut bad = Vec::new();
        let mut get = |key: &'static str| match uint(config, key) {
            Ok(n) => n,
            Err(b) => {
                bad.push(b);
                0
            }
        };
        let hidden = get("hidden_size");
        let vocab = get("vocab_size");
        let layers = get("num_hidden_layers");
        let heads = get("num_attention_heads");
        let intermediate = if layout == Layout::Qwen3Moe && config.get("intermediate_size").is_none() {
            0
        } else {
            get("intermediate_size")
        };
        let (experts, moe_intermediate) = match layout {
            Layout::Mixtral => (get("num_local_experts"), 0),
            Layout::Qwen3Moe => (get("num_experts"), get("moe_intermediate_size")),
            _ => (0, 0),
        };
        let kv_heads = match config.get("num_key_value_heads") {
            None | Some(Value::Null) => heads,
            Some(_) => get("num_key_value_heads"),
        };
        let head_dim = match config.get("head_dim") {
            None | Some(Value::Null) => {
                if heads > 0 && hidden % heads != 0 {
                    bad.push(BadKey(
                        "num_attention_heads",
                        config.get("num_attention_heads").cloned(),
                    ));
                }
                hidden.checked_div(heads).unwrap_or(0)
            }
            Some(_) => get("head_dim"),
        };
        if !bad.is_empty() {
            return Err(bad);
        }
        let tie_embeddings = config
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let mut dense_layers = vec![false; layers];
        if layout == Layout::Qwen3Moe {
            let step = config
                .get("decoder_sparse_step")
                .and_then(Value::as_u64)
                .unwrap_or(1)
                .max(1) as usize;
            let only: Vec<usize> = config
                .get("mlp_only_layers")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_u64).map(|n| n as usize).collect())
                .unwrap_or_default();
            for (i, dense) in dense_layers.iter_mut().enumerate() {
                // transformers: sparse iff not in mlp_only_layers and (i + 1) % decoder_sparse_step == 0.
                *dense = only.contains(&i) || (i + 1) % step != 0;
            }
        }
        Ok(Dims {
            hidden,
            vocab,
            layers,
            heads,
            kv_heads,
            head_dim,
            intermediate,
            tie_embeddings,
            experts,
            moe_intermediate,
            dense_layers,
        })
    }
}

/// An expected tensor: name and shape. `optional` tensors are checked for shape when present.
#[derive(Debug, Clone)]
pub(crate) struct Expected {
    pub(crate) name: String,
    pub(crate) shape: Vec<usize>,
    pub(crate) optional: bool,
}

/// Every tensor a transformers checkpoint of this layout holds, with its shape (the transformers modeling files'
/// parameter names; `lm_head.weight` is optional when embeddings are tied).
pub(crate) fn expected_tensors(layout: Layout, d: &Dims) -> Vec<Expected> {
    let mut out = Vec::with_capacity(d.layers * 12 + 3);
    let mut push = |name: String, shape: Vec<usize>, optional: bool| out.push(Expected { name, shape, optional });
    push("model.embed_tokens.weight".into(), vec![d.vocab, d.hidden], false);
    push("model.norm.weight".into(), vec![d.hidden], false);
    push("lm_head.weight".into(), vec![d.vocab, d.hidden], d.tie_embeddings);
    let q = d.heads * d.head_dim;
    let kv = d.kv_heads * d.head_dim;
    for i in 0..d.layers {
        let p = format!("model.layers.{i}");
        push(format!("{p}.input_layernorm.weight"), vec![d.hidden], false);
        push(format!("{p}.post_attention_layernorm.weight"), vec![d.hidden], false);
        push(format!("{p}.self_attn.q_proj.weight"), vec![q, d.hidden], false);
        push(format!("{p}.self_attn.k_proj.weight"), vec![kv, d.hidden], false);
        push(format!("{p}.self_attn.v_proj.weight"), vec![kv, d.hidden], false);
        push(format!("{p}.self_attn.o_proj.weight"), vec![d.hidden, q], false);
        if layout == Layout::Qwen2 {
            push(format!("{p}.self_attn.q_proj.bias"), vec![q], false);
            push(format!("{p}.self_attn.k_proj.bias"), vec![kv], false);
            push(format!("{p}.self_attn.v_proj.bias"), vec![kv], false);
        }
        if matches!(layout, Layout::Qwen3 | Layout::Qwen3Moe) {
            push(format!("{p}.self_attn.q_norm.weight"), vec![d.head_dim], false);
            push(format!("{p}.self_attn.k_norm.weight"), vec![d.head_dim], false);
        }
        let dense_mlp = |push: &mut dyn FnMut(String, Vec<usize>, bool), inter: usize| {
            push(format!("{p}.mlp.gate_proj.weight"), vec![inter, d.hidden], false);
            push(format!("{p}.mlp.up_proj.weight"), vec![inter, d.hidden], false);
            push(format!("{p}.mlp.down_proj.weight"), vec![d.hidden, inter], false);
        };
        match layout {
            Layout::Llama | Layout::Mistral | Layout::Qwen2 | Layout::Qwen3 => dense_mlp(&mut push, d.intermediate),
            Layout::Mixtral => {
                push(
                    format!("{p}.block_sparse_moe.gate.weight"),
                    vec![d.experts, d.hidden],
                    false,
                );
                for e in 0..d.experts {
                    let x = format!("{p}.block_sparse_moe.experts.{e}");
                    push(format!("{x}.w1.weight"), vec![d.intermediate, d.hidden], false);
                    push(format!("{x}.w2.weight"), vec![d.hidden, d.intermediate], false);
                    push(format!("{x}.w3.weight"), vec![d.intermediate, d.hidden], false);
                }
            }
            Layout::Qwen3Moe => {
                if d.dense_layers[i] {
                    dense_mlp(&mut push, d.intermediate);
                } else {
                    push(format!("{p}.mlp.gate.weight"), vec![d.experts, d.hidden], false);
                    for e in 0..d.experts {
                        let x = format!("{p}.mlp.experts.{e}");
                        push(
                            format!("{x}.gate_proj.weight"),
                            vec![d.moe_intermediate, d.hidden],
                            false,
                        );
                        push(format!("{x}.up_proj.weight"), vec![d.moe_intermediate, d.hidden], false);
                        push(
                            format!("{x}.down_proj.weight"),
                            vec![d.hidden, d.moe_intermediate],
                            false,
                        );
                    }
                }
            }
        }
    }
    out
}

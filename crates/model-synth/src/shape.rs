//! Models of real shapes with seeded random weights, for benches at scale: `write_shape(dir, &LLAMA_3_1_8B, …)`
//! writes a Hugging Face folder with the exact tensor shapes of Llama-3.1-8B (the seed's
//! DeepSeek-R1-Distill-Llama-8B) in bf16, sharded the way the hub shards it, with the tokenizer and chat template of
//! a real model folder. The weights are random, so the text is noise, but every matrix product, byte read and KV
//! cache row is the real model's.
//!
//! The tensors are generated one at a time while they are written (the safetensors writer asks for each tensor's
//! bytes in turn), so writing 16 GB holds one tensor in memory, never the model.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::Path;

use safetensors::{Dtype, View};
use serde_json::{Value, json};

/// The dimensions of a real decoder-only model (Llama architecture), without its vocabulary, which comes with the
/// tokenizer the folder is written with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    /// The name benches and the command line use (`llama-3.1-8b`).
    pub name: &'static str,
    /// What it is the shape of.
    pub about: &'static str,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Whether the output projection is the input embedding (no `lm_head.weight`).
    pub tied: bool,
    pub rope_theta: f64,
    pub context: usize,
}

/// Llama-3.1-8B (and DeepSeek-R1-Distill-Llama-8B): its `config.json` on the hub.
pub const LLAMA_3_1_8B: Shape = Shape {
    name: "llama-3.1-8b",
    about: "Llama-3.1-8B, DeepSeek-R1-Distill-Llama-8B",
    hidden: 4096,
    intermediate: 14336,
    layers: 32,
    heads: 32,
    kv_heads: 8,
    head_dim: 128,
    tied: false,
    rope_theta: 500000.0,
    context: 131072,
};

/// Llama-3.2-1B: its `config.json` on the hub. For quick runs of the benches at scale.
pub const LLAMA_3_2_1B: Shape = Shape {
    name: "llama-3.2-1b",
    about: "Llama-3.2-1B",
    hidden: 2048,
    intermediate: 8192,
    layers: 16,
    heads: 32,
    kv_heads: 8,
    head_dim: 64,
    tied: true,
    rope_theta: 500000.0,
    context: 131072,
};

/// Every named shape.
pub const SHAPES: [Shape; 2] = [LLAMA_3_1_8B, LLAMA_3_2_1B];

/// A shape name that is not one of [`SHAPES`].
#[derive(Debug, thiserror::Error)]
#[error("unknown model shape `{0}` (expected one of: {names})", names = shape_names())]
pub struct UnknownShape(pub String);

fn shape_names() -> String {
    SHAPES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

impl std::str::FromStr for Shape {
    type Err = UnknownShape;
    fn from_str(s: &str) -> Result<Self, UnknownShape> {
        SHAPES
            .iter()
            .find(|shape| shape.name == s)
            .copied()
            .ok_or_else(|| UnknownShape(s.to_string()))
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// HF's default largest shard (`max_shard_size="5GB"`): an 8B model in bf16 comes in four files, as on the hub.
const SHARD_BYTES: u64 = 5_000_000_000;

/// The uniform weights' half-width: a standard deviation of 0.02 (`initializer_range`), as a freshly initialised
/// Llama has. Norm weights are 1.
const HALF_WIDTH: f32 = 0.02 * 1.732_050_8;

/// One tensor to write: its name, shape and how its values are made.
#[derive(Debug, Clone)]
struct Planned {
    name: String,
    shape: Vec<usize>,
    norm: bool,
    seed: u64,
}

impl Planned {
    fn bytes(&self) -> u64 {
        self.shape.iter().product::<usize>() as u64 * 2
    }
}

/// A tensor whose bf16 bytes are generated when the writer asks for them.
struct Lazy<'a>(&'a Planned);

impl View for Lazy<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::BF16
    }
    fn shape(&self) -> &[usize] {
        &self.0.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(values(self.0))
    }
    fn data_len(&self) -> usize {
        self.0.bytes() as usize
    }
}

/// splitmix64: a fast, well-mixed generator; each tensor has its own stream, so a tensor's values do not depend on
/// the order the shards are written in.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn values(t: &Planned) -> Vec<u8> {
    let n = t.shape.iter().product::<usize>();
    let mut out = Vec::with_capacity(n * 2);
    if t.norm {
        let one = half::bf16::ONE.to_le_bytes();
        for _ in 0..n {
            out.extend_from_slice(&one);
        }
        return out;
    }
    let mut state = t.seed;
    let scale = HALF_WIDTH / 32768.0;
    let mut left = n;
    while left > 0 {
        let r = splitmix(&mut state);
        for k in 0..left.min(4) {
            let bits = (r >> (16 * k)) as u16;
            let v = (f32::from(bits) - 32768.0) * scale;
            out.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
        }
        left = left.saturating_sub(4);
    }
    out
}

/// The tensors of `shape` with `vocab` rows of embedding, in the order the hub's checkpoints hold them.
fn plan(shape: &Shape, vocab: usize, seed: u64) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut add = |name: String, dims: Vec<usize>, norm: bool| {
        let k = out.len() as u64;
        out.push(Planned {
            name,
            shape: dims,
            norm,
            seed: seed ^ k.wrapping_mul(0xD1B5_4A32_D192_ED03),
        });
    };
    let (h, hd, i) = (shape.hidden, shape.head_dim, shape.intermediate);
    let (q, kv) = (shape.heads * hd, shape.kv_heads * hd);
    add("model.embed_tokens.weight".into(), vec![vocab, h], false);
    for l in 0..shape.layers {
        let p = format!("model.layers.{l}");
        add(format!("{p}.input_layernorm.weight"), vec![h], true);
        add(format!("{p}.self_attn.q_proj.weight"), vec![q, h], false);
        add(format!("{p}.self_attn.k_proj.weight"), vec![kv, h], false);
        add(format!("{p}.self_attn.v_proj.weight"), vec![kv, h], false);
        add(format!("{p}.self_attn.o_proj.weight"), vec![h, q], false);
        add(format!("{p}.post_attention_layernorm.weight"), vec![h], true);
        add(format!("{p}.mlp.gate_proj.weight"), vec![i, h], false);
        add(format!("{p}.mlp.up_proj.weight"), vec![i, h], false);
        add(format!("{p}.mlp.down_proj.weight"), vec![h, i], false);
    }
    add("model.norm.weight".into(), vec![h], true);
    if !shape.tied {
        add("lm_head.weight".into(), vec![vocab, h], false);
    }
    out
}

/// Bytes of the bf16 weights of `shape` with a vocabulary of `vocab`.
pub fn weight_bytes(shape: &Shape, vocab: usize) -> u64 {
    plan(shape, vocab, 0).iter().map(Planned::bytes).sum()
}

/// The tokenizer files copied from the folder a shape is written with (those it has).
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

/// Writes a Hugging Face folder of `shape` into `dir` (created if missing): `config.json`, bf16 safetensors shards
/// of at most 5 GB with `model.safetensors.index.json`, and the tokenizer files of the model folder `tokenizer_from`
/// (its `config.json` gives the vocabulary size and the special token ids). `progress(written, total)` is called after
/// each tensor, in bytes. The same seed writes the same bytes.
///
/// The config has no `rope_scaling`: Llama 3.1's frequency rewrite changes no cost and would have to be repeated
/// bit for bit by every peer the weights are given to.
pub fn write_shape(
    dir: &Path,
    shape: &Shape,
    tokenizer_from: &Path,
    seed: u64,
    mut progress: impl FnMut(u64, u64),
) -> io::Result<()> {
    let source: Value = serde_json::from_slice(&std::fs::read(tokenizer_from.join("config.json"))?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", tokenizer_from.display())))?;
    let vocab = source["vocab_size"].as_u64().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}/config.json has no vocab_size", tokenizer_from.display()),
        )
    })? as usize;
    std::fs::create_dir_all(dir)?;
    for f in TOKENIZER_FILES {
        let from = tokenizer_from.join(f);
        if from.is_file() {
            std::fs::copy(&from, dir.join(f))?;
        }
    }
    let config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads,
        "num_key_value_heads": shape.kv_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": shape.context,
        "rms_norm_eps": 1e-5,
        "rope_theta": shape.rope_theta,
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": shape.tied,
        "torch_dtype": "bfloat16",
        "initializer_range": 0.02,
        "bos_token_id": source["bos_token_id"],
        "eos_token_id": source["eos_token_id"],
    });
    std::fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;

    let tensors = plan(shape, vocab, seed);
    let total: u64 = tensors.iter().map(Planned::bytes).sum();
    let mut shards: Vec<Vec<&Planned>> = vec![Vec::new()];
    let mut in_shard = 0u64;
    for t in &tensors {
        if in_shard > 0 && in_shard + t.bytes() > SHARD_BYTES {
            shards.push(Vec::new());
            in_shard = 0;
        }
        in_shard += t.bytes();
        shards.last_mut().expect("one shard at least").push(t);
    }
    let n = shards.len();
    let mut weight_map = BTreeMap::new();
    let mut written = 0u64;
    for (k, shard) in shards.iter().enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", k + 1);
        for t in shard {
            weight_map.insert(t.name.clone(), file.clone());
        }
        let meta = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
        let views = shard.iter().map(|t| {
            written += t.bytes();
            progress(written, total);
            (t.name.clone(), Lazy(t))
        });
        // The writer collects the views before writing, so progress here runs ahead of the bytes by one shard.
        safetensors::serialize_to_file(views, Some(meta), &dir.join(&file)).map_err(io::Error::other)?;
    }
    let index = json!({"metadata": {"total_size": total}, "weight_map": weight_map});
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_vec_pretty(&index)?,
    )?;
    progress(total, total);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_an_unknown_one_lists_the_known() {
        assert_eq!("llama-3.1-8b".parse::<Shape>().unwrap(), LLAMA_3_1_8B);
        let e = "llama-9b".parse::<Shape>().unwrap_err().to_string();
        assert!(
            e.contains("`llama-9b`") && e.contains("llama-3.1-8b") && e.contains("llama-3.2-1b"),
            "{e}"
        );
    }

    #[test]
    fn the_8b_shape_has_the_published_parameter_count() {
        // Llama-3.1-8B: 8,030,261,248 parameters with its 128,256-token vocabulary.
        assert_eq!(weight_bytes(&LLAMA_3_1_8B, 128_256) / 2, 8_030_261_248);
        // Llama-3.2-1B: 1,235,814,400 (tied embeddings).
        assert_eq!(weight_bytes(&LLAMA_3_2_1B, 128_256) / 2, 1_235_814_400);
    }

    #[test]
    fn values_are_seeded_spread_and_norms_are_one() {
        let t = Planned {
            name: "w".into(),
            shape: vec![1000],
            norm: false,
            seed: 7,
        };
        let a = values(&t);
        assert_eq!(a, values(&t));
        assert_ne!(a, values(&Planned { seed: 8, ..t.clone() }));
        let v: Vec<f32> = a
            .chunks(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let sd = (v.iter().map(|x| (x - mean) * (x - mean)).sum::<f32>() / v.len() as f32).sqrt();
        assert!(mean.abs() < 0.003 && (sd - 0.02).abs() < 0.002, "mean {mean} sd {sd}");
        let norm = values(&Planned { norm: true, ..t });
        assert!(
            norm.chunks(2)
                .all(|b| half::bf16::from_le_bytes([b[0], b[1]]) == half::bf16::ONE)
        );
    }

    #[test]
    fn a_folder_of_a_small_shape_has_its_shards_index_and_tokenizer() {
        let tok = tempfile::tempdir().unwrap();
        crate::tiny_model(tok.path(), crate::Family::Llama).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let small = Shape {
            name: "small",
            hidden: 64,
            intermediate: 128,
            layers: 3,
            heads: 4,
            kv_heads: 2,
            head_dim: 16,
            ..LLAMA_3_2_1B
        };
        let mut calls = Vec::new();
        write_shape(dir.path(), &small, tok.path(), 3, |w, t| calls.push((w, t))).unwrap();
        let vocab = TinyTokenizerVocab::of(tok.path());
        let total = weight_bytes(&small, vocab);
        assert_eq!(calls.last(), Some(&(total, total)));
        let index: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("model.safetensors.index.json")).unwrap()).unwrap();
        assert_eq!(index["metadata"]["total_size"], total);
        let map = index["weight_map"].as_object().unwrap();
        assert_eq!(map.len(), 1 + 9 * 3 + 1);
        let file = map["model.layers.2.mlp.down_proj.weight"].as_str().unwrap();
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let t = st.tensor("model.layers.2.mlp.down_proj.weight").unwrap();
        assert_eq!((t.dtype(), t.shape()), (Dtype::BF16, &[64usize, 128][..]));
        for f in [
            "tokenizer.json",
            "tokenizer_config.json",
            "generation_config.json",
            "config.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
        }
    }

    /// The vocabulary size a tokenizer folder's config gives.
    struct TinyTokenizerVocab;
    impl TinyTokenizerVocab {
        fn of(dir: &Path) -> usize {
            let c: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
            c["vocab_size"].as_u64().unwrap() as usize
        }
    }
}

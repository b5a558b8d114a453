//! The decoder: embeddings, N blocks of (RMS norm, GQA attention with RoPE, RMS norm, SwiGLU MLP or sparse MoE),
//! final norm and LM head; one forward pass over a batch of sequences with their own KV caches.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use candle_core::{Device, Tensor};
use candle_nn::ops::{rms_norm, softmax_last_dim};

use crate::config::{Arch, ModelConfig, RopeScaling};
use crate::dense::{DenseWeight, ROW_BLOCK, Stored, rows_dot};
use crate::quant_cache::{QuantisedLoad, Quantiser};
use crate::weights::Weights;
use crate::{CausalLm, Error, Quantize, SeqInput};

/// `fn $name(args)` that runs `$body(args)` compiled for AVX-512, for AVX2 or plainly, whichever this CPU has
/// (`dense::simd::level`). `$body` is `#[inline(always)]`, so each variant's loops vectorise for its own
/// instruction set.
macro_rules! per_instruction_set {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code)]
            {
                use crate::dense::simd::{Level, level};
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                match level() {
                    // SAFETY: the CPU has the features (detected).
                    Some(Level::Avx512) => return unsafe { avx512($($arg),*) },
                    // SAFETY: as above.
                    Some(Level::Avx2) => return unsafe { avx2($($arg),*) },
                    None => {}
                }
            }
            $body($($arg),*)
        }
    };
}

/// From this many input rows on (long prompts), a dense layer widens its weights to f32 for the call and lets
/// candle's gemm multiply: it reuses each weight across many rows, which the decode kernel does not.
const GEMM_ROWS: usize = 128;

/// Bytes of f32 weights such a call widens at a time. Widening a whole matrix would hold a second copy of it, twice
/// the size of bf16 weights, for the call (470 MB for the fused gate/up projection of an 8B model).
const GEMM_SLICE_BYTES: usize = 4 << 20;

/// `x · Wᵀ` with candle's gemm, widening `slice_bytes` of `w`'s rows to f32 at a time and writing each slice's
/// output columns in place.
fn gemm_in_slices(x: &Tensor, w: &DenseWeight, slice_bytes: usize) -> Result<Tensor, Error> {
    let (m, rows, cols) = (x.dim(0)?, w.rows(), w.cols());
    let slice = (slice_bytes / (cols * 4).max(1)).max(64).min(rows).max(1);
    let mut out = vec![0f32; m * rows];
    let mut start = 0;
    while start < rows {
        let n = slice.min(rows - start);
        let mut wide = vec![0f32; n * cols];
        w.rows_into(start, n, &mut wide);
        let part = Tensor::from_vec(wide, (n, cols), &Device::Cpu)?;
        let y = x.matmul(&part.t()?)?.flatten_all()?.to_vec1::<f32>()?;
        for (i, row) in y.chunks_exact(n).enumerate() {
            out[i * rows + start..i * rows + start + n].copy_from_slice(row);
        }
        start += n;
    }
    Ok(Tensor::from_vec(out, (m, rows), &Device::Cpu)?)
}

/// A linear layer `y = x Wᵀ + b`: weights as stored, or quantised at load into GGML blocks (our kernel reads both).
struct Linear {
    w: DenseWeight,
    b: Option<Tensor>,
}

impl Linear {
    /// The layer of `w` (made of the tensors `key` names) and `b`, its weights quantised as `q` says.
    fn new(q: &mut Quantiser, key: &str, w: DenseWeight, b: Option<Tensor>) -> Result<Linear, Error> {
        Ok(Linear {
            w: q.matrix(key, w)?,
            b,
        })
    }

    /// Bytes the weights and bias take as they are run.
    fn bytes(&self) -> usize {
        self.w.bytes() + self.b.as_ref().map_or(0, tensor_bytes)
    }

    /// `x`: `[tokens, in]` → `[tokens, out]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        let w = &self.w;
        let y = if x.dim(0)? >= GEMM_ROWS && !w.stored().is_quantised() {
            gemm_in_slices(x, w, GEMM_SLICE_BYTES)?
        } else {
            let m = x.dim(0)?;
            let xs = x.flatten_all()?.to_vec1::<f32>()?;
            Tensor::from_vec(w.matmul_t(&xs, m), (m, w.rows()), &Device::Cpu)?
        };
        Ok(match &self.b {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

/// The rows of `parts` as one matrix (a fused projection); `names` say which tensors they are.
fn fuse(parts: &[DenseWeight], names: &[String]) -> Result<DenseWeight, Error> {
    DenseWeight::concat(parts).ok_or_else(|| {
        Error::Candle(candle_core::Error::Msg(format!(
            "tensors {} are fused into one layer but differ in dtype or width",
            names.join(", ")
        )))
    })
}

enum Mlp {
    /// SwiGLU with gate and up projections fused into one matrix.
    Dense {
        gate_up: Linear,
        down: Linear,
        inter: usize,
    },
    /// Sparse mixture of experts (Mixtral, Qwen3-MoE, GPT-OSS): a router, and per expert its fused gate/up
    /// projection and its down projection; only the experts a token is routed to are computed.
    Moe {
        router: Tensor,
        /// GPT-OSS's router bias.
        router_bias: Option<Tensor>,
        experts: Vec<(Linear, Linear)>,
        top_k: usize,
        inter: usize,
        routing: Routing,
        act: ExpertAct,
    },
}

/// How a mixture of experts weighs the experts it picks for a token.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Routing {
    /// Softmax over every expert's logit, then the top k, renormalised to sum to 1 when `normalise` (Mixtral
    /// always, Qwen3-MoE with `norm_topk_prob`).
    SoftmaxTopK { normalise: bool },
    /// The top k logits, then a softmax over those k (GPT-OSS).
    TopKSoftmax,
}

/// The activation between an expert's two projections.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ExpertAct {
    /// `silu(gate) · up`, the gate rows first (see [`swiglu`]).
    SwiGlu,
    /// GPT-OSS: gate and up rows interleaved (the even row a gate), the gate clamped to at most `limit` and up to
    /// ±`limit`, then `(up + 1) · gate · σ(alpha · gate)`.
    ClampedSwiGlu { alpha: f32, limit: f32 },
}

impl Routing {
    /// Per expert: the rows of `logits` (`[tokens, experts]`) routed to it and their weights.
    fn route(self, logits: &[Vec<f32>], experts: usize, top_k: usize) -> Vec<(Vec<u32>, Vec<f32>)> {
        let mut routed: Vec<(Vec<u32>, Vec<f32>)> = vec![(Vec::new(), Vec::new()); experts];
        for (t, row) in logits.iter().enumerate() {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let chosen = &order[..top_k.min(order.len())];
            let weights: Vec<f32> = match self {
                Routing::SoftmaxTopK { normalise } => {
                    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
                    let probs: Vec<f32> = chosen.iter().map(|&e| (row[e] - max).exp() / sum).collect();
                    let total: f32 = if normalise { probs.iter().sum() } else { 1.0 };
                    probs.iter().map(|p| p / total).collect()
                }
                Routing::TopKSoftmax => {
                    let max = chosen.first().map_or(0.0, |&e| row[e]);
                    let exps: Vec<f32> = chosen.iter().map(|&e| (row[e] - max).exp()).collect();
                    let sum: f32 = exps.iter().sum();
                    exps.iter().map(|x| x / sum).collect()
                }
            };
            for (&e, w) in chosen.iter().zip(weights) {
                routed[e].0.push(t as u32);
                routed[e].1.push(w);
            }
        }
        routed
    }
}

/// GPT-OSS's expert activation (see [`ExpertAct::ClampedSwiGlu`]) of `[tokens, 2 · inter]` interleaved rows.
fn clamped_swiglu(gate_up: &Tensor, inter: usize, alpha: f32, limit: f32) -> Result<Tensor, Error> {
    let rows = gate_up.dim(0)?;
    let gu = gate_up.flatten_all()?.to_vec1::<f32>()?;
    let out: Vec<f32> = gu
        .chunks_exact(2)
        .map(|pair| {
            let g = pair[0].min(limit);
            let u = pair[1].clamp(-limit, limit);
            (u + 1.0) * (g / (1.0 + exp(-alpha * g)))
        })
        .collect();
    Ok(Tensor::from_vec(out, (rows, inter), &Device::Cpu)?)
}

/// `silu(gate) · up` of the fused projection's rows `[tokens, 2 · inter]` (gate first): `[tokens, inter]`.
/// Hand-rolled: candle's `silu` calls libm's `expf` per value and its two ops each allocate and spread eight rows over
/// the thread pool (1.6 ms of a 24 ms decode step of eight sequences); here one vectorised pass, rows in parallel
/// for prompts.
fn swiglu(gate_up: &Tensor, inter: usize) -> Result<Tensor, Error> {
    use rayon::prelude::*;
    let rows = gate_up.dim(0)?;
    let gu = gate_up.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; rows * inter];
    let each = |(o, gu): (&mut [f32], &[f32])| silu_mul(&gu[..inter], &gu[inter..], o);
    if rows > ROW_BLOCK {
        out.par_chunks_mut(inter).zip(gu.par_chunks(2 * inter)).for_each(each);
    } else {
        out.chunks_mut(inter).zip(gu.chunks(2 * inter)).for_each(each);
    }
    Ok(Tensor::from_vec(out, (rows, inter), &Device::Cpu)?)
}

per_instruction_set!(
    /// `o = gate / (1 + e^-gate) · up`.
    fn silu_mul(gate: &[f32], up: &[f32], o: &mut [f32]) => silu_mul_body
);

#[inline(always)]
fn silu_mul_body(gate: &[f32], up: &[f32], o: &mut [f32]) {
    for ((o, &g), &u) in o.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

impl Mlp {
    fn forward(&self, x: &Tensor) -> Result<Tensor, Error> {
        match self {
            Mlp::Dense { gate_up, down, inter } => down.forward(&swiglu(&gate_up.forward(x)?, *inter)?),
            Mlp::Moe {
                router,
                router_bias,
                experts,
                top_k,
                inter,
                routing,
                act,
            } => {
                let mut logits = x.matmul(&router.t()?)?;
                if let Some(b) = router_bias {
                    logits = logits.broadcast_add(b)?;
                }
                let routed = routing.route(&logits.to_vec2()?, experts.len(), *top_k);
                let mut out = x.zeros_like()?;
                for ((w13, w2), (idx, weights)) in experts.iter().zip(routed) {
                    if idx.is_empty() {
                        continue;
                    }
                    let n = idx.len();
                    let idx = Tensor::from_vec(idx, n, x.device())?;
                    let xs = x.index_select(&idx, 0)?;
                    let gate_up = w13.forward(&xs)?;
                    let hidden = match *act {
                        ExpertAct::SwiGlu => swiglu(&gate_up, *inter)?,
                        ExpertAct::ClampedSwiGlu { alpha, limit } => clamped_swiglu(&gate_up, *inter, alpha, limit)?,
                    };
                    let ys = w2.forward(&hidden)?;
                    let w = Tensor::from_vec(weights, (n, 1), x.device())?;
                    out = out.index_add(&idx, &ys.broadcast_mul(&w)?, 0)?;
                }
                Ok(out)
            }
        }
    }
}

struct Layer {
    input_norm: Tensor,
    qkv: Linear,
    /// Qwen3's RMS norms of each query and key head (weights of `head_dim`).
    q_norm: Option<Vec<f32>>,
    k_norm: Option<Vec<f32>>,
    /// GPT-OSS's learned sink logit of each query head.
    sinks: Option<Vec<f32>>,
    o: Linear,
    post_norm: Tensor,
    mlp: Mlp,
}

impl Layer {
    /// Bytes of the layer's weights as run; with `routed_only`, of a mixture of experts only the `top_k` experts a
    /// token is routed to (an average expert's bytes each), as one decode step reads them.
    fn weight_bytes(&self, routed_only: bool) -> usize {
        let norms = (self.q_norm.as_ref().map_or(0, Vec::len)
            + self.k_norm.as_ref().map_or(0, Vec::len)
            + self.sinks.as_ref().map_or(0, Vec::len))
            * 4;
        let mlp = match &self.mlp {
            Mlp::Dense { gate_up, down, .. } => gate_up.bytes() + down.bytes(),
            Mlp::Moe {
                router,
                router_bias,
                experts,
                top_k,
                ..
            } => {
                let all: usize = experts.iter().map(|(a, b)| a.bytes() + b.bytes()).sum();
                let read = if routed_only {
                    all / experts.len().max(1) * top_k
                } else {
                    all
                };
                tensor_bytes(router) + router_bias.as_ref().map_or(0, tensor_bytes) + read
            }
        };
        tensor_bytes(&self.input_norm) + tensor_bytes(&self.post_norm) + self.qkv.bytes() + self.o.bytes() + norms + mlp
    }
}

/// The KV cache of one sequence: per layer, keys and values `[kv_heads, capacity, head_dim]` (f32, row-major),
/// grown by doubling (never re-allocated per token).
pub struct KvCache {
    layers: Vec<(Vec<f32>, Vec<f32>)>,
    len: usize,
    cap: usize,
    max: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl KvCache {
    /// Number of tokens cached (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes currently allocated.
    pub fn allocated_bytes(&self) -> usize {
        self.layers.iter().map(|(k, v)| (k.len() + v.len()) * 4).sum()
    }

    /// Floats one position takes, keys and values of every layer together (the size of a position in
    /// [`Self::read_positions`]'s layout).
    pub fn floats_per_position(&self) -> usize {
        self.layers.len() * 2 * self.kv_heads * self.head_dim
    }

    /// A copy of positions `start..start + n`: for each layer its keys then its values, each
    /// `[kv_heads, n, head_dim]`. Fails unless those positions are cached.
    pub fn read_positions(&self, start: usize, n: usize) -> Result<Vec<f32>, Error> {
        if start + n > self.len {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "positions {start}..{} are not cached: the cache holds {} positions",
                start + n,
                self.len
            ))));
        }
        let (hd, cap) = (self.head_dim, self.cap);
        let mut out = Vec::with_capacity(n * self.floats_per_position());
        for (k, v) in &self.layers {
            for buf in [k, v] {
                for h in 0..self.kv_heads {
                    out.extend_from_slice(&buf[(h * cap + start) * hd..(h * cap + start + n) * hd]);
                }
            }
        }
        Ok(out)
    }

    /// Appends the first `n` positions of `data`, positions copied out by [`Self::read_positions`] with `block`
    /// positions in it (`n <= block`), after the cached ones.
    pub fn append_positions(&mut self, data: &[f32], block: usize, n: usize) -> Result<(), Error> {
        if n > block || data.len() != block * self.floats_per_position() {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "{} floats for {n} of {block} positions: expected {} floats and n <= block",
                data.len(),
                block * self.floats_per_position()
            ))));
        }
        self.reserve(n)?;
        let (hd, cap, at, kvh) = (self.head_dim, self.cap, self.len, self.kv_heads);
        let mut from = 0;
        for (k, v) in &mut self.layers {
            for buf in [k, v] {
                for h in 0..kvh {
                    buf[(h * cap + at) * hd..(h * cap + at + n) * hd].copy_from_slice(&data[from..from + n * hd]);
                    from += block * hd;
                }
            }
        }
        self.len += n;
        Ok(())
    }

    /// Makes room for `n` more tokens in every layer.
    fn reserve(&mut self, n: usize) -> Result<(), Error> {
        let need = self.len + n;
        if need > self.max {
            return Err(Error::ContextOverflow {
                needed: need,
                context_length: self.max,
            });
        }
        if need <= self.cap {
            return Ok(());
        }
        let new_cap = need.max(self.cap * 2).max(64).min(self.max);
        let (hd, used) = (self.head_dim, self.len * self.head_dim);
        for (k, v) in &mut self.layers {
            for buf in [k, v] {
                let mut grown = vec![0f32; self.kv_heads * new_cap * hd];
                for h in 0..self.kv_heads {
                    grown[h * new_cap * hd..][..used].copy_from_slice(&buf[h * self.cap * hd..][..used]);
                }
                *buf = grown;
            }
        }
        self.cap = new_cap;
        Ok(())
    }

    /// Writes the keys and values of `layer` for rows `start..start + n` of a batch of `total` rows, given as
    /// `[kv_heads, total, head_dim]`, at the current length.
    fn append(&mut self, layer: usize, k: &[f32], v: &[f32], total: usize, start: usize, n: usize) {
        let (hd, cap, at) = (self.head_dim, self.cap, self.len);
        let (kc, vc) = &mut self.layers[layer];
        for h in 0..self.kv_heads {
            let (dst, src) = ((h * cap + at) * hd, (h * total + start) * hd);
            kc[dst..dst + n * hd].copy_from_slice(&k[src..src + n * hd]);
            vc[dst..dst + n * hd].copy_from_slice(&v[src..src + n * hd]);
        }
    }

    /// Keys and values of `layer` for the first `len` positions, as `[kv_heads, len, head_dim]` tensors.
    fn tensors(&self, layer: usize, len: usize) -> Result<(Tensor, Tensor), Error> {
        let (kc, vc) = &self.layers[layer];
        let shape = (self.kv_heads, self.cap, self.head_dim);
        let k = Tensor::from_slice(kc, shape, &Device::Cpu)?.narrow(1, 0, len)?;
        let v = Tensor::from_slice(vc, shape, &Device::Cpu)?.narrow(1, 0, len)?;
        Ok((k, v))
    }
}

/// The fused projection's rows `[tokens, (heads + 2 · kv_heads) · head_dim]` split into queries, keys and values,
/// each `[heads, tokens, head_dim]`, with the rotary embedding applied to queries and keys (`rope`: `cos` and `sin`
/// of `[tokens, head_dim / 2]`, halves rotated as transformers' `rotate_half` does) after Qwen3's per-head RMS
/// norms where the model has them. Hand-rolled: as candle tensor ops this was a dozen small ops a layer (narrow,
/// transpose, copy, rope, copy back), five times the time of the arithmetic for a decode step of eight sequences.
fn split_heads(
    qkv: &[f32],
    (nh, nkv, hd): (usize, usize, usize),
    (cos, sin): (&[f32], &[f32]),
    (q_norm, k_norm, eps): (Option<&[f32]>, Option<&[f32]>, f32),
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let width = (nh + 2 * nkv) * hd;
    let total = qkv.len() / width;
    let half = hd / 2;
    let (mut qs, mut ks, mut vs) = (
        vec![0f32; nh * total * hd],
        vec![0f32; nkv * total * hd],
        vec![0f32; nkv * total * hd],
    );
    let mut head = vec![0f32; hd];
    let mut rotate = |src: &[f32], norm: Option<&[f32]>, t: usize, dst: &mut [f32]| {
        head.copy_from_slice(src);
        if let Some(w) = norm {
            let mean = head.iter().map(|v| v * v).sum::<f32>() / hd as f32;
            let r = 1.0 / (mean + eps).sqrt();
            for (v, w) in head.iter_mut().zip(w) {
                *v = *v * r * w;
            }
        }
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        let (x1, x2) = head.split_at(half);
        let (d1, d2) = dst.split_at_mut(half);
        for i in 0..half {
            d1[i] = x1[i] * c[i] - x2[i] * s[i];
            d2[i] = x2[i] * c[i] + x1[i] * s[i];
        }
    };
    for (t, row) in qkv.chunks_exact(width).enumerate() {
        for h in 0..nh {
            rotate(
                &row[h * hd..(h + 1) * hd],
                q_norm,
                t,
                &mut qs[(h * total + t) * hd..][..hd],
            );
        }
        for h in 0..nkv {
            let k = &row[(nh + h) * hd..(nh + h + 1) * hd];
            rotate(k, k_norm, t, &mut ks[(h * total + t) * hd..][..hd]);
            let v = &row[(nh + nkv + h) * hd..(nh + nkv + h + 1) * hd];
            vs[(h * total + t) * hd..][..hd].copy_from_slice(v);
        }
    }
    (qs, ks, vs)
}

/// Attention rows computed directly (per head: scores, softmax, weighted values) rather than with candle's
/// tensor ops, up to this many new tokens of a sequence: for decode steps the dozen small ops per sequence and
/// layer cost more than the arithmetic.
const DIRECT_ATTENTION_ROWS: usize = 8;

/// `e^x` in straight-line f32 arithmetic so that a loop of it vectorises (libm's `expf` is a call per value, and
/// took about 15% of decode attention in a profile). Cephes' `expf`: x = n·ln 2 + r, a degree-6 polynomial for e^r, 2^n from the
/// exponent bits; relative error about 2e-7 on the softmax range (x ≤ 0). Hand-rolled: candle has no scalar form.
#[inline(always)]
fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_83);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n without a float-to-int conversion (Rust's saturating `as i32` does not vectorise well): in 2^23 + n + 127
    // the low mantissa bits are the integer n + 127 (0..=255 after the clamp), shifted into the exponent field.
    e * f32::from_bits((n + (127.0 + 8_388_608.0)).to_bits() << 23)
}

/// Causal attention of one sequence's `n` new query rows, rows `start..start + n` of the batch's `q`
/// (`[heads, total, head_dim]`), against its cache (already holding them), for the query heads of KV head `g`;
/// returns `[n, heads / kv_heads * head_dim]` (see [`interleave_groups`]).
/// With a sliding `window`, a row sees only the last `window` positions up to its own; with `sinks` (GPT-OSS), each
/// head's sink logit joins its softmax's denominator. Hand-rolled (see
/// [`DIRECT_ATTENTION_ROWS`]): the scores of the query heads sharing a KV head come from the matmul kernel (their
/// keys are read once, no horizontal sum per score), the softmax and the weighted sum of values are loops compiled
/// for AVX-512 and AVX2 as well, chosen at run time.
fn direct_attention(
    cache: &KvCache,
    layer: usize,
    q: &[f32],
    (heads, g): (usize, usize),
    rows: (usize, usize, usize),
    scale: f32,
    (window, sinks): (Option<usize>, Option<&[f32]>),
) -> Vec<f32> {
    let (total, start, n) = rows;
    let (hd, cap, kvh) = (cache.head_dim, cache.cap, cache.kv_heads);
    let groups = heads / kvh;
    let past = cache.len;
    let (kc, vc) = &cache.layers[layer];
    let mut out = vec![0f32; n * groups * hd];
    let mut queries = vec![0f32; ROW_BLOCK * hd];
    let mut scores = vec![0f32; (past + n) * ROW_BLOCK];
    let mut probs = vec![0f32; past + n];
    let keys = &kc[g * cap * hd..(g + 1) * cap * hd];
    let values = &vc[g * cap * hd..(g + 1) * cap * hd];
    for i in 0..n {
        let len = past + i + 1;
        let first = window.map_or(0, |w| len.saturating_sub(w));
        let seen = len - first;
        // The group's heads, at most ROW_BLOCK at a time.
        for h0 in (g * groups..(g + 1) * groups).step_by(ROW_BLOCK) {
            let mc = ROW_BLOCK.min((g + 1) * groups - h0);
            for (r, h) in (h0..h0 + mc).enumerate() {
                queries[r * hd..(r + 1) * hd].copy_from_slice(&q[(h * total + start + i) * hd..][..hd]);
            }
            // scores[t * mc + r] = key t · query r.
            let s = &mut scores[..seen * mc];
            rows_dot(
                Stored::F32,
                bytemuck::cast_slice(&keys[first * hd..len * hd]),
                hd,
                &queries[..mc * hd],
                mc,
                s,
            );
            for r in 0..mc {
                for t in 0..seen {
                    probs[t] = s[t * mc + r];
                }
                let o = &mut out[(i * groups + h0 - g * groups + r) * hd..][..hd];
                let sink = sinks.map_or(f32::NEG_INFINITY, |s| s[h0 + r]);
                softmax_weighted_sum(&mut probs[..seen], scale, sink, &values[first * hd..len * hd], o);
            }
        }
    }
    out
}

/// One sequence's attention rows `[n, heads * head_dim]` from its KV groups' parts (`[n, width]` each, `width` the
/// group's heads times `head_dim`, from [`direct_attention`]).
fn interleave_groups(parts: &[Vec<f32>], n: usize, width: usize) -> Vec<f32> {
    let mut out = vec![0f32; n * width * parts.len()];
    for (g, part) in parts.iter().enumerate() {
        assert_eq!(part.len(), n * width, "attention part of KV group {g}");
        for (i, row) in part.chunks_exact(width).enumerate() {
            out[(i * parts.len() + g) * width..][..width].copy_from_slice(row);
        }
    }
    out
}

per_instruction_set!(
    /// `o += Σ_t softmax(scale · scores)_t · values[t]`: one query's probabilities over its `scores.len()` positions
    /// and the weighted sum of their value rows (`values` holds `scores.len()` rows of `o.len()`). A finite `sink` is
    /// one more logit in the softmax that has no value row (GPT-OSS's attention sinks); `-inf` is none.
    fn softmax_weighted_sum(scores: &mut [f32], scale: f32, sink: f32, values: &[f32], o: &mut [f32]) => softmax_body
);

/// The body of [`softmax_weighted_sum`], inlined into each instruction-set variant. Plain loops, not iterator
/// adapters (an adapter's `fold` is a function of its own, compiled without the caller's target features), and
/// sixteen partial sums (an f32 sum in order cannot be vectorised).
#[inline(always)]
fn softmax_body(scores: &mut [f32], scale: f32, sink: f32, values: &[f32], o: &mut [f32]) {
    let hd = o.len();
    let main = scores.len() / 16 * 16;
    // Sixteen running maxima (`f32::max` in order is a chain of scalar compares, most of the softmax's time).
    let mut lanes = [f32::NEG_INFINITY; 16];
    for c in scores[..main].chunks_exact_mut(16) {
        for j in 0..16 {
            c[j] *= scale;
            lanes[j] = if c[j] > lanes[j] { c[j] } else { lanes[j] };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for m in lanes {
        max = if m > max { m } else { max };
    }
    for s in &mut scores[main..] {
        *s *= scale;
        max = if *s > max { *s } else { max };
    }
    let has_sink = sink > f32::NEG_INFINITY;
    if has_sink && sink > max {
        max = sink;
    }
    for s in scores.iter_mut() {
        *s = exp(*s - max);
    }
    let mut acc = [0f32; 16];
    let mut t = 0;
    while t < main {
        let c = &scores[t..t + 16];
        for j in 0..16 {
            acc[j] += c[j];
        }
        t += 16;
    }
    let mut sum = 0f32;
    for a in acc {
        sum += a;
    }
    for s in &scores[main..] {
        sum += s;
    }
    if has_sink {
        sum += exp(sink - max);
    }
    let inv = 1.0 / sum;
    match hd {
        64 => weighted_sum::<64>(scores, inv, values, o),
        128 => weighted_sum::<128>(scores, inv, values, o),
        _ => {
            for (t, p) in scores.iter().enumerate() {
                let p = p * inv;
                let v = &values[t * hd..(t + 1) * hd];
                for d in 0..hd {
                    o[d] += p * v[d];
                }
            }
        }
    }
}

/// `o += inv · Σ_t probs[t] · values[t]` for the common head sizes: the sum is kept in local arrays the compiler
/// holds in vector registers, two positions at a time into two of them (with `o` itself as the accumulator every
/// position waited for the previous one's store: a third of a decode step's attention time at 8 streams).
#[inline(always)]
fn weighted_sum<const HD: usize>(probs: &[f32], inv: f32, values: &[f32], o: &mut [f32]) {
    let (mut even, mut odd) = ([0f32; HD], [0f32; HD]);
    let pairs = probs.len() / 2;
    for t in 0..pairs {
        let (p0, p1) = (probs[2 * t], probs[2 * t + 1]);
        let v = &values[2 * t * HD..(2 * t + 2) * HD];
        let (v0, v1) = v.split_at(HD);
        for d in 0..HD {
            even[d] = p0.mul_add(v0[d], even[d]);
            odd[d] = p1.mul_add(v1[d], odd[d]);
        }
    }
    if probs.len() % 2 == 1 {
        let t = probs.len() - 1;
        let v = &values[t * HD..(t + 1) * HD];
        for d in 0..HD {
            even[d] += probs[t] * v[d];
        }
    }
    for d in 0..HD {
        o[d] += inv * (even[d] + odd[d]);
    }
}

/// A loaded decoder-only transformer.
pub struct Transformer {
    cfg: ModelConfig,
    embed: DenseWeight,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Linear,
    inv_freq: Vec<f64>,
    position_scale: f64,
    /// YaRN's scale of cos and sin (1 otherwise).
    rope_attention_factor: f32,
    weight_bytes: u64,
    quantised: QuantisedLoad,
}

fn inv_freq(cfg: &ModelConfig) -> Vec<f64> {
    let d = cfg.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| {
            // transformers computes these in float32; round the same way so logits match closely.
            let f = 1.0f32 / (cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32);
            f64::from(f)
        })
        .collect();
    match &cfg.rope_scaling {
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let low_wavelen = original_max_position_embeddings / low_freq_factor;
            let high_wavelen = original_max_position_embeddings / high_freq_factor;
            base.into_iter()
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < high_wavelen {
                        f
                    } else if wavelen > low_wavelen {
                        f / factor
                    } else {
                        let smooth = (original_max_position_embeddings / wavelen - low_freq_factor)
                            / (high_freq_factor - low_freq_factor);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .map(|f| f64::from(f as f32))
                .collect()
        }
        Some(RopeScaling::Yarn {
            factor,
            beta_fast,
            beta_slow,
            original_max_position_embeddings,
            truncate,
            ..
        }) => {
            // transformers' `_compute_yarn_parameters`: the correction range in f64, the blend in f32.
            let dim = d as f64;
            let log_base = cfg.rope_theta.ln();
            let correction = |rotations: f64| {
                dim * (original_max_position_embeddings / (rotations * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * log_base)
            };
            let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
            if *truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0), high.min(dim - 1.0));
            if low == high {
                high += 0.001;
            }
            let (low32, span32, factor32) = (low as f32, (high - low) as f32, *factor as f32);
            (0..d / 2)
                .map(|i| {
                    let pos = (cfg.rope_theta as f32).powf((2 * i) as f32 / d as f32);
                    let (extrapolated, interpolated) = (1.0f32 / pos, 1.0f32 / (factor32 * pos));
                    let extrapolation = 1.0 - ((i as f32 - low32) / span32).clamp(0.0, 1.0);
                    f64::from(interpolated * (1.0 - extrapolation) + extrapolated * extrapolation)
                })
                .collect()
        }
        _ => base,
    }
}

/// The mixture of experts of layer prefix `p`: Mixtral's (`block_sparse_moe`, experts' `w1`/`w3`/`w2`), Qwen3-MoE's
/// (`mlp.gate`, experts' `gate_proj`/`up_proj`/`down_proj`) or GPT-OSS's (`mlp.router` with a bias, and the experts
/// stacked in one tensor each, see [`stacked_experts`]).
fn moe(w: &Weights, q: &mut Quantiser, p: &str, cfg: &ModelConfig) -> Result<Mlp, Error> {
    let (h, inter, n) = (cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_local_experts);
    let (router_name, router_bias, experts, routing, act) = match cfg.arch {
        Arch::GptOss => {
            let m = format!("{p}.mlp.experts");
            let gate_up_bias = w.get(&format!("{m}.gate_up_proj_bias"), &[n, 2 * inter])?;
            let down_bias = w.get(&format!("{m}.down_proj_bias"), &[n, h])?;
            let gate_up = stacked_experts(w, &format!("{m}.gate_up_proj"), n, 2 * inter, h)?;
            let down = stacked_experts(w, &format!("{m}.down_proj"), n, h, inter)?;
            let mut experts = Vec::with_capacity(n);
            for (e, (gu, d)) in gate_up.into_iter().zip(down).enumerate() {
                experts.push((
                    Linear::new(q, &format!("{m}.gate_up_proj[{e}]"), gu, Some(gate_up_bias.get(e)?))?,
                    Linear::new(q, &format!("{m}.down_proj[{e}]"), d, Some(down_bias.get(e)?))?,
                ));
            }
            let bias = w.get(&format!("{p}.mlp.router.bias"), &[n])?;
            let act = ExpertAct::ClampedSwiGlu {
                alpha: 1.702,
                limit: cfg.swiglu_limit,
            };
            (
                format!("{p}.mlp.router.weight"),
                Some(bias),
                experts,
                Routing::TopKSoftmax,
                act,
            )
        }
        _ => {
            // (router, expert prefix, gate, up, down) names.
            let (router, m, [g, u, d]) = if cfg.arch == Arch::Mixtral {
                let m = format!("{p}.block_sparse_moe");
                (format!("{m}.gate.weight"), m, ["w1", "w3", "w2"])
            } else {
                let m = format!("{p}.mlp");
                (format!("{m}.gate.weight"), m, ["gate_proj", "up_proj", "down_proj"])
            };
            let mut experts = Vec::with_capacity(n);
            for e in 0..n {
                let names = [g, u].map(|x| format!("{m}.experts.{e}.{x}.weight"));
                let w13 = [w.dense(&names[0], inter, h)?, w.dense(&names[1], inter, h)?];
                let w2_name = format!("{m}.experts.{e}.{d}.weight");
                let w2 = w.dense(&w2_name, h, inter)?;
                experts.push((
                    Linear::new(q, &names.join("+"), fuse(&w13, &names)?, None)?,
                    Linear::new(q, &w2_name, w2, None)?,
                ));
            }
            let routing = Routing::SoftmaxTopK {
                normalise: cfg.norm_topk_prob,
            };
            (router, None, experts, routing, ExpertAct::SwiGlu)
        }
    };
    Ok(Mlp::Moe {
        router: w.get(&router_name, &[n, h])?,
        router_bias,
        experts,
        top_k: cfg.num_experts_per_tok,
        inter,
        routing,
        act,
    })
}

/// GPT-OSS's experts of the stacked tensor `name`, each a `[rows, cols]` (output × input) matrix: MXFP4 as published
/// (`{name}_blocks`, `[experts, rows, cols / 32, 16]`, and `{name}_scales`, `[experts, rows, cols / 32]`; see
/// `dense/mxfp4.rs`), or dense as transformers holds them (`name`, `[experts, cols, rows]`, input × output: each expert
/// transposed into rows once, at load). Either way the mapped bytes are released once laid out anew: the experts are
/// held once, at their stored size.
fn stacked_experts(
    w: &Weights,
    name: &str,
    experts: usize,
    rows: usize,
    cols: usize,
) -> Result<Vec<DenseWeight>, Error> {
    use safetensors::Dtype;
    let (blocks_name, scales_name) = (format!("{name}_blocks"), format!("{name}_scales"));
    if w.contains(&blocks_name) {
        if !cols.is_multiple_of(crate::dense::BLOCK) {
            return Err(Error::Candle(candle_core::Error::Msg(format!(
                "tensor `{blocks_name}`: MXFP4 rows of {cols} values are not whole blocks of 32"
            ))));
        }
        let per_row = cols / crate::dense::BLOCK;
        let (_, blocks) = w.raw(&blocks_name, &[experts, rows, per_row, 16], &[Dtype::U8])?;
        let (_, scales) = w.raw(&scales_name, &[experts, rows, per_row], &[Dtype::U8])?;
        let out = (0..experts)
            .map(|e| {
                let b = &blocks[e * rows * per_row * 16..(e + 1) * rows * per_row * 16];
                let s = &scales[e * rows * per_row..(e + 1) * rows * per_row];
                DenseWeight::held(
                    crate::dense::mxfp4::interleave(b, s, rows, cols),
                    Stored::Mxfp4,
                    rows,
                    cols,
                )
            })
            .collect();
        w.release(&blocks_name);
        w.release(&scales_name);
        return Ok(out);
    }
    let (dtype, bytes) = w.raw(name, &[experts, cols, rows], &[Dtype::F32, Dtype::F16, Dtype::BF16])?;
    let (stored, size) = match dtype {
        Dtype::F16 => (Stored::F16, 2),
        Dtype::BF16 => (Stored::Bf16, 2),
        _ => (Stored::F32, 4),
    };
    let out = (0..experts)
        .map(|e| {
            let src = &bytes[e * rows * cols * size..(e + 1) * rows * cols * size];
            let mut t = vec![0u8; rows * cols * size];
            for (i, input) in src.chunks_exact(rows * size).enumerate() {
                for (j, v) in input.chunks_exact(size).enumerate() {
                    t[(j * cols + i) * size..][..size].copy_from_slice(v);
                }
            }
            DenseWeight::held(t, stored, rows, cols)
        })
        .collect();
    w.release(name);
    Ok(out)
}

impl Transformer {
    /// Loads the weights of `dir` for `cfg`, checking every tensor's presence and shape.
    pub fn load(dir: &Path, cfg: ModelConfig, quantize: Option<Quantize>) -> Result<Transformer, Error> {
        Self::load_cached(dir, cfg, quantize, None)
    }

    /// [`Self::load`], with the quantised blocks kept in the file `cache` between loads: mapped from it and used in
    /// place when it holds this model's blocks of `quantize`, else quantised and written to it (see
    /// `quant_cache.rs`). Ignored without a quantisation.
    pub fn load_cached(
        dir: &Path,
        cfg: ModelConfig,
        quantize: Option<Quantize>,
        cache: Option<&Path>,
    ) -> Result<Transformer, Error> {
        let mut w = Weights::open(dir)?;
        w.set_release_after_read(quantize.is_some());
        let matrices: usize = (0..cfg.num_hidden_layers)
            .map(|l| {
                if cfg.is_moe_layer(l) {
                    2 + 2 * cfg.num_local_experts
                } else {
                    4
                }
            })
            .sum();
        let mut q = Quantiser::new(quantize, cache, w.fingerprint(), matrices + 1);
        let (h, hd, inter) = (cfg.hidden_size, cfg.head_dim, cfg.intermediate_size);
        let (qd, kvd) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let embed = w.dense("model.embed_tokens.weight", cfg.vocab_size, h)?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{l}");
            let qkv_names = ["q", "k", "v"].map(|n| format!("{p}.self_attn.{n}_proj.weight"));
            let qkv_w = [
                w.dense(&qkv_names[0], qd, h)?,
                w.dense(&qkv_names[1], kvd, h)?,
                w.dense(&qkv_names[2], kvd, h)?,
            ];
            let qkv_b = if cfg.attention_bias {
                Some(Tensor::cat(
                    &[
                        w.get(&format!("{p}.self_attn.q_proj.bias"), &[qd])?,
                        w.get(&format!("{p}.self_attn.k_proj.bias"), &[kvd])?,
                        w.get(&format!("{p}.self_attn.v_proj.bias"), &[kvd])?,
                    ],
                    0,
                )?)
            } else {
                None
            };
            let qkv = Linear::new(&mut q, &qkv_names.join("+"), fuse(&qkv_w, &qkv_names)?, qkv_b)?;
            let o_b = if cfg.attention_bias && w.contains(&format!("{p}.self_attn.o_proj.bias")) {
                Some(w.get(&format!("{p}.self_attn.o_proj.bias"), &[h])?)
            } else {
                None
            };
            let o_name = format!("{p}.self_attn.o_proj.weight");
            let o = Linear::new(&mut q, &o_name, w.dense(&o_name, h, qd)?, o_b)?;
            let (q_norm, k_norm) = if cfg.qk_norm {
                (
                    Some(
                        w.get(&format!("{p}.self_attn.q_norm.weight"), &[hd])?
                            .to_vec1::<f32>()?,
                    ),
                    Some(
                        w.get(&format!("{p}.self_attn.k_norm.weight"), &[hd])?
                            .to_vec1::<f32>()?,
                    ),
                )
            } else {
                (None, None)
            };
            let sinks = if cfg.attention_sinks {
                Some(
                    w.get(&format!("{p}.self_attn.sinks"), &[cfg.num_attention_heads])?
                        .to_vec1::<f32>()?,
                )
            } else {
                None
            };
            let mlp = if cfg.is_moe_layer(l) {
                moe(&w, &mut q, &p, &cfg)?
            } else {
                let names = ["gate", "up"].map(|n| format!("{p}.mlp.{n}_proj.weight"));
                let gate_up = [w.dense(&names[0], inter, h)?, w.dense(&names[1], inter, h)?];
                let down_name = format!("{p}.mlp.down_proj.weight");
                let down = w.dense(&down_name, h, inter)?;
                Mlp::Dense {
                    gate_up: Linear::new(&mut q, &names.join("+"), fuse(&gate_up, &names)?, None)?,
                    down: Linear::new(&mut q, &down_name, down, None)?,
                    inter,
                }
            };
            layers.push(Layer {
                input_norm: w.get(&format!("{p}.input_layernorm.weight"), &[h])?,
                qkv,
                q_norm,
                k_norm,
                sinks,
                o,
                post_norm: w.get(&format!("{p}.post_attention_layernorm.weight"), &[h])?,
                mlp,
            });
        }
        let norm = w.get("model.norm.weight", &[h])?;
        let (head_name, head) = if cfg.tie_word_embeddings && !w.contains("lm_head.weight") {
            ("model.embed_tokens.weight", embed.clone())
        } else {
            ("lm_head.weight", w.dense("lm_head.weight", cfg.vocab_size, h)?)
        };
        let lm_head = Linear::new(&mut q, head_name, head, None)?;
        let quantised = q.finish();
        let position_scale = match cfg.rope_scaling {
            Some(RopeScaling::Linear { factor }) => 1.0 / factor,
            _ => 1.0,
        };
        let model_cfg_yarn = match cfg.rope_scaling {
            Some(RopeScaling::Yarn { attention_factor, .. }) => Some(attention_factor),
            _ => None,
        };
        let weight_bytes = w.total_bytes();
        let model = Transformer {
            inv_freq: inv_freq(&cfg),
            cfg,
            embed,
            layers,
            norm,
            lm_head,
            position_scale,
            rope_attention_factor: match model_cfg_yarn {
                Some(a) => a as f32,
                None => 1.0,
            },
            weight_bytes,
            quantised,
        };
        if quantize.is_some() {
            w.release_all_but(&model.mapped_ranges());
        }
        drop(w);
        tracing::debug!(arch = %model.cfg.arch_name, layers = model.cfg.num_hidden_layers, ?quantize, "model loaded");
        Ok(model)
    }

    /// The file ranges the model's matrices read in place: the embedding, and matrices kept as stored.
    fn mapped_ranges(&self) -> Vec<(Arc<memmap2::Mmap>, std::ops::Range<usize>)> {
        let mut linears: Vec<&Linear> = vec![&self.lm_head];
        for l in &self.layers {
            linears.extend([&l.qkv, &l.o]);
            match &l.mlp {
                Mlp::Dense { gate_up, down, .. } => linears.extend([gate_up, down]),
                Mlp::Moe { experts, .. } => linears.extend(experts.iter().flat_map(|(a, b)| [a, b])),
            }
        }
        let mut ranges = self.embed.mapped_ranges();
        ranges.extend(linears.iter().flat_map(|l| l.w.mapped_ranges()));
        ranges
    }

    /// What the load did about quantisation (all zero without one).
    pub fn quantised_load(&self) -> QuantisedLoad {
        self.quantised
    }

    /// Bytes of the weights held in memory (quantised blocks made by this load and not kept in a cache file; small
    /// tensors are not counted): 0 when every matrix is read in place from a mapped file.
    pub fn heap_weight_bytes(&self) -> u64 {
        let mut n = self.embed.heap_bytes() + self.lm_head.w.heap_bytes();
        for l in &self.layers {
            n += l.qkv.w.heap_bytes() + l.o.w.heap_bytes();
            n += match &l.mlp {
                Mlp::Dense { gate_up, down, .. } => gate_up.w.heap_bytes() + down.w.heap_bytes(),
                Mlp::Moe { experts, .. } => experts.iter().map(|(a, b)| a.w.heap_bytes() + b.w.heap_bytes()).sum(),
            };
        }
        n as u64
    }

    /// Bytes of tensor data in the safetensors files.
    pub fn weight_bytes(&self) -> u64 {
        self.weight_bytes
    }

    /// Bytes the weights take as the model runs them: the file's bytes at full precision; with a quantisation, the
    /// quantised matrices plus the tensors kept as stored (embedding, norms, matrices too narrow to quantise). A tied
    /// output head that reads the embedding's own bytes counts once.
    pub fn held_weight_bytes(&self) -> u64 {
        let mut n = self.embed.bytes() + tensor_bytes(&self.norm);
        n += match &self.lm_head {
            Linear { w, b: None } if w.shares_bytes(&self.embed) => 0,
            head => head.bytes(),
        };
        n += self.layers.iter().map(|l| l.weight_bytes(false)).sum::<usize>();
        n as u64
    }

    /// Bytes one decode step of one stream reads: every matrix once; the input embedding one row, unless it is also
    /// the output head; of a mixture of experts, the `top_k` experts a token is routed to (an average expert's
    /// bytes each). The numerator of a decode's share of the streaming-read bound.
    pub fn decode_read_bytes(&self) -> u64 {
        let head = match &self.lm_head {
            Linear { w, b: None } if w.shares_bytes(&self.embed) => self.embed.bytes(),
            head => head.bytes() + self.embed.bytes() / self.cfg.vocab_size.max(1),
        };
        let layers: usize = self.layers.iter().map(|l| l.weight_bytes(true)).sum();
        (head + tensor_bytes(&self.norm) + layers) as u64
    }

    /// `cos` and `sin` of every position's angles: `[positions, head_dim / 2]` each.
    fn rope_tables(&self, positions: &[usize]) -> (Vec<f32>, Vec<f32>) {
        let half = self.inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            let p = p as f64 * self.position_scale;
            for f in &self.inv_freq {
                // float32 product as in transformers, then cos/sin.
                let a = (p as f32) * (*f as f32);
                cos.push(a.cos() * self.rope_attention_factor);
                sin.push(a.sin() * self.rope_attention_factor);
            }
        }
        (cos, sin)
    }

    /// The batched forward pass; returns the final hidden states of the rows in `pick` (`None`: all rows).
    fn run(&self, batch: &mut [SeqInput<'_>], last_only: bool) -> Result<Tensor, Error> {
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let groups = nh / nkv;
        let eps = cfg.rms_norm_eps as f32;
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut spans = Vec::with_capacity(batch.len());
        for item in batch.iter_mut() {
            if item.tokens.is_empty() {
                return Err(Error::Candle(candle_core::Error::Msg(
                    "empty token list in batch".into(),
                )));
            }
            item.cache.reserve(item.tokens.len())?;
            let start = ids.len();
            for (i, &t) in item.tokens.iter().enumerate() {
                if t as usize >= cfg.vocab_size {
                    return Err(Error::Candle(candle_core::Error::Msg(format!(
                        "token id {t} is outside the vocabulary of {} tokens",
                        cfg.vocab_size
                    ))));
                }
                ids.push(t);
                positions.push(item.cache.len() + i);
            }
            spans.push((start, item.tokens.len()));
        }
        let total = ids.len();
        let dev = Device::Cpu;
        let h = cfg.hidden_size;
        let mut rows = vec![0f32; total * h];
        for (&t, row) in ids.iter().zip(rows.chunks_exact_mut(h)) {
            self.embed.row_into(t as usize, row);
        }
        let mut x = Tensor::from_vec(rows, (total, h), &dev)?;
        let (cos, sin) = self.rope_tables(&positions);
        let scale = 1.0 / (hd as f64).sqrt();
        for (li, layer) in self.layers.iter().enumerate() {
            let window = cfg.window(li);
            let h = rms_norm(&x, &layer.input_norm, eps)?;
            let qkv = layer.qkv.forward(&h)?;
            // [heads, total, head_dim], every sequence's rows side by side.
            let (qs, ks, vs) = split_heads(
                &qkv.flatten_all()?.to_vec1::<f32>()?,
                (nh, nkv, hd),
                (&cos, &sin),
                (layer.q_norm.as_deref(), layer.k_norm.as_deref(), eps),
            );
            for (item, &(start, n)) in batch.iter_mut().zip(&spans) {
                item.cache.append(li, &ks, &vs, total, start, n);
            }
            // Decode rows of all sequences at once, a KV group of a sequence per task, on the product team (its
            // helper is already watching; rayon's idle worker would have to be woken for each layer).
            let direct_seqs: Vec<usize> = (0..batch.len())
                .filter(|&b| spans[b].1 <= DIRECT_ATTENTION_ROWS)
                .collect();
            let parts: Vec<OnceLock<Vec<f32>>> = (0..direct_seqs.len() * nkv).map(|_| OnceLock::new()).collect();
            {
                let batch: &[SeqInput<'_>] = batch;
                crate::team::run(parts.len(), &|t| {
                    let (b, g) = (direct_seqs[t / nkv], t % nkv);
                    let (start, n) = spans[b];
                    let part = direct_attention(
                        batch[b].cache,
                        li,
                        &qs,
                        (nh, g),
                        (total, start, n),
                        scale as f32,
                        (window, layer.sinks.as_deref()),
                    );
                    let _ = parts[t].set(part);
                });
            }
            // `team::run` returns once every task has run (or panics): no part is missing.
            let mut parts = parts.into_iter().map(|p| p.into_inner().unwrap_or_default());
            let mut direct: Vec<Option<Vec<f32>>> = vec![None; batch.len()];
            for &b in &direct_seqs {
                let group_parts: Vec<Vec<f32>> = parts.by_ref().take(nkv).collect();
                direct[b] = Some(interleave_groups(&group_parts, spans[b].1, groups * hd));
            }
            let mut outs = Vec::with_capacity(batch.len());
            for ((item, &(start, n)), direct) in batch.iter_mut().zip(&spans).zip(direct) {
                if let Some(o) = direct {
                    outs.push(Tensor::from_vec(o, (n, nh * hd), &dev)?);
                    continue;
                }
                let past = item.cache.len();
                let len = past + n;
                let (kall, vall) = item.cache.tensors(li, len)?;
                // Heads sharing a KV head are stacked: [kv_heads, groups * n, head_dim] against [kv_heads, len, hd].
                // This sequence's query rows of every head, `[heads, n, hd]`.
                let rows: Vec<f32> = (0..nh)
                    .flat_map(|h| &qs[(h * total + start) * hd..(h * total + start + n) * hd])
                    .copied()
                    .collect();
                let qi = Tensor::from_vec(rows, (nkv, groups * n, hd), &dev)?;
                let mut scores = (qi.matmul(&kall.t()?)? * scale)?;
                let mut mask = vec![0f32; groups * n * len];
                for r in 0..groups * n {
                    let pos = past + r % n;
                    let row = &mut mask[r * len..(r + 1) * len];
                    // Future positions, and with a window the positions it has slid past.
                    let first = window.map_or(0, |w| (pos + 1).saturating_sub(w));
                    let (seen, future) = row.split_at_mut(pos + 1);
                    for m in future.iter_mut().chain(&mut seen[..first]) {
                        *m = f32::NEG_INFINITY;
                    }
                }
                scores = scores.broadcast_add(&Tensor::from_vec(mask, (groups * n, len), &dev)?)?;
                let probs = match &layer.sinks {
                    // Each head's sink is one more logit, dropped after the softmax.
                    Some(sinks) => {
                        let column: Vec<f32> = (0..nkv * groups * n).map(|r| sinks[r / n]).collect();
                        let column = Tensor::from_vec(column, (nkv, groups * n, 1), &dev)?;
                        softmax_last_dim(&Tensor::cat(&[&scores, &column], 2)?)?.narrow(2, 0, len)?
                    }
                    None => softmax_last_dim(&scores)?,
                };
                let o = probs.matmul(&vall.contiguous()?)?; // [nkv, groups*n, hd]
                let o = o.reshape((nh, n, hd))?.transpose(0, 1)?.reshape((n, nh * hd))?;
                outs.push(o);
            }
            let attn = if outs.len() == 1 {
                outs.remove(0)
            } else {
                Tensor::cat(&outs, 0)?
            };
            x = (x + layer.o.forward(&attn)?)?;
            let h = rms_norm(&x, &layer.post_norm, eps)?;
            x = (x + layer.mlp.forward(&h)?)?;
        }
        for (item, &(_, n)) in batch.iter_mut().zip(&spans) {
            item.cache.len += n;
        }
        if last_only {
            let last: Vec<u32> = spans.iter().map(|&(s, n)| (s + n - 1) as u32).collect();
            let b = last.len();
            x = x.index_select(&Tensor::from_vec(last, b, &dev)?, 0)?;
        }
        let x = rms_norm(&x, &self.norm, eps)?;
        self.lm_head.forward(&x)
    }
}

impl CausalLm for Transformer {
    fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    fn new_cache(&self) -> KvCache {
        KvCache {
            layers: (0..self.cfg.num_hidden_layers)
                .map(|_| (Vec::new(), Vec::new()))
                .collect(),
            len: 0,
            cap: 0,
            max: self.cfg.max_position_embeddings,
            kv_heads: self.cfg.num_key_value_heads,
            head_dim: self.cfg.head_dim,
        }
    }

    fn forward_last(&self, batch: &mut [SeqInput<'_>]) -> Result<Tensor, Error> {
        self.run(batch, true)
    }

    fn forward_all(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Tensor, Error> {
        self.run(&mut [SeqInput { tokens, cache }], false)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_long_prompt_product_in_slices_equals_the_whole_product() {
        use candle_core::{Device, Tensor};
        let (rows, cols, m) = (300usize, 40usize, 130usize);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 31 % 97) as f32 - 48.0) / 17.0).collect();
        let w = super::DenseWeight::from_f32_for_tests(&values, rows, cols);
        let xs: Vec<f32> = (0..m * cols).map(|i| ((i * 13 % 29) as f32 - 14.0) / 7.0).collect();
        let x = Tensor::from_vec(xs, (m, cols), &Device::Cpu).unwrap();
        let whole = Tensor::from_vec(values, (rows, cols), &Device::Cpu).unwrap();
        let want = x.matmul(&whole.t().unwrap()).unwrap().to_vec2::<f32>().unwrap();
        // Slices of 64 rows (the least), of 100, and one slice of everything; the last slice is a partial one.
        for slice_bytes in [1, 100 * cols * 4, usize::MAX / 2] {
            let got = super::gemm_in_slices(&x, &w, slice_bytes)
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            for (g, w) in got.iter().zip(&want) {
                for (a, b) in g.iter().zip(w) {
                    assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{slice_bytes}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn the_vectorisable_exp_matches_libm_on_the_softmax_range() {
        let mut worst = 0f32;
        for i in 0..=200_000 {
            let x = -87.0 + 97.0 * i as f32 / 200_000.0;
            let (ours, theirs) = (super::exp(x), x.exp());
            worst = worst.max(((ours - theirs) / theirs).abs());
        }
        assert!(worst < 1e-6, "relative error {worst}");
        assert_eq!(super::exp(0.0), 1.0);
        assert!(super::exp(-1000.0) < 1e-37 && super::exp(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn the_attention_softmax_and_weighted_sum_match_a_plain_f64_one() {
        // Head sizes with their own register-held sums (64, 128) and one without; odd and even position counts.
        for hd in [16usize, 64, 128] {
            for len in [1usize, 2, 15, 16, 17, 130] {
                let scores: Vec<f32> = (0..len).map(|t| ((t * 37 % 23) as f32 - 11.0) * 0.7).collect();
                let values: Vec<f32> = (0..len * hd).map(|i| ((i * 53 % 101) as f32 - 50.0) / 25.0).collect();
                let scale = 0.125f32;
                let max = scores.iter().map(|&s| f64::from(s * scale)).fold(f64::MIN, f64::max);
                let e: Vec<f64> = scores.iter().map(|&s| (f64::from(s * scale) - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                let mut o = vec![0.5f32; hd]; // it adds to what is there
                super::softmax_weighted_sum(&mut scores.clone(), scale, f32::NEG_INFINITY, &values, &mut o);
                for (d, &got) in o.iter().enumerate() {
                    let want = 0.5
                        + (0..len)
                            .map(|t| e[t] / sum * f64::from(values[t * hd + d]))
                            .sum::<f64>();
                    assert!(
                        (f64::from(got) - want).abs() < 1e-5,
                        "hd {hd} len {len} d {d}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn silu_times_up_matches_the_formula_across_the_range() {
        let gate: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) / 5.0).collect();
        let up: Vec<f32> = (0..1001).map(|i| 1.0 + (i % 7) as f32).collect();
        let mut o = vec![0f32; gate.len()];
        super::silu_mul(&gate, &up, &mut o);
        for ((&g, &u), &got) in gate.iter().zip(&up).zip(&o) {
            let want = f64::from(g) / (1.0 + (-f64::from(g)).exp()) * f64::from(u);
            assert!(
                (f64::from(got) - want).abs() <= 1e-6 * want.abs().max(1.0),
                "silu({g}) · {u}: {got} vs {want}"
            );
        }
    }
}

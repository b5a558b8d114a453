//! Q4_K weights against activation rows rounded to 8-bit integers, on CPUs with AVX-512 VNNI: the decode step's
//! product, and the prompt's on CPUs without AMX tiles.
//!
//! Each activation row is rounded once per product into blocks of 256 signed bytes with one f32 step (GGML's Q8_K,
//! the blocks llama.cpp multiplies Q4_K with), stored in the order the weights' nibbles are read, with each
//! sub-block's byte sum kept for the weights' offsets. A weight super-block is then multiplied without widening
//! anything to f32: `vpmaddubsw` multiplies 64 nibbles by 64 activation bytes into 16-bit pair sums, `vpdpwssd`
//! weighs those with the sub-blocks' 6-bit scales and adds them into 32-bit lanes, and the super-block's two f16
//! scales are applied once. That is about a dozen instructions per activation row and 144-byte super-block, where
//! the f32 kernel widens and multiplies every value: at one row, the step is then bound by reading the weights.
//!
//! The activations are rounded to a step of 1/254 of their block's largest magnitude. The error that adds is well
//! below the 4-bit weights' own, and it is what llama.cpp computes for the same blocks; the f32 kernels
//! (`cmi serve --simd avx512`) keep the activations exact.
//!
//! Hand-rolled: candle's Q4_K × Q8_K dot product is written for AVX2 (32-byte vectors, no VNNI) and takes one
//! activation row at a time; this one reads a weight super-block once for up to eight rows.

use std::arch::x86_64::*;

use super::simd::q4k_scale_bytes;
use super::{BLOCK, Q4K_BYTES, ROW_BLOCK, SUPER_BLOCK, Stored};

/// The sub-block whose values sit at each 32-byte place of a rounded super-block: the order the kernel reads
/// nibbles in (a 64-byte load holds sub-blocks 0 and 2 in its low nibbles, 1 and 3 in its high ones). Its own
/// inverse: sub-block `s` sits at place `ORDER[s]`.
const ORDER: [usize; 8] = [0, 2, 1, 3, 4, 6, 5, 7];

/// Whether this CPU multiplies Q4_K blocks in 8-bit integers, and the kernels may now.
pub(crate) fn usable(stored: Stored) -> bool {
    static CPU: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    stored == Stored::Q4K
        && super::simd::int8_allowed()
        && *CPU.get_or_init(|| {
            std::is_x86_feature_detected!("avx512f")
                && std::is_x86_feature_detected!("avx512bw")
                && std::is_x86_feature_detected!("avx512vnni")
                && std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c")
        })
}

/// Up to [`ROW_BLOCK`] activation rows of `k` values (a multiple of 256), rounded for [`rows_dot`].
pub(crate) struct Rounded {
    rows: usize,
    k: usize,
    /// Each row's values as bytes, each super-block's sub-blocks in [`ORDER`].
    q: Vec<i8>,
    /// Per row and super-block: the value of one step of its bytes.
    step: Vec<f32>,
    /// Per row, super-block and sub-block (in column order): the step times the sum of the sub-block's bytes.
    sums: Vec<f32>,
}

impl Rounded {
    /// `x`: `rows` rows of `k` values.
    pub(crate) fn new(x: &[f32], k: usize) -> Rounded {
        assert!(
            k.is_multiple_of(SUPER_BLOCK) && x.len().is_multiple_of(k),
            "rows of whole super-blocks"
        );
        let rows = x.len() / k;
        let blocks = x.len() / SUPER_BLOCK;
        let mut out = Rounded {
            rows,
            k,
            q: vec![0; x.len()],
            step: Vec::with_capacity(blocks),
            sums: Vec::with_capacity(blocks * 8),
        };
        for (xs, q) in x.chunks_exact(SUPER_BLOCK).zip(out.q.chunks_exact_mut(SUPER_BLOCK)) {
            let largest = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let (step, scale) = if largest > 0.0 {
                (largest / 127.0, 127.0 / largest)
            } else {
                (0.0, 0.0)
            };
            out.step.push(step);
            for (s, values) in xs.chunks_exact(BLOCK).enumerate() {
                let place = &mut q[ORDER[s] * BLOCK..(ORDER[s] + 1) * BLOCK];
                let mut sum = 0i32;
                for (b, v) in place.iter_mut().zip(values) {
                    // `as` saturates and sends NaN to 0; the clamp keeps -128 out, as the weights' range is symmetric.
                    *b = (v * scale).round().clamp(-127.0, 127.0) as i8;
                    sum += i32::from(*b);
                }
                out.sums.push(step * sum as f32);
            }
        }
        out
    }

    /// Row `r` as the kernel reads it: every value a step times its byte (tests).
    #[cfg(test)]
    pub(crate) fn values(&self, r: usize) -> Vec<f32> {
        let blocks = self.k / SUPER_BLOCK;
        let mut out = vec![0f32; self.k];
        for b in 0..blocks {
            let q = &self.q[(r * blocks + b) * SUPER_BLOCK..][..SUPER_BLOCK];
            for s in 0..8 {
                for i in 0..BLOCK {
                    out[b * SUPER_BLOCK + s * BLOCK + i] =
                        self.step[r * blocks + b] * f32::from(q[ORDER[s] * BLOCK + i]);
                }
            }
        }
        out
    }
}

/// `out[j * mc + r] = dot(w row j, x row r)` for the `out.len() / mc` Q4_K rows of `k` values in `w` and the
/// `mc` rounded rows of `x`.
///
/// # Panics
/// If the lengths disagree, or [`usable`] is false.
pub(crate) fn rows_dot(w: &[u8], x: &Rounded, out: &mut [f32]) {
    let (k, mc) = (x.k, x.rows);
    assert!((1..=ROW_BLOCK).contains(&mc) && out.len().is_multiple_of(mc));
    assert_eq!(w.len(), out.len() / mc * Stored::Q4K.row_bytes(k), "whole Q4_K rows");
    assert!(usable(Stored::Q4K), "the CPU has no AVX-512 VNNI, or it is capped");
    // SAFETY: `usable` checked the CPU; the lengths are checked above.
    #[allow(unsafe_code)]
    unsafe {
        match mc {
            1 => rows::<1>(w, x, out),
            2 => rows::<2>(w, x, out),
            3 => rows::<3>(w, x, out),
            4 => rows::<4>(w, x, out),
            5 => rows::<5>(w, x, out),
            6 => rows::<6>(w, x, out),
            7 => rows::<7>(w, x, out),
            _ => rows::<8>(w, x, out),
        }
    }
}

/// The 16-bit lanes of a product vector that take the scale of each of two sub-blocks: the first 16 (the 32 bytes
/// of sub-block `a`, summed in pairs) and the last 16 (sub-block `b`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn pick(a: i16, b: i16) -> __m512i {
    let mut lanes = [a; 32];
    lanes[16..].fill(b);
    // SAFETY: 64 bytes are read from a 64-byte array.
    #[allow(unsafe_code)]
    unsafe {
        _mm512_loadu_si512(lanes.as_ptr().cast())
    }
}

/// # Safety
/// The CPU has the features below; `w` holds `out.len() / M` rows of `x.k` values and `x` holds `M` rows.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma,f16c")]
unsafe fn rows<const M: usize>(w: &[u8], x: &Rounded, out: &mut [f32]) {
    let blocks = x.k / SUPER_BLOCK;
    let rb = blocks * Q4K_BYTES;
    let low = _mm512_set1_epi8(15);
    // The scales' places for the four nibble vectors of a super-block: sub-blocks (0, 2), (1, 3), (4, 6), (5, 7).
    let picks = [pick(0, 2), pick(1, 3), pick(4, 6), pick(5, 7)];
    for (j, o) in out.chunks_exact_mut(M).enumerate() {
        let mut acc = [_mm512_setzero_ps(); M];
        let mut offsets = [_mm256_setzero_ps(); M];
        for b in 0..blocks {
            // SAFETY (the whole block): row j < rows and super-block b < blocks are inside `w`; every row of `x`
            // holds `blocks` super-blocks of 256 bytes, one step and 8 sums each.
            unsafe {
                let p = w.as_ptr().add(j * rb + b * Q4K_BYTES);
                let (scales, mins) = q4k_scale_bytes(p);
                let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
                let d = _mm_cvtss_f32(dd);
                let dmin = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
                let scales = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_cvtsi64_si128(scales as i64)));
                let s = picks.map(|idx| _mm512_permutexvar_epi16(idx, scales));
                let mins = _mm256_mul_ps(
                    _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64))),
                    dmin,
                );
                let (v0, v1) = (
                    _mm512_loadu_si512(p.add(16).cast()),
                    _mm512_loadu_si512(p.add(80).cast()),
                );
                let n = [
                    _mm512_and_si512(v0, low),
                    _mm512_and_si512(_mm512_srli_epi16::<4>(v0), low),
                    _mm512_and_si512(v1, low),
                    _mm512_and_si512(_mm512_srli_epi16::<4>(v1), low),
                ];
                for r in 0..M {
                    let at = r * blocks + b;
                    let q = x.q.as_ptr().add(at * SUPER_BLOCK);
                    let mut sum = _mm512_setzero_si512();
                    for v in 0..4 {
                        let pairs = _mm512_maddubs_epi16(n[v], _mm512_loadu_si512(q.add(64 * v).cast()));
                        sum = _mm512_dpwssd_epi32(sum, pairs, s[v]);
                    }
                    let scale = _mm512_set1_ps(d * *x.step.get_unchecked(at));
                    acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), scale, acc[r]);
                    offsets[r] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(x.sums.as_ptr().add(at * 8)), offsets[r]);
                }
            }
        }
        for r in 0..M {
            let off = offsets[r];
            let s = _mm_add_ps(_mm256_castps256_ps128(off), _mm256_extractf128_ps::<1>(off));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            o[r] = _mm512_reduce_add_ps(acc[r]) - _mm_cvtss_f32(s);
        }
    }
}

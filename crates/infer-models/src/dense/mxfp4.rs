//! MXFP4 weights (the OCP microscaling format GPT-OSS's experts are published in) and their product `x·Wᵀ`.
//!
//! A checkpoint stores a matrix of `rows × cols` values as two U8 tensors: `*_blocks`, `[rows, cols / 32, 16]`, each
//! byte two e2m1 values (the low nibble the even one), and `*_scales`, `[rows, cols / 32]`, each byte the block's
//! e8m0 exponent (`2^(scale - 127)`). An e2m1 nibble is a sign bit and one of 0, 0.5, 1, 1.5, 2, 3, 4, 6.
//!
//! The engine keeps the values in that form, 4.25 bits each, and never widens a matrix: at load each block's scale
//! byte is put in front of its 16 bytes ([`BLOCK_BYTES`] per block, the same bytes as stored, one row after another)
//! so that a row is one run of bytes, as the kernel and the rest of `dense.rs` want it, and the kernel widens one
//! block at a time in registers. Hand-rolled: candle has no MXFP4 kind.

use crate::dense::{BLOCK, ROW_BLOCK};

/// Bytes of a block as the engine holds it: the e8m0 scale, then the 16 bytes of 32 e2m1 values.
pub(crate) const BLOCK_BYTES: usize = 17;

/// The e2m1 values by nibble (bit 3 the sign).
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// `2^(e - 127)`, the value of the e8m0 scale byte `e` (255, NaN in the format, is read as 2^128 = infinity).
#[inline(always)]
fn scale(e: u8) -> f32 {
    if e == 0 {
        // 2^-127 is below f32's normal range: its subnormal bit pattern.
        f32::from_bits(1 << 22)
    } else {
        f32::from_bits(u32::from(e) << 23)
    }
}

/// Bytes of a row of `cols` values (`cols` a multiple of [`BLOCK`]).
pub(crate) fn row_bytes(cols: usize) -> usize {
    cols / BLOCK * BLOCK_BYTES
}

/// A checkpoint's `blocks` (`rows × cols / 2` bytes) and `scales` (`rows × cols / 32` bytes) as the engine holds
/// them: each block's scale byte before its 16 bytes.
pub(crate) fn interleave(blocks: &[u8], scales: &[u8], rows: usize, cols: usize) -> Vec<u8> {
    let per_row = cols / BLOCK;
    assert_eq!(
        blocks.len(),
        rows * per_row * 16,
        "MXFP4 blocks of a {rows}x{cols} matrix"
    );
    assert_eq!(scales.len(), rows * per_row, "MXFP4 scales of a {rows}x{cols} matrix");
    let mut out = Vec::with_capacity(rows * row_bytes(cols));
    for (block, &s) in blocks.chunks_exact(16).zip(scales) {
        out.push(s);
        out.extend_from_slice(block);
    }
    out
}

/// The value at column `i` of the held row `row`.
pub(crate) fn at(row: &[u8], i: usize) -> f32 {
    let b = &row[i / BLOCK * BLOCK_BYTES..][..BLOCK_BYTES];
    let byte = b[1 + i % BLOCK / 2];
    let nibble = if i.is_multiple_of(2) { byte & 15 } else { byte >> 4 };
    E2M1[usize::from(nibble)] * scale(b[0])
}

/// `out[j * mc + r] = dot(w row j, x row r)` for the `out.len() / mc` held rows of `k` values in `w`.
pub(crate) fn rows_dot(w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rows = out.len() / mc;
    assert!(w.len() == rows * row_bytes(k) && x.len() == mc * k && (1..=ROW_BLOCK).contains(&mc));
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code)]
    {
        use crate::dense::simd::{Level, level};
        #[target_feature(enable = "avx512f,avx2,fma")]
        fn avx512(w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
            rows_dot_body(w, k, x, mc, out)
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2(w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
            rows_dot_body(w, k, x, mc, out)
        }
        match level() {
            // SAFETY: the CPU has the features (detected).
            Some(Level::Avx512) => return unsafe { avx512(w, k, x, mc, out) },
            // SAFETY: as above.
            Some(Level::Avx2) => return unsafe { avx2(w, k, x, mc, out) },
            None => {}
        }
    }
    rows_dot_body(w, k, x, mc, out)
}

/// The body of [`rows_dot`], compiled for each instruction set: a block's 32 values are widened once (table look-ups
/// times the block's scale, exact in f32) and multiplied with every activation row, into sixteen partial sums per row
/// (an f32 sum in order cannot be vectorised).
#[inline(always)]
fn rows_dot_body(w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rb = row_bytes(k);
    let mut wide = [0f32; BLOCK];
    for (row, o) in w.chunks_exact(rb).zip(out.chunks_exact_mut(mc)) {
        let mut lanes = [[0f32; 16]; ROW_BLOCK];
        for (b, block) in row.chunks_exact(BLOCK_BYTES).enumerate() {
            let s = scale(block[0]);
            for j in 0..16 {
                let byte = block[1 + j];
                wide[2 * j] = E2M1[usize::from(byte & 15)] * s;
                wide[2 * j + 1] = E2M1[usize::from(byte >> 4)] * s;
            }
            for (r, lane) in lanes.iter_mut().enumerate().take(mc) {
                let xs = &x[r * k + b * BLOCK..][..BLOCK];
                for l in 0..16 {
                    lane[l] += wide[l] * xs[l] + wide[l + 16] * xs[l + 16];
                }
            }
        }
        for (o, lane) in o.iter_mut().zip(&lanes) {
            let mut sum = 0f32;
            for v in lane {
                sum += v;
            }
            *o = sum;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dense::{DenseWeight, Stored};

    /// Seeded blocks and scales of a `rows × cols` matrix, as a checkpoint stores them.
    fn checkpoint(rows: usize, cols: usize, seed: u32) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 24) as u8
        };
        let blocks: Vec<u8> = (0..rows * cols / 2).map(|_| next()).collect();
        // Exponents around 2^-4, and the extremes of the format.
        let scales: Vec<u8> = (0..rows * cols / BLOCK)
            .map(|i| match i % 11 {
                0 => 0,
                1 => 200,
                _ => 120 + next() % 6,
            })
            .collect();
        (blocks, scales)
    }

    /// transformers' dequantisation, written out plainly: value `2b` of a block is the low nibble of byte `b`.
    fn reference(blocks: &[u8], scales: &[u8], cols: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(blocks.len() * 2);
        for (i, &byte) in blocks.iter().enumerate() {
            let e = i32::from(scales[i * 2 / BLOCK]) - 127;
            for nibble in [byte & 15, byte >> 4] {
                let magnitude = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0][usize::from(nibble & 7)];
                let v = magnitude * 2f64.powi(e);
                out.push((if nibble & 8 != 0 { -v } else { v }) as f32);
            }
        }
        assert_eq!(out.len() % cols, 0);
        out
    }

    #[test]
    fn held_values_are_the_checkpoints_dequantised() {
        let (rows, cols) = (5, 96);
        let (blocks, scales) = checkpoint(rows, cols, 3);
        let held = interleave(&blocks, &scales, rows, cols);
        assert_eq!(held.len(), rows * row_bytes(cols));
        let want = reference(&blocks, &scales, cols);
        let w = DenseWeight::held(held, Stored::Mxfp4, rows, cols);
        assert_eq!(w.to_f32(), want);
        let mut row = vec![0f32; cols];
        w.row_into(rows - 1, &mut row);
        assert_eq!(row, want[(rows - 1) * cols..]);
    }

    #[test]
    fn the_kernel_equals_a_scalar_product_of_the_dequantised_values() {
        crate::dense::for_each_kernel(|| {
            for (n, k) in [(37usize, 64usize), (5, 32), (130, 96)] {
                let (blocks, scales) = checkpoint(n, k, n as u32);
                let wide = reference(&blocks, &scales, k);
                let w = DenseWeight::held(interleave(&blocks, &scales, n, k), Stored::Mxfp4, n, k);
                let mut seed = 11u32;
                for m in [1usize, 2, 3, 7, 8, 9, 17] {
                    let x: Vec<f32> = (0..m * k)
                        .map(|_| {
                            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
                        })
                        .collect();
                    let y = w.matmul_t(&x, m);
                    for r in 0..m {
                        for j in 0..n {
                            let want: f64 = (0..k)
                                .map(|i| f64::from(wide[j * k + i]) * f64::from(x[r * k + i]))
                                .sum();
                            let size: f64 = (0..k)
                                .map(|i| (f64::from(wide[j * k + i]) * f64::from(x[r * k + i])).abs())
                                .sum();
                            let got = f64::from(y[r * n + j]);
                            assert!(
                                (got - want).abs() <= 1e-6 * (1.0 + size),
                                "n={n} k={k} m={m} r={r} j={j}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        });
    }
}

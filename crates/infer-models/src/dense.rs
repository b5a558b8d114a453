//! Dense weight matrices used straight from the memory-mapped safetensors files, in the dtype they were stored in
//! (bf16, f16 or f32), and the product `x·Wᵀ` over them.
//!
//! Hand-rolled because no library does this job: candle's and gemm's kernels want f32 (or f16) tensors they own,
//! so bf16 weights would have to be widened into a second, twice-as-large copy, and their half-precision paths are
//! several times slower than f32 for the few rows of a decode step (`examples/qmm.rs`). A decode step is bound by
//! reading the weights once, so the kernel here streams each weight row once per step, widens eight values at a
//! time in registers (exact: bf16 and f16 are subsets of f32) and multiplies them with up to eight activation rows.
//! The weights are never copied: resident memory is the weight bytes.

use std::sync::Arc;

use std::sync::Mutex;

use memmap2::Mmap;

/// How dense weights are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    F32,
    F16,
    Bf16,
}

impl Stored {
    pub(crate) fn size(self) -> usize {
        match self {
            Stored::F32 => 4,
            Stored::F16 | Stored::Bf16 => 2,
        }
    }

    /// The value at element `i` of `bytes`, widened to f32.
    fn at(self, bytes: &[u8], i: usize) -> f32 {
        match self {
            Stored::F32 => f32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]),
            Stored::F16 => half::f16::from_bits(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])).to_f32(),
            Stored::Bf16 => half::bf16::from_bits(u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])).to_f32(),
        }
    }
}

/// Whole rows of one stored tensor: `rows × cols` values at byte `start` of a mapped file.
#[derive(Clone)]
struct Segment {
    map: Arc<Mmap>,
    start: usize,
    rows: usize,
}

/// A `[rows, cols]` weight matrix, made of the row segments of one or more stored tensors (a fused q/k/v
/// projection is three tensors stored apart, multiplied as one).
#[derive(Clone)]
pub(crate) struct DenseWeight {
    stored: Stored,
    cols: usize,
    segments: Vec<Segment>,
}

/// Activation rows multiplied per pass over the weights (eight accumulators fit the 16 AVX registers).
const ROW_BLOCK: usize = 8;

impl DenseWeight {
    /// `rows × cols` values of `stored` at `start` in `map`; the caller has checked the range.
    pub(crate) fn mapped(map: Arc<Mmap>, start: usize, stored: Stored, rows: usize, cols: usize) -> DenseWeight {
        DenseWeight {
            stored,
            cols,
            segments: vec![Segment { map, start, rows }],
        }
    }

    /// The rows of `parts` one after another; `None` when their widths or dtypes differ.
    pub(crate) fn concat(parts: &[DenseWeight]) -> Option<DenseWeight> {
        let first = parts.first()?;
        if parts.iter().any(|p| p.cols != first.cols || p.stored != first.stored) {
            return None;
        }
        Some(DenseWeight {
            stored: first.stored,
            cols: first.cols,
            segments: parts.iter().flat_map(|p| p.segments.iter().cloned()).collect(),
        })
    }

    pub(crate) fn rows(&self) -> usize {
        self.segments.iter().map(|s| s.rows).sum()
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    fn row_bytes(&self) -> usize {
        self.cols * self.stored.size()
    }

    fn segment_bytes<'a>(&self, s: &'a Segment) -> &'a [u8] {
        &s.map[s.start..s.start + s.rows * self.row_bytes()]
    }

    /// Row `r`, widened to f32 into `out` (`cols` values).
    pub(crate) fn row_into(&self, mut r: usize, out: &mut [f32]) {
        for s in &self.segments {
            if r < s.rows {
                let rb = self.row_bytes();
                let bytes = &self.segment_bytes(s)[r * rb..(r + 1) * rb];
                widen(self.stored, bytes, out);
                return;
            }
            r -= s.rows;
        }
        panic!("row {r} past the end of a {}-row matrix", self.rows());
    }

    /// The whole matrix widened to f32, row-major.
    pub(crate) fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows() * self.cols];
        let mut at = 0;
        for s in &self.segments {
            let n = s.rows * self.cols;
            widen(self.stored, self.segment_bytes(s), &mut out[at..at + n]);
            at += n;
        }
        out
    }

    /// Tells the kernel the mapped pages will not be needed again (the matrix was copied into another form);
    /// they are read back from the file if they are.
    pub(crate) fn release_pages(&self) {
        for s in &self.segments {
            let len = s.rows * self.row_bytes();
            // SAFETY: the map is a private read-only file mapping: dropping its pages only makes the next access
            // read them from the file again, so no reference into it can observe a change.
            #[allow(unsafe_code)]
            let r = unsafe {
                s.map
                    .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, s.start, len)
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "madvise(DONTNEED) on weight pages failed");
            }
        }
    }

    /// `x·Wᵀ` for `x` of `m` rows of `cols` values: returns `m` rows of `rows()` values.
    pub(crate) fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows(), self.cols);
        assert_eq!(x.len(), m * k, "activations are not {m} rows of {k}");
        let mut y = vec![0f32; m * n];
        let pool = candle_core::utils::barrier_pool();
        let threads = pool.n_workers() + 1;
        // Tasks of whole rows, a few per thread so an unevenly scheduled thread does not hold up the step.
        let task_rows = n.div_ceil(threads * 4).max(16);
        let rb = self.row_bytes();
        let mut yt = if m == 1 { Vec::new() } else { vec![0f32; n * ROW_BLOCK] };
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let mc = ROW_BLOCK.min(m - r0);
            let xs = &x[r0 * k..(r0 + mc) * k];
            // Output for this block transposed, `[n, mc]`, so every task writes one contiguous range.
            let out: &mut [f32] = if m == 1 { &mut y } else { &mut yt[..n * mc] };
            let mut jobs: Vec<Mutex<(&[u8], &mut [f32])>> = Vec::new();
            let mut rest = out;
            for s in &self.segments {
                let (mine, tail) = rest.split_at_mut(s.rows * mc);
                rest = tail;
                let w = self.segment_bytes(s);
                jobs.extend(
                    w.chunks(task_rows * rb)
                        .zip(mine.chunks_mut(task_rows * mc))
                        .map(Mutex::new),
                );
            }
            let stored = self.stored;
            // candle's pool of spinning workers (the one its quantised kernels use): waking sleeping rayon
            // workers for each of the ~120 products of a step cost more than the products of small layers.
            // Every job is taken by exactly one thread, so its lock is never contended.
            pool.execute_chunked(jobs.len(), |range| {
                for job in &jobs[range] {
                    let mut job = job.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let (w, o) = &mut *job;
                    rows_dot(stored, w, k, xs, mc, o);
                }
            });
            if m > 1 {
                for (j, v) in yt[..n * mc].chunks_exact(mc).enumerate() {
                    for (r, &val) in v.iter().enumerate() {
                        y[(r0 + r) * n + j] = val;
                    }
                }
            }
        }
        y
    }
}

/// Widens stored values to f32.
fn widen(stored: Stored, bytes: &[u8], out: &mut [f32]) {
    debug_assert_eq!(bytes.len(), out.len() * stored.size());
    match stored {
        Stored::F32 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        Stored::F16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = half::f16::from_bits(u16::from_le_bytes([b[0], b[1]])).to_f32();
            }
        }
        Stored::Bf16 => {
            for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
            }
        }
    }
}

/// `out[j * mc + r] = dot(w row j, x row r)` for the `out.len() / mc` rows of `w`.
fn rows_dot(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rows = out.len() / mc;
    assert!(w.len() == rows * k * stored.size() && x.len() == mc * k && (1..=ROW_BLOCK).contains(&mc));
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has AVX2, FMA and F16C (checked above), and the lengths are checked above.
        #[allow(unsafe_code)]
        unsafe {
            simd::rows_dot(stored, w, k, x, mc, out)
        };
        return;
    }
    rows_dot_scalar(stored, w, k, x, mc, out);
}

fn rows_dot_scalar(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rb = k * stored.size();
    for (j, o) in out.chunks_exact_mut(mc).enumerate() {
        let row = &w[j * rb..(j + 1) * rb];
        for (r, o) in o.iter_mut().enumerate() {
            let xr = &x[r * k..(r + 1) * k];
            *o = (0..k).map(|i| stored.at(row, i) * xr[i]).sum();
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
mod simd {
    //! The AVX2 kernel: `R` weight rows × `M` activation rows of accumulators, eight columns at a time.
    use std::arch::x86_64::*;

    use super::Stored;

    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }

    const F32: u8 = 0;
    const F16: u8 = 1;
    const BF16: u8 = 2;

    /// Eight stored values at `p`, widened.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8<const D: u8>(p: *const u8) -> __m256 {
        // SAFETY: the caller guarantees 8 values are readable at `p`; unaligned loads.
        unsafe {
            match D {
                F32 => _mm256_loadu_ps(p.cast()),
                F16 => _mm256_cvtph_ps(_mm_loadu_si128(p.cast())),
                _ => _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(_mm_loadu_si128(
                    p.cast(),
                )))),
            }
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Rows `[j, j + R)` of `w` against the `M` rows of `x`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block<const D: u8, const R: usize, const M: usize>(
        stored: Stored,
        w: &[u8],
        j: usize,
        k: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        let size = stored.size();
        let rb = k * size;
        let main = k & !7;
        let mut acc = [[_mm256_setzero_ps(); M]; R];
        let wp = w.as_ptr();
        let xp = x.as_ptr();
        let mut i = 0;
        while i < main {
            for (q, acc) in acc.iter_mut().enumerate() {
                // SAFETY: row j + q < rows and i + 8 <= k, so the 8 values are inside `w` and `x`.
                let wv = unsafe { load8::<D>(wp.add((j + q) * rb + i * size)) };
                _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add((j + q + R) * rb + i * size).cast());
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = unsafe { _mm256_loadu_ps(xp.add(r * k + i)) };
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
            i += 8;
        }
        for (q, acc) in acc.iter().enumerate() {
            let row = &w[(j + q) * rb..(j + q + 1) * rb];
            for (r, a) in acc.iter().enumerate() {
                let xr = &x[r * k..(r + 1) * k];
                let mut s = hsum(*a);
                for t in main..k {
                    s += stored.at(row, t) * xr[t];
                }
                out[(j + q) * M + r] = s;
            }
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn run<const D: u8, const R: usize, const M: usize>(
        stored: Stored,
        w: &[u8],
        k: usize,
        x: &[f32],
        out: &mut [f32],
    ) {
        let rows = out.len() / M;
        let mut j = 0;
        // SAFETY (both loops): blocks stay inside the `rows` rows the caller checked.
        while j + R <= rows {
            unsafe { block::<D, R, M>(stored, w, j, k, x, out) };
            j += R;
        }
        while j < rows {
            unsafe { block::<D, 1, M>(stored, w, j, k, x, out) };
            j += 1;
        }
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn by_rows<const D: u8>(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
        // Accumulators R × M stay within 12 registers, leaving room for the loads.
        // SAFETY: forwarded from the caller.
        unsafe {
            match mc {
                1 => run::<D, 8, 1>(stored, w, k, x, out),
                2 => run::<D, 4, 2>(stored, w, k, x, out),
                3 => run::<D, 3, 3>(stored, w, k, x, out),
                4 => run::<D, 2, 4>(stored, w, k, x, out),
                5 => run::<D, 2, 5>(stored, w, k, x, out),
                6 => run::<D, 1, 6>(stored, w, k, x, out),
                7 => run::<D, 1, 7>(stored, w, k, x, out),
                _ => run::<D, 1, 8>(stored, w, k, x, out),
            }
        }
    }

    /// # Safety
    /// The CPU has AVX2, FMA and F16C; `w` holds `out.len() / mc` rows of `k` values and `x` holds `mc` rows.
    pub(super) unsafe fn rows_dot(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
        // SAFETY: forwarded from the caller.
        unsafe {
            match stored {
                Stored::F32 => by_rows::<F32>(stored, w, k, x, mc, out),
                Stored::F16 => by_rows::<F16>(stored, w, k, x, mc, out),
                Stored::Bf16 => by_rows::<BF16>(stored, w, k, x, mc, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(stored: Stored, values: &[f32]) -> (tempfile::NamedTempFile, Arc<Mmap>) {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; 3]; // an odd offset: the kernel must not need alignment
        for &v in values {
            match stored {
                Stored::F32 => bytes.extend(v.to_le_bytes()),
                Stored::F16 => bytes.extend(half::f16::from_f32(v).to_le_bytes()),
                Stored::Bf16 => bytes.extend(half::bf16::from_f32(v).to_le_bytes()),
            }
        }
        f.write_all(&bytes).unwrap();
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(f.as_file()) }.unwrap();
        (f, Arc::new(map))
    }

    #[test]
    fn the_kernel_equals_the_plain_product_for_every_dtype_width_and_row_count() {
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for stored in [Stored::F32, Stored::F16, Stored::Bf16] {
            // Widths with and without a tail past the last 8 columns; row counts around the block sizes.
            for (n, k) in [(37usize, 64usize), (45, 21), (5, 8), (130, 77)] {
                let w: Vec<f32> = (0..n * k).map(|_| rand()).collect();
                let (_f, map) = mapped(stored, &w);
                let a = DenseWeight::mapped(map.clone(), 3, stored, n / 2, k);
                let b = DenseWeight::mapped(map, 3 + (n / 2) * k * stored.size(), stored, n - n / 2, k);
                let dw = DenseWeight::concat(&[a, b]).unwrap();
                let wide = dw.to_f32();
                for m in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 17] {
                    let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
                    let y = dw.matmul_t(&x, m);
                    for r in 0..m {
                        for j in 0..n {
                            let want: f32 = (0..k).map(|i| wide[j * k + i] * x[r * k + i]).sum();
                            let got = y[r * n + j];
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{stored:?} n={n} k={k} m={m} r={r} j={j}: {got} vs {want}"
                            );
                        }
                    }
                }
                let mut row = vec![0f32; k];
                dw.row_into(n - 1, &mut row);
                assert_eq!(row, wide[(n - 1) * k..]);
            }
        }
    }
}

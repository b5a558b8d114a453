//! Weight matrices used straight from the memory-mapped safetensors files, in the dtype they were stored in
//! (bf16, f16 or f32) — or quantised at load into GGML's Q8_0 / Q4_0 blocks — and the product `x·Wᵀ` over them.
//!
//! Hand-rolled because no library does this job: candle's and gemm's kernels want f32 (or f16) tensors they own,
//! so bf16 weights would have to be widened into a second, twice-as-large copy, and their half-precision paths are
//! several times slower than f32 for the few rows of a decode step (`examples/qmm.rs`). A decode step is bound by
//! reading the weights once, so the kernel here streams each weight row once per step, widens a vector of values
//! at a time in registers (exact: bf16 and f16 are subsets of f32) and multiplies them with up to eight activation rows.
//! The weights are never copied: resident memory is the weight bytes. Quantised blocks are widened the same way
//! (candle's own Q8_0/Q4_0 kernels quantise the activations too and run one activation row at a time, so eight
//! rows cost eight passes over the weights).

use std::sync::Arc;

use rayon::prelude::*;

use candle_core::quantized::{GgmlDType, QTensor};
use memmap2::Mmap;

/// Bytes a matrix's rows live in: a mapped file, or blocks quantised at load.
type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// How the values of a matrix are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    F32,
    F16,
    Bf16,
    /// GGML blocks of 32: an f16 scale and 32 signed bytes (34 bytes).
    Q8_0,
    /// GGML blocks of 32: an f16 scale and 16 bytes of 4-bit values biased by 8, low nibbles first (18 bytes).
    Q4_0,
}

/// Values per quantised block.
pub(crate) const BLOCK: usize = 32;
/// Bytes of a Q8_0 block: the f16 scale and 32 signed bytes.
const Q8_0_BYTES: usize = 34;
/// Bytes of a Q4_0 block: the f16 scale and 16 bytes of nibbles.
const Q4_0_BYTES: usize = 18;

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([bytes[at], bytes[at + 1]])).to_f32()
}

impl Stored {
    /// Bytes of a row of `cols` values (`cols` is a multiple of [`BLOCK`] for the quantised kinds).
    pub(crate) fn row_bytes(self, cols: usize) -> usize {
        match self {
            Stored::F32 => cols * 4,
            Stored::F16 | Stored::Bf16 => cols * 2,
            Stored::Q8_0 => cols / BLOCK * Q8_0_BYTES,
            Stored::Q4_0 => cols / BLOCK * Q4_0_BYTES,
        }
    }

    /// Whether the values are quantised blocks (rows are whole blocks, and only our kernel reads them).
    pub(crate) fn is_quantised(self) -> bool {
        matches!(self, Stored::Q8_0 | Stored::Q4_0)
    }

    /// The value at column `i` of the row `row`, widened to f32.
    fn at(self, row: &[u8], i: usize) -> f32 {
        match self {
            Stored::F32 => f32::from_le_bytes([row[4 * i], row[4 * i + 1], row[4 * i + 2], row[4 * i + 3]]),
            Stored::F16 => f16_at(row, 2 * i),
            Stored::Bf16 => f32::from_bits(u32::from(u16::from_le_bytes([row[2 * i], row[2 * i + 1]])) << 16),
            Stored::Q8_0 => {
                let b = i / BLOCK * Q8_0_BYTES;
                f16_at(row, b) * f32::from(row[b + 2 + i % BLOCK] as i8)
            }
            Stored::Q4_0 => {
                let (b, j) = (i / BLOCK * Q4_0_BYTES, i % BLOCK);
                let byte = row[b + 2 + j % 16];
                let nibble = if j < 16 { byte & 15 } else { byte >> 4 };
                f16_at(row, b) * (f32::from(nibble) - 8.0)
            }
        }
    }
}

/// Whole rows of one stored tensor: `rows × cols` values at byte `start` of `map`.
#[derive(Clone)]
struct Segment {
    map: Bytes,
    /// The file mapping, when the rows are read from one (for [`DenseWeight::release_pages`]).
    file: Option<Arc<Mmap>>,
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

/// Activation rows multiplied per pass over the weights (eight accumulators fit the 16 AVX registers); the most
/// [`rows_dot`] takes at once.
pub(crate) const ROW_BLOCK: usize = 8;

impl DenseWeight {
    /// `rows × cols` values of `stored` at `start` in `map`; the caller has checked the range.
    pub(crate) fn mapped(map: Arc<Mmap>, start: usize, stored: Stored, rows: usize, cols: usize) -> DenseWeight {
        DenseWeight {
            stored,
            cols,
            segments: vec![Segment {
                map: map.clone(),
                file: Some(map),
                start,
                rows,
            }],
        }
    }

    /// This matrix quantised by candle's quantiser into `dtype`.
    pub(crate) fn qtensor(&self, dtype: GgmlDType) -> candle_core::Result<QTensor> {
        let wide = candle_core::Tensor::from_vec(self.to_f32(), (self.rows(), self.cols), &candle_core::Device::Cpu)?;
        QTensor::quantize(&wide, dtype)
    }

    /// This matrix quantised into `to` (Q8_0 or Q4_0; `cols` must be a multiple of [`BLOCK`]), for our kernel.
    pub(crate) fn quantize(&self, to: Stored) -> candle_core::Result<DenseWeight> {
        let dtype = match to {
            Stored::Q8_0 => GgmlDType::Q8_0,
            Stored::Q4_0 => GgmlDType::Q4_0,
            other => candle_core::bail!("{other:?} is not a quantised kind"),
        };
        let (rows, cols) = (self.rows(), self.cols);
        let blocks = self.qtensor(dtype)?.data()?.into_owned();
        if blocks.len() != rows * to.row_bytes(cols) {
            candle_core::bail!("{dtype:?} blocks of a {rows}x{cols} matrix take {} bytes", blocks.len());
        }
        Ok(DenseWeight {
            stored: to,
            cols,
            segments: vec![Segment {
                map: Arc::new(blocks),
                file: None,
                start: 0,
                rows,
            }],
        })
    }

    pub(crate) fn stored(&self) -> Stored {
        self.stored
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
        self.stored.row_bytes(self.cols)
    }

    fn segment_bytes<'a>(&self, s: &'a Segment) -> &'a [u8] {
        &(*s.map).as_ref()[s.start..s.start + s.rows * self.row_bytes()]
    }

    /// Bytes the values take.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.rows() * self.row_bytes()
    }

    /// Row `r`, widened to f32 into `out` (`cols` values).
    pub(crate) fn row_into(&self, mut r: usize, out: &mut [f32]) {
        for s in &self.segments {
            if r < s.rows {
                let rb = self.row_bytes();
                let bytes = &self.segment_bytes(s)[r * rb..(r + 1) * rb];
                widen(self.stored, bytes, self.cols, out);
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
            widen(self.stored, self.segment_bytes(s), self.cols, &mut out[at..at + n]);
            at += n;
        }
        out
    }

    /// Tells the kernel the mapped pages will not be needed again (the matrix was copied into another form);
    /// they are read back from the file if they are.
    pub(crate) fn release_pages(&self) {
        for s in &self.segments {
            let Some(map) = &s.file else { continue };
            let len = s.rows * self.row_bytes();
            // SAFETY: the map is a private read-only file mapping: dropping its pages only makes the next access
            // read them from the file again, so no reference into it can observe a change.
            #[allow(unsafe_code)]
            let r = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, s.start, len) };
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
        let threads = rayon::current_num_threads();
        // Tasks of whole rows, a few per thread so an unevenly scheduled thread does not hold up the step.
        let task_rows = n.div_ceil(threads * 4).max(16);
        let rb = self.row_bytes();
        let mut yt = if m == 1 { Vec::new() } else { vec![0f32; n * ROW_BLOCK] };
        for r0 in (0..m).step_by(ROW_BLOCK) {
            let mc = ROW_BLOCK.min(m - r0);
            let xs = &x[r0 * k..(r0 + mc) * k];
            // Output for this block transposed, `[n, mc]`, so every task writes one contiguous range.
            let out: &mut [f32] = if m == 1 { &mut y } else { &mut yt[..n * mc] };
            let mut jobs: Vec<(&[u8], &mut [f32])> = Vec::new();
            let mut rest = out;
            for s in &self.segments {
                let (mine, tail) = rest.split_at_mut(s.rows * mc);
                rest = tail;
                let w = self.segment_bytes(s);
                jobs.extend(w.chunks(task_rows * rb).zip(mine.chunks_mut(task_rows * mc)));
            }
            let stored = self.stored;
            // Run from a worker of a rayon pool (the engine's scheduler is one), this thread starts on the jobs at
            // once and idle workers steal the rest; a busy machine slows the product down but never stalls it.
            jobs.into_par_iter()
                .for_each(|(w, o)| rows_dot(stored, w, k, xs, mc, o));
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

/// Widens whole rows of `cols` stored values to f32.
fn widen(stored: Stored, bytes: &[u8], cols: usize, out: &mut [f32]) {
    debug_assert_eq!(bytes.len() * cols, out.len() * stored.row_bytes(cols));
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
        Stored::Q8_0 | Stored::Q4_0 => {
            let rb = stored.row_bytes(cols);
            for (o, row) in out.chunks_exact_mut(cols).zip(bytes.chunks_exact(rb)) {
                for (i, o) in o.iter_mut().enumerate() {
                    *o = stored.at(row, i);
                }
            }
        }
    }
}

/// `out[j * mc + r] = dot(w row j, x row r)` for the `out.len() / mc` rows of `w`.
pub(crate) fn rows_dot(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rows = out.len() / mc;
    assert!(w.len() == rows * stored.row_bytes(k) && x.len() == mc * k && (1..=ROW_BLOCK).contains(&mc));
    assert!(
        !stored.is_quantised() || k.is_multiple_of(BLOCK),
        "quantised rows are whole blocks"
    );
    #[cfg(target_arch = "x86_64")]
    if simd::available() {
        // SAFETY: the CPU has the kernel's features (checked above), and the lengths are checked above.
        #[allow(unsafe_code)]
        unsafe {
            simd::rows_dot(stored, w, k, x, mc, out)
        };
        return;
    }
    rows_dot_scalar(stored, w, k, x, mc, out);
}

fn rows_dot_scalar(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
    let rb = stored.row_bytes(k);
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
pub(crate) mod simd {
    //! The x86 kernels: `R` weight rows × `M` activation rows of accumulators, one vector of columns at a time,
    //! prefetching the next block's rows. One body (`kernel!`) over two instruction sets: AVX-512 (16 lanes,
    //! 32 registers) where the CPU has it, else AVX2 with FMA and F16C (8 lanes, 16 registers).

    use super::{BLOCK, Q4_0_BYTES, Q8_0_BYTES, Stored};

    const F32: u8 = 0;
    const F16: u8 = 1;
    const BF16: u8 = 2;
    const Q8_0: u8 = 3;
    const Q4_0: u8 = 4;

    /// Byte offset of column `i` in a row (the start of its block, for the quantised kinds).
    #[inline(always)]
    fn col_bytes<const D: u8>(i: usize) -> usize {
        match D {
            F32 => 4 * i,
            F16 | BF16 => 2 * i,
            Q8_0 => i / BLOCK * Q8_0_BYTES,
            _ => i / BLOCK * Q4_0_BYTES,
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Level {
        Avx512,
        Avx2,
    }

    /// Tests run every kernel variant this CPU has, narrower ones included: 0 = the detected level, 1 = AVX2 at
    /// most, 2 = no SIMD. Only ever narrows, so a forced level is always one the CPU runs.
    #[cfg(test)]
    pub(crate) static NARROW: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    /// The widest instruction set of this CPU that the kernels use (detected once).
    pub(crate) fn level() -> Option<Level> {
        #[cfg(test)]
        match (NARROW.load(std::sync::atomic::Ordering::Relaxed), detected()) {
            (1, Some(_)) => return Some(Level::Avx2),
            (2, _) => return None,
            _ => {}
        }
        detected()
    }

    fn detected() -> Option<Level> {
        static LEVEL: std::sync::OnceLock<Option<Level>> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            let avx2 = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c");
            if avx2 && std::is_x86_feature_detected!("avx512f") {
                Some(Level::Avx512)
            } else if avx2 {
                Some(Level::Avx2)
            } else {
                None
            }
        })
    }

    pub(super) fn available() -> bool {
        level().is_some()
    }

    /// # Safety
    /// [`available`] is true; `w` holds `out.len() / mc` rows of `k` values and `x` holds `mc` rows.
    pub(super) unsafe fn rows_dot(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
        // SAFETY: forwarded from the caller; the level was detected on this CPU.
        unsafe {
            match level() {
                Some(Level::Avx512) => avx512::rows_dot(stored, w, k, x, mc, out),
                _ => avx2::rows_dot(stored, w, k, x, mc, out),
            }
        }
    }

    /// The shared body; the including module defines `LANES`, `REGISTERS`, `load::<D>`, `loadx`, `zero`, `fma`, `prefetch`
    /// and `hsum` for its instruction set, and passes the accumulator shape `(M, R)` per activation-row count.
    macro_rules! kernel {
        ($features:literal, [$(($mc:literal, $r:literal)),*]) => {
            /// Rows `[j, j + R)` of `w` against the `M` rows of `x`.
            #[inline]
            #[target_feature(enable = $features)]
            unsafe fn block<const D: u8, const R: usize, const M: usize>(
                stored: Stored,
                w: &[u8],
                j: usize,
                k: usize,
                x: &[f32],
                out: &mut [f32],
            ) {
                let rb = stored.row_bytes(k);
                // Columns per step: one vector, or a whole quantised block (its scale read once).
                let n = if D >= Q8_0 { BLOCK / LANES } else { 1 };
                let step = n * LANES;
                let main = k / step * step;
                let mut acc = [[zero(); M]; R];
                let wp = w.as_ptr();
                let xp = x.as_ptr();
                let mut i = 0;
                // Weights first when they fit in registers beside the accumulators: the R rows' values are widened,
                // then each activation vector is loaded once for all of them, so only the accumulators, R × n weight
                // vectors and one activation vector are live (the other order, weight row by weight row, kept every
                // activation vector live across the rows and spilled the AVX-512 q4_0 accumulators to the stack).
                // With fewer registers (AVX2), or many quantised weight vectors, row by row.
                let weights_first = R * M + R * n < REGISTERS;
                while i < main {
                    if weights_first {
                        let mut wv = [[zero(); 4]; R];
                        for (q, w) in wv.iter_mut().enumerate() {
                            // SAFETY: row j + q < rows and i + step <= k, so the values are inside `w` and `x`.
                            *w = unsafe { load::<D>(wp.add((j + q) * rb), i) };
                            // A hint only: an address past the end is never dereferenced.
                            prefetch(wp.wrapping_add((j + q + R) * rb + col_bytes::<D>(i)));
                        }
                        for v in 0..n {
                            for r in 0..M {
                                // SAFETY: r < M rows of x, and i + v * LANES + LANES <= k.
                                let xv = unsafe { loadx(xp.add(r * k + i + v * LANES)) };
                                for q in 0..R {
                                    acc[q][r] = fma(wv[q][v], xv, acc[q][r]);
                                }
                            }
                        }
                    } else {
                        for (q, acc) in acc.iter_mut().enumerate() {
                            // SAFETY: as above.
                            let wv = unsafe { load::<D>(wp.add((j + q) * rb), i) };
                            prefetch(wp.wrapping_add((j + q + R) * rb + col_bytes::<D>(i)));
                            for (r, a) in acc.iter_mut().enumerate() {
                                for (v, wv) in wv.iter().enumerate().take(n) {
                                    // SAFETY: as above.
                                    let xv = unsafe { loadx(xp.add(r * k + i + v * LANES)) };
                                    *a = fma(*wv, xv, *a);
                                }
                            }
                        }
                    }
                    i += step;
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

            #[target_feature(enable = $features)]
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

            #[target_feature(enable = $features)]
            unsafe fn by_rows<const D: u8>(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
                // SAFETY: forwarded from the caller.
                unsafe {
                    match mc {
                        $($mc => run::<D, $r, $mc>(stored, w, k, x, out),)*
                        _ => unreachable!("at most 8 activation rows per pass"),
                    }
                }
            }

            /// # Safety
            /// The CPU has this module's features; `w` holds `out.len() / mc` rows of `k` values and `x` holds
            /// `mc` rows.
            pub(super) unsafe fn rows_dot(stored: Stored, w: &[u8], k: usize, x: &[f32], mc: usize, out: &mut [f32]) {
                // SAFETY: forwarded from the caller.
                unsafe {
                    match stored {
                        Stored::F32 => by_rows::<F32>(stored, w, k, x, mc, out),
                        Stored::F16 => by_rows::<F16>(stored, w, k, x, mc, out),
                        Stored::Bf16 => by_rows::<BF16>(stored, w, k, x, mc, out),
                        Stored::Q8_0 => by_rows::<Q8_0>(stored, w, k, x, mc, out),
                        Stored::Q4_0 => by_rows::<Q4_0>(stored, w, k, x, mc, out),
                    }
                }
            }
        };
    }

    mod avx2 {
        use std::arch::x86_64::*;

        use super::{BF16, BLOCK, F16, F32, Q4_0, Q8_0, Stored, col_bytes};

        const LANES: usize = 8;
        /// Vector registers of the instruction set.
        const REGISTERS: usize = 16;

        /// The values from column `i` of the row at `row`, widened: one vector of 8, or for the quantised kinds
        /// the four vectors of the block starting at `i`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load<const D: u8>(row: *const u8, i: usize) -> [__m256; 4] {
            // SAFETY: the caller guarantees the columns are inside the row; unaligned loads.
            unsafe {
                let p = row.add(col_bytes::<D>(i));
                let z = _mm256_setzero_ps();
                match D {
                    F32 => [_mm256_loadu_ps(p.cast()), z, z, z],
                    F16 => [_mm256_cvtph_ps(_mm_loadu_si128(p.cast())), z, z, z],
                    BF16 => {
                        let wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(p.cast()));
                        [_mm256_castsi256_ps(_mm256_slli_epi32::<16>(wide)), z, z, z]
                    }
                    Q8_0 => {
                        let d = _mm256_cvtph_ps(_mm_set1_epi16(p.cast::<i16>().read_unaligned()));
                        let q = |g: usize| {
                            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(p.add(2 + 8 * g).cast())))
                        };
                        [
                            _mm256_mul_ps(d, q(0)),
                            _mm256_mul_ps(d, q(1)),
                            _mm256_mul_ps(d, q(2)),
                            _mm256_mul_ps(d, q(3)),
                        ]
                    }
                    _ => {
                        // (q - 8) · d as q · d + (-8 · d).
                        let d = _mm256_cvtph_ps(_mm_set1_epi16(p.cast::<i16>().read_unaligned()));
                        let m8d = _mm256_mul_ps(d, _mm256_set1_ps(-8.0));
                        let bytes = _mm_loadu_si128(p.add(2).cast());
                        let mask = _mm_set1_epi8(15);
                        let lo = _mm_and_si128(bytes, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), mask);
                        let f = |b: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), d, m8d);
                        [f(lo), f(_mm_srli_si128::<8>(lo)), f(hi), f(_mm_srli_si128::<8>(hi))]
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn loadx(p: *const f32) -> __m256 {
            // SAFETY: the caller guarantees 8 values are readable at `p`.
            unsafe { _mm256_loadu_ps(p) }
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn zero() -> __m256 {
            _mm256_setzero_ps()
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn prefetch(p: *const u8) {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }

        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<1>(s, s));
            _mm_cvtss_f32(s)
        }

        // Accumulators R × M within 12 of the 16 registers, leaving room for the loads.
        kernel!(
            "avx2,fma,f16c",
            [(1, 8), (2, 4), (3, 3), (4, 2), (5, 2), (6, 1), (7, 1), (8, 1)]
        );
    }

    mod avx512 {
        use std::arch::x86_64::*;

        use super::{BF16, BLOCK, F16, F32, Q4_0, Q8_0, Stored, col_bytes};

        const LANES: usize = 16;
        /// Vector registers of the instruction set.
        const REGISTERS: usize = 32;

        /// The values from column `i` of the row at `row`, widened: one vector of 16, or for the quantised kinds
        /// the two vectors of the block starting at `i`.
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        unsafe fn load<const D: u8>(row: *const u8, i: usize) -> [__m512; 4] {
            // SAFETY: the caller guarantees the columns are inside the row; unaligned loads.
            unsafe {
                let p = row.add(col_bytes::<D>(i));
                let z = _mm512_setzero_ps();
                match D {
                    F32 => [_mm512_loadu_ps(p.cast()), z, z, z],
                    F16 => [_mm512_cvtph_ps(_mm256_loadu_si256(p.cast())), z, z, z],
                    BF16 => {
                        let wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast()));
                        [_mm512_castsi512_ps(_mm512_slli_epi32::<16>(wide)), z, z, z]
                    }
                    Q8_0 => {
                        let d = _mm512_cvtph_ps(_mm256_set1_epi16(p.cast::<i16>().read_unaligned()));
                        let q = |g: usize| {
                            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.add(2 + 16 * g).cast())))
                        };
                        [_mm512_mul_ps(d, q(0)), _mm512_mul_ps(d, q(1)), z, z]
                    }
                    _ => {
                        // (q - 8) · d as q · d + (-8 · d).
                        let d = _mm512_cvtph_ps(_mm256_set1_epi16(p.cast::<i16>().read_unaligned()));
                        let m8d = _mm512_mul_ps(d, _mm512_set1_ps(-8.0));
                        let bytes = _mm_loadu_si128(p.add(2).cast());
                        let mask = _mm_set1_epi8(15);
                        let lo = _mm_and_si128(bytes, mask);
                        let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), mask);
                        let f = |b: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), d, m8d);
                        [f(lo), f(hi), z, z]
                    }
                }
            }
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        unsafe fn loadx(p: *const f32) -> __m512 {
            // SAFETY: the caller guarantees 16 values are readable at `p`.
            unsafe { _mm512_loadu_ps(p) }
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn zero() -> __m512 {
            _mm512_setzero_ps()
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn prefetch(p: *const u8) {
            _mm_prefetch::<_MM_HINT_T0>(p.cast());
        }

        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn hsum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }

        // Accumulators R × M within 24 of the 32 registers, beside the R rows' weight vectors. Eight activation rows
        // take three weight rows at a time (27.3 against 30.1 ms for an 8-stream q4_0 step of the demo model with
        // two; 26.6 against 27.6 with q8_0, 28.1 against 29.0 in bf16; best of five runs each).
        kernel!(
            "avx512f,avx2,fma,f16c",
            [(1, 8), (2, 8), (3, 6), (4, 4), (5, 4), (6, 3), (7, 3), (8, 3)]
        );
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
                Stored::Q8_0 | Stored::Q4_0 => unreachable!("quantised matrices are made by `quantize`"),
            }
        }
        f.write_all(&bytes).unwrap();
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(f.as_file()) }.unwrap();
        (f, Arc::new(map))
    }

    #[test]
    fn the_kernel_equals_the_plain_product_for_every_dtype_width_and_row_count() {
        // Every variant: the detected one, AVX2 (what machines without AVX-512 run), no SIMD.
        #[cfg(target_arch = "x86_64")]
        for narrow in [0, 1, 2] {
            simd::NARROW.store(narrow, std::sync::atomic::Ordering::Relaxed);
            kernel_equals_the_plain_product();
        }
        #[cfg(target_arch = "x86_64")]
        simd::NARROW.store(0, std::sync::atomic::Ordering::Relaxed);
        #[cfg(not(target_arch = "x86_64"))]
        kernel_equals_the_plain_product();
    }

    fn kernel_equals_the_plain_product() {
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let kinds = [Stored::F32, Stored::F16, Stored::Bf16, Stored::Q8_0, Stored::Q4_0];
        for stored in kinds {
            let quantised = matches!(stored, Stored::Q8_0 | Stored::Q4_0);
            // Widths with and without a tail past the last vector; row counts around the block sizes.
            let shapes: &[(usize, usize)] = if quantised {
                &[(37, 64), (130, 96), (5, 32)]
            } else {
                &[(37, 64), (45, 21), (5, 8), (130, 77)]
            };
            for &(n, k) in shapes {
                let w: Vec<f32> = (0..n * k).map(|_| rand()).collect();
                let source = if quantised { Stored::F32 } else { stored };
                let (_f, map) = mapped(source, &w);
                let a = DenseWeight::mapped(map.clone(), 3, source, n / 2, k);
                let b = DenseWeight::mapped(map, 3 + (n / 2) * source.row_bytes(k), source, n - n / 2, k);
                let mut dw = DenseWeight::concat(&[a, b]).unwrap();
                if quantised {
                    dw = dw.quantize(stored).unwrap();
                    assert_eq!(dw.bytes(), n * stored.row_bytes(k));
                }
                let wide = dw.to_f32();
                if quantised {
                    // The blocks hold the weights to within their step (1/127 or 1/7 of the block's largest value).
                    let step = if stored == Stored::Q8_0 { 0.5 / 127.0 } else { 0.5 / 7.0 };
                    assert!(
                        w.iter().zip(&wide).all(|(a, b)| (a - b).abs() <= step + 1e-3),
                        "{stored:?}"
                    );
                }
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

//! Weight matrices used straight from the memory-mapped safetensors files, in the dtype they were stored in
//! (bf16, f16 or f32) — or quantised at load into GGML's Q8_0 / Q4_0 blocks or Q4_K super-blocks — and the product
//! `x·Wᵀ` over them.
//!
//! Hand-rolled because no library does this job: candle's and gemm's kernels want f32 (or f16) tensors they own,
//! so bf16 weights would have to be widened into a second, twice-as-large copy, and their half-precision paths are
//! several times slower than f32 for the few rows of a decode step (`examples/qmm.rs`). A decode step is bound by
//! reading the weights once, so the kernel here streams each weight row once per step, widens a vector of values
//! at a time in registers (exact: bf16 and f16 are subsets of f32) and multiplies them with up to eight activation rows.
//! The weights are never copied: resident memory is the weight bytes. Quantised blocks are widened the same way
//! (candle's own quantised kernels quantise the activations too and run one activation row at a time, so eight
//! rows cost eight passes over the weights). On CPUs with Intel AMX, quantised blocks against several activation rows
//! are multiplied in bf16 matrix tiles instead (`simd::amx`). Elsewhere, on CPUs with AVX-512 VNNI, Q4_K blocks
//! are multiplied with the activations rounded to bytes, as llama.cpp multiplies them (`int8`): at one activation row
//! the f32 widening cost more than reading the weights.

use std::sync::{Arc, Mutex};

#[cfg(target_arch = "x86_64")]
mod int8;
pub(crate) mod mxfp4;

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
    /// GGML's Q4_K super-blocks of 256 (144 bytes): an f16 scale `d` and min scale `dmin`, 12 bytes packing a 6-bit
    /// scale and min for each of the 8 sub-blocks of 32, then 128 bytes of nibbles (each 32 bytes hold two sub-blocks,
    /// the even one in the low nibbles). A value is `d · sc · nibble − dmin · m`.
    Q4K,
    /// MXFP4 blocks of 32 (the format GPT-OSS's experts are published in): the e8m0 scale byte, then 16 bytes of e2m1
    /// values, the low nibble the even one (17 bytes; see `dense/mxfp4.rs`, which reads them).
    Mxfp4,
}

/// Values per quantised block.
pub(crate) const BLOCK: usize = 32;
/// Bytes of a Q8_0 block: the f16 scale and 32 signed bytes.
const Q8_0_BYTES: usize = 34;
/// Bytes of a Q4_0 block: the f16 scale and 16 bytes of nibbles.
const Q4_0_BYTES: usize = 18;
/// Values per Q4_K super-block.
pub(crate) const SUPER_BLOCK: usize = 256;
/// Bytes of a Q4_K super-block.
const Q4K_BYTES: usize = 144;

/// The scale and the offset of sub-block `sub` (0..8) of a Q4_K super-block with scales `d` and `dmin` and the 12
/// packed scale bytes `s`: its values are `scale · nibble − offset` (GGML's `get_scale_min_k4`: the first four
/// sub-blocks keep their 6-bit scale and min in the low bits of bytes 0–3 and 4–7; the last four in the nibbles of
/// bytes 8–11, their top two bits in the top bits of bytes 0–7).
#[inline(always)]
fn q4k_scales(d: f32, dmin: f32, s: &[u8], sub: usize) -> (f32, f32) {
    let (sc, m) = if sub < 4 {
        (s[sub] & 63, s[sub + 4] & 63)
    } else {
        (
            (s[sub + 4] & 15) | (s[sub - 4] >> 6) << 4,
            (s[sub + 4] >> 4) | (s[sub] >> 6) << 4,
        )
    };
    (d * f32::from(sc), dmin * f32::from(m))
}

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
            Stored::Q4K => cols / SUPER_BLOCK * Q4K_BYTES,
            Stored::Mxfp4 => mxfp4::row_bytes(cols),
        }
    }

    /// Whether the values are quantised blocks (rows are whole blocks, and only our kernel reads them).
    pub(crate) fn is_quantised(self) -> bool {
        matches!(self, Stored::Q8_0 | Stored::Q4_0 | Stored::Q4K | Stored::Mxfp4)
    }

    /// The values a row's length must be a multiple of: its blocks' (1 for the plain kinds).
    pub(crate) fn block_len(self) -> usize {
        match self {
            Stored::F32 | Stored::F16 | Stored::Bf16 => 1,
            Stored::Q8_0 | Stored::Q4_0 | Stored::Mxfp4 => BLOCK,
            Stored::Q4K => SUPER_BLOCK,
        }
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
            Stored::Q4K => {
                let (b, sub) = (i / SUPER_BLOCK * Q4K_BYTES, i % SUPER_BLOCK / BLOCK);
                let (scale, offset) = q4k_scales(f16_at(row, b), f16_at(row, b + 2), &row[b + 4..b + 16], sub);
                let byte = row[b + 16 + 32 * (sub / 2) + i % BLOCK];
                let nibble = if sub % 2 == 0 { byte & 15 } else { byte >> 4 };
                scale * f32::from(nibble) - offset
            }
            Stored::Mxfp4 => mxfp4::at(row, i),
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

/// Bytes of f32 a matrix is widened into at a time while it is quantised (see `DenseWeight::quantised_blocks`).
const QUANTISE_STEP_BYTES: usize = 4 << 20;

/// Activation rows multiplied per pass over the weights (eight accumulators fit the 16 AVX registers); the most
/// [`rows_dot`] takes at once.
pub(crate) const ROW_BLOCK: usize = 8;

/// Activation rows per AMX tile product (a B tile row holds 16 bf16 pairs, one per activation row).
const TILE_ACTIVATION_ROWS: usize = 16;
/// Weight rows per AMX tile (the A tile's 16 rows of 32 bf16).
const TILE_WEIGHT_ROWS: usize = 16;

/// Whether a product of `stored` weights with `m` activation rows runs in AMX tiles (see `simd::amx`).
fn uses_tiles(stored: Stored, m: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    return m > 1 && stored.is_quantised() && stored != Stored::Mxfp4 && simd::amx::usable();
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (stored, m);
        false
    }
}

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

    /// This matrix's GGML blocks of `dtype`, quantised by candle's quantiser a few rows at a time. GGML blocks run
    /// along a row, so the blocks of consecutive row ranges, one after another, are the blocks of the whole matrix;
    /// and only those rows are ever widened to f32. Widening a whole matrix first made the largest one the peak of
    /// a quantised load: the demo model's tied embedding, 49152 × 576, is 113 MB in f32, against 16 MB as Q4_0.
    pub(crate) fn quantised_blocks(&self, dtype: GgmlDType) -> candle_core::Result<Vec<u8>> {
        self.quantised_blocks_by(dtype, (QUANTISE_STEP_BYTES / (self.cols * 4)).max(1))
    }

    /// [`Self::quantised_blocks`], `step` rows at a time.
    fn quantised_blocks_by(&self, dtype: GgmlDType, step: usize) -> candle_core::Result<Vec<u8>> {
        let cols = self.cols;
        let rb = self.row_bytes();
        let mut blocks = Vec::with_capacity(self.rows() * cols / dtype.block_size() * dtype.type_size());
        let mut wide = Vec::new();
        for s in &self.segments {
            let bytes = self.segment_bytes(s);
            for first in (0..s.rows).step_by(step) {
                let n = step.min(s.rows - first);
                wide.resize(n * cols, 0f32);
                widen(self.stored, &bytes[first * rb..(first + n) * rb], cols, &mut wide);
                let rows = candle_core::Tensor::from_slice(&wide, (n, cols), &candle_core::Device::Cpu)?;
                blocks.extend_from_slice(&QTensor::quantize(&rows, dtype)?.data()?);
            }
        }
        Ok(blocks)
    }

    /// This matrix quantised into `to` (Q8_0, Q4_0 or Q4_K; `cols` must be a multiple of its blocks' length), for our
    /// kernel (tests; a load quantises through `quant_cache::Quantiser`).
    #[cfg(test)]
    pub(crate) fn quantize(&self, to: Stored) -> candle_core::Result<DenseWeight> {
        let blocks = self.quantised_bytes(to)?;
        Ok(DenseWeight::held(blocks, to, self.rows(), self.cols))
    }

    /// This matrix's blocks of `to` (see [`Self::quantize`]), checked to be whole rows.
    pub(crate) fn quantised_bytes(&self, to: Stored) -> candle_core::Result<Vec<u8>> {
        let dtype = match to {
            Stored::Q8_0 => GgmlDType::Q8_0,
            Stored::Q4_0 => GgmlDType::Q4_0,
            Stored::Q4K => GgmlDType::Q4K,
            other => candle_core::bail!("{other:?} is not a quantised kind"),
        };
        let (rows, cols) = (self.rows(), self.cols);
        let blocks = self.quantised_blocks(dtype)?;
        if blocks.len() != rows * to.row_bytes(cols) {
            candle_core::bail!("{dtype:?} blocks of a {rows}x{cols} matrix take {} bytes", blocks.len());
        }
        Ok(blocks)
    }

    /// A `rows × cols` matrix of `stored` values held in memory (`bytes` is exactly its rows).
    pub(crate) fn held(bytes: Vec<u8>, stored: Stored, rows: usize, cols: usize) -> DenseWeight {
        debug_assert_eq!(bytes.len(), rows * stored.row_bytes(cols));
        DenseWeight {
            stored,
            cols,
            segments: vec![Segment {
                map: Arc::new(bytes),
                file: None,
                start: 0,
                rows,
            }],
        }
    }

    /// Bytes of the values held in memory rather than read from a mapped file.
    pub(crate) fn heap_bytes(&self) -> usize {
        let rb = self.row_bytes();
        self.segments
            .iter()
            .filter(|s| s.file.is_none())
            .map(|s| s.rows * rb)
            .sum()
    }

    /// A `rows × cols` f32 matrix held in memory (tests).
    #[cfg(test)]
    pub(crate) fn from_f32_for_tests(values: &[f32], rows: usize, cols: usize) -> DenseWeight {
        assert_eq!(values.len(), rows * cols);
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        DenseWeight {
            stored: Stored::F32,
            cols,
            segments: vec![Segment {
                map: Arc::new(bytes),
                file: None,
                start: 0,
                rows,
            }],
        }
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
    pub(crate) fn bytes(&self) -> usize {
        self.rows() * self.row_bytes()
    }

    /// Whether `other` is this matrix over the very same bytes (a tied output head).
    pub(crate) fn shares_bytes(&self, other: &DenseWeight) -> bool {
        self.segments.len() == other.segments.len()
            && self
                .segments
                .iter()
                .zip(&other.segments)
                .all(|(a, b)| Arc::ptr_eq(&a.map, &b.map) && a.start == b.start && a.rows == b.rows)
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

    /// Rows `start..start + n`, widened to f32 into `out` (`n * cols` values, row-major).
    pub(crate) fn rows_into(&self, start: usize, n: usize, out: &mut [f32]) {
        for (i, row) in out.chunks_exact_mut(self.cols).take(n).enumerate() {
            self.row_into(start + i, row);
        }
    }

    /// The whole matrix widened to f32, row-major (tests; the engine widens a few rows at a time).
    #[cfg(test)]
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

    /// The byte ranges of mapped files this matrix reads in place (none once quantised: its blocks are its own).
    pub(crate) fn mapped_ranges(&self) -> Vec<(Arc<Mmap>, std::ops::Range<usize>)> {
        let rb = self.row_bytes();
        self.segments
            .iter()
            .filter_map(|s| Some((s.file.clone()?, s.start..s.start + s.rows * rb)))
            .collect()
    }

    /// Tells the kernel the mapped pages will not be needed again (the matrix was copied into another form);
    /// they are read back from the file if they are.
    pub(crate) fn release_pages(&self) {
        for s in &self.segments {
            if let Some(map) = &s.file {
                release_folios(map, s.start..s.start + s.rows * self.row_bytes());
            }
        }
    }

    /// `x·Wᵀ` for `x` of `m` rows of `cols` values: returns `m` rows of `rows()` values.
    ///
    /// Quantised weights against several activation rows use the CPU's matrix tiles where it has them (Intel AMX,
    /// see `simd::amx`): the weights are widened once per pass, as always, but the products cost next to nothing.
    pub(crate) fn matmul_t(&self, x: &[f32], m: usize) -> Vec<f32> {
        let (n, k) = (self.rows(), self.cols);
        assert_eq!(x.len(), m * k, "activations are not {m} rows of {k}");
        let tiles = uses_tiles(self.stored, m);
        // Activation rows per pass over the weights, and weight rows that tasks are made of a multiple of.
        let (row_block, row_align) = if tiles {
            (TILE_ACTIVATION_ROWS, TILE_WEIGHT_ROWS)
        } else {
            (ROW_BLOCK, 1)
        };
        let mut y = vec![0f32; m * n];
        let threads = rayon::current_num_threads();
        // Tasks of whole rows, a few per thread so an unevenly scheduled thread does not hold up the step.
        let task_rows = n.div_ceil(threads * 4).max(16).next_multiple_of(row_align);
        let rb = self.row_bytes();
        let tasks: Vec<&[u8]> = self
            .segments
            .iter()
            .flat_map(|s| self.segment_bytes(s).chunks(task_rows * rb))
            .collect();
        let stored = self.stored;
        #[cfg(target_arch = "x86_64")]
        let int8 = !tiles && int8::usable(stored);
        // The tasks run on the product team (`crate::team`): this thread starts on them at once and the helpers,
        // watching, claim the rest; a helper that is late (a busy machine) slows the product down but never stalls
        // it, since tasks are claimed one at a time.
        if m == 1 {
            let outs = tasks.iter().scan(&mut y[..], |rest, w| {
                let (mine, tail) = std::mem::take(rest).split_at_mut(w.len() / rb);
                *rest = tail;
                Some(mine)
            });
            let jobs: Vec<Mutex<(&[u8], &mut [f32])>> = tasks.iter().copied().zip(outs).map(Mutex::new).collect();
            #[cfg(target_arch = "x86_64")]
            let rounded = int8.then(|| int8::Rounded::new(x, k));
            // Each task's lock is taken exactly once, by the thread that claimed it: never contended.
            crate::team::run(jobs.len(), &|i| {
                let mut job = jobs[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (w, o) = &mut *job;
                #[cfg(target_arch = "x86_64")]
                if let Some(x) = &rounded {
                    return int8::rows_dot(w, x, o);
                }
                rows_dot(stored, w, k, x, 1, o);
            });
            return y;
        }
        for (r0, ys) in (0..m).step_by(row_block).zip(y.chunks_mut(row_block * n)) {
            let mc = row_block.min(m - r0);
            let xs = &x[r0 * k..(r0 + mc) * k];
            // The activations as the tiles take them (bf16 pairs), made once per pass.
            #[cfg(target_arch = "x86_64")]
            let packed = if tiles { simd::amx::pack(xs, k, mc) } else { Vec::new() };
            #[cfg(target_arch = "x86_64")]
            let rounded = int8.then(|| int8::Rounded::new(xs, k));
            // Each task fills its rows' range in every one of the `mc` output rows.
            let mut jobs: Vec<Task<'_>> = tasks.iter().map(|w| (*w, Vec::with_capacity(mc))).collect();
            for row in ys.chunks_mut(n) {
                let mut rest = row;
                for (w, cols) in &mut jobs {
                    let (mine, tail) = rest.split_at_mut(w.len() / rb);
                    cols.push(mine);
                    rest = tail;
                }
            }
            let jobs: Vec<Mutex<Task<'_>>> = jobs.into_iter().map(Mutex::new).collect();
            // Each task's lock is taken exactly once, by the thread that claimed it: never contended.
            crate::team::run(jobs.len(), &|i| {
                let mut job = jobs[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let (w, cols) = &mut *job;
                let w: &[u8] = w;
                #[cfg(target_arch = "x86_64")]
                if tiles {
                    // SAFETY: `usable` checked the CPU and the kernel's permission; `w` holds whole rows of `k`
                    // values (a multiple of BLOCK, as for every quantised matrix), one per value of each of the
                    // `mc` slices, and `packed` the `mc` rows of `xs`.
                    #[allow(unsafe_code)]
                    unsafe {
                        simd::amx::rows_dot(stored, w, k, &packed, cols.as_mut_slice())
                    };
                    return;
                }
                // The vector kernels write `[rows, mc]`: a weight row's products with every activation row side by
                // side; copied into the output rows while still in cache.
                let mut o = vec![0f32; w.len() / rb * mc];
                #[cfg(target_arch = "x86_64")]
                match &rounded {
                    Some(x) => int8::rows_dot(w, x, &mut o),
                    None => rows_dot(stored, w, k, xs, mc, &mut o),
                }
                #[cfg(not(target_arch = "x86_64"))]
                rows_dot(stored, w, k, xs, mc, &mut o);
                for (j, v) in o.chunks_exact(mc).enumerate() {
                    for (col, &v) in cols.iter_mut().zip(v) {
                        col[j] = v;
                    }
                }
            });
        }
        y
    }
}

/// Drops the mapped pages of the 2 MiB folios that `range` of a weight file's map touches. Whole folios, not just the
/// range: when the page cache holds the file in large folios, a touch maps the whole folio, neighbours included, and
/// a neighbour released before would stay resident. A neighbour still in use is read back from the page cache on its
/// next touch (a minor fault), since the map is the file's.
pub(crate) fn release_folios(map: &Mmap, range: std::ops::Range<usize>) {
    const FOLIO: usize = 2 << 20;
    let start = range.start / FOLIO * FOLIO;
    let end = range.end.next_multiple_of(FOLIO).min(map.len());
    if end <= start {
        return;
    }
    // SAFETY: the map is a private read-only file mapping: dropping its pages only makes the next access read them
    // from the file again, so no reference into it can observe a change.
    #[allow(unsafe_code)]
    let r = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    if let Err(e) = r {
        tracing::debug!(error = %e, "madvise(DONTNEED) on weight pages failed");
    }
}

/// One task of a batched product: its weight rows, and its range of each output row.
type Task<'a> = (&'a [u8], Vec<&'a mut [f32]>);

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
        Stored::Q8_0 | Stored::Q4_0 | Stored::Q4K | Stored::Mxfp4 => {
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
    assert!(k.is_multiple_of(stored.block_len()), "quantised rows are whole blocks");
    if stored == Stored::Mxfp4 {
        mxfp4::rows_dot(w, k, x, mc, out);
        return;
    }
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

    use super::{BLOCK, Q4_0_BYTES, Q4K_BYTES, Q8_0_BYTES, SUPER_BLOCK, Stored};

    const F32: u8 = 0;
    const F16: u8 = 1;
    const BF16: u8 = 2;
    const Q8_0: u8 = 3;
    const Q4_0: u8 = 4;
    const Q4K: u8 = 5;

    /// Byte offset of column `i` in a row: the start of its block for Q8_0 and Q4_0, the start of its super-block
    /// for Q4_K (see [`q4k_scales_all`] and [`q4k_nibbles`] for its values).
    #[inline(always)]
    fn col_bytes<const D: u8>(i: usize) -> usize {
        match D {
            F32 => 4 * i,
            F16 | BF16 => 2 * i,
            Q8_0 => i / BLOCK * Q8_0_BYTES,
            Q4_0 => i / BLOCK * Q4_0_BYTES,
            _ => i / SUPER_BLOCK * Q4K_BYTES,
        }
    }

    /// Where the prefetch for column `i` of a row points: the line its values start in (for Q4_K, its sub-block's
    /// nibbles; the scales share the super-block's first line).
    #[inline(always)]
    fn prefetch_bytes<const D: u8>(i: usize) -> usize {
        match D {
            Q4K => col_bytes::<D>(i) + 16 + 32 * (i % SUPER_BLOCK / BLOCK / 2),
            _ => col_bytes::<D>(i),
        }
    }

    /// The 6-bit scales and mins of the 8 sub-blocks of the Q4_K super-block at `p`, a byte each (sub-block `b` in
    /// byte `b`): gathered with a few masks and shifts of the three 32-bit words they are packed in, as llama.cpp
    /// unpacks them (see `super::q4k_scales` for the layout).
    ///
    /// # Safety
    /// `p` points to a whole super-block.
    #[inline(always)]
    pub(super) unsafe fn q4k_scale_bytes(p: *const u8) -> (u64, u64) {
        // SAFETY: the caller guarantees the super-block's 144 bytes at `p`; bytes 4..16 are its packed scales.
        let word = |at: usize| unsafe { p.add(4 + at).cast::<u32>().read_unaligned() };
        let (a, b, c) = (word(0), word(4), word(8));
        let low = 0x3f3f_3f3f;
        let (top, nib) = (0x0303_0303, 0x0f0f_0f0f);
        let scales = u64::from(a & low) | u64::from((c & nib) | ((a >> 6) & top) << 4) << 32;
        let mins = u64::from(b & low) | u64::from(((c >> 4) & nib) | ((b >> 6) & top) << 4) << 32;
        (scales, mins)
    }

    /// The scales of the 8 sub-blocks of the Q4_K super-block at `p`, then their offsets negated: sub-block `b`'s
    /// values are `out[b] · nibble + out[8 + b]`. All eight at once: the 6-bit fields gathered into bytes
    /// ([`q4k_scale_bytes`]), then widened and scaled as vectors. Per super-block, where decoding one
    /// sub-block's fields at a time cost more than multiplying its values at one activation row.
    ///
    /// # Safety
    /// `p` points to a whole super-block; the CPU has AVX2 and F16C.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4k_scales_all(p: *const u8) -> [f32; 16] {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees the super-block's 144 bytes at `p`.
        unsafe {
            let (scales, mins) = q4k_scale_bytes(p);
            let dd = _mm_cvtph_ps(_mm_cvtsi32_si128(p.cast::<i32>().read_unaligned()));
            let d = _mm256_broadcastss_ps(dd);
            let m = _mm256_broadcastss_ps(_mm_movehdup_ps(dd));
            let widen = |v: u64| _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(v as i64)));
            let mut out = [0f32; 16];
            _mm256_storeu_ps(out.as_mut_ptr(), _mm256_mul_ps(widen(scales), d));
            // Negated after the product, so the offset is exactly `dmin · m` as in the scalar decoding.
            let offsets = _mm256_mul_ps(widen(mins), m);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), _mm256_sub_ps(_mm256_setzero_ps(), offsets));
            out
        }
    }

    /// The 32 nibbles of sub-block `sub` of the Q4_K super-block at `p`, one per byte.
    ///
    /// # Safety
    /// `p` points to a whole super-block; the CPU has AVX2.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn q4k_nibbles(p: *const u8, sub: usize) -> std::arch::x86_64::__m256i {
        use std::arch::x86_64::*;
        // SAFETY: the caller guarantees the super-block's 144 bytes at `p`; sub < 8.
        unsafe {
            let raw = _mm256_loadu_si256(p.add(16 + 32 * (sub / 2)).cast());
            let shifted = _mm256_srl_epi16(raw, _mm_cvtsi32_si128(4 * (sub % 2) as i32));
            _mm256_and_si256(shifted, _mm256_set1_epi8(15))
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(crate) enum Level {
        Avx512,
        Avx2,
    }

    /// Tests run every kernel variant this CPU has, narrower ones included: 0 = all it has (AMX tiles and 8-bit
    /// products too), 1 = the f32 vector kernels only, 2 = AVX2 at most, 3 = no SIMD. Only ever narrows, so a forced level is one the CPU runs.
    #[cfg(test)]
    static NARROW: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

    /// The widest kernels the process allows, set once by [`cap`] before the first product (0 when never set).
    static CEILING: std::sync::OnceLock<u8> = std::sync::OnceLock::new();

    fn ceiling() -> u8 {
        CEILING.get().copied().unwrap_or(0)
    }

    /// Caps the kernels at `value`: `auto` (or empty) = all this CPU has, AMX tiles and 8-bit products too;
    /// `avx512` = the f32 vector kernels, without AMX or 8-bit activations; `avx2`; `none` = no SIMD. Each set rounds floating-point sums its own way, so greedy text
    /// from random weights differs between machines; this lets one machine reproduce what another computes.
    /// The first call decides (later ones, and products already run, are not changed); `Err` names the choices.
    pub fn cap(value: &str) -> Result<(), &'static str> {
        let level = parse_ceiling(value).ok_or("auto, avx512, avx2 or none")?;
        let _ = CEILING.set(level);
        Ok(())
    }

    /// A [`cap`] value as a narrowing (0 = all the CPU has … 3 = no SIMD); `None` if it is none of the names.
    pub(crate) fn parse_ceiling(value: &str) -> Option<u8> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Some(0),
            "avx512" => Some(1),
            "avx2" => Some(2),
            "none" => Some(3),
            _ => None,
        }
    }

    /// How far the kernels are narrowed now: the larger of the process's [`cap`] and a test's narrowing.
    fn narrowed() -> u8 {
        #[cfg(test)]
        return ceiling().max(NARROW.load(std::sync::atomic::Ordering::Relaxed));
        #[cfg(not(test))]
        ceiling()
    }

    /// Whether the AMX tiles are allowed now.
    fn tiles_allowed() -> bool {
        narrowed() == 0
    }

    /// Whether products with activations rounded to bytes (`super::int8`) are allowed now.
    pub(super) fn int8_allowed() -> bool {
        narrowed() == 0
    }

    /// Held exclusively while a test narrows the level, shared by tests that need one level throughout.
    #[cfg(test)]
    static TURN: std::sync::RwLock<()> = std::sync::RwLock::new(());

    /// Runs `check` once per kernel variant this CPU has: everything it has, the vector kernels without AMX,
    /// AVX2 (what machines without AVX-512 run) and no SIMD. Tests that narrow the level take turns, so each pass runs the variant it names.
    #[cfg(test)]
    pub(crate) fn for_each_level(check: impl Fn()) {
        let _turn = TURN.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                NARROW.store(0, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let _reset = Reset;
        for narrow in [0, 1, 2, 3] {
            NARROW.store(narrow, std::sync::atomic::Ordering::Relaxed);
            check();
        }
    }

    /// Keeps the level as detected while held (see [`super::fixed_kernel`]).
    #[cfg(test)]
    pub(crate) fn fixed_level() -> std::sync::RwLockReadGuard<'static, ()> {
        TURN.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The widest instruction set of this CPU that the kernels use (detected once).
    pub(crate) fn level() -> Option<Level> {
        match (narrowed(), detected()) {
            (2, Some(_)) => Some(Level::Avx2),
            (3, _) => None,
            (_, detected) => detected,
        }
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
                // Q4_K: the R rows' sub-block scales and offsets, decoded once per super-block.
                let mut ks = [[0f32; 16]; R];
                while i < main {
                    if D == Q4K && i % SUPER_BLOCK == 0 {
                        for (q, ks) in ks.iter_mut().enumerate() {
                            // SAFETY: row j + q < rows, and its super-block holding column i is inside it.
                            *ks = unsafe { q4k_scales_all(wp.add((j + q) * rb + col_bytes::<D>(i))) };
                        }
                    }
                    if weights_first {
                        let mut wv = [[zero(); 4]; R];
                        for (q, w) in wv.iter_mut().enumerate() {
                            // SAFETY: row j + q < rows and i + step <= k, so the values are inside `w` and `x`.
                            *w = unsafe { load::<D>(wp.add((j + q) * rb), i, &ks[q]) };
                            // A hint only: an address past the end is never dereferenced.
                            prefetch(wp.wrapping_add((j + q + R) * rb + prefetch_bytes::<D>(i)));
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
                            let wv = unsafe { load::<D>(wp.add((j + q) * rb), i, &ks[q]) };
                            prefetch(wp.wrapping_add((j + q + R) * rb + prefetch_bytes::<D>(i)));
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
                        Stored::Q4K => by_rows::<Q4K>(stored, w, k, x, mc, out),
                        // `dense::rows_dot` sends MXFP4 to `mxfp4::rows_dot`.
                        Stored::Mxfp4 => crate::dense::mxfp4::rows_dot(w, k, x, mc, out),
                    }
                }
            }
        };
    }

    mod avx2 {
        use std::arch::x86_64::*;

        use super::{
            BF16, BLOCK, F16, F32, Q4_0, Q4K, Q8_0, SUPER_BLOCK, Stored, col_bytes, prefetch_bytes, q4k_nibbles,
            q4k_scales_all,
        };

        const LANES: usize = 8;
        /// Vector registers of the instruction set.
        const REGISTERS: usize = 16;

        /// The values from column `i` of the row at `row`, widened: one vector of 8, or for the quantised kinds
        /// the four vectors of the block starting at `i`.
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn load<const D: u8>(row: *const u8, i: usize, ks: &[f32; 16]) -> [__m256; 4] {
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
                    Q4K => {
                        let sub = i % SUPER_BLOCK / BLOCK;
                        let q = q4k_nibbles(p, sub);
                        let (d, m) = (_mm256_set1_ps(ks[sub]), _mm256_set1_ps(ks[8 + sub]));
                        let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
                        let f = |b: __m128i| _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b)), d, m);
                        [f(lo), f(_mm_srli_si128::<8>(lo)), f(hi), f(_mm_srli_si128::<8>(hi))]
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

        /// Into L2, as in the AVX-512 kernel (see there).
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c")]
        fn prefetch(p: *const u8) {
            _mm_prefetch::<_MM_HINT_T1>(p.cast());
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

        use super::{
            BF16, BLOCK, F16, F32, Q4_0, Q4K, Q8_0, SUPER_BLOCK, Stored, col_bytes, prefetch_bytes, q4k_nibbles,
            q4k_scales_all,
        };

        const LANES: usize = 16;
        /// Vector registers of the instruction set.
        const REGISTERS: usize = 32;

        /// The values from column `i` of the row at `row`, widened: one vector of 16, or for the quantised kinds
        /// the two vectors of the block starting at `i`.
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        pub(super) unsafe fn load<const D: u8>(row: *const u8, i: usize, ks: &[f32; 16]) -> [__m512; 4] {
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
                    Q4K => {
                        let sub = i % SUPER_BLOCK / BLOCK;
                        let q = q4k_nibbles(p, sub);
                        let (d, m) = (_mm512_set1_ps(ks[sub]), _mm512_set1_ps(ks[8 + sub]));
                        let (lo, hi) = (_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q));
                        let f = |b: __m128i| _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b)), d, m);
                        [f(lo), f(hi), z, z]
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

        /// Into L2, not L1 (`T1`): the line is needed a whole block of rows later, and an L1 prefetch that far ahead
        /// only evicts lines still in use. Decode steps of the demo model, interleaved in one process: 6-7% faster
        /// in bf16 and 5% in q8_0 at one stream than with `T0`; `T2` and a prefetch twice as far ahead were no better.
        #[inline]
        #[target_feature(enable = "avx512f,avx2,fma,f16c")]
        fn prefetch(p: *const u8) {
            _mm_prefetch::<_MM_HINT_T1>(p.cast());
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

    /// Intel AMX (Sapphire Rapids and later Xeons): the quantised kinds against several activation rows as bf16 tile
    /// products. A pass widens 16 weight rows one quantised block at a time into a 16 × 32 bf16 tile (Q8_0: the AVX-512
    /// widening, then rounded to bf16; Q4_0: its 16 distinct values rounded once and picked by nibble) and multiplies it with the activations' 32 columns for up to 16 rows in one
    /// `tdpbf16ps` (8192 multiply-adds), accumulating in f32. The vector kernels spend most of an 8-row pass on
    /// those multiply-adds; here the widening is nearly all that is left.
    ///
    /// The weights and activations are rounded to bf16 (8 significant bits) in the product: the error that adds is
    /// far below the quantisation's own (Q8_0 keeps 8 bits per block, Q4_0 4), and llama.cpp rounds activations
    /// harder still (to 8-bit blocks). Full precision never comes here: it stays exact.
    ///
    /// Hand-rolled: no library has AMX kernels for these blocks, and Rust's AMX intrinsics are not stable, so the
    /// five tile instructions are written as inline assembly.
    pub(crate) mod amx {
        use std::arch::asm;
        use std::arch::x86_64::*;

        use super::{BLOCK, Q4_0, Q4K, Q8_0, SUPER_BLOCK, Stored, avx512, prefetch_bytes, q4k_nibbles, q4k_scales_all};

        use super::super::{TILE_ACTIVATION_ROWS as ROWS, TILE_WEIGHT_ROWS as TILE_ROWS};

        /// Linux's `arch_prctl` request for an extended state component, and AMX's tile data component.
        const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
        const XFEATURE_XTILEDATA: libc::c_long = 18;

        /// Whether this CPU has AMX with bf16 and the kernel lets this process use it (asked once: Linux hands the
        /// 8 KiB of tile state to a process only on request).
        pub(crate) fn available() -> bool {
            static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
            *OK.get_or_init(|| {
                // CPUID leaf 7: EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
                let leaf = __cpuid_count(7, 0);
                let cpu = leaf.edx >> 22 & 1 == 1
                    && leaf.edx >> 24 & 1 == 1
                    && std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512bf16")
                    && std::is_x86_feature_detected!("f16c");
                // SAFETY: a plain system call with integer arguments; it changes only what this process may use.
                cpu && unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) } == 0
            })
        }

        /// Whether the matrix products may use the tiles now.
        pub(crate) fn usable() -> bool {
            super::tiles_allowed() && available()
        }

        /// `mc` activation rows of `k` values (a multiple of 32) as B tiles: for each 32 columns, 16 rows of `mc`
        /// bf16 pairs (columns 2r and 2r + 1 of every activation row, the pairing `tdpbf16ps` multiplies).
        pub(crate) fn pack(x: &[f32], k: usize, mc: usize) -> Vec<u32> {
            assert!(x.len() == mc * k && k.is_multiple_of(BLOCK) && available());
            let mut out = vec![0u32; k / 2 * mc];
            // SAFETY: `available` checked the features; the loads are inside `x`.
            unsafe { pack_rows(x, k, mc, &mut out) };
            out
        }

        #[target_feature(enable = "avx512f,avx512bf16")]
        unsafe fn pack_rows(x: &[f32], k: usize, mc: usize, out: &mut [u32]) {
            for (row, xs) in x.chunks_exact(k).enumerate() {
                for (c, block) in xs.chunks_exact(BLOCK).enumerate() {
                    // SAFETY: a block is 32 values; the two loads read 16 each.
                    let pairs: [u32; BLOCK / 2] = unsafe {
                        let lo = _mm512_loadu_ps(block.as_ptr());
                        let hi = _mm512_loadu_ps(block.as_ptr().add(16));
                        std::mem::transmute(_mm512_cvtne2ps_pbh(hi, lo))
                    };
                    for (r, p) in pairs.into_iter().enumerate() {
                        out[(c * BLOCK / 2 + r) * mc + row] = p;
                    }
                }
            }
        }

        /// The tile shapes: tmm0–tmm3 = C (16 weight rows × `mc` f32 each), tmm4 and tmm5 = A (16 weight rows ×
        /// 32 bf16), tmm6 = B (16 column pairs × `mc` bf16 pairs). The layout is the architecture's (palette 1).
        #[repr(C, align(64))]
        struct Config {
            palette: u8,
            start_row: u8,
            reserved: [u8; 14],
            colsb: [u16; 16],
            rows: [u8; 16],
        }

        impl Config {
            fn new(mc: usize) -> Config {
                let mut c = Config {
                    palette: 1,
                    start_row: 0,
                    reserved: [0; 14],
                    colsb: [0; 16],
                    rows: [0; 16],
                };
                let pairs = (4 * mc) as u16;
                for t in 0..GROUPS {
                    (c.rows[t], c.colsb[t]) = (TILE_ROWS as u8, pairs);
                }
                for t in [4, 5] {
                    (c.rows[t], c.colsb[t]) = (TILE_ROWS as u8, (2 * BLOCK) as u16);
                }
                (c.rows[6], c.colsb[6]) = ((BLOCK / 2) as u8, pairs);
                c
            }
        }

        /// A 16 × 32 bf16 tile in memory.
        #[repr(C, align(64))]
        struct Tile([u16; TILE_ROWS * BLOCK]);

        /// `cols[r][j] = dot(w row j, x row r)` for the `cols[0].len()` rows of `w`, `x` packed by [`pack`].
        ///
        /// # Safety
        /// [`usable`] is true; `w` holds `cols[0].len()` rows of `k` values of `stored` (quantised, `k` a multiple
        /// of 32), every slice of `cols` has that length, and `xb` is `pack` of `cols.len()` rows (1 to 16) of `k`
        /// values.
        pub(crate) unsafe fn rows_dot(stored: Stored, w: &[u8], k: usize, xb: &[u32], cols: &mut [&mut [f32]]) {
            // SAFETY: forwarded from the caller.
            unsafe {
                match stored {
                    Stored::Q8_0 => products::<Q8_0>(stored, w, k, xb, cols),
                    Stored::Q4K => products::<Q4K>(stored, w, k, xb, cols),
                    _ => products::<Q4_0>(stored, w, k, xb, cols),
                }
            }
        }

        /// Weight-row tiles multiplied per load of an activation tile (C tiles tmm0–tmm3).
        const GROUPS: usize = 4;

        /// Rows `[j, j + n)` (n ≤ 16) of `w`, block `b`, widened and rounded to bf16 into `a` (rows past `n` keep
        /// stale values: they only reach rows of C that are never copied out).
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma,f16c")]
        unsafe fn widen<const D: u8>(w: *const u8, rb: usize, j: usize, n: usize, b: usize, a: &mut Tile) {
            for q in 0..n {
                let row = w.wrapping_add((j + q) * rb);
                // The rows are read a block at a time, each from its own line: ask for the line after the next
                // block's ahead of time (a hint only; never dereferenced past the end).
                _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(prefetch_bytes::<D>((b + 4) * BLOCK)).cast());
                // SAFETY: the caller guarantees rows j..j + n exist and block b is inside them; the store is to an
                // aligned row of `a`.
                unsafe {
                    let bf = block_bf16::<D>(row, b * BLOCK);
                    _mm512_store_si512(a.0.as_mut_ptr().add(q * BLOCK).cast(), bf);
                }
            }
        }

        /// The 32 values from column `i` (a multiple of 32) of the row at `row`, rounded to bf16.
        ///
        /// A Q4_0 block has only 16 distinct values, `(i - 8) · d` for the nibbles `i`, and a Q4_K sub-block only 16,
        /// `scale · i − offset`: they are computed once, rounded, and the nibbles pick from them (`vpermw`), where
        /// widening every value took two conversions and a multiply-add per 16.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma,f16c")]
        unsafe fn block_bf16<const D: u8>(row: *const u8, i: usize) -> __m512i {
            let steps = |from: f32| {
                let f = _mm512_set1_ps(from);
                _mm512_add_ps(
                    f,
                    _mm512_setr_ps(
                        0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0,
                    ),
                )
            };
            // SAFETY: the caller guarantees a whole block (super-block for Q4_K) holding column `i` of the row.
            unsafe {
                let p = row.add(super::col_bytes::<D>(i));
                if D == Q4_0 {
                    // Exact in f32: a 4-bit integer times an f16.
                    let d = _mm512_cvtph_ps(_mm256_set1_epi16(p.cast::<i16>().read_unaligned()));
                    let table: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(_mm512_mul_ps(steps(-8.0), d)));
                    let bytes = _mm_loadu_si128(p.add(2).cast());
                    let mask = _mm_set1_epi8(15);
                    let lo = _mm_and_si128(bytes, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(bytes), mask);
                    let idx = _mm512_cvtepu8_epi16(_mm256_set_m128i(hi, lo));
                    _mm512_permutexvar_epi16(idx, _mm512_castsi256_si512(table))
                } else if D == Q4K {
                    // Decoding all eight sub-blocks' scales for one is still cheaper than one at a time in scalar code.
                    let sub = i % SUPER_BLOCK / BLOCK;
                    let ks = q4k_scales_all(p);
                    let q = q4k_nibbles(p, sub);
                    let values = _mm512_fmadd_ps(steps(0.0), _mm512_set1_ps(ks[sub]), _mm512_set1_ps(ks[8 + sub]));
                    let table: __m256i = std::mem::transmute(_mm512_cvtneps_pbh(values));
                    _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(q), _mm512_castsi256_si512(table))
                } else {
                    let v = avx512::load::<D>(row, i, &[0.0; 16]);
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(v[1], v[0]))
                }
            }
        }

        /// Copies `n` rows of a C tile stored at `c` (row stride `mc`) into rows `[j, j + n)` of the output rows.
        #[inline]
        fn scatter(c: &[f32], n: usize, j: usize, cols: &mut [&mut [f32]]) {
            let mc = cols.len();
            for (r, col) in cols.iter_mut().enumerate() {
                for (q, v) in col[j..j + n].iter_mut().enumerate() {
                    *v = c[q * mc + r];
                }
            }
        }

        #[target_feature(enable = "avx512f,avx512bw,avx512bf16,avx2,fma,f16c")]
        unsafe fn products<const D: u8>(stored: Stored, w: &[u8], k: usize, xb: &[u32], cols: &mut [&mut [f32]]) {
            let mc = cols.len();
            let rows = cols.first().map_or(0, |c| c.len());
            let rb = stored.row_bytes(k);
            debug_assert!(
                stored.is_quantised()
                    && (1..=ROWS).contains(&mc)
                    && w.len() == rows * rb
                    && xb.len() == k / 2 * mc
                    && cols.iter().all(|c| c.len() == rows)
            );
            let config = Config::new(mc);
            let mut a = [const { Tile([0; TILE_ROWS * BLOCK]) }; GROUPS];
            let mut c = [0f32; GROUPS * TILE_ROWS * ROWS];
            let (sa, sx) = (2 * BLOCK, 4 * mc);
            let wp = w.as_ptr();
            let cp = c.as_mut_ptr();
            let tile = TILE_ROWS * mc;
            // SAFETY: the configuration is a valid palette-1 layout; every tile load and store below stays inside
            // `a`, `xb` or `c` (rows × bytes per row as configured, at the strides given), and the rows widened
            // are rows of `w`.
            unsafe {
                // Another tile user on this thread (candle's quantised kernels, which the engine no longer runs but
                // code sharing the thread pool may) keeps its configuration loaded across calls: put back whatever
                // was there when done.
                let mut before = Config::new(mc);
                asm!("sttilecfg [{}]", in(reg) &mut before, options(nostack));
                asm!("ldtilecfg [{}]", in(reg) &config, options(nostack, readonly));
                let mut j = 0;
                // Four tiles of weight rows against each activation tile: the activations are loaded once for all
                // four, and four independent accumulations keep the tile unit busy while the next blocks widen.
                while rows - j >= GROUPS * TILE_ROWS {
                    asm!(
                        "tilezero tmm0",
                        "tilezero tmm1",
                        "tilezero tmm2",
                        "tilezero tmm3",
                        options(nostack, nomem)
                    );
                    for b in 0..k / BLOCK {
                        for (g, a) in a.iter_mut().enumerate() {
                            widen::<D>(wp, rb, j + g * TILE_ROWS, TILE_ROWS, b, a);
                        }
                        asm!(
                            "tileloadd tmm6, [{x} + {sx} * 1]",
                            "tileloadd tmm4, [{a0} + {sa} * 1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm5, [{a1} + {sa} * 1]",
                            "tdpbf16ps tmm1, tmm5, tmm6",
                            "tileloadd tmm4, [{a2} + {sa} * 1]",
                            "tdpbf16ps tmm2, tmm4, tmm6",
                            "tileloadd tmm5, [{a3} + {sa} * 1]",
                            "tdpbf16ps tmm3, tmm5, tmm6",
                            x = in(reg) xb.as_ptr().add(b * BLOCK / 2 * mc),
                            sx = in(reg) sx,
                            a0 = in(reg) a[0].0.as_ptr(),
                            a1 = in(reg) a[1].0.as_ptr(),
                            a2 = in(reg) a[2].0.as_ptr(),
                            a3 = in(reg) a[3].0.as_ptr(),
                            sa = in(reg) sa,
                            options(nostack, readonly),
                        );
                    }
                    asm!(
                        "tilestored [{o0} + {s} * 1], tmm0",
                        "tilestored [{o1} + {s} * 1], tmm1",
                        "tilestored [{o2} + {s} * 1], tmm2",
                        "tilestored [{o3} + {s} * 1], tmm3",
                        o0 = in(reg) cp,
                        o1 = in(reg) cp.add(tile),
                        o2 = in(reg) cp.add(2 * tile),
                        o3 = in(reg) cp.add(3 * tile),
                        s = in(reg) sx,
                        options(nostack),
                    );
                    for g in 0..GROUPS {
                        scatter(&c[g * tile..], TILE_ROWS, j + g * TILE_ROWS, cols);
                    }
                    j += GROUPS * TILE_ROWS;
                }
                // The rest, a tile of up to 16 rows at a time.
                while j < rows {
                    let n = TILE_ROWS.min(rows - j);
                    asm!("tilezero tmm0", options(nostack, nomem));
                    for b in 0..k / BLOCK {
                        widen::<D>(wp, rb, j, n, b, &mut a[0]);
                        asm!(
                            "tileloadd tmm6, [{x} + {sx} * 1]",
                            "tileloadd tmm4, [{a} + {sa} * 1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            x = in(reg) xb.as_ptr().add(b * BLOCK / 2 * mc),
                            sx = in(reg) sx,
                            a = in(reg) a[0].0.as_ptr(),
                            sa = in(reg) sa,
                            options(nostack, readonly),
                        );
                    }
                    asm!(
                        "tilestored [{o} + {s} * 1], tmm0",
                        o = in(reg) cp,
                        s = in(reg) sx,
                        options(nostack),
                    );
                    scatter(&c, n, j, cols);
                    j += n;
                }
                if before.palette == 0 {
                    asm!("tilerelease", options(nostack, nomem));
                } else {
                    asm!("ldtilecfg [{}]", in(reg) &before, options(nostack, readonly));
                }
            }
        }
    }
}

/// Whether this CPU can multiply quantised blocks in AMX tiles (bf16 products; tests that compare a batched
/// product with a one-row one allow for the rounding).
#[cfg(test)]
pub(crate) fn tiles_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    return simd::amx::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// While the returned guard lives, no other test narrows the kernel variant: for tests that compare two computations
/// and would see a difference if another test switched kernels between them (the level is one switch for the process).
#[cfg(test)]
pub(crate) fn fixed_kernel() -> Option<std::sync::RwLockReadGuard<'static, ()>> {
    #[cfg(target_arch = "x86_64")]
    return Some(simd::fixed_level());
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Runs `check` under every kernel variant this CPU has (see `simd::for_each_level`); once where there is no SIMD.
#[cfg(test)]
pub(crate) fn for_each_kernel(check: impl Fn()) {
    #[cfg(target_arch = "x86_64")]
    simd::for_each_level(check);
    #[cfg(not(target_arch = "x86_64"))]
    check();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn cmi_simd_names_each_narrowing() {
        use simd::parse_ceiling;
        for (value, narrowing) in [
            ("", Some(0)),
            ("auto", Some(0)),
            ("avx512", Some(1)),
            (" AVX2 ", Some(2)),
            ("none", Some(3)),
            ("sse4", None),
            ("avx-512", None),
        ] {
            assert_eq!(parse_ceiling(value), narrowing, "{value:?}");
        }
    }

    fn mapped(stored: Stored, values: &[f32]) -> (tempfile::NamedTempFile, Arc<Mmap>) {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let mut bytes = vec![0u8; 3]; // an odd offset: the kernel must not need alignment
        for &v in values {
            match stored {
                Stored::F32 => bytes.extend(v.to_le_bytes()),
                Stored::F16 => bytes.extend(half::f16::from_f32(v).to_le_bytes()),
                Stored::Bf16 => bytes.extend(half::bf16::from_f32(v).to_le_bytes()),
                Stored::Q8_0 | Stored::Q4_0 | Stored::Q4K | Stored::Mxfp4 => {
                    unreachable!("quantised matrices are made by `quantize`")
                }
            }
        }
        f.write_all(&bytes).unwrap();
        #[allow(unsafe_code)]
        let map = unsafe { Mmap::map(f.as_file()) }.unwrap();
        (f, Arc::new(map))
    }

    #[test]
    fn quantising_a_few_rows_at_a_time_gives_the_blocks_of_the_whole_matrix() {
        let (n, k) = (11, 256);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 64.0).collect();
        let (_f, map) = mapped(Stored::Bf16, &w);
        let a = DenseWeight::mapped(map.clone(), 3, Stored::Bf16, 4, k);
        let b = DenseWeight::mapped(map, 3 + 4 * Stored::Bf16.row_bytes(k), Stored::Bf16, n - 4, k);
        let dw = DenseWeight::concat(&[a, b]).unwrap();
        let whole = candle_core::Tensor::from_vec(dw.to_f32(), (n, k), &candle_core::Device::Cpu).unwrap();
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_0, GgmlDType::Q4K] {
            let want = QTensor::quantize(&whole, dtype).unwrap().data().unwrap().into_owned();
            for step in [1, 3, 4, 64] {
                assert_eq!(
                    dw.quantised_blocks_by(dtype, step).unwrap(),
                    want,
                    "{dtype:?} by {step}"
                );
            }
            assert_eq!(dw.quantised_blocks(dtype).unwrap(), want, "{dtype:?}");
        }
    }

    #[test]
    fn q4k_values_are_the_ones_candle_dequantises() {
        let (n, k) = (5, 512);
        let w: Vec<f32> = (0..n * k).map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 700.0).collect();
        let q = DenseWeight::from_f32_for_tests(&w, n, k).quantize(Stored::Q4K).unwrap();
        assert_eq!(q.bytes(), n * k / SUPER_BLOCK * Q4K_BYTES);
        let t = candle_core::Tensor::from_vec(w, (n, k), &candle_core::Device::Cpu).unwrap();
        let want = QTensor::quantize(&t, GgmlDType::Q4K)
            .unwrap()
            .dequantize(&candle_core::Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        assert_eq!(q.to_f32(), want);
        // Every one of the 64 possible 6-bit scales and mins of the last four sub-blocks is read right: a block made of
        // sub-blocks of very different ranges uses many of them.
        let ranges: Vec<f32> = (0..n * k)
            .map(|i| ((i * 31 % 97) as f32 - 48.0) * ((i / 32 % 8) as f32 + 1.0).powi(2))
            .collect();
        let q = DenseWeight::from_f32_for_tests(&ranges, n, k)
            .quantize(Stored::Q4K)
            .unwrap();
        let t = candle_core::Tensor::from_vec(ranges, (n, k), &candle_core::Device::Cpu).unwrap();
        let want = QTensor::quantize(&t, GgmlDType::Q4K)
            .unwrap()
            .dequantize(&candle_core::Device::Cpu)
            .unwrap();
        assert_eq!(q.to_f32(), want.flatten_all().unwrap().to_vec1::<f32>().unwrap());
    }

    #[test]
    fn the_kernel_equals_the_plain_product_for_every_dtype_width_and_row_count() {
        for_each_kernel(kernel_equals_the_plain_product);
    }

    fn kernel_equals_the_plain_product() {
        let mut seed = 7u32;
        let mut rand = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let kinds = [
            Stored::F32,
            Stored::F16,
            Stored::Bf16,
            Stored::Q8_0,
            Stored::Q4_0,
            Stored::Q4K,
        ];
        for stored in kinds {
            let quantised = stored.is_quantised();
            // Widths with and without a tail past the last vector; row counts around the block sizes.
            let shapes: &[(usize, usize)] = match stored {
                Stored::Q4K => &[(37, 256), (130, 512), (5, 256)],
                Stored::Q8_0 | Stored::Q4_0 => &[(37, 64), (130, 96), (5, 32)],
                _ => &[(37, 64), (45, 21), (5, 8), (130, 77)],
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
                    // The blocks hold the weights to within their step (1/127 or 1/7 of the block's largest value;
                    // Q4_K: 1/15 of a sub-block's range, with its 6-bit scale and min rounded too).
                    let step = if stored == Stored::Q8_0 { 0.5 / 127.0 } else { 0.5 / 7.0 };
                    assert!(
                        w.iter().zip(&wide).all(|(a, b)| (a - b).abs() <= step + 1e-3),
                        "{stored:?}"
                    );
                }
                for m in [1usize, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17] {
                    let x: Vec<f32> = (0..m * k).map(|_| rand()).collect();
                    let y = dw.matmul_t(&x, m);
                    // AMX tiles round both factors to bf16 (2^-9 relative each): each product is then within
                    // 2^-8 of its own size, so the sum within 2^-8 of the sum of their sizes (a wrong pairing of
                    // columns or rows is off by the order of the whole sum).
                    let tiles = uses_tiles(stored, m);
                    // 8-bit activations are each within half a step (1/254 of their super-block's largest value).
                    #[cfg(target_arch = "x86_64")]
                    let int8 = !tiles && int8::usable(stored);
                    #[cfg(not(target_arch = "x86_64"))]
                    let int8 = false;
                    for r in 0..m {
                        let xr = &x[r * k..(r + 1) * k];
                        let largest: Vec<f32> = xr
                            .chunks(SUPER_BLOCK)
                            .map(|b| b.iter().fold(0f32, |a, v| a.max(v.abs())))
                            .collect();
                        for j in 0..n {
                            let products = (0..k).map(|i| wide[j * k + i] * xr[i]);
                            let want: f32 = products.clone().sum();
                            let size: f32 = products.map(f32::abs).sum();
                            let rounding: f32 = (0..k)
                                .map(|i| wide[j * k + i].abs() * largest[i / SUPER_BLOCK] / 254.0)
                                .sum();
                            let bound = if tiles {
                                size / 256.0 + 1e-4
                            } else if int8 {
                                rounding + 1e-4 * (1.0 + want.abs())
                            } else {
                                1e-4 * (1.0 + want.abs())
                            };
                            let got = y[r * n + j];
                            assert!(
                                (got - want).abs() <= bound,
                                "{stored:?} n={n} k={k} m={m} r={r} j={j} tiles={tiles} int8={int8}: {got} vs {want}"
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

    /// The 8-bit kernel computes the product of the weights with the activations as it rounded them, to f32's
    /// precision: a wrong pairing of nibbles, bytes or scales is off by the order of the whole sum, where the bound
    /// in the test above allows for the rounding.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_8_bit_kernel_is_the_product_with_the_rounded_activations() {
        if !int8::usable(Stored::Q4K) {
            eprintln!("skipped: this CPU has no AVX-512 VNNI");
            return;
        }
        let _fixed = fixed_kernel();
        let (n, k) = (21, 768);
        // Sub-blocks of very different ranges, so that many of the 64 scales and mins are used.
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 700.0 * ((i / 32 % 8) as f32 + 1.0))
            .collect();
        let q = DenseWeight::from_f32_for_tests(&w, n, k).quantize(Stored::Q4K).unwrap();
        let wide = q.to_f32();
        let bytes = (*q.segments[0].map).as_ref();
        for m in 1..=ROW_BLOCK {
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 31 % 211) as f32 - 105.0) / 50.0).collect();
            let rounded = int8::Rounded::new(&x, k);
            let mut out = vec![0f32; n * m];
            int8::rows_dot(bytes, &rounded, &mut out);
            for r in 0..m {
                let xr = rounded.values(r);
                for (i, (a, b)) in xr.iter().zip(&x[r * k..]).enumerate() {
                    assert!(
                        (a - b).abs() <= 2.11 / 254.0 + 1e-6,
                        "m={m} r={r} i={i}: {a} rounds {b}"
                    );
                }
                for j in 0..n {
                    let want: f32 = (0..k).map(|i| wide[j * k + i] * xr[i]).sum();
                    let size: f32 = (0..k).map(|i| (wide[j * k + i] * xr[i]).abs()).sum();
                    let got = out[j * m + r];
                    assert!(
                        (got - want).abs() <= 1e-5 * size + 1e-5,
                        "m={m} r={r} j={j}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

//! The CPU backend: ndarray-compatible row-major f32 tensors, rayon over
//! contiguous chunks.
//!
//! The fused step walks the flat element range in chunks of [`CHUNK`]
//! elements (one rayon task each) and, inside a chunk, in blocks of
//! [`BLOCK`] elements: the operands are read in place, the `M` outputs are
//! computed into a stack buffer with loops the compiler vectorises, and then
//! copied to the outputs. Staging the outputs makes in-place updates (an
//! output that is also an operand) safe and keeps the inner loop free of
//! aliasing. Nothing is allocated. Because every element's value depends
//! only on its index, results are bit-identical for any thread count.

use std::sync::Arc;

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, IxDyn};
use rayon::prelude::*;

use crate::backend::{
    Backend, LinComb, MAX_INPUTS, MAX_OUTPUTS, Operand, RowReduction, RowScale, check_shape,
    log_scale_params,
};
use crate::error::{Error, Result};
use crate::noise::{NoiseStream, exp_f32, fill_range, fill_range_impl, has_avx2, seed_key};

/// Elements per rayon task of the fused step (256 KiB per f32 stream).
pub const CHUNK: usize = 1 << 16;
/// Elements staged through the stack at a time inside a task.
pub const BLOCK: usize = 256;
/// Elements per partial sum of a reduction (fixed, so results do not depend
/// on the thread count).
pub const REDUCE_BLOCK: usize = 4096;

/// A row-major f32 tensor in host memory; the leading axis is the batch.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

fn alloc_zeros(n: usize) -> Result<Vec<f32>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| Error::OutOfMemory {
        bytes: n.saturating_mul(4),
    })?;
    v.resize(n, 0.0);
    Ok(v)
}

impl CpuTensor {
    /// A tensor of zeros with shape `shape`.
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        let n = check_shape(shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            data: alloc_zeros(n)?,
        })
    }

    /// A tensor owning `data` (row-major) with shape `shape`.
    pub fn from_vec(shape: &[usize], data: Vec<f32>) -> Result<Self> {
        let n = check_shape(shape)?;
        if data.len() != n {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!("{} elements given for {n}", data.len()),
            });
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// A tensor from an ndarray array (copied into row-major order if needed).
    pub fn from_array(array: ArrayD<f32>) -> Result<Self> {
        let shape = array.shape().to_vec();
        let n = array.len();
        let data = if array.is_standard_layout() {
            // Contiguous, but an owned array that was sliced starts at an
            // offset into its buffer.
            let (mut raw, offset) = array.into_raw_vec_and_offset();
            raw.drain(..offset.unwrap_or(0));
            raw.truncate(n);
            raw
        } else {
            array.iter().copied().collect()
        };
        Self::from_vec(&shape, data)
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of batch rows (`shape[0]`).
    pub fn rows(&self) -> usize {
        self.shape[0]
    }

    /// Elements per batch row.
    pub fn row_len(&self) -> usize {
        self.data.len() / self.shape[0]
    }

    /// The elements, row-major.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The elements, row-major, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// The elements as a vector.
    pub fn into_vec(self) -> Vec<f32> {
        self.data
    }

    /// An ndarray view.
    pub fn view(&self) -> ArrayViewD<'_, f32> {
        ArrayViewD::from_shape(IxDyn(&self.shape), &self.data)
            .expect("shape and length agree by construction")
    }

    /// A mutable ndarray view.
    pub fn view_mut(&mut self) -> ArrayViewMutD<'_, f32> {
        ArrayViewMutD::from_shape(IxDyn(&self.shape), &mut self.data)
            .expect("shape and length agree by construction")
    }

    /// Converts into an owned ndarray array.
    pub fn into_array(self) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&self.shape), self.data)
            .expect("shape and length agree by construction")
    }
}

/// The CPU backend, on the global rayon pool or a pool of its own.
///
/// ```
/// use diffuse_core::{Backend, CpuBackend, NoiseStream, RowReduction};
/// let cpu = CpuBackend::with_threads(2)?;
/// let mut z = cpu.zeros(&[4, 1000])?;
/// cpu.fill_noise(NoiseStream::new(7, 0), 0, &mut z)?;
/// let mut rms = cpu.zeros(&[4])?;
/// cpu.reduce_rows(&z, RowReduction::Rms, &mut rms)?;
/// assert!(cpu.to_host(&rms)?.iter().all(|r| (r - 1.0).abs() < 0.1));
/// # Ok::<(), diffuse_core::Error>(())
/// ```
#[derive(Clone, Debug)]
pub struct CpuBackend {
    pool: Option<Arc<rayon::ThreadPool>>,
    simd: bool,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    /// A backend on rayon's global pool (`RAYON_NUM_THREADS` or one thread
    /// per core).
    pub fn new() -> Self {
        Self {
            pool: None,
            simd: true,
        }
    }

    /// The same backend restricted to the portable code paths (no AVX2).
    /// Results are identical bit for bit; this exists to check that, and to
    /// measure what the wider vectors bring.
    pub fn portable(mut self) -> Self {
        self.simd = false;
        self
    }

    fn avx2(&self) -> bool {
        self.simd && has_avx2()
    }

    /// A backend on a pool of its own with `threads` threads.
    pub fn with_threads(threads: usize) -> Result<Self> {
        if threads == 0 {
            return Err(Error::InvalidArgument {
                name: "threads",
                reason: "at least one thread is needed".into(),
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| Error::Backend {
                backend: "cpu".into(),
                message: e.to_string(),
            })?;
        Ok(Self {
            pool: Some(Arc::new(pool)),
            simd: true,
        })
    }

    /// Number of threads the backend's work runs on.
    pub fn threads(&self) -> usize {
        match &self.pool {
            Some(p) => p.current_num_threads(),
            None => rayon::current_num_threads(),
        }
    }

    /// Runs `f` on the backend's thread pool.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }
}

fn same_shape(op: &'static str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected != found {
        return Err(Error::ShapeMismatch {
            op,
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

/// Raw element pointers for one fused step. Operand pointers may equal
/// output pointers (in-place updates); see the safety notes in `run`.
#[derive(Clone, Copy)]
struct Ptrs {
    src: [*const f32; MAX_INPUTS],
    dst: [*mut f32; MAX_OUTPUTS],
}
// SAFETY: tasks write disjoint element ranges of the outputs, and read
// operand elements only in the range they own (or read-only inputs).
unsafe impl Send for Ptrs {}
unsafe impl Sync for Ptrs {}

/// Computes `len ≤ BLOCK` elements of every output into `out`, reading the
/// operands from `src` and the noise from `z`, in the documented order.
#[inline(always)]
fn combine<const K: usize, const M: usize, const NOISE: bool>(
    src: &[&[f32]; K],
    z: &[f32; BLOCK],
    c: &[[f32; MAX_INPUTS]; MAX_OUTPUTS],
    cz: &[f32; MAX_OUTPUTS],
    out: &mut [[f32; BLOCK]; M],
    len: usize,
) {
    for (m, om) in out.iter_mut().enumerate() {
        for i in 0..len {
            let mut acc = c[m][0] * src[0][i];
            for k in 1..K {
                acc += c[m][k] * src[k][i];
            }
            if NOISE {
                acc += cz[m] * z[i];
            }
            om[i] = acc;
        }
    }
}

/// Hints the cache lines of elements `i .. i + len` of every operand and
/// output into cache (a no-op where prefetching is not available).
#[inline(always)]
fn prefetch_block<const K: usize, const M: usize>(p: &Ptrs, i: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        const LINE: usize = 64 / std::mem::size_of::<f32>();
        for j in (i..i + len).step_by(LINE) {
            for src in &p.src[..K] {
                // SAFETY: a prefetch never faults; the address is in bounds.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(src.wrapping_add(j).cast()) };
            }
            for dst in &p.dst[..M] {
                // SAFETY: as above.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(dst.wrapping_add(j).cast_const().cast()) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (p, i, len);
}

/// Combines elements `range` of one chunk whose coefficients may change at
/// multiples of `seg` (row boundaries of a per-row plan).
///
/// # Safety
/// Every `src[k]` for `k < K` and `dst[m]` for `m < M` must be valid for the
/// range, and no other thread may touch it while this runs. With
/// `AVX2 = true` the CPU must support AVX2.
#[inline(always)]
unsafe fn combine_range<const K: usize, const M: usize, const NOISE: bool, const AVX2: bool>(
    plan: &LinComb,
    p: &Ptrs,
    range: std::ops::Range<usize>,
    seg: usize,
    noise: ([u32; 2], u64, u64),
) {
    let (key, stream, offset) = noise;
    let mut z = [0.0f32; BLOCK];
    let mut out = [[0.0f32; BLOCK]; M];
    let mut i = range.start;
    while i < range.end {
        let row = i / seg;
        let seg_end = ((row + 1) * seg).min(range.end);
        let (c, cz) = plan.f32_row_unchecked(row);
        while i < seg_end {
            let len = BLOCK.min(seg_end - i);
            if NOISE {
                // Generating the noise is compute-bound: ask for this block's
                // operand and output lines first so memory works meanwhile.
                prefetch_block::<K, M>(p, i, len);
                // SAFETY: AVX2 is only set when the CPU has it.
                unsafe {
                    fill_range_impl::<AVX2>(
                        key,
                        stream,
                        offset.wrapping_add(i as u64),
                        &mut z[..len],
                    );
                }
            }
            {
                // SAFETY: the caller owns `i .. i + len` of every pointer.
                // These shared slices (some over output memory) end with
                // this block, before the outputs are written below.
                let src: [&[f32]; K] = std::array::from_fn(|k| unsafe {
                    std::slice::from_raw_parts(p.src[k].add(i), len)
                });
                if len == BLOCK {
                    combine::<K, M, NOISE>(&src, &z, &c, &cz, &mut out, BLOCK);
                } else {
                    combine::<K, M, NOISE>(&src, &z, &c, &cz, &mut out, len);
                }
            }
            for (m, om) in out.iter().enumerate() {
                // SAFETY: as above; all operand reads of this range are done.
                let d = unsafe { std::slice::from_raw_parts_mut(p.dst[m].add(i), len) };
                d.copy_from_slice(&om[..len]);
            }
            i += len;
        }
    }
}

/// [`combine_range`] compiled for AVX2 (same IEEE operations, wider vectors).
///
/// # Safety
/// As [`combine_range`]; the CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn combine_range_avx2<const K: usize, const M: usize, const NOISE: bool>(
    plan: &LinComb,
    p: &Ptrs,
    range: std::ops::Range<usize>,
    seg: usize,
    noise: ([u32; 2], u64, u64),
) {
    // SAFETY: forwarded from the caller.
    unsafe { combine_range::<K, M, NOISE, true>(plan, p, range, seg, noise) }
}

fn run<const K: usize, const M: usize, const NOISE: bool>(
    plan: &LinComb,
    p: Ptrs,
    n: usize,
    row_len: usize,
    avx2: bool,
) {
    let noise = match plan.noise() {
        Some((s, off)) => (seed_key(s.seed), s.stream, off),
        None => ([0, 0], 0, 0),
    };
    // Coefficients change only at row boundaries of a per-row plan.
    let seg = if plan.rows().is_some() { row_len } else { n };
    let chunks = n.div_ceil(CHUNK);
    (0..chunks).into_par_iter().for_each(|chunk| {
        let range = chunk * CHUNK..((chunk + 1) * CHUNK).min(n);
        // SAFETY: every pointer covers `n` elements and chunks are disjoint,
        // so this task owns `range`.
        // `avx2` is only true when the CPU has AVX2.
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            unsafe { combine_range_avx2::<K, M, NOISE>(plan, &p, range, seg, noise) };
            return;
        }
        let _ = avx2;
        unsafe { combine_range::<K, M, NOISE, false>(plan, &p, range, seg, noise) };
    });
}

type Kernel = fn(&LinComb, Ptrs, usize, usize, bool);

macro_rules! kernel_table {
    ($($k:literal),*) => {
        [$(
            [
                [run::<$k, 1, false> as Kernel, run::<$k, 1, true> as Kernel],
                [run::<$k, 2, false> as Kernel, run::<$k, 2, true> as Kernel],
                [run::<$k, 3, false> as Kernel, run::<$k, 3, true> as Kernel],
                [run::<$k, 4, false> as Kernel, run::<$k, 4, true> as Kernel],
            ]
        ),*]
    };
}

/// One monomorphised kernel per (K, M, noise).
static KERNELS: [[[Kernel; 2]; MAX_OUTPUTS]; MAX_INPUTS] = kernel_table!(1, 2, 3, 4, 5, 6, 7, 8);

fn reduce_row(row: &[f32], op: RowReduction) -> f64 {
    let sum = |f: &(dyn Fn(f32) -> f64 + Sync)| -> f64 {
        let partial: Vec<f64> = row
            .par_chunks(REDUCE_BLOCK)
            .map(|b| b.iter().map(|&x| f(x)).sum::<f64>())
            .collect();
        partial.iter().sum()
    };
    let n = row.len() as f64;
    match op {
        RowReduction::SumSquares => sum(&|x| f64::from(x) * f64::from(x)),
        RowReduction::Rms => (sum(&|x| f64::from(x) * f64::from(x)) / n).sqrt(),
        RowReduction::Mean => sum(&|x| f64::from(x)) / n,
        RowReduction::Std { correction } => {
            let mean = sum(&|x| f64::from(x)) / n;
            let ss = sum(&|x| (f64::from(x) - mean).powi(2));
            (ss / (n - f64::from(correction))).sqrt()
        }
        RowReduction::AbsQuantile(p) => {
            let mut v: Vec<f32> = row.iter().map(|x| x.abs()).collect();
            let h = (v.len() - 1) as f64 * p;
            let lo = h.floor() as usize;
            let (_, &mut a, upper) = v.select_nth_unstable_by(lo, f32::total_cmp);
            let b = upper.iter().copied().fold(f32::INFINITY, f32::min);
            if lo + 1 >= row.len() {
                f64::from(a)
            } else {
                f64::from(a) + (h - lo as f64) * (f64::from(b) - f64::from(a))
            }
        }
    }
}

impl Backend for CpuBackend {
    type Tensor = CpuTensor;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, shape: &[usize]) -> Result<CpuTensor> {
        CpuTensor::zeros(shape)
    }

    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<CpuTensor> {
        let n = check_shape(shape)?;
        if data.len() != n {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!("{} elements given for {n}", data.len()),
            });
        }
        let mut v = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| Error::OutOfMemory { bytes: n * 4 })?;
        v.extend_from_slice(data);
        CpuTensor::from_vec(shape, v)
    }

    fn to_host(&self, tensor: &CpuTensor) -> Result<Vec<f32>> {
        Ok(tensor.data.clone())
    }

    fn shape<'t>(&self, tensor: &'t CpuTensor) -> &'t [usize] {
        &tensor.shape
    }

    fn copy(&self, src: &CpuTensor, dst: &mut CpuTensor) -> Result<()> {
        same_shape("copy", &src.shape, &dst.shape)?;
        self.run(|| {
            dst.data
                .par_chunks_mut(CHUNK)
                .zip(src.data.par_chunks(CHUNK))
                .for_each(|(d, s)| d.copy_from_slice(s));
        });
        Ok(())
    }

    fn fill_noise(&self, stream: NoiseStream, offset: u64, out: &mut CpuTensor) -> Result<()> {
        let key = seed_key(stream.seed);
        let avx2 = self.avx2();
        self.run(|| {
            out.data
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, chunk)| {
                    let first = offset.wrapping_add((c * CHUNK) as u64);
                    fill_range(key, stream.stream, first, chunk, avx2);
                });
        });
        Ok(())
    }

    fn fill_noise_log_scaled(
        &self,
        stream: NoiseStream,
        offset: u64,
        v: &CpuTensor,
        a: &[f64],
        b: &[f64],
        out: &mut CpuTensor,
    ) -> Result<()> {
        same_shape("fill_noise_log_scaled", &out.shape, &v.shape)?;
        let (a, b, row_len) = log_scale_params(a, b, out.data.len())?;
        let key = seed_key(stream.seed);
        let avx2 = self.avx2();
        self.run(|| {
            out.data
                .par_chunks_mut(CHUNK)
                .zip(v.data.par_chunks(CHUNK))
                .enumerate()
                .for_each(|(c, (chunk, vs))| {
                    let first = offset.wrapping_add((c * CHUNK) as u64);
                    fill_range(key, stream.stream, first, chunk, avx2);
                    for (j, (o, &vi)) in chunk.iter_mut().zip(vs).enumerate() {
                        let r = (c * CHUNK + j) / row_len;
                        let t = b[r] * vi;
                        let t = a[r] + t;
                        *o *= exp_f32(t);
                    }
                });
        });
        Ok(())
    }

    fn lincomb(
        &self,
        plan: &LinComb,
        inputs: &[&CpuTensor],
        outputs: &mut [&mut CpuTensor],
    ) -> Result<()> {
        plan.validate(inputs.len(), outputs.len())?;
        let (first, rest) = outputs.split_first_mut().expect("validate checked M ≥ 1");
        let shape = first.shape.as_slice();
        for t in inputs {
            same_shape("lincomb input", shape, &t.shape)?;
        }
        for t in rest.iter() {
            same_shape("lincomb output", shape, &t.shape)?;
        }
        if let Some(rows) = plan.rows()
            && rows != shape[0]
        {
            return Err(Error::InvalidPlan(format!(
                "per-row plan for {rows} rows applied to a batch of {}",
                shape[0]
            )));
        }
        let rows = shape[0];
        let n = outputs[0].data.len();
        let row_len = n / rows;
        let mut dst = [std::ptr::null_mut(); MAX_OUTPUTS];
        for (d, t) in dst.iter_mut().zip(outputs.iter_mut()) {
            *d = t.data.as_mut_ptr();
        }
        let mut src = [std::ptr::null(); MAX_INPUTS];
        for (s, op) in src.iter_mut().zip(plan.operands()) {
            *s = match *op {
                Operand::Input(i) => inputs[i].data.as_ptr(),
                Operand::Output(m) => dst[m] as *const f32,
            };
        }
        let kernel =
            KERNELS[plan.inputs() - 1][plan.outputs() - 1][usize::from(plan.noise().is_some())];
        let ptrs = Ptrs { src, dst };
        let avx2 = self.avx2();
        self.run(|| kernel(plan, ptrs, n, row_len, avx2));
        Ok(())
    }

    fn reduce_rows(&self, x: &CpuTensor, op: RowReduction, out: &mut CpuTensor) -> Result<()> {
        same_shape("reduce_rows output", &[x.rows()], &out.shape)?;
        let row_len = x.row_len();
        match op {
            RowReduction::AbsQuantile(p) if !(0.0..=1.0).contains(&p) => {
                return Err(Error::InvalidArgument {
                    name: "quantile",
                    reason: format!("p = {p} is outside [0, 1]"),
                });
            }
            RowReduction::Std { correction } if correction > 1 => {
                return Err(Error::InvalidArgument {
                    name: "std correction",
                    reason: format!("{correction}; use 0 (population) or 1 (unbiased)"),
                });
            }
            RowReduction::Std { correction: 1 } if row_len < 2 => {
                return Err(Error::InvalidArgument {
                    name: "std correction",
                    reason: "the unbiased std needs at least two elements per row".into(),
                });
            }
            _ => {}
        }
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "reduce_rows input (row {}, element {})",
                i / row_len,
                i % row_len
            )));
        }
        self.run(|| {
            out.data
                .par_iter_mut()
                .zip(x.data.par_chunks(row_len))
                .for_each(|(o, row)| *o = reduce_row(row, op) as f32);
        });
        if let Some(r) = out.data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "reduce_rows result for row {r} ({op:?} overflows f32)"
            )));
        }
        Ok(())
    }

    fn scale_rows(&self, op: RowScale, factors: &[&CpuTensor], x: &mut CpuTensor) -> Result<()> {
        op.check(factors.len())?;
        let rows = x.rows();
        for f in factors {
            same_shape("scale_rows factors", &[rows], &f.shape)?;
        }
        let params = op.f32_params();
        let u = factors.first().map(|t| t.data.as_slice());
        let v = factors.get(1).map(|t| t.data.as_slice());
        let row_len = x.row_len();
        self.run(|| {
            x.data
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(c, chunk)| {
                    // Walk the chunk row segment by row segment.
                    let mut first = c * CHUNK;
                    let mut rest = chunk;
                    while !rest.is_empty() {
                        let row = first / row_len;
                        let len = ((row + 1) * row_len - first).min(rest.len());
                        let (seg, tail) = rest.split_at_mut(len);
                        let value = op.row_value(
                            params,
                            u.map_or(0.0, |u| u[row]),
                            v.map_or(0.0, |v| v[row]),
                        );
                        for e in seg.iter_mut() {
                            *e = op.apply(value, *e);
                        }
                        first += len;
                        rest = tail;
                    }
                });
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(data: &[f32], rows: usize) -> CpuTensor {
        CpuTensor::from_vec(&[rows, data.len() / rows], data.to_vec()).unwrap()
    }

    fn factors(data: &[f32]) -> CpuTensor {
        CpuTensor::from_vec(&[data.len()], data.to_vec()).unwrap()
    }

    #[test]
    fn log_scaled_noise_by_hand_and_across_chunks() {
        let cpu = CpuBackend::new();
        let (rows, len) = (3, CHUNK / 2 + 5);
        let n = rows * len;
        let vdata: Vec<f32> = (0..n).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
        let v = CpuTensor::from_vec(&[rows, len], vdata.clone()).unwrap();
        let mut out = CpuTensor::zeros(&[rows, len]).unwrap();
        let (a, b) = ([-1.5, 0.25, -3.0], [0.5, -0.75, 1.0]);
        let s = NoiseStream::new(9, 4);
        let offset = u64::MAX - 7;
        cpu.fill_noise_log_scaled(s, offset, &v, &a, &b, &mut out)
            .unwrap();
        for i in (0..n).step_by(97).chain([0, len - 1, len, n - 1]) {
            let r = i / len;
            let z = s.at(offset.wrapping_add(i as u64));
            let t = (b[r] as f32) * vdata[i];
            let want = exp_f32((a[r] as f32) + t) * z;
            assert_eq!(out.as_slice()[i].to_bits(), want.to_bits(), "element {i}");
            let exact = (a[r] + b[r] * f64::from(vdata[i])).exp() * f64::from(z);
            assert!((f64::from(want) - exact).abs() <= 1e-6 * (1.0 + exact.abs()));
        }
        // One row over the whole tensor: a single (a, b).
        cpu.fill_noise_log_scaled(s, 0, &v, &[0.0], &[0.0], &mut out)
            .unwrap();
        let mut z = CpuTensor::zeros(&[rows, len]).unwrap();
        cpu.fill_noise(s, 0, &mut z).unwrap();
        assert_eq!(out, z);
    }

    #[test]
    fn log_scaled_noise_rejects_bad_arguments() {
        let cpu = CpuBackend::new();
        let v = CpuTensor::zeros(&[2, 3]).unwrap();
        let mut out = CpuTensor::zeros(&[2, 3]).unwrap();
        let s = NoiseStream::new(0, 0);
        let mut bad_shape = CpuTensor::zeros(&[3, 2]).unwrap();
        assert!(matches!(
            cpu.fill_noise_log_scaled(s, 0, &v, &[0.0], &[0.0], &mut bad_shape),
            Err(Error::ShapeMismatch { .. })
        ));
        for (a, b) in [
            (&[0.0, 0.0][..], &[0.0][..]),
            (&[], &[]),
            (&[0.0; 4], &[0.0; 4]),
        ] {
            assert!(matches!(
                cpu.fill_noise_log_scaled(s, 0, &v, a, b, &mut out),
                Err(Error::InvalidArgument { .. })
            ));
        }
        for bad in [f64::NAN, f64::INFINITY, 1e300] {
            assert!(matches!(
                cpu.fill_noise_log_scaled(s, 0, &v, &[bad, 0.0], &[0.0, 0.0], &mut out),
                Err(Error::NonFinite(_))
            ));
            assert!(matches!(
                cpu.fill_noise_log_scaled(s, 0, &v, &[0.0, 0.0], &[0.0, bad], &mut out),
                Err(Error::NonFinite(_))
            ));
        }
    }

    #[test]
    fn scale_rows_by_hand() {
        let cpu = CpuBackend::with_threads(2).unwrap();
        let data = [3.0f32, -0.5, 0.25, -4.0, 1.0, 2.0];
        // Ratio: u/v = 2 and 0/0 → 1; w = 0.5: factors 1 + 0.5·(2 − 1) and 1.
        let mut x = rows(&data, 2);
        let (u, v) = (factors(&[2.0, 0.0]), factors(&[1.0, 0.0]));
        cpu.scale_rows(RowScale::Ratio { weight: 0.5 }, &[&u, &v], &mut x)
            .unwrap();
        assert_eq!(x.as_slice(), &[4.5, -0.75, 0.375, -4.0, 1.0, 2.0]);
        // Dynamic threshold: s = clamp(u, 1, 2.5) = 2.5 and 1.
        let mut x = rows(&data, 2);
        let u = factors(&[3.0, 0.5]);
        cpu.scale_rows(RowScale::ClampDivide { lo: 1.0, hi: 2.5 }, &[&u], &mut x)
            .unwrap();
        assert_eq!(x.as_slice(), &[1.0, -0.2, 0.1, -1.0, 1.0, 1.0]);
        // Static clipping.
        let mut x = rows(&data, 2);
        cpu.scale_rows(RowScale::Clamp { bound: 1.0 }, &[], &mut x)
            .unwrap();
        assert_eq!(x.as_slice(), &[1.0, -0.5, 0.25, -1.0, 1.0, 1.0]);
        // NaN is not clamped away.
        let mut x = rows(&[f32::NAN, 2.0], 1);
        cpu.scale_rows(RowScale::Clamp { bound: 1.0 }, &[], &mut x)
            .unwrap();
        assert!(x.as_slice()[0].is_nan() && x.as_slice()[1] == 1.0);
    }

    #[test]
    fn scale_rows_across_chunks_and_rows() {
        // Rows that straddle chunk boundaries get their own factor.
        let cpu = CpuBackend::with_threads(2).unwrap();
        let (r, len) = (3, CHUNK / 2 + 7);
        let data: Vec<f32> = (0..r * len).map(|i| (i % 13) as f32 - 6.0).collect();
        let mut x = rows(&data, r);
        let u = factors(&[1.0, 2.0, 4.0]);
        let v = factors(&[1.0, 1.0, 1.0]);
        cpu.scale_rows(RowScale::Ratio { weight: 1.0 }, &[&u, &v], &mut x)
            .unwrap();
        for (i, (&got, &d)) in x.as_slice().iter().zip(&data).enumerate() {
            assert_eq!(got, d * [1.0, 2.0, 4.0][i / len], "element {i}");
        }
    }

    #[test]
    fn scale_rows_rejects_bad_arguments() {
        let cpu = CpuBackend::new();
        let mut x = rows(&[1.0; 6], 2);
        let u = factors(&[1.0, 1.0]);
        let u3 = factors(&[1.0, 1.0, 1.0]);
        let bad = [
            (RowScale::Ratio { weight: f64::NAN }, vec![&u, &u]),
            (RowScale::Ratio { weight: 0.5 }, vec![&u]),
            (RowScale::ClampDivide { lo: 0.0, hi: 2.0 }, vec![&u]),
            (RowScale::ClampDivide { lo: 1e-60, hi: 2.0 }, vec![&u]),
            (RowScale::ClampDivide { lo: 2.0, hi: 1.0 }, vec![&u]),
            (
                RowScale::ClampDivide {
                    lo: 1.0,
                    hi: f64::NAN,
                },
                vec![&u],
            ),
            (RowScale::Clamp { bound: 0.0 }, vec![]),
            (RowScale::Clamp { bound: -1.0 }, vec![]),
            (RowScale::Clamp { bound: 1.0 }, vec![&u]),
        ];
        for (op, f) in bad {
            let err = cpu.scale_rows(op, &f, &mut x).unwrap_err();
            assert!(
                matches!(err, Error::InvalidArgument { .. }),
                "{op:?}: {err}"
            );
        }
        let err = cpu
            .scale_rows(RowScale::ClampDivide { lo: 1.0, hi: 2.0 }, &[&u3], &mut x)
            .unwrap_err();
        assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
        assert_eq!(x.as_slice(), &[1.0; 6]);
    }

    #[test]
    fn quantile_follows_linear_interpolation() {
        let row = [-4.0f32, 1.0, 3.0, -2.0, 0.0];
        // |x| sorted: 0 1 2 3 4.
        assert_eq!(reduce_row(&row, RowReduction::AbsQuantile(0.0)), 0.0);
        assert_eq!(reduce_row(&row, RowReduction::AbsQuantile(1.0)), 4.0);
        assert_eq!(reduce_row(&row, RowReduction::AbsQuantile(0.5)), 2.0);
        assert!((reduce_row(&row, RowReduction::AbsQuantile(0.9)) - 3.6).abs() < 1e-12);
        assert_eq!(reduce_row(&[5.0], RowReduction::AbsQuantile(0.3)), 5.0);
    }

    #[test]
    fn moments_of_a_small_row() {
        let row = [1.0f32, 2.0, 3.0, 4.0];
        assert_eq!(reduce_row(&row, RowReduction::SumSquares), 30.0);
        assert_eq!(reduce_row(&row, RowReduction::Mean), 2.5);
        assert!((reduce_row(&row, RowReduction::Rms) - 7.5f64.sqrt()).abs() < 1e-12);
        assert!(
            (reduce_row(&row, RowReduction::Std { correction: 0 }) - 1.25f64.sqrt()).abs() < 1e-12
        );
        assert!(
            (reduce_row(&row, RowReduction::Std { correction: 1 }) - (5.0f64 / 3.0).sqrt()).abs()
                < 1e-12
        );
    }
}

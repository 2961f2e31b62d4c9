//! The CUDA C sources and the host side of every launch, independent of any
//! GPU: which kernel runs, with which arguments, over how many work items.
//!
//! [`CudaBackend`](crate::CudaBackend) hands these to the driver; the host
//! shim used by the tests (the same sources compiled by g++ with the CUDA
//! built-ins defined as loops) hands them to the host, so the arguments the
//! tests check are exactly the ones the GPU receives.
//!
//! The kernel argument structs are `#[repr(C)]` mirrors of the structs in
//! `kernels/*.cu`, with device pointers as `u64` (host pointers in the shim).

use diffuse_core::backend::{LinComb, MAX_INPUTS, MAX_OUTPUTS};
use diffuse_core::noise::seed_key;
use diffuse_core::{Error, Result, RowReduction, RowScale};

/// `kernels/common.cuh`: Philox4x32-10, the logarithm, sine and cosine in
/// turns and the Box–Muller transform of `docs/noise.md`, plus helpers.
pub const COMMON_SOURCE: &str = include_str!("../../../kernels/common.cuh");
/// `kernels/noise.cu`: `diffuse_fill_noise`, `diffuse_fill_noise_log_scaled`.
pub const NOISE_SOURCE: &str = include_str!("../../../kernels/noise.cu");
/// `kernels/lincomb.cu`: the fused step, one kernel per (K, M, noise).
pub const LINCOMB_SOURCE: &str = include_str!("../../../kernels/lincomb.cu");
/// `kernels/reduce.cu`: the per-row reductions (f64 accumulation).
pub const REDUCE_SOURCE: &str = include_str!("../../../kernels/reduce.cu");
/// `kernels/gmm.cu`: the exact Gaussian-mixture denoiser (f64 inside).
pub const GMM_SOURCE: &str = include_str!("../../../kernels/gmm.cu");
/// `kernels/rowscale.cu`: the per-row maps of [`RowScale`].
pub const ROWSCALE_SOURCE: &str = include_str!("../../../kernels/rowscale.cu");

/// A compilation unit: the kernels NVRTC compiles together into one module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelModule {
    /// The noise stream (`common.cuh`, `noise.cu`).
    Noise,
    /// The fused step for one `(K, M)`, without and with noise
    /// (`common.cuh`, `lincomb.cu`).
    LinComb {
        /// Operands `K`, 1 ..= [`MAX_INPUTS`].
        inputs: usize,
        /// Outputs `M`, 1 ..= [`MAX_OUTPUTS`].
        outputs: usize,
    },
    /// The per-row reductions (`common.cuh`, `reduce.cu`). They accumulate
    /// in f64 like the CPU backend and agree with it within rounding.
    Reduce,
    /// The exact Gaussian-mixture denoiser (`common.cuh`, `gmm.cu`),
    /// evaluated in f64 in the CPU reference's operation order.
    Gmm,
    /// The per-row maps of [`RowScale`] (`common.cuh`, `rowscale.cu`),
    /// bit-identical to the CPU backend, f32 only.
    RowScale,
}

impl KernelModule {
    /// Every module: the noise stream, the 32 fused steps, the reductions,
    /// the Gaussian-mixture denoiser.
    pub fn all() -> Vec<KernelModule> {
        let mut v = vec![KernelModule::Noise];
        for inputs in 1..=MAX_INPUTS {
            for outputs in 1..=MAX_OUTPUTS {
                v.push(KernelModule::LinComb { inputs, outputs });
            }
        }
        v.push(KernelModule::Reduce);
        v.push(KernelModule::Gmm);
        v.push(KernelModule::RowScale);
        v
    }

    /// The module's full source, as NVRTC compiles it (the header pasted in
    /// front, so no include path is needed; a fused step ends with the
    /// instantiation of its `(K, M)`).
    pub fn source(self) -> String {
        match self {
            KernelModule::Noise => format!("{COMMON_SOURCE}\n{NOISE_SOURCE}"),
            KernelModule::LinComb { inputs, outputs } => format!(
                "{COMMON_SOURCE}\n{LINCOMB_SOURCE}\nDF_LINCOMB_KERNELS({inputs}, {outputs})\n"
            ),
            KernelModule::Reduce => format!("{COMMON_SOURCE}\n{REDUCE_SOURCE}"),
            KernelModule::Gmm => format!("{COMMON_SOURCE}\n{GMM_SOURCE}"),
            KernelModule::RowScale => format!("{COMMON_SOURCE}\n{ROWSCALE_SOURCE}"),
        }
    }

    /// A short name (`"noise"`, `"lincomb_k3_m2"`, `"reduce"`).
    pub fn name(self) -> String {
        match self {
            KernelModule::Noise => "noise".into(),
            KernelModule::LinComb { inputs, outputs } => format!("lincomb_k{inputs}_m{outputs}"),
            KernelModule::Reduce => "reduce".into(),
            KernelModule::Gmm => "gmm".into(),
            KernelModule::RowScale => "rowscale".into(),
        }
    }

    /// Whether the module may use double precision: the reductions (f64
    /// accumulation) and the Gaussian-mixture denoiser (f64 evaluation, for
    /// accuracy); the step and noise kernels are bit-identical to the CPU
    /// backend and use f32 only.
    pub fn allows_f64(self) -> bool {
        matches!(self, KernelModule::Reduce | KernelModule::Gmm)
    }

    /// The names of the module's kernels (`extern "C"` entry points).
    pub fn kernel_names(self) -> Vec<String> {
        match self {
            KernelModule::Noise => vec![
                FILL_NOISE_KERNEL.to_string(),
                FILL_NOISE_LOG_SCALED_KERNEL.to_string(),
            ],
            KernelModule::LinComb { inputs, outputs } => vec![
                lincomb_kernel_name(inputs, outputs, false),
                lincomb_kernel_name(inputs, outputs, true),
            ],
            KernelModule::Reduce => REDUCE_KERNELS.iter().map(|s| s.to_string()).collect(),
            KernelModule::Gmm => vec![GMM_PREDICT_KERNEL.to_string()],
            KernelModule::RowScale => vec![SCALE_ROWS_KERNEL.to_string()],
        }
    }
}

/// NVRTC options for every module: no contraction into fused multiply–adds
/// (`--fmad=false`, so the PTX has separate `mul.rn` and `add.rn` exactly
/// where the CPU rounds twice), IEEE division and square root, no
/// flush-to-zero. Never fast math.
pub const NVRTC_OPTIONS: [&str; 5] = [
    "--fmad=false",
    "--prec-div=true",
    "--prec-sqrt=true",
    "--ftz=false",
    "--std=c++17",
];

/// Threads per block of every launch.
pub const BLOCK_THREADS: u32 = 256;

/// `diffuse_fill_noise(out, n, key0, key1, stream, offset)`.
pub const FILL_NOISE_KERNEL: &str = "diffuse_fill_noise";
/// `diffuse_fill_noise_log_scaled(out, v, ab, n, rows, row_len, key0, key1,
/// stream, offset)`: `Backend::fill_noise_log_scaled`, with `ab` the per-row
/// `a` followed by the per-row `b`.
pub const FILL_NOISE_LOG_SCALED_KERNEL: &str = "diffuse_fill_noise_log_scaled";
/// First pass of a row sum over the f32 input.
pub const REDUCE_MAP_KERNEL: &str = "diffuse_reduce_map";
/// Later passes of a row sum over f64 partials.
pub const REDUCE_SUM_KERNEL: &str = "diffuse_reduce_sum";
/// Row sums to results and status words.
pub const REDUCE_FINISH_KERNEL: &str = "diffuse_reduce_finish";
/// Clears status words and selection prefixes.
pub const REDUCE_INIT_KERNEL: &str = "diffuse_reduce_init";
/// One bit of the order-statistic selection.
pub const REDUCE_SELECT_KERNEL: &str = "diffuse_reduce_select";
/// `diffuse_scale_rows(args)`: [`RowScale`] over a tensor.
pub const SCALE_ROWS_KERNEL: &str = "diffuse_scale_rows";
/// Every kernel of [`KernelModule::Reduce`].
pub const REDUCE_KERNELS: [&str; 5] = [
    REDUCE_MAP_KERNEL,
    REDUCE_SUM_KERNEL,
    REDUCE_FINISH_KERNEL,
    REDUCE_INIT_KERNEL,
    REDUCE_SELECT_KERNEL,
];

/// The Gaussian-mixture denoiser, one thread per batch row.
pub const GMM_PREDICT_KERNEL: &str = "diffuse_gmm_predict";

/// The fused-step kernel for `k` operands, `m` outputs and an optional noise
/// term: `diffuse_lincomb_k{k}_m{m}` or `…_noise`.
pub fn lincomb_kernel_name(k: usize, m: usize, noise: bool) -> String {
    let suffix = if noise { "_noise" } else { "" };
    format!("diffuse_lincomb_k{k}_m{m}{suffix}")
}

/// Work items of an element-wise kernel over `n` elements: groups of four
/// elements (one 16-byte load per tensor), `⌈n/4⌉`.
pub fn element_groups(n: usize) -> u64 {
    (n as u64).div_ceil(4)
}

/// Blocks of [`BLOCK_THREADS`] threads for `items` work items in a
/// grid-stride loop: enough to cover them, at most `max_blocks` (at least 1).
pub fn grid_blocks(items: u64, max_blocks: u32) -> u32 {
    let needed = items.div_ceil(u64::from(BLOCK_THREADS)).max(1);
    needed.min(u64::from(max_blocks.max(1))) as u32
}

/// Arguments of the fused-step kernels (`DfLinCombArgs` in
/// `kernels/lincomb.cu`, 288 bytes, passed by value).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinCombArgs {
    /// Operand pointers (operand `k` reads `src[k]`).
    pub src: [u64; MAX_INPUTS],
    /// Output pointers.
    pub dst: [u64; MAX_OUTPUTS],
    /// Scalar plans: `c[m][k]` rounded to f32.
    pub coef: [[f32; MAX_INPUTS]; MAX_OUTPUTS],
    /// Scalar plans: the noise coefficients `c_z[m]` rounded to f32.
    pub coef_noise: [f32; MAX_OUTPUTS],
    /// Per-row plans: pointer to [`pack_row_coefficients`]'s array; 0 for
    /// scalar plans.
    pub row_coef: u64,
    /// Elements per tensor.
    pub n: u64,
    /// Elements per batch row.
    pub row_len: u64,
    /// The noise draw number.
    pub stream: u64,
    /// The stream index of element 0.
    pub offset: u64,
    /// The Philox key, `lo32(seed)`.
    pub key0: u32,
    /// The Philox key, `hi32(seed)`.
    pub key1: u32,
}

const _: () = assert!(std::mem::size_of::<LinCombArgs>() == 288);

impl LinCombArgs {
    /// The arguments of `plan` over tensors of `n` elements in rows of
    /// `row_len`: operand pointers resolved from `inputs` (for
    /// `Operand::Input`) and `outputs` (for `Operand::Output`, the previous
    /// value), the scalar coefficients rounded to f32 as
    /// [`LinComb::f32_row`] does, and `row_coef` (0 for a scalar plan; the
    /// address of [`pack_row_coefficients`]'s array for a per-row one).
    pub fn new(
        plan: &LinComb,
        inputs: &[u64],
        outputs: &[u64],
        n: usize,
        row_len: usize,
        row_coef: u64,
    ) -> Result<Self> {
        plan.validate(inputs.len(), outputs.len())?;
        if plan.rows().is_some() != (row_coef != 0) {
            return Err(Error::InvalidArgument {
                name: "row coefficients",
                reason: "a per-row plan needs its coefficient array, a scalar plan none".into(),
            });
        }
        if row_len == 0 || !n.is_multiple_of(row_len) {
            return Err(Error::InvalidArgument {
                name: "row length",
                reason: format!("{row_len} does not divide {n} elements"),
            });
        }
        let mut src = [0u64; MAX_INPUTS];
        for (s, op) in src.iter_mut().zip(plan.operands()) {
            *s = match *op {
                diffuse_core::Operand::Input(i) => inputs[i],
                diffuse_core::Operand::Output(m) => outputs[m],
            };
        }
        let mut dst = [0u64; MAX_OUTPUTS];
        dst[..outputs.len()].copy_from_slice(outputs);
        let (coef, coef_noise) = plan.f32_row(0)?;
        let (stream, offset, key) = match plan.noise() {
            Some((s, off)) => (s.stream, off, seed_key(s.seed)),
            None => (0, 0, [0, 0]),
        };
        Ok(Self {
            src,
            dst,
            coef,
            coef_noise,
            row_coef,
            n: n as u64,
            row_len: row_len as u64,
            stream,
            offset,
            key0: key[0],
            key1: key[1],
        })
    }
}

/// The coefficients of a per-row plan as the kernels read them: for each
/// row `r`, its `M·K` coefficients `c[m][k]` (row-major) then its `M` noise
/// coefficients, all rounded to f32 ([`LinComb::f32_row`]). Empty for a
/// scalar plan (whose coefficients travel in [`LinCombArgs`]).
pub fn pack_row_coefficients(plan: &LinComb) -> Result<Vec<f32>> {
    let Some(rows) = plan.rows() else {
        return Ok(Vec::new());
    };
    let (k, m) = (plan.inputs(), plan.outputs());
    let mut out = Vec::new();
    out.try_reserve_exact(rows * (m * k + m))
        .map_err(|_| Error::OutOfMemory {
            bytes: rows * (m * k + m) * 4,
        })?;
    for r in 0..rows {
        let (c, cz) = plan.f32_row(r)?;
        for cm in &c[..m] {
            out.extend_from_slice(&cm[..k]);
        }
        out.extend_from_slice(&cz[..m]);
    }
    Ok(out)
}

/// Arguments of the reduction kernels (`DfReduceArgs` in
/// `kernels/reduce.cu`, 128 bytes, passed by value). Pointers as `u64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ReduceArgs {
    /// The f32 input `[true_rows][len]` (first pass).
    pub x: u64,
    /// f64 partials read by this pass `[rows][len]`.
    pub src: u64,
    /// f64 partials written by this pass `[rows][width]`.
    pub dst: u64,
    /// f64 per-row means `[true_rows]`.
    pub mean: u64,
    /// u32 selection prefixes `[2][true_rows]`.
    pub prefix: u64,
    /// f32 results `[true_rows]`.
    pub out: u64,
    /// u32 status words `[true_rows]`: 0 ok, 1 non-finite input, 2 the
    /// result overflows f32.
    pub status: u64,
    /// Rows of this pass (twice the batch when selecting two ranks).
    pub rows: u64,
    /// Elements per row read by this pass.
    pub len: u64,
    /// Partials per row written by this pass.
    pub width: u64,
    /// Batch rows of the input.
    pub true_rows: u64,
    /// The lower order statistic's rank (0-based).
    pub rank0: u64,
    /// The upper order statistic's rank (equal to `rank0` when there is no
    /// interpolation).
    pub rank1: u64,
    /// The divisor of a mean, RMS or standard deviation.
    pub divisor: f64,
    /// The quantile's interpolation weight `h − ⌊h⌋`.
    pub frac: f64,
    /// What the kernel maps or finishes (see `kernels/reduce.cu`).
    pub mode: u32,
    /// Selection: the bit being decided.
    pub bit: u32,
}

const _: () = assert!(std::mem::size_of::<ReduceArgs>() == 128);

/// `mode` of the first pass: `x`.
const MAP_X: u32 = 0;
/// `x²`.
const MAP_SQUARE: u32 = 1;
/// `(x − mean_r)²`.
const MAP_CENTRED_SQUARE: u32 = 2;
/// `x·0` (NaN exactly when `x` is not finite).
const MAP_CHECK: u32 = 3;
/// `[|x| ≤ candidate]`.
const MAP_COUNT_LE: u32 = 4;
const FINISH_SUM: u32 = 0;
const FINISH_RMS: u32 = 1;
const FINISH_MEAN: u32 = 2;
const FINISH_STORE_MEAN: u32 = 3;
const FINISH_STD: u32 = 4;
const FINISH_CHECK: u32 = 5;
const FINISH_QUANTILE: u32 = 6;

/// Elements a thread adds per pass of a row sum (the width shrinks by this
/// factor per pass).
pub const REDUCE_FAN_IN: u64 = 256;

/// One kernel launch of a reduction: the kernel, its work items (threads in
/// a grid-stride loop) and its arguments.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReduceLaunch {
    /// The kernel name.
    pub kernel: &'static str,
    /// Work items.
    pub items: u64,
    /// Arguments.
    pub args: ReduceArgs,
}

/// Sizes of the scratch buffers a reduction of `rows × row_len` needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReduceScratch {
    /// f64 elements of the first partials buffer.
    pub partial_a: usize,
    /// f64 elements of the second partials buffer.
    pub partial_b: usize,
    /// f64 elements of the means buffer.
    pub mean: usize,
    /// u32 elements of the selection prefixes.
    pub prefix: usize,
    /// u32 elements of the status words.
    pub status: usize,
}

impl ReduceScratch {
    /// The scratch for any reduction of `rows` rows of `row_len` elements
    /// (selection sums two virtual rows per batch row).
    pub fn new(rows: usize, row_len: usize) -> Self {
        let w1 = (row_len as u64).div_ceil(REDUCE_FAN_IN) as usize;
        let w2 = (w1 as u64).div_ceil(REDUCE_FAN_IN) as usize;
        Self {
            partial_a: 2 * rows * w1,
            partial_b: 2 * rows * w2.max(1),
            mean: rows,
            prefix: 2 * rows,
            status: rows,
        }
    }
}

/// Device (or host) addresses of a reduction's tensors and scratch buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReduceBuffers {
    /// The f32 input.
    pub x: u64,
    /// The f32 output, one per row.
    pub out: u64,
    /// [`ReduceScratch::partial_a`] f64 elements.
    pub partial_a: u64,
    /// [`ReduceScratch::partial_b`] f64 elements.
    pub partial_b: u64,
    /// [`ReduceScratch::mean`] f64 elements.
    pub mean: u64,
    /// [`ReduceScratch::prefix`] u32 elements.
    pub prefix: u64,
    /// [`ReduceScratch::status`] u32 elements.
    pub status: u64,
}

/// Checks a reduction's parameters as the CPU backend does (quantile in
/// `[0, 1]`, correction 0 or 1, two elements for the unbiased deviation).
pub fn check_reduction(op: RowReduction, row_len: usize) -> Result<()> {
    match op {
        RowReduction::AbsQuantile(p) if !(0.0..=1.0).contains(&p) => Err(Error::InvalidArgument {
            name: "quantile",
            reason: format!("p = {p} is outside [0, 1]"),
        }),
        RowReduction::Std { correction } if correction > 1 => Err(Error::InvalidArgument {
            name: "std correction",
            reason: format!("{correction}; use 0 (population) or 1 (unbiased)"),
        }),
        RowReduction::Std { correction: 1 } if row_len < 2 => Err(Error::InvalidArgument {
            name: "std correction",
            reason: "the unbiased std needs at least two elements per row".into(),
        }),
        _ => Ok(()),
    }
}

/// Appends the passes that sum `f(x)` over each of `rows` rows into width-1
/// partials; returns the address holding the row sums.
fn push_sum(
    launches: &mut Vec<ReduceLaunch>,
    base: ReduceArgs,
    b: &ReduceBuffers,
    rows: u64,
    row_len: u64,
    mode: u32,
) -> u64 {
    let width = row_len.div_ceil(REDUCE_FAN_IN);
    launches.push(ReduceLaunch {
        kernel: REDUCE_MAP_KERNEL,
        items: rows * width,
        args: ReduceArgs {
            dst: b.partial_a,
            rows,
            len: row_len,
            width,
            mode,
            ..base
        },
    });
    let (mut cur, mut other, mut len) = (b.partial_a, b.partial_b, width);
    while len > 1 {
        let width = len.div_ceil(REDUCE_FAN_IN);
        launches.push(ReduceLaunch {
            kernel: REDUCE_SUM_KERNEL,
            items: rows * width,
            args: ReduceArgs {
                src: cur,
                dst: other,
                rows,
                len,
                width,
                ..base
            },
        });
        std::mem::swap(&mut cur, &mut other);
        len = width;
    }
    cur
}

/// The launches of `op` over `rows` rows of `row_len` elements, in order.
/// The status words (0 ok, 1 non-finite input, 2 the result overflows f32)
/// are final after the last launch.
pub fn reduce_launches(
    op: RowReduction,
    rows: usize,
    row_len: usize,
    b: &ReduceBuffers,
) -> Result<Vec<ReduceLaunch>> {
    check_reduction(op, row_len)?;
    let (r, l) = (rows as u64, row_len as u64);
    let n = row_len as f64;
    let base = ReduceArgs {
        x: b.x,
        mean: b.mean,
        prefix: b.prefix,
        out: b.out,
        status: b.status,
        true_rows: r,
        ..ReduceArgs::default()
    };
    let mut v = vec![ReduceLaunch {
        kernel: REDUCE_INIT_KERNEL,
        items: r,
        args: base,
    }];
    let finish = |v: &mut Vec<ReduceLaunch>, src: u64, mode: u32, divisor: f64| {
        v.push(ReduceLaunch {
            kernel: REDUCE_FINISH_KERNEL,
            items: r,
            args: ReduceArgs {
                src,
                rows: r,
                mode,
                divisor,
                ..base
            },
        });
    };
    match op {
        RowReduction::SumSquares => {
            let s = push_sum(&mut v, base, b, r, l, MAP_SQUARE);
            finish(&mut v, s, FINISH_SUM, n);
        }
        RowReduction::Rms => {
            let s = push_sum(&mut v, base, b, r, l, MAP_SQUARE);
            finish(&mut v, s, FINISH_RMS, n);
        }
        RowReduction::Mean => {
            let s = push_sum(&mut v, base, b, r, l, MAP_X);
            finish(&mut v, s, FINISH_MEAN, n);
        }
        RowReduction::Std { correction } => {
            let s = push_sum(&mut v, base, b, r, l, MAP_X);
            finish(&mut v, s, FINISH_STORE_MEAN, n);
            let s = push_sum(&mut v, base, b, r, l, MAP_CENTRED_SQUARE);
            finish(&mut v, s, FINISH_STD, n - f64::from(correction));
        }
        RowReduction::AbsQuantile(p) => {
            let s = push_sum(&mut v, base, b, r, l, MAP_CHECK);
            finish(&mut v, s, FINISH_CHECK, n);
            // The CPU's arithmetic: h = (n − 1)·p, lo = ⌊h⌋, weight h − lo.
            let h = (row_len - 1) as f64 * p;
            let lo = h.floor() as u64;
            let (rank1, frac) = if lo + 1 >= l {
                (lo, 0.0)
            } else {
                (lo + 1, h - lo as f64)
            };
            let sel = ReduceArgs {
                rank0: lo,
                rank1,
                frac,
                ..base
            };
            for bit in (0..31u32).rev() {
                let s = push_sum(&mut v, ReduceArgs { bit, ..sel }, b, 2 * r, l, MAP_COUNT_LE);
                v.push(ReduceLaunch {
                    kernel: REDUCE_SELECT_KERNEL,
                    items: 2 * r,
                    args: ReduceArgs {
                        src: s,
                        rows: 2 * r,
                        bit,
                        ..sel
                    },
                });
            }
            v.push(ReduceLaunch {
                kernel: REDUCE_FINISH_KERNEL,
                items: r,
                args: ReduceArgs {
                    rows: r,
                    mode: FINISH_QUANTILE,
                    ..sel
                },
            });
        }
    }
    Ok(v)
}

/// Turns the status words of a finished reduction into the CPU backend's
/// errors.
pub fn check_status(op: RowReduction, status: &[u32]) -> Result<()> {
    if let Some(r) = status.iter().position(|&s| s == 1) {
        return Err(Error::NonFinite(format!("reduce_rows input (row {r})")));
    }
    if let Some(r) = status.iter().position(|&s| s != 0) {
        return Err(Error::NonFinite(format!(
            "reduce_rows result for row {r} ({op:?} overflows f32)"
        )));
    }
    Ok(())
}

/// Arguments of the Gaussian-mixture kernel (`DfGmmArgs` in
/// `kernels/gmm.cu`, 96 bytes, passed by value). Pointers as `u64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GmmArgs {
    /// The f32 states `[rows][dim]`.
    pub x: u64,
    /// The f32 outputs `[rows][dim]`.
    pub out: u64,
    /// f64 scratch `[rows][dim]` (the running sums of the posterior mean).
    pub acc: u64,
    /// u32 status words `[rows]`, sticky: 0 ok, else the first failure
    /// ([`GmmFailure::from_code`]).
    pub status: u64,
    /// f64 per-row level parameters `[rows][4]`: `α, σ, a, b`
    /// ([`crate::gmm::row_levels`]).
    pub levels: u64,
    /// f64 means of the active components `[components][dim]`.
    pub means: u64,
    /// f64 variances `sₖ²` `[components]`.
    pub variances: u64,
    /// f64 log weights `ln wₖ` `[components]`.
    pub log_weights: u64,
    /// f64 prior mean `Σₖ wₖ μₖ` `[dim]`.
    pub prior_mean: u64,
    /// Batch rows.
    pub rows: u64,
    /// The data dimension `d`.
    pub dim: u64,
    /// Active components (positive weight).
    pub components: u64,
}

const _: () = assert!(std::mem::size_of::<GmmArgs>() == 96);

/// Why a row of the Gaussian-mixture kernel failed (its status word).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GmmFailure {
    /// The state has a NaN or an infinity (code 1).
    NonFiniteState,
    /// A log responsibility is not finite (code 2).
    NonFiniteLogResponsibility,
    /// The posterior mean overflows (code 3).
    NonFiniteMean,
    /// The output in the parameterisation is beyond f32's range (code 4).
    OutputRange,
}

impl GmmFailure {
    /// The failure of a nonzero status word; `None` for 0 (and for a code
    /// the kernel never writes).
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1 => Some(Self::NonFiniteState),
            2 => Some(Self::NonFiniteLogResponsibility),
            3 => Some(Self::NonFiniteMean),
            4 => Some(Self::OutputRange),
            _ => None,
        }
    }

    /// The error reported for `row`.
    pub fn error(self, row: usize) -> Error {
        let what = match self {
            Self::NonFiniteState => "the state x has a NaN or an infinity",
            Self::NonFiniteLogResponsibility => "a log responsibility is not finite",
            Self::NonFiniteMean => "the posterior mean E[x₀|x] overflows",
            Self::OutputRange => "the output is beyond f32's range",
        };
        Error::NonFinite(format!("CudaGmmDenoiser::predict, row {row}: {what}"))
    }
}

/// The first failure recorded in the status words of a Gaussian-mixture
/// launch, as an error (`Ok` when every word is 0).
pub fn check_gmm_status(status: &[u32]) -> Result<()> {
    match status.iter().position(|&s| s != 0) {
        None => Ok(()),
        Some(r) => Err(match GmmFailure::from_code(status[r]) {
            Some(f) => f.error(r),
            None => Error::Backend {
                backend: "cuda".into(),
                message: format!(
                    "Gaussian-mixture kernel: unknown status {} in row {r}",
                    status[r]
                ),
            },
        }),
    }
}

/// Arguments of `diffuse_scale_rows` (`DfRowScaleArgs` in
/// `kernels/rowscale.cu`, 56 bytes, passed by value). Pointers as `u64`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowScaleArgs {
    /// The f32 tensor mapped in place.
    pub x: u64,
    /// The first factor tensor (0 when the map reads none).
    pub u: u64,
    /// The second factor tensor (0 unless the map is a ratio).
    pub v: u64,
    /// Elements of `x`.
    pub n: u64,
    /// Elements per batch row.
    pub row_len: u64,
    /// [`RowScale::f32_params`]`[0]`.
    pub p0: f32,
    /// [`RowScale::f32_params`]`[1]`.
    pub p1: f32,
    /// 0 ratio, 1 clamp-divide, 2 clamp.
    pub mode: u32,
    /// Padding (0).
    pub pad: u32,
}

const _: () = assert!(std::mem::size_of::<RowScaleArgs>() == 56);

impl RowScaleArgs {
    /// The arguments of `op` over `x` (`n` elements in rows of `row_len`)
    /// with the factor tensors `factors` (addresses, as many as
    /// [`RowScale::factors`]); parameters are checked as the CPU backend
    /// checks them.
    pub fn new(op: RowScale, x: u64, factors: &[u64], n: usize, row_len: usize) -> Result<Self> {
        op.check(factors.len())?;
        if row_len == 0 || !n.is_multiple_of(row_len) {
            return Err(Error::InvalidArgument {
                name: "row length",
                reason: format!("{row_len} does not divide {n} elements"),
            });
        }
        let [p0, p1] = op.f32_params();
        let mode = match op {
            RowScale::Ratio { .. } => 0,
            RowScale::ClampDivide { .. } => 1,
            RowScale::Clamp { .. } => 2,
        };
        Ok(Self {
            x,
            u: factors.first().copied().unwrap_or(0),
            v: factors.get(1).copied().unwrap_or(0),
            n: n as u64,
            row_len: row_len as u64,
            p0,
            p1,
            mode,
            pad: 0,
        })
    }
}

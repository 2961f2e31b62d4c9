//! The backend trait: where tensors live and how the hot loop runs.
//!
//! A backend owns f32 tensors of any shape whose leading axis is the batch,
//! moves them to and from the host, and runs three kinds of work:
//!
//! - the fused step [`Backend::lincomb`], one pass over memory that reads `K`
//!   tensors and writes `M` tensors as linear combinations of them, plus an
//!   optional Gaussian term from the public noise stream ([`crate::noise`]);
//! - [`Backend::fill_noise`], the noise stream itself;
//! - per-row reductions ([`RowReduction`]), and [`Backend::scale_rows`],
//!   which maps each row's elements by such per-row results ([`RowScale`]).
//!
//! Every sampler of the field updates its state as such a linear combination
//! with coefficients that depend only on the time grid, so a solver step is
//! "compute a small coefficient matrix in f64 on the host, hand it to one
//! `lincomb`". See [`LinComb`] for the exact arithmetic.

use crate::error::{Error, Result};
use crate::noise::NoiseStream;

/// Most inputs (columns) a [`LinComb`] may read.
pub const MAX_INPUTS: usize = 8;
/// Most outputs (rows of the coefficient matrix) a [`LinComb`] may write.
pub const MAX_OUTPUTS: usize = 4;

/// Where column `k` of a [`LinComb`] reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// `inputs[i]` of the call.
    Input(usize),
    /// The value `outputs[m]` holds before the call: this is how an in-place
    /// update such as `x ← a·x + b·d` is written.
    Output(usize),
}

/// A reduction over all elements of each batch row.
///
/// Results are computed in f64 and stored as f32, one per row, in a tensor
/// of shape `[batch]`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowReduction {
    /// `Σᵢ xᵢ²` over the row.
    SumSquares,
    /// Root mean square `√(Σᵢ xᵢ² / n)`.
    Rms,
    /// Mean `Σᵢ xᵢ / n`.
    Mean,
    /// Standard deviation `√(Σᵢ (xᵢ − x̄)² / (n − correction))`: `correction`
    /// 0 is the population value, 1 the unbiased one (the default of
    /// `torch.std`, used by diffusers' guidance rescale).
    Std {
        /// Bessel's correction, 0 or 1.
        correction: u32,
    },
    /// The `p`-quantile of `|xᵢ|` with linear interpolation between order
    /// statistics (`numpy.quantile`'s default, as used by Imagen's dynamic
    /// thresholding, Saharia et al. 2022): with the sorted values `v` and
    /// `h = (n − 1)·p`, the result is `v[⌊h⌋] + (h − ⌊h⌋)·(v[⌊h⌋+1] − v[⌊h⌋])`.
    AbsQuantile(f64),
}

/// An element-wise map of each batch row driven by per-row factors: the
/// link from a per-row statistic ([`Backend::reduce_rows`], a device tensor
/// of shape `[batch]`) back to the elements of its row, without a trip
/// through host memory. One pass over memory (reads and writes `x` once,
/// reads the factor tensors, which are tiny).
///
/// # Arithmetic (the contract every backend follows bit for bit)
/// All in f32, no fused multiply–add, in this order; the parameters are
/// rounded from f64 to f32 first, and `u_r`, `v_r` are element `r` of the
/// factor tensors for batch row `r`. Clamps are written as comparisons, so
/// a NaN element (or factor) stays NaN instead of being clamped away.
///
/// ```text
/// Ratio { weight: w }          q = (v_r == 0) ? 1 : u_r / v_r
///                              f = 1 + w·(q − 1)        (= w·q + 1 − w)
///                              x ← x·f
/// ClampDivide { lo, hi }       s = (u_r < lo) ? lo : u_r;  s = (s > hi) ? hi : s
///                              y = (x < −s) ? −s : x;      y = (y > s) ? s : y
///                              x ← y / s
/// Clamp { bound: c }           y = (x < −c) ? −c : x;      x ← (y > c) ? c : y
/// ```
///
/// `Ratio` is the guidance rescale of Lin et al. 2024 ("Common diffusion
/// noise schedules and sample steps are flawed", eq. 15–16) with
/// `u = std(x_cond)`, `v = std(x_cfg)`, `w = φ`; a row of zero spread
/// (`v_r = 0`) is left as it is. Written as `1 + w·(q − 1)`, the factor is
/// exactly 1 where `w = 0` or `q = 1`, so such rows stay unchanged bit for
/// bit. `ClampDivide` is Imagen's dynamic
/// thresholding (Saharia et al. 2022, §2.3) with `u` the per-row quantile
/// of `|x̂₀|`, `lo = 1` and `hi` the largest threshold. `Clamp` is static
/// clipping (Ho et al. 2020) and reads no factor tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RowScale {
    /// `x ← x·(1 + w·(u_r/v_r − 1))`; two factor tensors `[u, v]`.
    Ratio {
        /// The weight `w` (finite).
        weight: f64,
    },
    /// `x ← clamp(x, −s_r, s_r)/s_r` with `s_r = clamp(u_r, lo, hi)`; one
    /// factor tensor `[u]`.
    ClampDivide {
        /// Smallest threshold (finite, `> 0` also after rounding to f32).
        lo: f64,
        /// Largest threshold (`≥ lo`, may be `+∞`).
        hi: f64,
    },
    /// `x ← clamp(x, −c, c)`; no factor tensor.
    Clamp {
        /// The bound `c > 0` (may be `+∞`, a no-op).
        bound: f64,
    },
}

impl RowScale {
    /// The number of factor tensors the map reads (2, 1, 0).
    pub fn factors(self) -> usize {
        match self {
            RowScale::Ratio { .. } => 2,
            RowScale::ClampDivide { .. } => 1,
            RowScale::Clamp { .. } => 0,
        }
    }

    /// Checks the parameters (the domains on each variant) and the number
    /// of factor tensors given; [`Error::InvalidArgument`] otherwise.
    pub fn check(self, factors: usize) -> Result<()> {
        let bad = |name: &'static str, reason: String| Err(Error::InvalidArgument { name, reason });
        match self {
            RowScale::Ratio { weight } => {
                check_coefficient("ratio weight", weight)?;
            }
            RowScale::ClampDivide { lo, hi } => {
                if !(lo.is_finite() && lo > 0.0 && (lo as f32) > 0.0) {
                    return bad(
                        "smallest threshold",
                        format!("{lo} is not a positive finite f32"),
                    );
                }
                if hi.is_nan() || hi < lo {
                    return bad(
                        "largest threshold",
                        format!("{hi} is below the smallest threshold {lo}"),
                    );
                }
            }
            RowScale::Clamp { bound } => {
                if bound.is_nan() || bound <= 0.0 || (bound as f32) <= 0.0 {
                    return bad("clipping bound", format!("{bound} is not positive"));
                }
            }
        }
        if factors != self.factors() {
            return bad(
                "row factors",
                format!(
                    "{self:?} reads {} factor tensor(s), {factors} given",
                    self.factors()
                ),
            );
        }
        Ok(())
    }

    /// The f32 parameters `[p0, p1]` a backend hands to its kernel:
    /// `[w, 0]` for `Ratio`, `[lo, hi]` for `ClampDivide`, `[c, c]` for
    /// `Clamp` (each rounded from f64).
    pub fn f32_params(self) -> [f32; 2] {
        match self {
            RowScale::Ratio { weight } => [weight as f32, 0.0],
            RowScale::ClampDivide { lo, hi } => [lo as f32, hi as f32],
            RowScale::Clamp { bound } => [bound as f32, bound as f32],
        }
    }

    /// The per-row value of the map for factors `u`, `v` (ignored where
    /// unused), in the contract's f32 order: the factor `f` of `Ratio`, the
    /// threshold `s` of `ClampDivide`, the bound `c` of `Clamp`.
    #[inline]
    pub fn row_value(self, params: [f32; 2], u: f32, v: f32) -> f32 {
        match self {
            RowScale::Ratio { .. } => {
                let q = if v == 0.0 { 1.0 } else { u / v };
                1.0 + params[0] * (q - 1.0)
            }
            RowScale::ClampDivide { .. } => {
                let s = if u < params[0] { params[0] } else { u };
                if s > params[1] { params[1] } else { s }
            }
            RowScale::Clamp { .. } => params[0],
        }
    }

    /// The map of one element `x` given its row's value
    /// ([`RowScale::row_value`]), in the contract's f32 order.
    #[inline]
    pub fn apply(self, value: f32, x: f32) -> f32 {
        match self {
            RowScale::Ratio { .. } => x * value,
            RowScale::ClampDivide { .. } => {
                let y = if x < -value { -value } else { x };
                let y = if y > value { value } else { y };
                y / value
            }
            RowScale::Clamp { .. } => {
                let y = if x < -value { -value } else { x };
                if y > value { value } else { y }
            }
        }
    }
}

/// A fused linear-combination step, `outputs[m] = Σₖ c[m][k]·operand[k] + c_z[m]·z`.
///
/// `K` operands (1 ≤ K ≤ [`MAX_INPUTS`]), each an [`Operand`], are combined
/// into `M` outputs (1 ≤ M ≤ [`MAX_OUTPUTS`]). The coefficients are given in
/// f64 and are either scalars (one `M×K` matrix) or one matrix per batch row.
/// An optional noise term adds `c_z[m]·z`, where `z` is element
/// `offset + i` (mod 2⁶⁴) of a [`NoiseStream`] (the same `z` for every
/// output).
///
/// Inputs are not scanned for NaN or infinity (that would be a second pass
/// over memory); non-finite inputs give non-finite outputs, and callers that
/// must not propagate them check with [`Backend::reduce_rows`].
///
/// # Arithmetic (the contract every backend follows bit for bit)
/// For each element `i`, all `K` operand values `v[k]` are read before any
/// output is written; the coefficients are rounded to f32 and
///
/// ```text
/// acc = c[m][0]·v[0]
/// acc = acc + c[m][k]·v[k]      for k = 1 .. K−1, in this order
/// acc = acc + c_z[m]·z          if there is a noise term
/// outputs[m][i] = acc
/// ```
///
/// in f32 with no fused multiply–add. The result depends only on the element
/// index, never on the thread count or on how the work is split.
///
/// # In-place updates
/// Rust's borrows keep an output from also being passed as an input, so an
/// operand names either an input or the *previous value* of an output. The
/// DDIM-like update `x ← a·x + b·d` is
///
/// ```
/// use diffuse_core::{Backend, CpuBackend, LinComb, Operand};
/// let cpu = CpuBackend::new();
/// let mut x = cpu.upload(&[2, 3], &[1.0; 6])?;
/// let d = cpu.upload(&[2, 3], &[2.0; 6])?;
/// let mut step = LinComb::new(&[Operand::Output(0), Operand::Input(0)], 1)?;
/// step.set(0, 0, 0.5)?.set(0, 1, 0.25)?;
/// cpu.lincomb(&step, &[&d], &mut [&mut x])?;
/// assert_eq!(cpu.to_host(&x)?, vec![1.0; 6]); // 0.5·1 + 0.25·2
/// # Ok::<(), diffuse_core::Error>(())
/// ```
///
/// A plan is built once and its coefficients updated in place at each step
/// ([`LinComb::set`], [`LinComb::set_row`]), so a sampling loop allocates
/// nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct LinComb {
    operands: Vec<Operand>,
    outputs: usize,
    rows: Option<usize>,
    coef: Vec<f64>,
    noise: Option<NoiseTerm>,
}

/// The noise term of a [`LinComb`].
#[derive(Clone, Debug, PartialEq)]
struct NoiseTerm {
    stream: NoiseStream,
    offset: u64,
    coef: Vec<f64>,
}

fn check_coefficient(name: &'static str, value: f64) -> Result<()> {
    if !value.is_finite() || !(value as f32).is_finite() {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("{value} is not a finite f32 coefficient"),
        });
    }
    Ok(())
}

impl LinComb {
    /// A plan with scalar coefficients (all zero until set) reading
    /// `operands` into `outputs` outputs.
    pub fn new(operands: &[Operand], outputs: usize) -> Result<Self> {
        Self::build(operands, outputs, None)
    }

    /// A plan with one coefficient matrix per batch row, for `rows` rows.
    pub fn per_row(operands: &[Operand], outputs: usize, rows: usize) -> Result<Self> {
        if rows == 0 {
            return Err(Error::InvalidPlan(
                "a per-row plan needs at least one row".into(),
            ));
        }
        Self::build(operands, outputs, Some(rows))
    }

    /// Checks the sizes of a plan reading `operands` into `outputs` outputs.
    fn check_layout(operands: &[Operand], outputs: usize) -> Result<()> {
        let k = operands.len();
        if !(1..=MAX_INPUTS).contains(&k) {
            return Err(Error::InvalidPlan(format!(
                "{k} operands; a plan reads 1 to {MAX_INPUTS}"
            )));
        }
        if !(1..=MAX_OUTPUTS).contains(&outputs) {
            return Err(Error::InvalidPlan(format!(
                "{outputs} outputs; a plan writes 1 to {MAX_OUTPUTS}"
            )));
        }
        for op in operands {
            if let Operand::Output(m) = *op
                && m >= outputs
            {
                return Err(Error::InvalidPlan(format!(
                    "operand {op:?} names an output beyond the {outputs} written"
                )));
            }
        }
        Ok(())
    }

    /// The number of coefficients of `rows` rows of `outputs × k`.
    fn coefficient_count(rows: Option<usize>, outputs: usize, k: usize) -> Result<usize> {
        rows.unwrap_or(1)
            .checked_mul(outputs * k)
            .filter(|&c| c.checked_mul(8).is_some())
            .ok_or_else(|| Error::InvalidPlan(format!("{rows:?} rows overflow the plan size")))
    }

    fn build(operands: &[Operand], outputs: usize, rows: Option<usize>) -> Result<Self> {
        Self::check_layout(operands, outputs)?;
        let count = Self::coefficient_count(rows, outputs, operands.len())?;
        let mut coef = Vec::new();
        coef.try_reserve_exact(count)
            .map_err(|_| Error::OutOfMemory { bytes: count * 8 })?;
        coef.resize(count, 0.0);
        Ok(Self {
            operands: operands.to_vec(),
            outputs,
            rows,
            coef,
            noise: None,
        })
    }

    /// Re-targets the plan to read `operands` into `outputs` outputs,
    /// keeping its rows and its noise draw; every coefficient is zero
    /// afterwards. It reuses the plan's buffers, so it allocates only when
    /// the new layout is larger than every layout the plan had before: a
    /// loop whose stages differ in layout builds its plan once at the
    /// largest size (e.g. [`MAX_INPUTS`] operands into [`MAX_OUTPUTS`]
    /// outputs) and re-targets it at each stage without allocating.
    pub fn reconfigure(&mut self, operands: &[Operand], outputs: usize) -> Result<&mut Self> {
        Self::check_layout(operands, outputs)?;
        let count = Self::coefficient_count(self.rows, outputs, operands.len())?;
        if count > self.coef.capacity() {
            self.coef
                .try_reserve_exact(count - self.coef.len())
                .map_err(|_| Error::OutOfMemory { bytes: count * 8 })?;
        }
        self.operands.clear();
        self.operands.extend_from_slice(operands);
        self.outputs = outputs;
        self.coef.clear();
        self.coef.resize(count, 0.0);
        if let Some(term) = self.noise.as_mut() {
            term.coef.clear();
            term.coef.resize(self.rows.unwrap_or(1) * outputs, 0.0);
        }
        Ok(self)
    }

    /// Adds a noise term drawn from `stream`, element `offset + i` for flat
    /// index `i` (use `offset` = first row × row length when a shard of a
    /// larger batch is processed, so the shard sees the same noise). Its
    /// coefficients start at zero.
    pub fn with_noise(mut self, stream: NoiseStream, offset: u64) -> Self {
        // Smaller than the coefficient matrix, which was allocated already;
        // room for every output count, so `reconfigure` never grows it.
        let r = self.rows.unwrap_or(1);
        let mut coef = Vec::with_capacity(r * MAX_OUTPUTS);
        coef.resize(r * self.outputs, 0.0);
        self.noise = Some(NoiseTerm {
            stream,
            offset,
            coef,
        });
        self
    }

    /// Changes the draw and offset of the noise term (for the next step).
    pub fn set_noise_stream(&mut self, stream: NoiseStream, offset: u64) -> Result<&mut Self> {
        let term = self.noise.as_mut().ok_or_else(|| {
            Error::InvalidPlan("the plan has no noise term (use with_noise)".into())
        })?;
        term.stream = stream;
        term.offset = offset;
        Ok(self)
    }

    /// Number of operands `K`.
    pub fn inputs(&self) -> usize {
        self.operands.len()
    }

    /// Number of outputs `M`.
    pub fn outputs(&self) -> usize {
        self.outputs
    }

    /// The operands, in column order.
    pub fn operands(&self) -> &[Operand] {
        &self.operands
    }

    /// `Some(rows)` for per-row coefficients, `None` for scalars.
    pub fn rows(&self) -> Option<usize> {
        self.rows
    }

    /// The noise draw and offset, if the plan has a noise term.
    pub fn noise(&self) -> Option<(NoiseStream, u64)> {
        self.noise.as_ref().map(|n| (n.stream, n.offset))
    }

    fn index(&self, row: usize, m: usize, k: usize) -> Result<usize> {
        let rows = self.rows.unwrap_or(1);
        if row >= rows || m >= self.outputs || k >= self.operands.len() {
            return Err(Error::InvalidArgument {
                name: "coefficient index",
                reason: format!(
                    "(row {row}, output {m}, operand {k}) outside {rows}×{}×{}",
                    self.outputs,
                    self.operands.len()
                ),
            });
        }
        Ok((row * self.outputs + m) * self.operands.len() + k)
    }

    /// Sets `c[m][k]` (for every row of a per-row plan).
    pub fn set(&mut self, m: usize, k: usize, value: f64) -> Result<&mut Self> {
        check_coefficient("coefficient", value)?;
        for row in 0..self.rows.unwrap_or(1) {
            let i = self.index(row, m, k)?;
            self.coef[i] = value;
        }
        Ok(self)
    }

    /// Sets `c[m][k]` of batch row `row` (row 0 of a scalar plan).
    pub fn set_row(&mut self, row: usize, m: usize, k: usize, value: f64) -> Result<&mut Self> {
        check_coefficient("coefficient", value)?;
        let i = self.index(row, m, k)?;
        self.coef[i] = value;
        Ok(self)
    }

    /// Sets the noise coefficient `c_z[m]` (for every row).
    pub fn set_noise(&mut self, m: usize, value: f64) -> Result<&mut Self> {
        for row in 0..self.rows.unwrap_or(1) {
            self.set_noise_row(row, m, value)?;
        }
        Ok(self)
    }

    /// Sets the noise coefficient `c_z[m]` of batch row `row`.
    pub fn set_noise_row(&mut self, row: usize, m: usize, value: f64) -> Result<&mut Self> {
        check_coefficient("noise coefficient", value)?;
        let rows = self.rows.unwrap_or(1);
        let outputs = self.outputs;
        let term = self.noise.as_mut().ok_or_else(|| {
            Error::InvalidPlan("the plan has no noise term (use with_noise)".into())
        })?;
        if row >= rows || m >= outputs {
            return Err(Error::InvalidArgument {
                name: "noise coefficient index",
                reason: format!("(row {row}, output {m}) outside {rows}×{outputs}"),
            });
        }
        term.coef[row * outputs + m] = value;
        Ok(self)
    }

    /// `c[m][k]` of row `row` (row 0 of a scalar plan).
    pub fn coefficient(&self, row: usize, m: usize, k: usize) -> Result<f64> {
        Ok(self.coef[self.index(row, m, k)?])
    }

    /// `c_z[m]` of row `row` (row 0 of a scalar plan); zero without a noise
    /// term.
    pub fn noise_coefficient(&self, row: usize, m: usize) -> Result<f64> {
        let rows = self.rows.unwrap_or(1);
        if row >= rows || m >= self.outputs {
            return Err(Error::InvalidArgument {
                name: "noise coefficient index",
                reason: format!("(row {row}, output {m}) outside {rows}×{}", self.outputs),
            });
        }
        Ok(self
            .noise
            .as_ref()
            .map_or(0.0, |t| t.coef[row * self.outputs + m]))
    }

    /// The coefficients of batch row `row` rounded to f32, `[m][k]`, and the
    /// noise coefficients (zero without a noise term), as a backend hands
    /// them to its kernel. A scalar plan has the same matrix for every row.
    /// Coefficients below f32's range round to zero.
    pub fn f32_row(
        &self,
        row: usize,
    ) -> Result<([[f32; MAX_INPUTS]; MAX_OUTPUTS], [f32; MAX_OUTPUTS])> {
        if let Some(rows) = self.rows
            && row >= rows
        {
            return Err(Error::InvalidArgument {
                name: "row",
                reason: format!("row {row} of a plan for {rows} rows"),
            });
        }
        Ok(self.f32_row_unchecked(row))
    }

    /// [`LinComb::f32_row`] for a row known to be in range.
    #[inline]
    pub(crate) fn f32_row_unchecked(
        &self,
        row: usize,
    ) -> ([[f32; MAX_INPUTS]; MAX_OUTPUTS], [f32; MAX_OUTPUTS]) {
        let row = if self.rows.is_some() { row } else { 0 };
        let k = self.operands.len();
        let mut c = [[0.0f32; MAX_INPUTS]; MAX_OUTPUTS];
        let mut cz = [0.0f32; MAX_OUTPUTS];
        for (m, cm) in c.iter_mut().enumerate().take(self.outputs) {
            let base = (row * self.outputs + m) * k;
            for (ck, &v) in cm.iter_mut().zip(&self.coef[base..base + k]) {
                *ck = v as f32;
            }
            if let Some(term) = &self.noise {
                cz[m] = term.coef[row * self.outputs + m] as f32;
            }
        }
        (c, cz)
    }

    /// Checks the plan against the tensor counts of a call: `outputs` equals
    /// the plan's M and every `Operand::Input` names one of `inputs` tensors.
    /// (Shapes are the backend's to check.)
    pub fn validate(&self, inputs: usize, outputs: usize) -> Result<()> {
        if outputs != self.outputs {
            return Err(Error::InvalidPlan(format!(
                "plan writes {} outputs, {outputs} given",
                self.outputs
            )));
        }
        for op in &self.operands {
            if let Operand::Input(i) = *op
                && i >= inputs
            {
                return Err(Error::InvalidPlan(format!(
                    "operand {op:?} but only {inputs} inputs given"
                )));
            }
        }
        Ok(())
    }
}

/// Where tensors live and how the hot loop runs.
///
/// Tensors are f32, row-major, with the batch as the leading axis (at least
/// one axis, no axis of length zero). Implementations: [`crate::CpuBackend`]
/// here, `diffuse_cuda::CudaBackend` on NVIDIA GPUs. Generic code (every
/// solver) is written once against this trait.
pub trait Backend: Send + Sync {
    /// The backend's tensor type.
    type Tensor: Send + Sync;

    /// A short name for messages (`"cpu"`, `"cuda:0"`).
    fn name(&self) -> String;

    /// A tensor of zeros.
    fn zeros(&self, shape: &[usize]) -> Result<Self::Tensor>;

    /// A tensor holding `data` (row-major) with shape `shape`.
    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Self::Tensor>;

    /// The tensor's elements, row-major, on the host.
    fn to_host(&self, tensor: &Self::Tensor) -> Result<Vec<f32>>;

    /// The tensor's shape.
    fn shape<'t>(&self, tensor: &'t Self::Tensor) -> &'t [usize];

    /// Copies `src` into `dst` (same shape).
    fn copy(&self, src: &Self::Tensor, dst: &mut Self::Tensor) -> Result<()>;

    /// Fills `out` with elements `offset .. offset + len` of the noise draw.
    fn fill_noise(&self, stream: NoiseStream, offset: u64, out: &mut Self::Tensor) -> Result<()>;

    /// Fills `out` with noise of a per-element standard deviation given in
    /// log space: `outᵢ = exp(a_r + b_r·vᵢ)·zᵢ`, where `zᵢ` is element
    /// `offset + i` (mod 2⁶⁴) of `stream` (exactly the value
    /// [`Backend::fill_noise`] writes) and `r = i / (len / a.len())` the
    /// row of element `i`: `a` and `b` hold one entry per row, of
    /// `len / a.len()` elements each (the batch rows of `out` when
    /// `a.len()` is its leading axis, the whole tensor when it is 1).
    ///
    /// This is the noise of a learned-range variance (Nichol & Dhariwal
    /// 2021, "Improved denoising diffusion probabilistic models", eq. 15):
    /// `log Σ = f·log β + (1 − f)·log β̃` with `f = (v + 1)/2`, so with
    /// standard deviations `s_small = √β̃`, `s_large = √β`,
    /// `exp(½·log Σ) = exp(a + b·v)` for `a = ½·(ln s_small + ln s_large)`,
    /// `b = ½·(ln s_large − ln s_small)` (`v = −1` gives `s_small`, `v = 1`
    /// gives `s_large`).
    ///
    /// # Arithmetic (bit for bit across backends)
    /// In f32 with no fused multiply–add, `a_r`, `b_r` rounded from f64
    /// first: `t = b_r·vᵢ`, `t = a_r + t`, `outᵢ = exp(t)·zᵢ`, with the
    /// exponential [`crate::noise::exp_f32`] (same operations on every
    /// backend).
    ///
    /// Errors: [`Error::ShapeMismatch`] if `v` and `out` differ in shape,
    /// [`Error::InvalidArgument`] if `a` and `b` differ in length, are
    /// empty or their length does not divide the element count, and
    /// [`Error::NonFinite`] for an `a` or `b` entry that is not a finite
    /// f32. Like [`Backend::lincomb`]'s inputs, `v` is not scanned (that
    /// would need it on the host): a non-finite `vᵢ` gives a non-finite
    /// `outᵢ` (NaN for NaN, `0·z` or `∞·z` for ∓∞ depending on `b_r`'s
    /// sign).
    fn fill_noise_log_scaled(
        &self,
        stream: NoiseStream,
        offset: u64,
        v: &Self::Tensor,
        a: &[f64],
        b: &[f64],
        out: &mut Self::Tensor,
    ) -> Result<()>;

    /// The fused step described on [`LinComb`]: one pass over memory.
    fn lincomb(
        &self,
        plan: &LinComb,
        inputs: &[&Self::Tensor],
        outputs: &mut [&mut Self::Tensor],
    ) -> Result<()>;

    /// Reduces each batch row of `x` into `out`, a tensor of shape
    /// `[x.shape[0]]`. Reductions agree across backends within rounding, not
    /// bit for bit (their summation order is the backend's).
    fn reduce_rows(&self, x: &Self::Tensor, op: RowReduction, out: &mut Self::Tensor)
    -> Result<()>;

    /// Maps every element of each batch row of `x` in place by the per-row
    /// `factors` (tensors of shape `[x.shape[0]]`, usually the results of
    /// [`Backend::reduce_rows`]), as [`RowScale`] specifies, bit for bit
    /// across backends. One pass over `x`; no host synchronisation.
    ///
    /// Errors: [`Error::InvalidArgument`] for parameters outside their
    /// domain or the wrong number of factor tensors,
    /// [`Error::ShapeMismatch`] for a factor tensor not shaped `[batch]`.
    /// Factor values are not scanned (that would need them on the host): a
    /// non-finite factor gives non-finite elements.
    fn scale_rows(
        &self,
        op: RowScale,
        factors: &[&Self::Tensor],
        x: &mut Self::Tensor,
    ) -> Result<()>;
}

/// Checks the per-row parameters of [`Backend::fill_noise_log_scaled`]
/// for a tensor of `len` elements and returns them rounded to f32 with the
/// row length: `(a, b, row_len)`.
pub fn log_scale_params(a: &[f64], b: &[f64], len: usize) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    if a.len() != b.len() {
        return Err(Error::InvalidArgument {
            name: "log-scale rows",
            reason: format!("{} entries of a, {} of b", a.len(), b.len()),
        });
    }
    if a.is_empty() || !len.is_multiple_of(a.len()) {
        return Err(Error::InvalidArgument {
            name: "log-scale rows",
            reason: format!("{} rows do not divide {len} elements", a.len()),
        });
    }
    let round = |name: &str, v: &[f64]| -> Result<Vec<f32>> {
        v.iter()
            .enumerate()
            .map(|(r, &x)| {
                if x.is_finite() && (x as f32).is_finite() {
                    Ok(x as f32)
                } else {
                    Err(Error::NonFinite(format!(
                        "log-scale parameter {name}[{r}] = {x}"
                    )))
                }
            })
            .collect()
    };
    Ok((round("a", a)?, round("b", b)?, len / a.len()))
}

/// Checks a tensor shape: at least one axis, no zero-length axis, and an
/// element count that fits in memory arithmetic. Returns the element count.
pub fn check_shape(shape: &[usize]) -> Result<usize> {
    if shape.is_empty() {
        return Err(Error::InvalidShape {
            shape: shape.to_vec(),
            reason: "a tensor needs at least one axis (the batch)".into(),
        });
    }
    if shape.contains(&0) {
        return Err(Error::InvalidShape {
            shape: shape.to_vec(),
            reason: "axes must have positive length".into(),
        });
    }
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n.checked_mul(4).is_some())
        .ok_or_else(|| Error::InvalidShape {
            shape: shape.to_vec(),
            reason: "element count overflows".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_reject_bad_sizes_and_indices() {
        assert!(LinComb::new(&[], 1).is_err());
        assert!(LinComb::new(&[Operand::Input(0); 9], 1).is_err());
        assert!(LinComb::new(&[Operand::Input(0)], 0).is_err());
        assert!(LinComb::new(&[Operand::Input(0)], 5).is_err());
        assert!(LinComb::new(&[Operand::Output(1)], 1).is_err());
        assert!(LinComb::per_row(&[Operand::Input(0)], 1, 0).is_err());
        let mut p = LinComb::new(&[Operand::Input(0)], 1).unwrap();
        assert!(p.set(1, 0, 1.0).is_err());
        assert!(p.set(0, 1, 1.0).is_err());
        assert!(p.set(0, 0, f64::NAN).is_err());
        assert!(p.set(0, 0, 1e300).is_err());
        assert!(p.set_noise(0, 1.0).is_err());
        assert!(p.validate(0, 1).is_err());
        assert!(p.validate(1, 2).is_err());
        p.validate(1, 1).unwrap();
    }

    #[test]
    fn shapes_are_checked() {
        assert!(check_shape(&[]).is_err());
        assert!(check_shape(&[3, 0]).is_err());
        assert!(check_shape(&[usize::MAX, 2]).is_err());
        assert_eq!(check_shape(&[3, 7]).unwrap(), 21);
    }
}

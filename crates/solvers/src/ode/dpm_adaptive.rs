//! Adaptive-step DPM-Solver-12 and DPM-Solver-23 (Lu et al. 2022,
//! "DPM-Solver", arXiv 2206.00927, §4 and Alg. 4–5) with the PID step-size
//! controller of k-diffusion's `sample_dpm_adaptive` (deterministic,
//! `eta = 0`).
//!
//! # The step
//!
//! Time is `ℓ = log(α/σ)`, half the log-SNR (k-diffusion's `t = −log σ`).
//! An attempt goes from the accepted level `s` to `t = min(ℓ_end, s + h)`
//! with two singlestep updates that share their model evaluations (the
//! coefficients are those of [`super::DpmSolverSinglestep`], module
//! `dpm_singlestep`):
//!
//! - DPM-Solver-12 (`order = 2`): one stage at `r = 1/2`, reached by the
//!   order-1 update. `x_low` is the order-1 update (DDIM), `x_high` the
//!   order-2 update of midpoint form, `x_t = A·x_s + c₁·m₀ + (c₁/2)·D₁`,
//!   `D₁ = (m₁ − m₀)/r₁`. Two model evaluations.
//! - DPM-Solver-23 (`order = 3`): stages at `r = 1/3` (order-1 update) and
//!   `r = 2/3` (order-2 update of the `c₂` form, Lu et al. Alg. 2).
//!   `x_low` is the order-2 midpoint update from `m₀, m₁` (`r₁ = 1/3`),
//!   `x_high` the order-3 update `x_t = A·x_s + c₁·m₀ + (c₂/r₂)·(m₂ − m₀)`.
//!   Three model evaluations.
//!
//! With noise prediction (`m = ε̂`, DPM-Solver) `A = α_t/α_s` and
//! `c_k = −σ_t·h·φ_k(h)`; with data prediction (`m = x̂₀`, the DPM-Solver++
//! form of the same pair) `A = σ_t/σ_s` and `c_k = α_t·h·φ_k(−h)`, where
//! `φ_k(z) = Σ_{n≥0} zⁿ/(n+k)!` and `h = ℓ_t − ℓ_s`. Noise prediction
//! reproduces k-diffusion's `DPMSolver.dpm_solver_{1,2,3}_step` exactly.
//!
//! # Error estimate and step control
//!
//! On the variance-exploding state `x̃ = x/α` (the state k-diffusion
//! integrates; a VP and a VE run of the same model thus take the same
//! steps), with `x̃_prev` the `x̃_low` of the last accepted step (the
//! starting state before the first), the error of an attempt is
//! k-diffusion's
//!
//! ```text
//! δᵢ = max(atol, rtol·max(|x̃_low,ᵢ|, |x̃_prev,ᵢ|))
//! E  = √( (1/n)·Σᵢ ((x̃_high,ᵢ − x̃_low,ᵢ)/δᵢ)² )        (ErrorNorm::PerElement)
//! ```
//!
//! over all `n` elements of the batch: one step size for the whole batch,
//! as in k-diffusion (the DPM-Solver reference code instead takes the
//! largest per-row error; both reject when any row is badly off, since a
//! row's error enters the mean). [`ErrorNorm::PerRow`] replaces `δᵢ` by a
//! per-row scale, `δ_r = max(atol, rtol·max(rms_r(x̃_low), rms_r(x̃_prev)))`,
//! and `E = √(mean_r (rms_r(x̃_high − x̃_low)/δ_r)²)`: the same weighting for
//! data of uniform magnitude, computed with two `reduce_rows(Rms)` passes on
//! the backend instead of on the host.
//!
//! The controller (k-diffusion's `PIDStepSizeController`, after Söderlind's
//! digital filters) keeps the last three inverse errors `ε_j = 1/(E_j + 10⁻⁸)`
//! and proposes
//!
//! ```text
//! f = ε₀^{β₁}·ε₁^{β₂}·ε₂^{β₃},   β₁ = (p + i + d)/k,  β₂ = −(p + 2d)/k,  β₃ = d/k
//! f ← 1 + atan(f − 1)                                  (limiter, f ∈ (0.21, 2.57))
//! ```
//!
//! with `k` the order (2 or 3) and `p, i, d` = `pcoeff, icoeff, dcoeff`
//! (the default `i = 1` alone is the classic `h·E^{−1/k}` rule). The
//! attempt is accepted when `f ≥ accept_safety`; accepted or not,
//! `h ← f·h`. The product is evaluated in log space so extreme coefficients
//! give `f` at the limiter's ends, never NaN.
//!
//! # The run
//!
//! [`DpmAdaptive::integrate`] (and the [`Solver`] implementation) goes from
//! the grid's first level to its last positive level: intermediate grid
//! levels are ignored, the controller chooses its own. The run stops at
//! `ℓ_end` exactly: a step that would end within `10⁻⁵` of `ℓ_end`
//! (k-diffusion's loop tolerance) is stretched to it.
//!
//! σ = 0 (`ℓ = ∞`) is not reachable by the adaptive steps. k-diffusion's
//! `sample_dpm_adaptive` ends at `sigma_min > 0` and returns that still
//! slightly noisy state; a grid ending at a positive level does the same
//! here. A grid ending at σ = 0 is integrated to its last positive level
//! (the second to last, as ComfyUI's wrapper picks `sigma_min`) and then
//! finished with one first-order step to σ = 0, `x = α_clean·x̂₀` (one more
//! model evaluation; the DPM-Solver reference code's `denoise_to_zero`).
//!
//! # Cost
//!
//! Each stage is one fused `lincomb` (the prediction of the stage and the
//! next stage's input in one pass); the last stage's pass writes the
//! candidate `x_high`, `x̃_low` and `x̃_high − x̃_low` (formed from the
//! predictions, not by subtracting two rounded states). Tensors and plans
//! are allocated once per run; the only allocations inside the loop are
//! the host copies of the error inputs ([`crate::Backend::to_host`] returns
//! a new vector): two tensors per attempt for [`ErrorNorm::PerElement`],
//! two vectors of one value per row for [`ErrorNorm::PerRow`]. After a
//! rejection the model output at the (unchanged) start of the step is
//! reused, so an attempt costs `order` model evaluations, a retry
//! `order − 1` (k-diffusion re-evaluates it and counts `order` for every
//! attempt).

use diffuse_core::{
    Backend, Condition, Denoiser, Error, LinComb, Marginal, NoiseLevel, NoiseSchedule, NoiseStream,
    Operand, Parameterization, Result, RowReduction, SampleReport, SamplingGrid, Solver,
    time_of_log_snr,
};

use super::dpm_singlestep::{Node, Three, singlestep};
use super::{DpmAlgorithm, SecondOrder};

/// How the controller measures an attempt's error (module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ErrorNorm {
    /// k-diffusion's: every element scaled by
    /// `max(atol, rtol·max(|x̃_low,ᵢ|, |x̃_prev,ᵢ|))`, RMS over the batch.
    /// Evaluated on the host from two tensors copied per attempt.
    #[default]
    PerElement,
    /// Each row scaled by `max(atol, rtol·max(rms(x̃_low), rms(x̃_prev)))`
    /// of that row, RMS over the batch. Two row reductions per attempt on
    /// the backend; only one value per row comes to the host.
    PerRow,
}

/// Adaptive-step DPM-Solver-12 (`order = 2`) or DPM-Solver-23
/// (`order = 3`), k-diffusion's `sample_dpm_adaptive` with `eta = 0`
/// (module documentation). The defaults are k-diffusion's.
///
/// ```
/// use diffuse_solvers::{
///     Affine, Backend, Condition, CpuBackend, Denoiser, DpmAdaptive, Marginal, NoiseLevel,
///     Parameterization, Result, SamplingGrid, VeSchedule,
/// };
/// /// x₀-prediction.
/// struct Sample;
/// impl Parameterization for Sample {
///     fn name(&self) -> &str { "sample" }
///     fn x0_map(&self, _m: Marginal) -> Result<Affine> { Ok(Affine { a: 0.0, b: 1.0 }) }
/// }
/// /// The exact denoiser of data that is always 1.
/// struct One;
/// impl Denoiser<CpuBackend> for One {
///     fn parameterization(&self) -> &dyn Parameterization { &Sample }
///     fn predict(&self, cpu: &CpuBackend, x: &<CpuBackend as Backend>::Tensor,
///         _levels: &[NoiseLevel], _c: Condition<'_, <CpuBackend as Backend>::Tensor>,
///         out: &mut <CpuBackend as Backend>::Tensor) -> Result<()> {
///         let ones = vec![1.0; cpu.to_host(x)?.len()];
///         *out = cpu.upload(cpu.shape(x), &ones)?;
///         Ok(())
///     }
/// }
/// let cpu = CpuBackend::new();
/// // σ from 80 to 0.01: the exact solution is x = 1 + σ·z.
/// let grid = SamplingGrid::from_sigmas(&VeSchedule, &[80.0, 0.01])?;
/// let mut x = cpu.upload(&[2, 1], &[1.0 + 80.0 * 0.5, 1.0 - 80.0 * 2.0])?;
/// let report = DpmAdaptive::default().integrate(&cpu, &One, &VeSchedule, &grid, &mut x)?;
/// let x = cpu.to_host(&x)?;
/// assert!((x[0] - 1.005).abs() < 1e-4 && (x[1] - 0.98).abs() < 1e-4);
/// assert_eq!(report.nfe, 3 * report.accepted + 2 * report.rejected);
/// # Ok::<(), diffuse_solvers::Error>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmAdaptive {
    /// 2 (DPM-Solver-12) or 3 (DPM-Solver-23).
    pub order: usize,
    /// Noise (DPM-Solver, k-diffusion) or data (DPM-Solver++) prediction.
    pub algorithm: DpmAlgorithm,
    /// Relative tolerance, `> 0` (k-diffusion: 0.05).
    pub rtol: f64,
    /// Absolute tolerance on the variance-exploding state, `> 0`
    /// (k-diffusion: 0.0078, about one 8-bit level of data in `[−1, 1]`).
    pub atol: f64,
    /// First step in `ℓ = log(α/σ)`, `> 0` (k-diffusion: 0.05).
    pub h_init: f64,
    /// Proportional coefficient of the controller (k-diffusion: 0).
    pub pcoeff: f64,
    /// Integral coefficient of the controller (k-diffusion: 1).
    pub icoeff: f64,
    /// Derivative coefficient of the controller (k-diffusion: 0).
    pub dcoeff: f64,
    /// An attempt is accepted when the proposed factor is at least this,
    /// in `[0, 1]` (k-diffusion: 0.81 = 0.9²).
    pub accept_safety: f64,
    /// How the error is measured.
    pub error_norm: ErrorNorm,
    /// Most step attempts (accepted and rejected) before the run gives up
    /// with an error, `≥ 1`.
    pub max_attempts: usize,
}

impl Default for DpmAdaptive {
    /// k-diffusion's `sample_dpm_adaptive` defaults: DPM-Solver-23, noise
    /// prediction, `rtol = 0.05`, `atol = 0.0078`, `h_init = 0.05`,
    /// `(p, i, d) = (0, 1, 0)`, `accept_safety = 0.81`; 100 000 attempts.
    fn default() -> Self {
        Self {
            order: 3,
            algorithm: DpmAlgorithm::NoisePrediction,
            rtol: 0.05,
            atol: 0.0078,
            h_init: 0.05,
            pcoeff: 0.0,
            icoeff: 1.0,
            dcoeff: 0.0,
            accept_safety: 0.81,
            error_norm: ErrorNorm::PerElement,
            max_attempts: 100_000,
        }
    }
}

/// What an adaptive run did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdaptiveReport {
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected attempts.
    pub rejected: usize,
    /// Model evaluations, including a final step to σ = 0.
    pub nfe: usize,
    /// Whether the run ended with the first-order step to σ = 0.
    pub clean_step: bool,
    /// The step the controller proposes next, in `ℓ` (to warm-start a
    /// similar run).
    pub h: f64,
}

impl AdaptiveReport {
    /// As core's [`SampleReport`]: the accepted steps (plus the step to
    /// σ = 0) and the model evaluations.
    pub fn sample_report(&self) -> SampleReport {
        SampleReport {
            steps: self.accepted + usize::from(self.clean_step),
            nfe: self.nfe,
        }
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidArgument { name, reason }
}

/// The `ε` of k-diffusion's controller, added to the error before inverting.
const PID_EPS: f64 = 1e-8;

/// A step that would end within this of `ℓ_end` ends at `ℓ_end`
/// (k-diffusion's loop tolerance).
const END_TOLERANCE: f64 = 1e-5;

/// k-diffusion's `PIDStepSizeController` (module documentation).
struct Pid {
    h: f64,
    beta: [f64; 3],
    accept_safety: f64,
    /// `ln ε_j` of the last three errors (the newest first), once set.
    log_inv: Option<[f64; 3]>,
}

impl Pid {
    fn new(options: &DpmAdaptive) -> Self {
        let k = options.order as f64;
        let (p, i, d) = (options.pcoeff, options.icoeff, options.dcoeff);
        Self {
            h: options.h_init,
            beta: [(p + i + d) / k, -(p + 2.0 * d) / k, d / k],
            accept_safety: options.accept_safety,
            log_inv: None,
        }
    }

    /// `f = 1 + atan(ε₀^{β₁}·ε₁^{β₂}·ε₂^{β₃} − 1)`, `h ← f·h`; whether the
    /// attempt with error `error ≥ 0` is accepted.
    fn propose(&mut self, error: f64) -> bool {
        let log_inv = -(error + PID_EPS).ln();
        let e = self.log_inv.get_or_insert([log_inv; 3]);
        e[0] = log_inv;
        let log_f = self.beta[0] * e[0] + self.beta[1] * e[1] + self.beta[2] * e[2];
        let f = 1.0 + (log_f.exp() - 1.0).atan();
        let accept = f >= self.accept_safety;
        if accept {
            e[2] = e[1];
            e[1] = e[0];
        }
        self.h *= f;
        accept
    }
}

/// The level of `schedule` with half log-SNR `ell`.
fn level_at(schedule: &dyn NoiseSchedule, ell: f64) -> Result<NoiseLevel> {
    let t = time_of_log_snr(schedule, 2.0 * ell)?;
    let alpha = schedule.alpha(t);
    // α from the schedule at that time, σ from the exact log-SNR.
    let marginal = Marginal::new(alpha, alpha * (-ell).exp())?;
    Ok(NoiseLevel { t, marginal })
}

/// `log(α/σ)` of a level.
fn half_lambda(m: Marginal) -> f64 {
    m.alpha.ln() - m.sigma.ln()
}

/// The prediction map (`x̂₀` or `ε̂` from state and output) at `m`.
fn prediction_map(
    algorithm: DpmAlgorithm,
    param: &dyn Parameterization,
    m: Marginal,
) -> Result<diffuse_core::Affine> {
    match algorithm {
        DpmAlgorithm::DataPrediction => param.x0_map(m),
        DpmAlgorithm::NoisePrediction => param.eps_map(m),
    }
}

/// Sets row `m` of `plan` to `values` (one per operand).
fn set_row(plan: &mut LinComb, m: usize, values: &[f64]) -> Result<()> {
    for (k, &v) in values.iter().enumerate() {
        plan.set(m, k, v)?;
    }
    Ok(())
}

/// Host-side inputs of the error norm that persist across attempts.
enum NormState {
    /// `x̃_prev` and the last attempt's `x̃_low`, element by element.
    PerElement { prev: Vec<f32>, low: Vec<f32> },
    /// `rms_r(x̃_prev)` per row, and the backend's reduction outputs.
    PerRow {
        prev: Vec<f64>,
        rms_diff: Vec<f64>,
        rms_low: Vec<f64>,
    },
}

impl DpmAdaptive {
    /// The solver of order 2 or 3 with `algorithm` and k-diffusion's
    /// other defaults.
    pub fn new(order: usize, algorithm: DpmAlgorithm) -> Result<Self> {
        let s = Self {
            order,
            algorithm,
            ..Self::default()
        };
        s.validate()?;
        Ok(s)
    }

    /// Checks the options: order 2 or 3; `rtol`, `atol`, `h_init` finite
    /// and `> 0`; the controller coefficients finite; `accept_safety` in
    /// `[0, 1]`; `max_attempts ≥ 1`.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.order, 2 | 3) {
            return Err(invalid(
                "order",
                format!(
                    "{}; adaptive DPM-Solver has orders 2 (12) and 3 (23)",
                    self.order
                ),
            ));
        }
        for (name, v) in [
            ("rtol", self.rtol),
            ("atol", self.atol),
            ("h_init", self.h_init),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(name, format!("{v}; must be finite and > 0")));
            }
        }
        for (name, v) in [
            ("pcoeff", self.pcoeff),
            ("icoeff", self.icoeff),
            ("dcoeff", self.dcoeff),
        ] {
            if !v.is_finite() {
                return Err(invalid(name, format!("{v}; must be finite")));
            }
        }
        if !(0.0..=1.0).contains(&self.accept_safety) {
            return Err(invalid(
                "accept_safety",
                format!("{}; must lie in [0, 1]", self.accept_safety),
            ));
        }
        if self.max_attempts == 0 {
            return Err(invalid("max_attempts", "0; must be at least 1".into()));
        }
        Ok(())
    }

    /// Canonical name: `dpm-adaptive-12`, `dpm-adaptive-23` (noise
    /// prediction) or `dpmpp-adaptive-12`, `dpmpp-adaptive-23` (data
    /// prediction).
    pub fn name(&self) -> &'static str {
        match (self.algorithm, self.order) {
            (DpmAlgorithm::NoisePrediction, 2) => "dpm-adaptive-12",
            (DpmAlgorithm::NoisePrediction, _) => "dpm-adaptive-23",
            (DpmAlgorithm::DataPrediction, 2) => "dpmpp-adaptive-12",
            (DpmAlgorithm::DataPrediction, _) => "dpmpp-adaptive-23",
        }
    }

    /// The stage fractions `r` of one attempt (after `r₀ = 0`).
    fn fractions(&self) -> &'static [f64] {
        if self.order == 2 {
            &[0.5]
        } else {
            &[1.0 / 3.0, 2.0 / 3.0]
        }
    }

    /// Integrates `x` (in place) with `model` in the loop from the first
    /// level of `grid` to its last positive level, then, if the grid ends
    /// at σ = 0, one first-order step there (module documentation).
    ///
    /// The grid must be shared by all rows (one step size for the batch)
    /// and have a positive level after its first. Errors: invalid options
    /// or grid, a non-finite model output or error ([`Error::NonFinite`]),
    /// a step size that underflows, or more than `max_attempts` attempts.
    pub fn integrate<B: Backend>(
        &self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &dyn NoiseSchedule,
        grid: &SamplingGrid,
        x: &mut B::Tensor,
    ) -> Result<AdaptiveReport> {
        self.validate()?;
        grid.check()?;
        let SamplingGrid::Shared(levels) = grid else {
            return Err(invalid(
                "grid",
                "the adaptive DPM-Solver takes one step size for the whole batch; give a \
                 shared grid"
                    .into(),
            ));
        };
        let first = levels[0];
        let last = levels[levels.len() - 1];
        let clean_end = last.marginal.sigma == 0.0;
        let end = if clean_end {
            levels[levels.len() - 2]
        } else {
            last
        };
        if levels.len() < 2 || (clean_end && levels.len() < 3) {
            return Err(invalid(
                "grid",
                "the adaptive steps need a positive σ_min after σ_max; this grid goes \
                 straight to σ = 0"
                    .into(),
            ));
        }
        let shape = backend.shape(x).to_vec();
        let rows = *shape.first().ok_or_else(|| Error::InvalidShape {
            shape: shape.clone(),
            reason: "the state needs a batch axis".into(),
        })?;
        let param = model.parameterization();
        let norm = match self.error_norm {
            ErrorNorm::PerElement => {
                let scale = 1.0 / first.marginal.alpha;
                let prev = backend
                    .to_host(x)?
                    .iter()
                    .map(|&v| (f64::from(v) * scale) as f32)
                    .collect();
                NormState::PerElement {
                    prev,
                    low: Vec::new(),
                }
            }
            ErrorNorm::PerRow => {
                let mut prev = vec![0.0; rows];
                let mut red = backend.zeros(&[rows])?;
                backend.reduce_rows(x, RowReduction::Rms, &mut red)?;
                for (p, v) in prev.iter_mut().zip(backend.to_host(&red)?) {
                    *p = f64::from(v) / first.marginal.alpha;
                }
                NormState::PerRow {
                    prev,
                    rms_diff: vec![0.0; rows],
                    rms_low: vec![0.0; rows],
                }
            }
        };
        let mut run = Run::new(self, backend, &shape, rows, first, norm)?;
        let ell_end = half_lambda(end.marginal);
        let mut s_level = first;
        let mut s = half_lambda(first.marginal);
        let mut pid = Pid::new(self);
        let mut report = AdaptiveReport {
            accepted: 0,
            rejected: 0,
            nfe: 0,
            clean_step: false,
            h: pid.h,
        };
        let mut p0_valid = false;
        while s < ell_end {
            if report.accepted + report.rejected >= self.max_attempts {
                return Err(invalid(
                    "max_attempts",
                    format!(
                        "{} attempts reached ℓ = {s} of {ell_end}; loosen rtol/atol or allow \
                         more attempts",
                        self.max_attempts
                    ),
                ));
            }
            let (t, t_level) = if s + pid.h >= ell_end - END_TOLERANCE {
                (ell_end, end)
            } else {
                let t = s + pid.h;
                (t, level_at(schedule, t)?)
            };
            if t <= s {
                return Err(invalid(
                    "h",
                    format!("the step size {} no longer moves ℓ = {s}", pid.h),
                ));
            }
            let error = run.attempt(
                self, backend, model, param, schedule, x, s_level, t_level, p0_valid,
            )?;
            let accept = pid.propose(error);
            if !pid.h.is_finite() {
                return Err(Error::NonFinite(format!(
                    "{}: proposed step size {}",
                    self.name(),
                    pid.h
                )));
            }
            if accept {
                run.accept(x);
                s = t;
                s_level = t_level;
                report.accepted += 1;
                p0_valid = false;
            } else {
                report.rejected += 1;
                p0_valid = true;
            }
        }
        report.h = pid.h;
        if clean_end {
            run.clean_step(self, backend, model, param, x, end, last)?;
            report.clean_step = true;
        }
        report.nfe = run.nfe;
        Ok(report)
    }
}

/// The buffers and plans of one run, allocated once.
struct Run<B: Backend> {
    /// Model output.
    out: B::Tensor,
    /// Stage predictions `m₀` and (order 3) `m₁`.
    preds: Vec<B::Tensor>,
    /// Input of stages 1 and 2.
    stage_x: B::Tensor,
    /// The candidate `x_high`.
    cand: B::Tensor,
    /// `x̃_low`.
    low: B::Tensor,
    /// `x̃_high − x̃_low`.
    diff: B::Tensor,
    /// One value per row, for [`ErrorNorm::PerRow`].
    red: B::Tensor,
    /// The noise level of every row for the pending model call.
    request: Vec<NoiseLevel>,
    /// `[x, out] → [m₀, stage input]`.
    plan_first: LinComb,
    /// `[x, m₀] → [stage input]` (after a rejection).
    plan_retry: LinComb,
    /// `[stage input (in place), x, out, m₀] → [stage input, m₁]` (order 3).
    plan_middle: LinComb,
    /// `[x, stage input, out, m₀, (m₁)] → [x_high, x̃_low, x̃_high − x̃_low]`.
    plan_last: LinComb,
    /// `[x (in place), out] → [x]`: the step to σ = 0.
    plan_clean: LinComb,
    norm: NormState,
    /// Model evaluations so far.
    nfe: usize,
}

impl<B: Backend> Run<B> {
    fn new(
        options: &DpmAdaptive,
        backend: &B,
        shape: &[usize],
        rows: usize,
        first: NoiseLevel,
        norm: NormState,
    ) -> Result<Self> {
        use Operand::{Input, Output};
        let mut preds = Vec::with_capacity(options.order - 1);
        for _ in 0..options.order - 1 {
            preds.push(backend.zeros(shape)?);
        }
        let last_operands: &[Operand] = if options.order == 2 {
            &[Input(0), Input(1), Input(2), Input(3)]
        } else {
            &[Input(0), Input(1), Input(2), Input(3), Input(4)]
        };
        Ok(Self {
            out: backend.zeros(shape)?,
            preds,
            stage_x: backend.zeros(shape)?,
            cand: backend.zeros(shape)?,
            low: backend.zeros(shape)?,
            diff: backend.zeros(shape)?,
            red: backend.zeros(&[rows])?,
            request: vec![first; rows],
            plan_first: LinComb::new(&[Input(0), Input(1)], 2)?,
            plan_retry: LinComb::new(&[Input(0), Input(1)], 1)?,
            plan_middle: LinComb::new(&[Output(0), Input(0), Input(1), Input(2)], 2)?,
            plan_last: LinComb::new(last_operands, 3)?,
            plan_clean: LinComb::new(&[Output(0), Input(0)], 1)?,
            norm,
            nfe: 0,
        })
    }

    /// Evaluates the model at `level` on the stage input (`stage`) or `x`.
    fn evaluate(
        &mut self,
        backend: &B,
        model: &dyn Denoiser<B>,
        x: &B::Tensor,
        level: NoiseLevel,
        stage: bool,
    ) -> Result<()> {
        self.request.fill(level);
        let input = if stage { &self.stage_x } else { x };
        model.predict(
            backend,
            input,
            &self.request,
            Condition::Unconditional,
            &mut self.out,
        )?;
        self.nfe += 1;
        Ok(())
    }

    /// One attempt from level `from` (state `x`) to `to`: writes `x_high`
    /// into the candidate and returns the error `E`. With `p0_valid`, `m₀`
    /// of the previous (rejected) attempt is reused.
    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &mut self,
        options: &DpmAdaptive,
        backend: &B,
        model: &dyn Denoiser<B>,
        param: &dyn Parameterization,
        schedule: &dyn NoiseSchedule,
        x: &B::Tensor,
        from: NoiseLevel,
        to: NoiseLevel,
        p0_valid: bool,
    ) -> Result<f64> {
        let alg = options.algorithm;
        let s = half_lambda(from.marginal);
        let h = half_lambda(to.marginal) - s;
        // Stage levels and nodes: r = 0, the fractions, then the target.
        let mut stages = Three::<NoiseLevel>::new();
        stages.push(from);
        for r in options.fractions() {
            stages.push(level_at(schedule, s + r * h)?);
        }
        let nodes: Three<Node> = stages.iter().map(|l| Node::of(l.marginal)).collect();
        let target = Node::of(to.marginal);
        let n = stages.len();

        // Stage 0 and the input of stage 1 (order-1 update).
        let (a1, c1) = singlestep(alg, SecondOrder::Heun, &nodes[..1], nodes[1])?;
        if p0_valid {
            set_row(&mut self.plan_retry, 0, &[a1, c1[0]])?;
            backend.lincomb(
                &self.plan_retry,
                &[x, &self.preds[0]],
                &mut [&mut self.stage_x],
            )?;
        } else {
            self.evaluate(backend, model, x, from, false)?;
            let map = prediction_map(alg, param, from.marginal)?;
            set_row(&mut self.plan_first, 0, &[map.a, map.b])?;
            set_row(
                &mut self.plan_first,
                1,
                &[a1 + c1[0] * map.a, c1[0] * map.b],
            )?;
            let (p0, _) = self.preds.split_at_mut(1);
            backend.lincomb(
                &self.plan_first,
                &[x, &self.out],
                &mut [&mut p0[0], &mut self.stage_x],
            )?;
        }

        // Stage 1 of order 3: m₁ and the input of stage 2 (order-2 update
        // of the c₂ form, Lu et al. Alg. 2).
        if n == 3 {
            self.evaluate(backend, model, x, stages[1], true)?;
            let map = prediction_map(alg, param, stages[1].marginal)?;
            let (a2, c2) = singlestep(alg, SecondOrder::Heun, &nodes[..2], nodes[2])?;
            // Operands: stage input (in place), x, out, m₀.
            set_row(&mut self.plan_middle, 1, &[map.a, 0.0, map.b, 0.0])?;
            set_row(
                &mut self.plan_middle,
                0,
                &[c2[1] * map.a, a2, c2[1] * map.b, c2[0]],
            )?;
            let (p0, p1) = self.preds.split_at_mut(1);
            backend.lincomb(
                &self.plan_middle,
                &[x, &self.out, &p0[0]],
                &mut [&mut self.stage_x, &mut p1[0]],
            )?;
        }

        // The last stage and the pair of updates.
        let last = n - 1;
        self.evaluate(backend, model, x, stages[last], true)?;
        let map = prediction_map(alg, param, stages[last].marginal)?;
        let (a, high) = singlestep(alg, SecondOrder::Midpoint, &nodes, target)?;
        // The coefficient of x_s depends on the end points only: the same
        // for both updates.
        let (_, low) = singlestep(alg, SecondOrder::Midpoint, &nodes[..last], target)?;
        let inv_alpha = 1.0 / to.marginal.alpha;
        let low_at = |j: usize| low.get(j).copied().unwrap_or(0.0);
        // Operands: x, stage input, out, m₀, (m₁); the last prediction is
        // map.a·(stage input) + map.b·out.
        let mut rows = [[0.0f64; 5]; 3];
        for (m, row) in rows.iter_mut().enumerate() {
            let (scale, state) = match m {
                0 => (1.0, a),
                1 => (inv_alpha, a),
                _ => (inv_alpha, 0.0),
            };
            let coef = |j: usize| match m {
                0 => high[j],
                1 => low_at(j),
                _ => high[j] - low_at(j),
            };
            row[0] = scale * state;
            row[1] = scale * coef(last) * map.a;
            row[2] = scale * coef(last) * map.b;
            for j in 0..last {
                row[3 + j] = scale * coef(j);
            }
        }
        for (m, row) in rows.iter().enumerate() {
            set_row(&mut self.plan_last, m, &row[..3 + last])?;
        }
        {
            let mut inputs: [&B::Tensor; 5] = [x, &self.stage_x, &self.out, &self.preds[0], x];
            if last == 2 {
                inputs[4] = &self.preds[1];
            }
            backend.lincomb(
                &self.plan_last,
                &inputs[..3 + last],
                &mut [&mut self.cand, &mut self.low, &mut self.diff],
            )?;
        }
        self.error(options, backend)
    }

    /// The error `E` of the attempt just made (module documentation).
    fn error(&mut self, options: &DpmAdaptive, backend: &B) -> Result<f64> {
        let (atol, rtol) = (options.atol, options.rtol);
        let e = match &mut self.norm {
            NormState::PerElement { prev, low } => {
                let diff = backend.to_host(&self.diff)?;
                // Kept: it becomes x̃_prev if the attempt is accepted.
                *low = backend.to_host(&self.low)?;
                let mut sum = 0.0;
                for ((&d, &l), &p) in diff.iter().zip(low.iter()).zip(prev.iter()) {
                    if !l.is_finite() {
                        sum = f64::NAN;
                        break;
                    }
                    let scale = atol.max(rtol * f64::from(l.abs().max(p.abs())));
                    let w = f64::from(d) / scale;
                    sum += w * w;
                }
                (sum / diff.len() as f64).sqrt()
            }
            NormState::PerRow {
                prev,
                rms_diff,
                rms_low,
            } => {
                backend.reduce_rows(&self.diff, RowReduction::Rms, &mut self.red)?;
                for (o, v) in rms_diff.iter_mut().zip(backend.to_host(&self.red)?) {
                    *o = f64::from(v);
                }
                backend.reduce_rows(&self.low, RowReduction::Rms, &mut self.red)?;
                for (o, v) in rms_low.iter_mut().zip(backend.to_host(&self.red)?) {
                    *o = f64::from(v);
                }
                let mut sum = 0.0;
                for ((&d, &l), &p) in rms_diff.iter().zip(rms_low.iter()).zip(prev.iter()) {
                    if !l.is_finite() {
                        sum = f64::NAN;
                        break;
                    }
                    let w = d / atol.max(rtol * l.max(p));
                    sum += w * w;
                }
                (sum / rms_diff.len() as f64).sqrt()
            }
        };
        if !e.is_finite() {
            return Err(Error::NonFinite(format!(
                "{}: the error estimate ({e}); the model output is not finite",
                options.name()
            )));
        }
        Ok(e)
    }

    /// Takes the attempt just made: `x ← x_high`, `x̃_prev ← x̃_low`.
    fn accept(&mut self, x: &mut B::Tensor) {
        std::mem::swap(x, &mut self.cand);
        match &mut self.norm {
            NormState::PerElement { prev, low } => std::mem::swap(prev, low),
            NormState::PerRow { prev, rms_low, .. } => std::mem::swap(prev, rms_low),
        }
    }

    /// The first-order step from the last positive level `from` to the
    /// clean level `to` (σ = 0): `x = α_to·x̂₀(x)` for both algorithms.
    #[allow(clippy::too_many_arguments)]
    fn clean_step(
        &mut self,
        options: &DpmAdaptive,
        backend: &B,
        model: &dyn Denoiser<B>,
        param: &dyn Parameterization,
        x: &mut B::Tensor,
        from: NoiseLevel,
        to: NoiseLevel,
    ) -> Result<()> {
        self.evaluate(backend, model, x, from, false)?;
        let alg = options.algorithm;
        let map = prediction_map(alg, param, from.marginal)?;
        let (a, c) = singlestep(
            alg,
            SecondOrder::Midpoint,
            &[Node::of(from.marginal)],
            Node::of(to.marginal),
        )?;
        set_row(&mut self.plan_clean, 0, &[a + c[0] * map.a, c[0] * map.b])?;
        backend.lincomb(&self.plan_clean, &[&self.out], &mut [x])
    }
}

impl<B: Backend> Solver<B> for DpmAdaptive {
    fn name(&self) -> &str {
        DpmAdaptive::name(self)
    }
    fn order(&self) -> usize {
        self.order
    }
    /// Model evaluations of one attempt; a run's total depends on the
    /// tolerances ([`AdaptiveReport`]).
    fn nfe_per_step(&self) -> usize {
        self.order
    }
    fn stochastic(&self) -> bool {
        false
    }
    /// [`DpmAdaptive::integrate`] from the grid's first level to its last
    /// (intermediate levels are ignored); the report counts accepted steps.
    fn sample(
        &mut self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &dyn NoiseSchedule,
        grid: &SamplingGrid,
        x: &mut B::Tensor,
        noise: Option<NoiseStream>,
    ) -> Result<SampleReport> {
        if noise.is_some() {
            return Err(invalid(
                "noise",
                format!(
                    "{} is deterministic (eta = 0) and draws no noise",
                    self.name()
                ),
            ));
        }
        Ok(self
            .integrate(backend, model, schedule, grid, x)?
            .sample_report())
    }
}

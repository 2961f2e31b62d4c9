//! Exact log-likelihoods by the probability-flow ODE (Song et al. 2021,
//! "Score-based generative modeling through stochastic differential
//! equations", §4.3 and App. D.2; k-diffusion's `log_likelihood`).
//!
//! # What is computed
//! Write the state in the variance-exploding form `x̃ = x/α`, noise level
//! `σ̃ = σ/α`, and `u = ln σ̃`. The probability-flow ODE of any schedule is
//! then (Karras et al. 2022, eq. 4 with `s = 1`)
//!
//! ```text
//! dx̃/du = σ̃·dx̃/dσ̃ = x̃ − x̂₀(x̃, σ̃)
//! ```
//!
//! with `x̂₀` the model's data estimate, and along a solution the log density
//! of the marginal `p_σ̃` changes by minus the divergence of the drift
//! (the instantaneous change of variables, Chen et al. 2018, "Neural
//! ordinary differential equations", Thm. 1):
//!
//! ```text
//! d ln p(x̃(u))/du = −∇·(x̃ − x̂₀) = −(d − tr ∂x̂₀/∂x̃),     ∂x̂₀/∂x̃ = α·∂x̂₀/∂x.
//! ```
//!
//! Integrating from the data end `σ̃_min` to the prior end `σ̃_max`,
//!
//! ```text
//! ln p_σ̃min(x̃) = ln N(x̃(σ̃max); 0, σ̃max²·I) + ∫_{ln σ̃min}^{ln σ̃max} (d − α·tr ∂x̂₀/∂x) du,
//! ```
//!
//! where the first term approximates the marginal at `σ̃_max` by the
//! Gaussian prior (its error is of order `Var(data)/σ̃max²` per dimension).
//! The result is the continuous density, in nats, of the variance-exploding
//! state at `σ̃_min`, i.e. of the data convolved with `N(0, σ̃min²·I)`; no
//! dequantisation term is added (for 8-bit images scaled to `[−1, 1]` with
//! uniform dequantisation add `log₂ 128 = 7` bits/dim, survey §2.3.5). The
//! density of the schedule's own state `x = α·x̃` at that level is lower by
//! `d·ln α`. Bits per dimension are `−ln p/(d·ln 2)`.
//!
//! # The divergence
//! [`DivergenceMethod::Exact`] takes `tr ∂x̂₀/∂x` from
//! [`VectorJacobian::x0_divergence`] (closed form for the Gaussian-mixture
//! denoiser). [`DivergenceMethod::Hutchinson`] uses the Hutchinson–Skilling
//! estimator `tr A ≈ vᵀ·A·v`, `E[v·vᵀ] = I` (Hutchinson 1989; Skilling
//! 1989; Grathwohl et al. 2019, FFJORD), with `vᵀ·∂x̂₀/∂x` from
//! [`VectorJacobian::x0_vjp`]: the divergence of the drift is estimated as
//! `d − α·vᵀ·(∂x̂₀/∂x)·v` (the identity's trace is known exactly). The
//! probes are drawn once per run and kept along the trajectory, so the
//! log-likelihood estimate is unbiased: `E_v[vᵀMv] = tr M` for the
//! integrated matrix `M`. Probe `p` (of `probes`) of element `i` (flat,
//! row-major) is drawn from the noise stream's draw
//! `NoiseStream { seed, stream: stream + p }`: Gaussian probes are its
//! element `i`; Rademacher probes are `+1` or `−1` by bit 31 of the Philox
//! word behind element `i` (word `i mod 4` of block `⌊i/4⌋`), so they are
//! exactly unbiased. Several probes are averaged at every evaluation.
//!
//! # Integration
//! The augmented state (`x̃` of every row and its log-density change) is
//! integrated in f64 on the host with the Dormand–Prince 5(4) pair
//! (Dormand & Prince 1980; `dopri5`, as k-diffusion uses) and the usual
//! step-size control: a step is accepted when
//! `max_rows RMS_j(errⱼ/(atol + rtol·max(|yⱼ|, |y′ⱼ|))) ≤ 1` over the row's
//! `d + 1` components, and the step is scaled by
//! `min(5, max(0.2, 0.9·err^{−1/5}))`. The model sees f32 tensors: each
//! evaluation uploads `x = α·x̃`, and the data estimate is formed in f64
//! from the f32 output through the parameterisation's map. This is a
//! measurement, not the sampling hot loop.
//!
//! ```
//! use std::sync::Arc;
//! use diffuse_core::{Affine, Backend, CpuBackend, Marginal, Parameterization};
//! use diffuse_solvers::likelihood::{LikelihoodOptions, log_likelihood};
//! use diffuse_solvers::VeSchedule;
//! # use diffuse_core::{Condition, Denoiser, NoiseLevel, VectorJacobian};
//! # /// Data N(0, 1) in one dimension: x̂₀ = x/(1 + σ̃²), ∂x̂₀/∂x = 1/(1 + σ̃²).
//! # struct StdNormal;
//! # struct X0;
//! # impl Parameterization for X0 {
//! #     fn name(&self) -> &str { "x0" }
//! #     fn x0_map(&self, _m: Marginal) -> diffuse_core::Result<Affine> { Ok(Affine { a: 0.0, b: 1.0 }) }
//! # }
//! # impl Denoiser<CpuBackend> for StdNormal {
//! #     fn parameterization(&self) -> &dyn Parameterization { &X0 }
//! #     fn predict(&self, cpu: &CpuBackend, x: &diffuse_core::CpuTensor, levels: &[NoiseLevel],
//! #         _c: Condition<'_, diffuse_core::CpuTensor>, out: &mut diffuse_core::CpuTensor) -> diffuse_core::Result<()> {
//! #         let h = cpu.to_host(x)?;
//! #         let v: Vec<f32> = h.iter().zip(levels).map(|(x, l)| {
//! #             let s = l.marginal.ve_sigma();
//! #             (f64::from(*x) / (1.0 + s * s)) as f32
//! #         }).collect();
//! #         *out = cpu.upload(cpu.shape(x), &v)?;
//! #         Ok(())
//! #     }
//! # }
//! # impl VectorJacobian<CpuBackend> for StdNormal {
//! #     fn x0_vjp(&self, cpu: &CpuBackend, x: &diffuse_core::CpuTensor, l: &[NoiseLevel],
//! #         _c: Condition<'_, diffuse_core::CpuTensor>, v: &diffuse_core::CpuTensor,
//! #         o: &mut diffuse_core::CpuTensor) -> diffuse_core::Result<()> {
//! #         // One element per row: vᵀ·∂x̂₀/∂x = v/(1 + σ̃²).
//! #         let v: Vec<f32> = cpu.to_host(v)?.iter().zip(l).map(|(v, l)| {
//! #             (f64::from(*v) / (1.0 + l.marginal.ve_sigma().powi(2))) as f32
//! #         }).collect();
//! #         *o = cpu.upload(cpu.shape(x), &v)?;
//! #         Ok(())
//! #     }
//! #     fn x0_divergence(&self, _b: &CpuBackend, _x: &diffuse_core::CpuTensor, l: &[NoiseLevel],
//! #         _c: Condition<'_, diffuse_core::CpuTensor>) -> diffuse_core::Result<Option<Vec<f64>>> {
//! #         Ok(Some(l.iter().map(|l| 1.0 / (1.0 + l.marginal.ve_sigma().powi(2))).collect()))
//! #     }
//! # }
//! let cpu = CpuBackend::new();
//! // `StdNormal`: an exact denoiser for data N(0, 1) with an exact divergence.
//! let x = cpu.upload(&[2, 1], &[0.0, 1.5])?;
//! let options = LikelihoodOptions { sigma_min: 1e-3, sigma_max: 100.0, ..Default::default() };
//! let report = log_likelihood(&cpu, &StdNormal, &VeSchedule, &x, &options)?;
//! // ln N(x; 0, 1 + σ̃min²) within the tolerances.
//! for (ll, x) in report.log_likelihood.iter().zip([0.0f64, 1.5]) {
//!     let exact = -0.5 * (2.0 * std::f64::consts::PI * (1.0 + 1e-6)).ln() - x * x / (2.0 * (1.0 + 1e-6));
//!     assert!((ll - exact).abs() < 1e-3);
//! }
//! # Ok::<(), diffuse_core::Error>(())
//! ```

use diffuse_core::noise::{block_counter, philox4x32_10, seed_key};
use diffuse_core::{
    Backend, Condition, Error, Marginal, NoiseLevel, NoiseSchedule, NoiseStream, Result,
    VectorJacobian, time_of_log_snr,
};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// The distribution of the Hutchinson probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// `±1` with probability ½ each (the lower-variance choice, k-diffusion's).
    Rademacher,
    /// Standard normal.
    Gaussian,
}

/// How the divergence of the drift is obtained.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DivergenceMethod {
    /// The closed form of [`VectorJacobian::x0_divergence`]; an error if
    /// the model has none.
    Exact,
    /// The Hutchinson–Skilling estimator with `probes` probes per row
    /// (averaged), drawn from `noise` (see the module documentation).
    Hutchinson {
        /// The probe distribution.
        probe: Probe,
        /// Probes per row, at least 1.
        probes: usize,
        /// Probe `p` uses draw `noise.stream + p` under `noise.seed`.
        noise: NoiseStream,
    },
}

/// Options of [`log_likelihood`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LikelihoodOptions {
    /// The data end `σ̃_min > 0` (variance-exploding noise level `σ/α`).
    pub sigma_min: f64,
    /// The prior end `σ̃_max > σ̃_min`.
    pub sigma_max: f64,
    /// Relative tolerance of the step control.
    pub rtol: f64,
    /// Absolute tolerance of the step control.
    pub atol: f64,
    /// The most model evaluations (an error beyond).
    pub max_evals: usize,
    /// Exact divergence or a trace estimator.
    pub divergence: DivergenceMethod,
}

impl Default for LikelihoodOptions {
    /// `σ̃ ∈ [0.002, 80]` (Karras et al. 2022), `rtol = atol = 10⁻⁵` (as
    /// score_sde), at most 100 000 evaluations, exact divergence.
    fn default() -> Self {
        Self {
            sigma_min: 0.002,
            sigma_max: 80.0,
            rtol: 1e-5,
            atol: 1e-5,
            max_evals: 100_000,
            divergence: DivergenceMethod::Exact,
        }
    }
}

/// What [`log_likelihood`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct LikelihoodReport {
    /// `ln p_σ̃min(x̃)` per row, nats (see the module documentation).
    pub log_likelihood: Vec<f64>,
    /// `−ln p/(d·ln 2)` per row.
    pub bits_per_dim: Vec<f64>,
    /// The prior term `ln N(x̃(σ̃max); 0, σ̃max²·I)` per row.
    pub prior_log_density: Vec<f64>,
    /// The integral of the drift's divergence per row.
    pub delta_log_density: Vec<f64>,
    /// `x̃(σ̃max)`, the latent encoding, flat row-major.
    pub latent: Vec<f64>,
    /// Dimensions per row `d`.
    pub dim: usize,
    /// Model evaluations (each also computes the divergence or the probes'
    /// products).
    pub nfe: usize,
    /// Accepted steps.
    pub steps: usize,
    /// Rejected steps.
    pub rejected: usize,
}

/// Probe `p`'s value of element `index` (see the module documentation).
pub fn probe_value(probe: Probe, noise: NoiseStream, p: usize, index: u64) -> f64 {
    let stream = noise.stream.wrapping_add(p as u64);
    match probe {
        Probe::Gaussian => f64::from(NoiseStream::new(noise.seed, stream).at(index)),
        Probe::Rademacher => {
            let words = philox4x32_10(block_counter(index >> 2, stream), seed_key(noise.seed));
            if words[(index & 3) as usize] >> 31 == 1 {
                -1.0
            } else {
                1.0
            }
        }
    }
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

fn check_options(o: &LikelihoodOptions) -> Result<()> {
    if !(o.sigma_min.is_finite() && o.sigma_min > 0.0) {
        return Err(invalid(
            "sigma_min",
            format!("{}; need 0 < σ̃min", o.sigma_min),
        ));
    }
    if !(o.sigma_max.is_finite() && o.sigma_max > o.sigma_min) {
        return Err(invalid(
            "sigma_max",
            format!("{}; need σ̃min = {} < σ̃max < ∞", o.sigma_max, o.sigma_min),
        ));
    }
    for (name, tol) in [("rtol", o.rtol), ("atol", o.atol)] {
        if !(tol.is_finite() && tol > 0.0) {
            return Err(invalid(
                name,
                format!("{tol}; need a finite positive tolerance"),
            ));
        }
    }
    if o.max_evals == 0 {
        return Err(invalid("max_evals", "0; need at least one evaluation"));
    }
    if let DivergenceMethod::Hutchinson { probes: 0, .. } = o.divergence {
        return Err(invalid("probes", "0; need at least one probe"));
    }
    Ok(())
}

/// The augmented drift `(x̃ − x̂₀, d − α·tr ∂x̂₀/∂x)` of every row.
struct Field<'a, B: Backend> {
    backend: &'a B,
    model: &'a dyn VectorJacobian<B>,
    schedule: &'a dyn NoiseSchedule,
    shape: Vec<usize>,
    rows: usize,
    dim: usize,
    divergence: DivergenceMethod,
    /// The probe tensors (Hutchinson) and their host values.
    probes: Vec<(B::Tensor, Vec<f64>)>,
    nfe: usize,
    max_evals: usize,
}

impl<B: Backend> Field<'_, B> {
    /// The noise level of `σ̃ = e^u` on the schedule.
    fn level(&self, u: f64) -> Result<NoiseLevel> {
        let ve = u.exp();
        let t = time_of_log_snr(self.schedule, -2.0 * u)?;
        let alpha = self.schedule.alpha(t);
        let marginal = Marginal::new(alpha, ve * alpha)?;
        if alpha == 0.0 {
            return Err(Error::Undefined {
                what: "the variance-exploding state x/α",
                at: format!("at t = {t} (α = 0)"),
            });
        }
        Ok(NoiseLevel { t, marginal })
    }

    /// Writes the drift at `u` of the state `y` (`rows·d` values of `x̃`,
    /// then `rows` log-density changes) into `dy`.
    fn eval(&mut self, u: f64, y: &[f64], dy: &mut [f64]) -> Result<()> {
        if self.nfe >= self.max_evals {
            return Err(invalid(
                "max_evals",
                format!(
                    "the integration needs more than {} evaluations; loosen rtol/atol or \
                     raise max_evals",
                    self.max_evals
                ),
            ));
        }
        self.nfe += 1;
        let level = self.level(u)?;
        let alpha = level.marginal.alpha;
        let levels = vec![level; self.rows];
        let n = self.rows * self.dim;
        let mut x32 = Vec::with_capacity(n);
        for (i, &v) in y[..n].iter().enumerate() {
            let s = (alpha * v) as f32;
            if !s.is_finite() {
                return Err(Error::NonFinite(format!(
                    "probability-flow state element {i} = {} at σ̃ = {}",
                    alpha * v,
                    u.exp()
                )));
            }
            x32.push(s);
        }
        let x = self.backend.upload(&self.shape, &x32)?;
        let mut out = self.backend.zeros(&self.shape)?;
        self.model.predict(
            self.backend,
            &x,
            &levels,
            Condition::Unconditional,
            &mut out,
        )?;
        let map = self.model.parameterization().x0_map(level.marginal)?;
        let out_h = self.backend.to_host(&out)?;
        for i in 0..n {
            let x0 = map.a * f64::from(x32[i]) + map.b * f64::from(out_h[i]);
            dy[i] = y[i] - x0;
        }
        let d = self.dim as f64;
        let traces: Vec<f64> = match self.divergence {
            DivergenceMethod::Exact => self
                .model
                .x0_divergence(self.backend, &x, &levels, Condition::Unconditional)?
                .ok_or_else(|| {
                    Error::Unsupported(
                        "the model has no exact divergence; use the Hutchinson estimator".into(),
                    )
                })?,
            DivergenceMethod::Hutchinson { .. } => {
                let mut sums = vec![0.0; self.rows];
                let mut prod = self.backend.zeros(&self.shape)?;
                for (vt, vh) in &self.probes {
                    self.model.x0_vjp(
                        self.backend,
                        &x,
                        &levels,
                        Condition::Unconditional,
                        vt,
                        &mut prod,
                    )?;
                    let ph = self.backend.to_host(&prod)?;
                    for (r, s) in sums.iter_mut().enumerate() {
                        let range = r * self.dim..(r + 1) * self.dim;
                        *s += vh[range.clone()]
                            .iter()
                            .zip(&ph[range])
                            .map(|(v, w)| v * f64::from(*w))
                            .sum::<f64>();
                    }
                }
                let k = self.probes.len() as f64;
                sums.iter().map(|s| s / k).collect()
            }
        };
        if traces.len() != self.rows {
            return Err(Error::ShapeMismatch {
                op: "likelihood: one divergence per row",
                expected: vec![self.rows],
                found: vec![traces.len()],
            });
        }
        for (r, tr) in traces.iter().enumerate() {
            dy[n + r] = d - alpha * tr;
        }
        if let Some(i) = dy.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "probability-flow drift component {i} at σ̃ = {}",
                u.exp()
            )));
        }
        Ok(())
    }
}

// Dormand–Prince 5(4) (Dormand & Prince 1980, Table 2; Hairer, Nørsett &
// Wanner, "Solving ODEs I", Table II.5.2).
const C: [f64; 7] = [0.0, 1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const A: [[f64; 6]; 7] = [
    [0.0; 6],
    [1.0 / 5.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3.0 / 40.0, 9.0 / 40.0, 0.0, 0.0, 0.0, 0.0],
    [44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0, 0.0, 0.0, 0.0],
    [
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
        0.0,
        0.0,
    ],
    [
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
        0.0,
    ],
    [
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
/// The embedded fourth-order weights `b̂`.
const B_HAT: [f64; 7] = [
    5179.0 / 57600.0,
    0.0,
    7571.0 / 16695.0,
    393.0 / 640.0,
    -92097.0 / 339200.0,
    187.0 / 2100.0,
    1.0 / 40.0,
];

/// Integrates `field` from `u0` to `u1 > u0` in place of `y` with
/// Dormand–Prince 5(4); returns `(accepted, rejected)` steps.
fn dopri5<B: Backend>(
    field: &mut Field<'_, B>,
    u0: f64,
    u1: f64,
    y: &mut [f64],
    rtol: f64,
    atol: f64,
) -> Result<(usize, usize)> {
    let n = y.len();
    let (rows, dim) = (field.rows, field.dim);
    let mut k: Vec<Vec<f64>> = (0..7).map(|_| vec![0.0; n]).collect();
    let mut stage = vec![0.0; n];
    let mut y_new = vec![0.0; n];
    field.eval(u0, y, &mut k[0])?;
    let span = u1 - u0;
    let mut h = span / 64.0;
    let mut u = u0;
    let (mut accepted, mut rejected) = (0, 0);
    while u < u1 {
        let last = u + h >= u1;
        if last {
            h = u1 - u;
        }
        for s in 1..7 {
            for i in 0..n {
                let mut acc = y[i];
                for (j, a) in A[s].iter().enumerate().take(s) {
                    acc += h * a * k[j][i];
                }
                stage[i] = acc;
            }
            if s == 6 {
                y_new.copy_from_slice(&stage);
            }
            field.eval(u + C[s] * h, &stage, &mut k[s])?;
        }
        // Error: max over rows of the RMS over the row's d + 1 components.
        let mut err: f64 = 0.0;
        for r in 0..rows {
            let comps = (r * dim..(r + 1) * dim).chain(std::iter::once(rows * dim + r));
            let mut sum = 0.0;
            for i in comps {
                let e: f64 = h * (0..7).map(|j| (b5(j) - B_HAT[j]) * k[j][i]).sum::<f64>();
                let scale = atol + rtol * y[i].abs().max(y_new[i].abs());
                sum += (e / scale).powi(2);
            }
            err = err.max((sum / (dim + 1) as f64).sqrt());
        }
        if !err.is_finite() {
            return Err(Error::NonFinite(format!(
                "likelihood integration error estimate at σ̃ = {}",
                u.exp()
            )));
        }
        if err <= 1.0 {
            u = if last { u1 } else { u + h };
            y.copy_from_slice(&y_new);
            // First same as last: the seventh stage is the next first.
            k.swap(0, 6);
            accepted += 1;
        } else {
            rejected += 1;
        }
        let factor = if err == 0.0 {
            5.0
        } else {
            (0.9 * err.powf(-0.2)).clamp(0.2, 5.0)
        };
        h *= if err <= 1.0 { factor } else { factor.min(1.0) };
        if h <= span * 1e-14 {
            return Err(Error::NonFinite(format!(
                "likelihood integration: the step size underflows at σ̃ = {}",
                u.exp()
            )));
        }
    }
    Ok((accepted, rejected))
}

/// The fifth-order weight `b_j` (the last row of `A` and 0 for stage 7).
fn b5(j: usize) -> f64 {
    if j < 6 { A[6][j] } else { 0.0 }
}

/// `ln p_σ̃min(x̃)` of each row of `x` by the probability-flow ODE of
/// `model` (see the module documentation for the formula, the divergence
/// methods and the integrator). `x` holds the data, read as the
/// variance-exploding state `x̃` at `σ̃_min`; `schedule` maps each `σ̃` to
/// the time and marginal the model is evaluated at.
///
/// Errors: invalid options ([`Error::InvalidArgument`]); a level outside
/// the schedule; [`Error::Unsupported`] for [`DivergenceMethod::Exact`] with
/// a model without a closed-form divergence; a non-finite state, drift or
/// error estimate ([`Error::NonFinite`]); more than `max_evals`
/// evaluations; and any error of the model.
pub fn log_likelihood<B: Backend>(
    backend: &B,
    model: &dyn VectorJacobian<B>,
    schedule: &dyn NoiseSchedule,
    x: &B::Tensor,
    options: &LikelihoodOptions,
) -> Result<LikelihoodReport> {
    check_options(options)?;
    let shape = backend.shape(x).to_vec();
    let rows = *shape.first().ok_or_else(|| Error::InvalidShape {
        shape: shape.clone(),
        reason: "the data need a batch axis".into(),
    })?;
    let dim: usize = shape.iter().skip(1).product();
    let n = rows * dim;
    let host = backend.to_host(x)?;
    if let Some(i) = host.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "likelihood data element {i} = {}",
            host[i]
        )));
    }
    let mut probes = Vec::new();
    if let DivergenceMethod::Hutchinson {
        probe,
        probes: count,
        noise,
    } = options.divergence
    {
        for p in 0..count {
            let values: Vec<f64> = (0..n as u64)
                .map(|i| probe_value(probe, noise, p, i))
                .collect();
            let v32: Vec<f32> = values.iter().map(|&v| v as f32).collect();
            probes.push((backend.upload(&shape, &v32)?, values));
        }
    }
    let mut field = Field {
        backend,
        model,
        schedule,
        shape,
        rows,
        dim,
        divergence: options.divergence,
        probes,
        nfe: 0,
        max_evals: options.max_evals,
    };
    let mut y: Vec<f64> = host.iter().map(|&v| f64::from(v)).collect();
    y.resize(n + rows, 0.0);
    let (u0, u1) = (options.sigma_min.ln(), options.sigma_max.ln());
    let (steps, rejected) = dopri5(&mut field, u0, u1, &mut y, options.rtol, options.atol)?;
    let s2 = options.sigma_max * options.sigma_max;
    let d = dim as f64;
    let mut report = LikelihoodReport {
        log_likelihood: Vec::with_capacity(rows),
        bits_per_dim: Vec::with_capacity(rows),
        prior_log_density: Vec::with_capacity(rows),
        delta_log_density: y[n..].to_vec(),
        latent: y[..n].to_vec(),
        dim,
        nfe: field.nfe,
        steps,
        rejected,
    };
    for r in 0..rows {
        let z = &y[r * dim..(r + 1) * dim];
        // ln N(z; 0, σ̃max² I).
        let prior =
            -0.5 * d * (LN_2PI + s2.ln()) - z.iter().map(|v| v * v).sum::<f64>() / (2.0 * s2);
        let ll = prior + y[n + r];
        report.prior_log_density.push(prior);
        report.log_likelihood.push(ll);
        report.bits_per_dim.push(-ll / (d * std::f64::consts::LN_2));
    }
    Ok(report)
}

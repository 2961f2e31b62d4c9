//! Helpers shared by the solver integration tests: parameterisations
//! written out, the variance-preserving schedule indexed by `σ̃ = σ/α` and
//! its levels, grid builders, exact Gaussian and mixture fixtures, and
//! small statistics. Each test binary uses only part of this module.

#![allow(dead_code)]

use std::sync::Arc;

use diffuse_core::NoiseSchedule;
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::{
    Affine, Backend, Combination, CpuBackend, Marginal, Method, NoiseLevel, NoiseStream,
    Parameterization, Prediction, Result, SamplingGrid, StepContext,
};

// ------------------------------------------------------- parameterisations

/// x₀-prediction: the model output is `x̂₀` itself.
pub struct Sample;

impl Parameterization for Sample {
    fn name(&self) -> &str {
        "sample"
    }
    fn x0_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

/// ε-prediction, written out: `x̂₀ = (x − σ·out)/α`.
pub struct Eps;

impl Parameterization for Eps {
    fn name(&self) -> &str {
        "epsilon"
    }
    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        Ok(Affine {
            a: 1.0 / m.alpha,
            b: -m.sigma / m.alpha,
        })
    }
}

// ------------------------------------------------------ schedule and levels

/// The variance-preserving schedule with time `t = σ̃ = σ/α` (diffusers'
/// σ_VE): `α = 1/√(1 + t²)`, `σ = t·α`; for methods with stages between
/// the grid's levels.
pub struct VpBySigma;

impl NoiseSchedule for VpBySigma {
    fn name(&self) -> &str {
        "vp-by-sigma"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, f64::INFINITY)
    }
    fn alpha(&self, t: f64) -> f64 {
        1.0 / (1.0 + t * t).sqrt()
    }
    fn sigma(&self, t: f64) -> f64 {
        t / (1.0 + t * t).sqrt()
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        Ok((-0.5 * lambda).exp())
    }
}

/// The VP level with `σ̃ = σ/α = s` (time `s` of [`VpBySigma`]); `s = 0`
/// is clean.
pub fn vp_level(s: f64) -> NoiseLevel {
    let alpha = 1.0 / (1.0 + s * s).sqrt();
    NoiseLevel {
        t: s,
        marginal: Marginal {
            alpha,
            sigma: s * alpha,
        },
    }
}

/// The VE level `α = 1`, `σ = s` (time `s`).
pub fn ve_level(s: f64) -> NoiseLevel {
    NoiseLevel {
        t: s,
        marginal: Marginal {
            alpha: 1.0,
            sigma: s,
        },
    }
}

/// VP levels at the given `σ̃`.
pub fn vp_levels(sigmas: &[f64]) -> Vec<NoiseLevel> {
    sigmas.iter().map(|&s| vp_level(s)).collect()
}

/// The VP level with half log-SNR `l = log(α/σ)`, with time 0 (for methods
/// that never ask the schedule for a time, run with `VeSchedule`).
pub fn vp_at_half_log_snr(l: f64) -> NoiseLevel {
    let alpha = 1.0 / (1.0 + (-2.0 * l).exp()).sqrt();
    NoiseLevel {
        t: 0.0,
        marginal: Marginal {
            alpha,
            sigma: alpha * (-l).exp(),
        },
    }
}

/// A clean level (`α = 1`, `σ = 0`, time 0).
pub fn clean() -> NoiseLevel {
    NoiseLevel {
        t: 0.0,
        marginal: Marginal {
            alpha: 1.0,
            sigma: 0.0,
        },
    }
}

// ------------------------------------------------------------------ grids

/// `n` steps (`n + 1` levels) evenly spaced from `a` to `b` in the
/// coordinate that `level` maps to a noise level.
pub fn linspace_levels(
    a: f64,
    b: f64,
    n: usize,
    level: impl Fn(f64) -> NoiseLevel,
) -> Vec<NoiseLevel> {
    (0..=n)
        .map(|i| level(a + (b - a) * i as f64 / n as f64))
        .collect()
}

/// `points` values geometric from `hi` to `lo` (both included).
pub fn geometric(hi: f64, lo: f64, points: usize) -> Vec<f64> {
    (0..points)
        .map(|i| hi * (lo / hi).powf(i as f64 / (points - 1) as f64))
        .collect()
}

/// A shared grid of `points` levels geometric in `σ̃` from `hi` to `lo`,
/// then the clean level `level(0)`.
pub fn geometric_grid(
    hi: f64,
    lo: f64,
    points: usize,
    level: impl Fn(f64) -> NoiseLevel,
) -> SamplingGrid {
    let mut v: Vec<NoiseLevel> = geometric(hi, lo, points).into_iter().map(&level).collect();
    v.push(level(0.0));
    SamplingGrid::Shared(v)
}

/// The step context of step `i` on `levels` with `history` predictions
/// available.
pub fn step_ctx<'a>(
    levels: &'a [NoiseLevel],
    i: usize,
    history: usize,
    schedule: &'a dyn NoiseSchedule,
) -> StepContext<'a> {
    StepContext {
        i,
        levels,
        history,
        schedule,
    }
}

// ------------------------------------------------------- f64 reference

/// Applies `c` to scalars: `c.x·x + Σ c.stages[k]·stages[k] +
/// Σ c.history[k]·history[k]`, summed in that order.
pub fn apply_f64(c: &Combination, x: f64, stages: &[f64], history: &[f64]) -> f64 {
    let mut v = c.x * x;
    for (k, p) in c.stages.iter().enumerate() {
        v += p * stages[k];
    }
    for (k, h) in c.history.iter().enumerate() {
        v += h * history[k];
    }
    v
}

/// Runs `m` in f64 on a scalar state from `x` over `levels` (step contexts
/// on `schedule`), with `predict(x, level)` giving the method's prediction:
/// the driver's logic without tensors, checking every combination. Returns
/// the state after every step (the start first) and the number of model
/// evaluations.
pub fn run_f64_states(
    m: &dyn Method,
    levels: &[NoiseLevel],
    schedule: &dyn NoiseSchedule,
    x: f64,
    predict: &dyn Fn(f64, Marginal) -> f64,
) -> Result<(Vec<f64>, usize)> {
    let mut x = x;
    let mut states = vec![x];
    let mut history: Vec<f64> = Vec::new();
    let mut nfe = 0;
    for i in 0..levels.len() - 1 {
        let c = step_ctx(levels, i, history.len(), schedule);
        let stage_levels = m.stages(&c)?;
        let mut preds = vec![predict(x, levels[i].marginal)];
        for (s, level) in stage_levels.iter().enumerate() {
            let comb = m.stage_input(&c, s + 1)?;
            comb.check(m.name())?;
            let xs = apply_f64(&comb, x, &preds, &history);
            preds.push(predict(xs, level.marginal));
        }
        nfe += preds.len();
        let comb = m.update(&c, preds.len())?;
        comb.check(m.name())?;
        x = apply_f64(&comb, x, &preds, &history);
        states.push(x);
        history.insert(0, preds[0]);
        history.truncate(m.history());
    }
    Ok((states, nfe))
}

// ---------------------------------------------------------- exact models

/// One-dimensional Gaussian data `N(mu, s²)` (`s = 0`: a point mass) with
/// its exact denoiser and probability-flow solution.
#[derive(Clone, Copy)]
pub struct Gaussian {
    pub mu: f64,
    pub s: f64,
}

impl Gaussian {
    /// `E[x₀ | x]` at level `m`.
    pub fn x0_hat(&self, x: f64, m: Marginal) -> f64 {
        let v = m.alpha * m.alpha * self.s * self.s + m.sigma * m.sigma;
        self.mu + m.alpha * self.s * self.s / v * (x - m.alpha * self.mu)
    }
    /// The exact data or noise prediction at level `m`.
    pub fn predict(&self, kind: Prediction, x: f64, m: Marginal) -> f64 {
        match kind {
            Prediction::Data => self.x0_hat(x, m),
            Prediction::Noise => (x - m.alpha * self.x0_hat(x, m)) / m.sigma,
        }
    }
    /// The probability-flow ODE's solution at `to` from `x` at `from` (it
    /// keeps quantiles).
    pub fn exact(&self, x: f64, from: Marginal, to: Marginal) -> f64 {
        let sd = |m: Marginal| (m.alpha * m.alpha * self.s * self.s + m.sigma * m.sigma).sqrt();
        to.alpha * self.mu + sd(to) / sd(from) * (x - from.alpha * self.mu)
    }
}

/// `∫ₐᵇ e^{sign·λ}·(c0 + c1·λ + c2·λ²) dλ` for `sign = ±1`, in closed form.
pub fn weighted_integral(sign: f64, c: [f64; 3], a: f64, b: f64) -> f64 {
    let anti = |l: f64| {
        if sign > 0.0 {
            l.exp() * (c[0] + c[1] * (l - 1.0) + c[2] * (l * l - 2.0 * l + 2.0))
        } else {
            -(-l).exp() * (c[0] + c[1] * (l + 1.0) + c[2] * (l * l + 2.0 * l + 2.0))
        }
    };
    anti(b) - anti(a)
}

/// Three well-separated components in 2-D: weights 0.5, 0.3, 0.2 at
/// (−2, 0), (2, 0), (0, 2.5) with standard deviations 0.3, 0.5, 0.4.
pub fn three_blobs_2d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![vec![-2.0, 0.0], vec![2.0, 0.0], vec![0.0, 2.5]],
        vec![0.3, 0.5, 0.4],
    )
    .unwrap()
}

/// Three overlapping components in 2-D: weights 0.4, 0.35, 0.25 at
/// (−1.5, 1), (1, 1.5), (0.5, −1.5) with standard deviations 0.25, 0.4,
/// 0.3.
pub fn three_bumps_2d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.4, 0.35, 0.25],
        vec![vec![-1.5, 1.0], vec![1.0, 1.5], vec![0.5, -1.5]],
        vec![0.25, 0.4, 0.3],
    )
    .unwrap()
}

/// The exact denoiser (x₀-prediction) of a two-component 2-D mixture,
/// weights 0.6, 0.4 at (−1, 0.5), (1.5, −0.5) with standard deviations
/// 0.4, 0.3.
pub fn two_blobs_model() -> GmmDenoiser {
    let gmm = GaussianMixture::new(
        vec![0.6, 0.4],
        vec![vec![-1.0, 0.5], vec![1.5, -0.5]],
        vec![0.4, 0.3],
    )
    .unwrap();
    GmmDenoiser::new(gmm, Arc::new(Sample))
}

/// The noise stream of the stochastic runs on [`two_blobs_model`].
pub const BASE: NoiseStream = NoiseStream::new(11, 1);

/// `rows` 2-D states at σ̃ = 10 (VP), from stream 0 of seed 11.
pub fn vp_start(cpu: &CpuBackend, rows: usize) -> diffuse_core::CpuTensor {
    let mut v = vec![0.0f32; rows * 2];
    NoiseStream::new(11, 0).fill(0, &mut v);
    let a = vp_level(10.0).marginal.sigma as f32;
    cpu.upload(&[rows, 2], &v.iter().map(|z| z * a).collect::<Vec<_>>())
        .unwrap()
}

// ------------------------------------------------------------- statistics

/// The standard error of a fraction with probability `p` over `n` draws.
pub fn fraction_se(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n as f64).sqrt()
}

/// The mean and its standard error (sample variance with `n − 1`).
pub fn mean_and_se(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0);
    (m, (var / n).sqrt())
}

/// Max `|a − b|` in f64.
pub fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Max `|a − b|` in f32 (the differences rounded to f32).
pub fn max_abs_diff_f32(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// The bit patterns of `v`, for bit-for-bit comparisons.
pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

//! Ancestral sampling of DDPM (Ho, Jain & Abbeel 2020, Alg. 2; diffusers
//! `DDPMScheduler.step`) on any grid, in the `(α, σ)` form.
//!
//! Between levels `i` (noisier) and `i + 1`, the forward transition is
//! `x = a·x′ + g·ξ` with `a = α/α′` and `g² = σ² − a²·σ′²` (on a VP
//! schedule `a² = 1 − β_t` and `g² = β_t`). The posterior
//! `q(x′ | x, x₀)` has mean and variance
//!
//! `μ̃ = (α′·g²/σ²)·x̂₀ + (a·σ′²/σ²)·x = α′·(1 − q)·x̂₀ + (α′/α)·q·x`,
//! `β̃ = g²·σ′²/σ² = σ′²·(1 − q)`, with `q = σ̃′²/σ̃²`
//!
//! (Ho et al. 2020, eq. 6–7), and the step is `x′ = μ̃ + s·z` with the
//! standard deviation `s` of [`DdpmVariance`]. A step to `σ′ = 0` adds no
//! noise (diffusers adds none at `t = 0`).
//!
//! # Learned-range variance
//!
//! Improved DDPM (Nichol & Dhariwal 2021, "Improved denoising diffusion
//! probabilistic models", eq. 15; diffusers' `variance_type =
//! "learned_range"`) lets the network interpolate, per element, between the
//! two fixed variances in log space:
//!
//! `log Σ = f·log β_t + (1 − f)·log β̃_t`, `f = (v + 1)/2`,
//!
//! with `v` from a [`VarianceDenoiser`]. In this module's variables the two
//! ends are the standard deviations of `FixedSmall` and `FixedLarge`,
//! `s_small = σ′·√(1 − q)` (`√β̃`) and `s_large = σ·√(1 − q)` (`√β`), so
//! `exp(½·log Σ) = exp(a + b·v)` with `a = ½·(ln s_small + ln s_large)` and
//! `b = ½·(ln s_large − ln s_small)`. The generic [`Method`] driver hands
//! one scalar noise coefficient per row to its fused pass, so
//! [`run_learned_range`] drives this sampler itself: per step one model
//! evaluation (`predict` and `predict_variance`), the scaled noise
//! `exp(a_r + b_r·v)⊙z` from [`Backend::fill_noise_log_scaled`], and one
//! fused `lincomb` of `[x, model output, scaled noise]` with the mean
//! coefficients of [`Ddpm`] and noise coefficient 1. Draws are numbered as
//! the driver's [`crate::PhiloxNoise`] numbers them (step `i` consumes
//! model call `i` and draws from stream `base.stream + i + 1`, element
//! `first_row·L + j`), so with `v ≡ −1` (`+1`) the run is a `FixedSmall`
//! (`FixedLarge`) run of the generic driver up to the rounding of the
//! scale, and a sample's noise depends only on the seed and its row.

use diffuse_core::{
    Backend, Condition, Error, LinComb, NoiseLevel, NoiseSchedule, NoiseStream, Operand, Result,
    RowReduction, SampleReport, SamplingGrid, VarianceDenoiser,
};

use super::ve;
use crate::method::{Combination, Method, Prediction, StepContext};

/// The reverse variance of DDPM (diffusers' `variance_type`; survey
/// §2.2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DdpmVariance {
    /// `β̃`, optimal for a deterministic `x₀` (Ho et al. 2020).
    #[default]
    FixedSmall,
    /// `exp(½·log β̃)`: the same standard deviation as `FixedSmall`
    /// (diffusers' form for rl-diffuser).
    FixedSmallLog,
    /// `g²` (`β_t` on a VP schedule), optimal for `x₀ ~ N(0, I)`.
    FixedLarge,
    /// `exp(½·log β_t)` (GLIDE's "max_log"): the standard deviation of
    /// `FixedLarge`. (diffusers' `step` takes the square root of the log
    /// instead, which is NaN; this is the intended value.)
    FixedLargeLog,
    /// `exp(f·log β_t + (1 − f)·log β̃)`, `f = (v + 1)/2`, with `v` from a
    /// second output of the network (Nichol & Dhariwal 2021, eq. 15). The
    /// generic driver cannot supply a per-element variance, so as a
    /// [`Method`] this is [`Error::Unsupported`]: run it with
    /// [`run_learned_range`].
    LearnedRange,
}

impl DdpmVariance {
    /// diffusers' name.
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedSmall => "fixed_small",
            Self::FixedSmallLog => "fixed_small_log",
            Self::FixedLarge => "fixed_large",
            Self::FixedLargeLog => "fixed_large_log",
            Self::LearnedRange => "learned_range",
        }
    }
}

/// DDPM ancestral sampling [ddpm].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ddpm {
    /// The reverse variance.
    pub variance: DdpmVariance,
}

impl Ddpm {
    /// The sampler with `variance`; `LearnedRange` is
    /// [`Error::Unsupported`].
    pub fn new(variance: DdpmVariance) -> Result<Self> {
        let s = Self { variance };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        if self.variance == DdpmVariance::LearnedRange {
            return Err(Error::Unsupported(
                "DDPM with learned_range variance: the generic Method driver cannot supply a \
                 per-element variance; use diffuse_solvers::sde::run_learned_range with a \
                 VarianceDenoiser"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Method for Ddpm {
    fn name(&self) -> &str {
        "ddpm"
    }
    fn order(&self) -> usize {
        1
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        self.check()?;
        let (m, n) = (ctx.from(), ctx.to());
        let q = (ve(n) / ve(m)).powi(2);
        let one_minus = 1.0 - q;
        let std = if n.sigma == 0.0 {
            0.0
        } else {
            match self.variance {
                DdpmVariance::FixedSmall | DdpmVariance::FixedSmallLog => {
                    n.sigma * one_minus.max(0.0).sqrt()
                }
                // g = α·√(σ̃² − σ̃′²) = σ·√(1 − q).
                DdpmVariance::FixedLarge | DdpmVariance::FixedLargeLog => {
                    m.sigma * one_minus.max(0.0).sqrt()
                }
                DdpmVariance::LearnedRange => 0.0,
            }
        };
        Ok(Combination::new(n.alpha / m.alpha * q, &[n.alpha * one_minus]).with_noise(std))
    }
}

/// The mean coefficients `(c_x, c_out)` of the fused pass (`x′ = c_x·x +
/// c_out·out + …`, the model output `out` mapped to `x̂₀` by the
/// parameterisation's `x̂₀ = a·x + b·out`, composed as the driver composes
/// them) and the two standard deviations `(s_small, s_large)` of the step of
/// `ctx`, from [`Ddpm`]'s own update.
fn learned_range_row(
    ctx: &StepContext<'_>,
    map: diffuse_core::Affine,
) -> Result<((f64, f64), (f64, f64))> {
    let small = Ddpm::new(DdpmVariance::FixedSmall)?.update(ctx, 1)?;
    let large = Ddpm::new(DdpmVariance::FixedLarge)?.update(ctx, 1)?;
    let cs = small.stages.first().copied().unwrap_or(0.0);
    let cx = small.x + cs * map.a;
    Ok(((cx, cs * map.b), (small.noise, large.noise)))
}

/// DDPM ancestral sampling with the learned-range variance of improved DDPM
/// (Nichol & Dhariwal 2021, eq. 15; module documentation): runs `model`
/// from `x` along `grid` (in place), drawing from `base` as the driver's
/// [`crate::PhiloxNoise`] does, for a state holding rows `first_row, …` of
/// the full batch.
///
/// Each step evaluates the model once (its output and `v`), writes
/// `exp(a_r + b_r·v)⊙z` and applies one fused pass
/// `x ← c_x·x + c_out·out + 1·noise` (noise coefficient 0 on rows whose
/// step adds no noise, such as the last step to `σ = 0`); nothing is copied
/// to the host inside the loop. After it, one reduction checks that every
/// sample is finite (a non-finite `v` or model output makes its row
/// non-finite).
///
/// Errors: those of the model and the backend; [`Error::InvalidArgument`]
/// for an inverse grid, a grid whose rows do not match `x` or a shard
/// offset that overflows; [`Error::NonFinite`] when a sample is not finite
/// at the end (a non-finite `v` or model output).
#[allow(clippy::too_many_arguments)]
pub fn run_learned_range<B: Backend>(
    backend: &B,
    model: &dyn VarianceDenoiser<B>,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    x: &mut B::Tensor,
    base: NoiseStream,
    first_row: usize,
) -> Result<SampleReport> {
    if grid.is_inverse() {
        return Err(Error::InvalidArgument {
            name: "grid",
            reason: "DDPM (learned_range) is stochastic; it does not run on an inverse grid".into(),
        });
    }
    let shape = backend.shape(x).to_vec();
    let rows = shape[0];
    let len: usize = shape.iter().product();
    let row_len = len / rows;
    if let SamplingGrid::PerRow(levels) = grid
        && levels.len() != rows
    {
        return Err(Error::InvalidArgument {
            name: "grid",
            reason: format!("a grid of {} rows for a batch of {rows}", levels.len()),
        });
    }
    let offset = crate::driver::element_offset(first_row as u64, row_len)?;
    let coef_rows = if grid.is_shared() { 1 } else { rows };
    let mut out = backend.zeros(&shape)?;
    let mut v = backend.zeros(&shape)?;
    let mut noise = backend.zeros(&shape)?;
    let mut row_mean = backend.zeros(&[rows])?;
    let mut plan = LinComb::per_row(
        &[Operand::Output(0), Operand::Input(0), Operand::Input(1)],
        1,
        rows,
    )?;
    let mut quiet = LinComb::per_row(&[Operand::Output(0), Operand::Input(0)], 1, rows)?;
    let (mut a, mut b) = (vec![0.0; coef_rows], vec![0.0; coef_rows]);
    let mut request: Vec<NoiseLevel> = Vec::with_capacity(rows);
    let parameterization = model.parameterization();
    for i in 0..grid.steps() {
        request.clear();
        request.extend((0..rows).map(|r| grid.row(r)[i]));
        model.predict(backend, x, &request, Condition::Unconditional, &mut out)?;
        model.predict_variance(backend, x, &request, Condition::Unconditional, &mut v)?;
        let mut any_noise = false;
        for r in 0..coef_rows {
            let ctx = StepContext {
                i,
                levels: grid.row(r),
                history: 0,
                schedule,
            };
            let map = parameterization.x0_map(request[r].marginal)?;
            let ((cx, cout), (s_small, s_large)) = learned_range_row(&ctx, map)?;
            let noisy = s_small > 0.0 && s_large > 0.0;
            any_noise |= noisy;
            // ½·log Σ = ½·(ln s_s + ln s_l) + v·½·(ln s_l − ln s_s).
            (a[r], b[r]) = if noisy {
                let (ls, ll) = (s_small.ln(), s_large.ln());
                (0.5 * (ls + ll), 0.5 * (ll - ls))
            } else {
                (0.0, 0.0)
            };
            let rows_of = if grid.is_shared() { 0..rows } else { r..r + 1 };
            for row in rows_of {
                plan.set_row(row, 0, 0, cx)?
                    .set_row(row, 0, 1, cout)?
                    .set_row(row, 0, 2, if noisy { 1.0 } else { 0.0 })?;
                quiet.set_row(row, 0, 0, cx)?.set_row(row, 0, 1, cout)?;
            }
        }
        if any_noise {
            let stream = NoiseStream::new(base.seed, base.stream.wrapping_add(i as u64 + 1));
            backend.fill_noise_log_scaled(stream, offset, &v, &a, &b, &mut noise)?;
            backend.lincomb(&plan, &[&out, &noise], &mut [x])?;
        } else {
            backend.lincomb(&quiet, &[&out], &mut [x])?;
        }
    }
    // One check after the loop, not one per step (a per-step check would
    // copy to the host inside the loop): the per-row mean, accumulated in
    // f64, is finite exactly when every element of the row is.
    backend.reduce_rows(x, RowReduction::Mean, &mut row_mean)?;
    if let Some(r) = backend
        .to_host(&row_mean)?
        .iter()
        .position(|s| !s.is_finite())
    {
        return Err(Error::NonFinite(format!(
            "DDPM learned_range: row {r} of the samples (a non-finite model output or \
             variance output v)"
        )));
    }
    Ok(SampleReport {
        steps: grid.steps(),
        nfe: grid.steps(),
    })
}

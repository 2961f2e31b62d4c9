//! Pseudo linear multistep methods on the noise estimate: PNDM / PLMS
//! (Liu et al. 2022, "Pseudo numerical methods for diffusion models on
//! manifolds", eqs. 9–13; diffusers `PNDMScheduler`) and iPNDM (Zhang &
//! Chen 2023, "Fast sampling of diffusion models with exponential
//! integrator", §5, improved PNDM; k-diffusion-style `sample_ipndm`).
//!
//! Both move the state with the "transfer" of PNDM eq. 9, the DDIM step
//! applied to an effective noise estimate `e`:
//! `φ(x, e; i → j) = (α_j/α_i)·x + α_j·(σ̃_j − σ̃_i)·e`
//! (`σ̃ = σ/α`; diffusers' form `√(ᾱ′/ᾱ)·x − (ᾱ′ − ᾱ)·e/(ᾱ√(1−ᾱ′) + √(ᾱ(1−ᾱ)ᾱ′))`
//! is the same map for `α² + σ² = 1`), with `e` the Adams–Bashforth
//! combination of the stage-0 predictions `ε̂_i, ε̂_{i−1}, …` of the current
//! and previous steps, the fixed (equal-step) coefficients
//! `1`, `(3, −1)/2`, `(23, −16, 5)/12`, `(55, −59, 37, −9)/24` for 1 to 4
//! predictions.
//!
//! They differ in the warm-up before four predictions exist:
//!
//! - PNDM with the pseudo-Heun start (diffusers' `skip_prk_steps = true`,
//!   PLMS): the first step evaluates `ε̂` at `x_i` and at
//!   `x* = φ(x_i, ε̂_i; i → i+1)`, and moves with their average,
//!   `x_{i+1} = φ(x_i, (ε̂_i + ε̂*)/2)` (two evaluations; the history keeps
//!   `ε̂_i`); steps 2 and 3 use 2 and 3 predictions.
//! - PNDM with the Runge–Kutta start (`skip_prk_steps = false`, the
//!   paper's PNDM): the first three steps are pseudo RK4 steps (PNDM
//!   eq. 13), four evaluations each at `x_i`, at the `t`-midpoint twice and
//!   at the end, `e = (e₁ + 2e₂ + 2e₃ + e₄)/6`; then four predictions exist.
//! - iPNDM: no extra evaluations; steps 1, 2, 3 use 1, 2, 3 predictions.
//!   A step to `σ = 0` is the final denoising step `x′ = α′·x̂₀` (first
//!   order).
//!
//! The fixed coefficients assume equal steps in `σ̃`; on other grids the
//! methods remain convergent at a lower order.

use diffuse_core::{Error, Marginal, NoiseLevel, Result};

use super::ve;
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};

/// Adams–Bashforth coefficients for `k` predictions (newest first).
fn adams_bashforth(k: usize) -> &'static [f64] {
    const AB: [&[f64]; 4] = [
        &[1.0],
        &[1.5, -0.5],
        &[23.0 / 12.0, -16.0 / 12.0, 5.0 / 12.0],
        &[55.0 / 24.0, -59.0 / 24.0, 37.0 / 24.0, -9.0 / 24.0],
    ];
    AB[k.clamp(1, 4) - 1]
}

/// `α_j·(σ̃_j − σ̃_i)`: the `ε̂` coefficient of the transfer `i → j`.
fn transfer(from: Marginal, to: Marginal) -> f64 {
    to.alpha * (ve(to) - ve(from))
}

/// The multistep update `φ(x_i, Σ_j b_j·ε̂_{i−j})` with `k` predictions.
fn multistep(ctx: &StepContext<'_>, k: usize) -> Combination {
    let (m, n) = (ctx.from(), ctx.to());
    let c = transfer(m, n);
    let mut b = [0.0; 4];
    let ab = adams_bashforth(k);
    for (out, w) in b.iter_mut().zip(ab) {
        *out = c * w;
    }
    let k = ab.len().min(4);
    Combination::new(n.alpha / m.alpha, &b[..1]).with_history(&b[1..k])
}

/// How PNDM starts before four predictions exist.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PndmStart {
    /// A pseudo-Heun first step (2 evaluations), then 2- and 3-prediction
    /// multistep steps (diffusers' `skip_prk_steps = true`, PLMS).
    #[default]
    PseudoHeun,
    /// Three pseudo Runge–Kutta steps of 4 evaluations (diffusers'
    /// `skip_prk_steps = false`; Liu et al.'s PNDM).
    RungeKutta,
}

/// PNDM / PLMS, fourth-order pseudo linear multistep [pndm].
#[derive(Clone, Copy, Debug, Default)]
pub struct Pndm {
    /// The start.
    pub start: PndmStart,
}

impl Pndm {
    /// PNDM with the given start.
    pub fn new(start: PndmStart) -> Self {
        Self { start }
    }

    /// Whether step `ctx.i` is a Runge–Kutta step (not one ending at
    /// σ = 0, where `ε̂` cannot be evaluated from a data prediction: that
    /// step is a multistep step).
    fn runge_kutta(&self, ctx: &StepContext<'_>) -> bool {
        self.start == PndmStart::RungeKutta && ctx.i < 3 && ctx.to().sigma > 0.0
    }

    /// Whether step `ctx.i` is the pseudo-Heun first step. A single-step
    /// grid (or a first step to σ = 0) takes a plain transfer, as diffusers
    /// does for one inference step.
    fn pseudo_heun(&self, ctx: &StepContext<'_>) -> bool {
        self.start == PndmStart::PseudoHeun && ctx.i == 0 && !ctx.is_last() && ctx.to().sigma > 0.0
    }

    /// The `t`-midpoint of step `ctx.i` on the schedule. The grid's `t`
    /// must be the schedule's time: a midpoint whose `σ̃` does not lie
    /// between the step's end points is an error.
    fn midpoint(ctx: &StepContext<'_>) -> Result<NoiseLevel> {
        let t = 0.5 * (ctx.levels[ctx.i].t + ctx.levels[ctx.i + 1].t);
        let marginal = Marginal::new(ctx.schedule.alpha(t), ctx.schedule.sigma(t))?;
        let (a, b, m) = (ve(ctx.from()), ve(ctx.to()), ve(marginal));
        if !(m < a.max(b) && m > a.min(b)) {
            return Err(Error::InvalidArgument {
                name: "grid",
                reason: format!(
                    "pndm: the schedule's level at the midpoint t = {t} of step {} has σ/α = {m}, \
                     not between {a} and {b} (are the grid's t the schedule's times?)",
                    ctx.i
                ),
            });
        }
        Ok(NoiseLevel { t, marginal })
    }
}

impl Method for Pndm {
    fn name(&self) -> &str {
        "pndm"
    }
    fn order(&self) -> usize {
        4
    }
    /// The most evaluations a step takes: 2 with the pseudo-Heun start
    /// (its first step), 4 with the Runge–Kutta start; every later step
    /// takes 1.
    fn nfe_per_step(&self) -> usize {
        match self.start {
            PndmStart::PseudoHeun => 2,
            PndmStart::RungeKutta => 4,
        }
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn history(&self) -> usize {
        3
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        if self.runge_kutta(ctx) {
            let mid = Self::midpoint(ctx)?;
            stage_levels(&[mid, mid, ctx.levels[ctx.i + 1]])
        } else if self.pseudo_heun(ctx) {
            stage_levels(&ctx.levels[ctx.i + 1..ctx.i + 2])
        } else {
            Ok(StageLevels::new())
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        if self.runge_kutta(ctx) && (1..=3).contains(&s) {
            // φ(x_i, P_{s−1}; i → mid) for s = 1, 2; φ(x_i, P_2; i → i+1).
            let to = if s < 3 {
                Self::midpoint(ctx)?.marginal
            } else {
                n
            };
            let mut stages = [0.0; 3];
            stages[s - 1] = transfer(m, to);
            return Ok(Combination::new(to.alpha / m.alpha, &stages[..s]));
        }
        if s == 1 && self.pseudo_heun(ctx) {
            return Ok(Combination::new(n.alpha / m.alpha, &[transfer(m, n)]));
        }
        Err(Error::Unsupported(format!(
            "pndm: no stage {s} at step {}",
            ctx.i
        )))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let c = transfer(m, n);
        Ok(match stages {
            4 => Combination::new(n.alpha / m.alpha, &[c / 6.0, c / 3.0, c / 3.0, c / 6.0]),
            2 => Combination::new(n.alpha / m.alpha, &[0.5 * c, 0.5 * c]),
            _ => multistep(ctx, ctx.history + 1),
        })
    }
}

/// iPNDM, Adams–Bashforth on `ε̂` with a lower-order warm-up [ipndm].
#[derive(Clone, Copy, Debug)]
pub struct IPndm {
    /// The highest order (number of predictions combined), 1 to 4.
    pub order: usize,
}

impl Default for IPndm {
    fn default() -> Self {
        Self { order: 4 }
    }
}

impl IPndm {
    /// iPNDM of order at most `order` (1 to 4).
    pub fn new(order: usize) -> Result<Self> {
        if !(1..=4).contains(&order) {
            return Err(Error::InvalidArgument {
                name: "order",
                reason: format!("{order}; iPNDM supports orders 1 to 4"),
            });
        }
        Ok(Self { order })
    }
}

impl Method for IPndm {
    fn name(&self) -> &str {
        "ipndm"
    }
    fn order(&self) -> usize {
        self.order
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn history(&self) -> usize {
        self.order - 1
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let k = if ctx.to().sigma == 0.0 {
            1
        } else {
            (ctx.history + 1).min(self.order)
        };
        Ok(multistep(ctx, k))
    }
}

//! The stochastic sampler of EDM (Karras, Aittala, Aila & Laine 2022,
//! Alg. 2; NVlabs `edm_sampler`, k-diffusion `sample_heun` with churn):
//! before step `i`, if `S_tmin ≤ σ̃ ≤ S_tmax`, the noise level is raised by
//! `γ = min(S_churn/N, √2 − 1)` (`N` the number of steps) to
//! `σ̂ = (1 + γ)·σ̃` by fresh noise,
//!
//! `x̂ = x̃ + √(σ̂² − σ̃²)·S_noise·z`,
//!
//! then Heun's step runs from `σ̂` to `σ̃′`:
//! `x̃* = x̂ + (σ̃′ − σ̂)·ε̂(x̂)`, `x̃′ = x̂ + (σ̃′ − σ̂)·(ε̂(x̂) + ε̂(x̃*))/2`
//! (an Euler step when `σ̃′ = 0`). In the `(α, σ)` form `σ̂` is the level
//! `ℓ̂ = −ln σ̂` of the schedule, with its own `α̂`: `x̂ = (α̂/α)·x +
//! α̂·√(σ̂² − σ̃²)·S_noise·z` ([`crate::Churn`]). The driver folds the churn
//! into the previous step's last pass. `S_churn = 0` is [`crate::Heun`].

use diffuse_core::{Marginal, Result};

use super::{non_negative, ve};
use crate::method::{
    Churn, Combination, Method, Prediction, StageLevels, StepContext, stage_levels,
};

/// EDM's stochastic Heun sampler [edm].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edm {
    /// Total churn `S_churn ≥ 0`.
    pub s_churn: f64,
    /// Lowest noise level `σ̃` that churns.
    pub s_tmin: f64,
    /// Highest noise level `σ̃` that churns.
    pub s_tmax: f64,
    /// Scale of the churn noise `S_noise` (slightly above 1 offsets the
    /// detail a denoiser removes).
    pub s_noise: f64,
}

impl Default for Edm {
    /// The paper's ImageNet-64 settings: `S_churn = 40`, `S_tmin = 0.05`,
    /// `S_tmax = 50`, `S_noise = 1.003`.
    fn default() -> Self {
        Self {
            s_churn: 40.0,
            s_tmin: 0.05,
            s_tmax: 50.0,
            s_noise: 1.003,
        }
    }
}

impl Edm {
    /// The sampler with its four options (all at least 0, `S_tmin ≤ S_tmax`;
    /// `S_tmax` may be infinite).
    pub fn new(s_churn: f64, s_tmin: f64, s_tmax: f64, s_noise: f64) -> Result<Self> {
        let s = Self {
            s_churn,
            s_tmin,
            s_tmax,
            s_noise,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("s_churn", self.s_churn)?;
        non_negative("s_tmin", self.s_tmin)?;
        non_negative("s_noise", self.s_noise)?;
        if self.s_tmax.is_nan() || self.s_tmax < self.s_tmin {
            return Err(diffuse_core::Error::InvalidArgument {
                name: "s_tmax",
                reason: format!("{} is below s_tmin = {}", self.s_tmax, self.s_tmin),
            });
        }
        Ok(())
    }

    fn gamma(&self, ctx: &StepContext<'_>) -> f64 {
        let s = ve(ctx.from());
        if self.s_tmin <= s && s <= self.s_tmax {
            (self.s_churn / ctx.steps() as f64).min(std::f64::consts::SQRT_2 - 1.0)
        } else {
            0.0
        }
    }

    /// The marginal the step starts from: `σ̂`'s level, or level `i`.
    fn start(&self, ctx: &StepContext<'_>) -> Result<Marginal> {
        Ok(match self.churn(ctx)? {
            Some(c) => c.level.marginal,
            None => ctx.from(),
        })
    }
}

impl Method for Edm {
    fn name(&self) -> &str {
        "edm"
    }
    fn order(&self) -> usize {
        if self.s_churn == 0.0 { 2 } else { 1 }
    }
    fn nfe_per_step(&self) -> usize {
        2
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn churns(&self) -> bool {
        true
    }
    fn churn(&self, ctx: &StepContext<'_>) -> Result<Option<Churn>> {
        self.check()?;
        let gamma = self.gamma(ctx);
        if gamma <= 0.0 {
            return Ok(None);
        }
        let m = ctx.from();
        let s = ve(m);
        let level = ctx.level_at_half_lambda(-(s * (1.0 + gamma)).ln())?;
        let hat = ve(level.marginal);
        let a = level.marginal.alpha;
        Ok(Some(Churn {
            level,
            x: a / m.alpha,
            noise: a * ((hat - s) * (hat + s)).max(0.0).sqrt() * self.s_noise,
        }))
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        stage_levels(if ctx.to().sigma == 0.0 {
            &[]
        } else {
            &ctx.levels[ctx.i + 1..ctx.i + 2]
        })
    }
    fn stage_input(&self, ctx: &StepContext<'_>, _s: usize) -> Result<Combination> {
        let (m, n) = (self.start(ctx)?, ctx.to());
        Ok(Combination::new(
            n.alpha / m.alpha,
            &[n.alpha * (ve(n) - ve(m))],
        ))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        let (m, n) = (self.start(ctx)?, ctx.to());
        let d = n.alpha * (ve(n) - ve(m));
        Ok(if stages == 1 {
            Combination::new(n.alpha / m.alpha, &[d])
        } else {
            Combination::new(n.alpha / m.alpha, &[0.5 * d, 0.5 * d])
        })
    }
}

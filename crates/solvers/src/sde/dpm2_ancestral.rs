//! DPM-Solver-2 with ancestral noise (k-diffusion `sample_dpm_2_ancestral`;
//! diffusers `KDPM2AncestralDiscreteScheduler`): the midpoint step of
//! [`crate::Dpm2`] towards `σ_down`, then fresh noise `σ_up` (ancestral
//! split in [`super`]):
//!
//! `σ̃_mid = √(σ̃·σ_down)` (the level at `ℓ_mid = (ℓ + ℓ_down)/2`),
//! `x̃_mid = x̃ + (σ̃_mid − σ̃)·ε̂(x̃)`,
//! `x̃′ = x̃ + (σ_down − σ̃)·ε̂(x̃_mid) + s_noise·σ_up·z`.
//!
//! When `σ_down = 0` (a step to `σ = 0`, or `η` large enough that all of
//! `σ̃′` is fresh noise) the step is an Euler step to `σ_down`. k-diffusion
//! then adds no noise even if `σ̃′ > 0`; here the noise `σ_up` is added
//! whenever `σ̃′ > 0`, so the state keeps its noise level. `η = 0` is
//! [`crate::Dpm2`].

use diffuse_core::{NoiseLevel, Result};

use super::{ancestral, non_negative, ve};
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};
use crate::ode::Dpm2;

/// DPM-Solver-2 ancestral (k-diffusion) [dpm2-ancestral].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dpm2Ancestral {
    /// Ancestral strength `η ≥ 0`.
    pub eta: f64,
    /// Scale of the fresh noise.
    pub s_noise: f64,
}

impl Default for Dpm2Ancestral {
    /// k-diffusion's defaults: `η = 1`, `s_noise = 1`.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
        }
    }
}

impl Dpm2Ancestral {
    /// The sampler with strength `eta` and noise scale `s_noise`.
    pub fn new(eta: f64, s_noise: f64) -> Result<Self> {
        let s = Self { eta, s_noise };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("eta", self.eta)?;
        non_negative("s_noise", self.s_noise)
    }

    /// `(σ_down, σ_up)` of step `ctx.i`.
    fn split(&self, ctx: &StepContext<'_>) -> (f64, f64) {
        ancestral(ve(ctx.from()), ve(ctx.to()), self.eta)
    }

    fn midpoint(&self, ctx: &StepContext<'_>, down: f64) -> Result<NoiseLevel> {
        ctx.level_at_half_lambda(0.5 * (ctx.half_lambda(ctx.i) - down.ln()))
    }
}

impl Method for Dpm2Ancestral {
    fn name(&self) -> &str {
        "dpm2-ancestral"
    }
    fn order(&self) -> usize {
        1
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
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        self.check()?;
        if self.eta == 0.0 {
            return Dpm2.stages(ctx);
        }
        let (down, _) = self.split(ctx);
        if down == 0.0 {
            stage_levels(&[])
        } else {
            stage_levels(&[self.midpoint(ctx, down)?])
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        if self.eta == 0.0 {
            return Dpm2.stage_input(ctx, s);
        }
        let m = ctx.from();
        let (down, _) = self.split(ctx);
        let mid = self.midpoint(ctx, down)?.marginal;
        Ok(Combination::new(
            mid.alpha / m.alpha,
            &[mid.alpha * (ve(mid) - ve(m))],
        ))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.eta == 0.0 {
            return Dpm2.update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        let (down, up) = self.split(ctx);
        let d = n.alpha * (down - ve(m));
        let c = if stages == 1 {
            Combination::new(n.alpha / m.alpha, &[d])
        } else {
            Combination::new(n.alpha / m.alpha, &[0.0, d])
        };
        Ok(c.with_noise(n.alpha * self.s_noise * up))
    }
}

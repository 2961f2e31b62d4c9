//! Euler ancestral sampling (Crowson, k-diffusion `sample_euler_ancestral`;
//! diffusers `EulerAncestralDiscreteScheduler`): an Euler step of the
//! probability-flow ODE to `σ_down`, then fresh noise `σ_up`
//! (ancestral split in [`super`]):
//!
//! `x̃′ = x̃ + (σ_down − σ̃)·ε̂ + s_noise·σ_up·z`, i.e.
//! `x′ = (α′/α)·x + α′·(σ_down − σ̃)·ε̂ + α′·s_noise·σ_up·z`.
//!
//! In exact arithmetic this equals DDIM with the same `η` (Song et al.
//! 2021, eq. 12): `x̃ + (σ_down − σ̃)·ε̂ = x̂₀ + σ_down·ε̂`. `η = 0` is
//! [`crate::Euler`].

use diffuse_core::Result;

use super::{ancestral, non_negative, ve};
use crate::method::{Combination, Method, Prediction, StepContext};
use crate::ode::Euler;

/// Euler ancestral [euler-ancestral].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EulerAncestral {
    /// Ancestral strength `η ≥ 0` (1: the DDPM posterior variance).
    pub eta: f64,
    /// Scale of the fresh noise (`s_noise`, 1 by default).
    pub s_noise: f64,
}

impl Default for EulerAncestral {
    /// k-diffusion's defaults: `η = 1`, `s_noise = 1`.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
        }
    }
}

impl EulerAncestral {
    /// The sampler with strength `eta` and noise scale `s_noise` (both
    /// finite and at least 0).
    pub fn new(eta: f64, s_noise: f64) -> Result<Self> {
        let s = Self { eta, s_noise };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("eta", self.eta)?;
        non_negative("s_noise", self.s_noise)
    }
}

impl Method for EulerAncestral {
    fn name(&self) -> &str {
        "euler-ancestral"
    }
    fn order(&self) -> usize {
        1
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.eta == 0.0 {
            return Euler.update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        let (down, up) = ancestral(ve(m), ve(n), self.eta);
        Ok(
            Combination::new(n.alpha / m.alpha, &[n.alpha * (down - ve(m))])
                .with_noise(n.alpha * self.s_noise * up),
        )
    }
}

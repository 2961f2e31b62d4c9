//! DDIM with `η > 0` (Song, Meng & Ermon 2021, eq. 12 and 16; diffusers
//! `DDIMScheduler.step` with `eta`):
//!
//! `x′ = α′·x̂₀ + √(σ′² − s²)·ε̂ + s·z`, `s = η·√β̃`, with
//! `β̃ = σ′²·(1 − σ̃′²/σ̃²)` the DDPM posterior variance in the
//! `(α, σ)` form (`(1 − ᾱ′)/(1 − ᾱ)·(1 − ᾱ/ᾱ′)` on a VP schedule). With
//! `ε̂ = (x − α·x̂₀)/σ` and `c = √(σ′² − s²)`:
//! `x′ = (c/σ)·x + (α′ − c·α/σ)·x̂₀ + s·z`.
//!
//! `η = 1` is DDPM ancestral sampling with `β̃` ([`super::Ddpm`]); `η = 0`
//! is [`crate::Ddim`]. An `η` above 1 is allowed while `s ≤ σ′`; a step
//! where it is not is an error (diffusers would take the square root of a
//! negative number).

use diffuse_core::{Error, Result};

use super::{non_negative, ve};
use crate::method::{Combination, Method, Prediction, StepContext};
use crate::ode::Ddim;

/// DDIM with stochasticity `η` [ddim-eta].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimEta {
    /// `η ≥ 0`.
    pub eta: f64,
}

impl Default for DdimEta {
    /// `η = 1` (the DDPM posterior variance).
    fn default() -> Self {
        Self { eta: 1.0 }
    }
}

impl DdimEta {
    /// DDIM with `eta` (finite, at least 0).
    pub fn new(eta: f64) -> Result<Self> {
        non_negative("eta", eta)?;
        Ok(Self { eta })
    }
}

impl Method for DdimEta {
    fn name(&self) -> &str {
        "ddim-eta"
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
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        non_negative("eta", self.eta)?;
        if self.eta == 0.0 {
            return Ddim.update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        let q = ve(n) / ve(m);
        let one_minus = (1.0 - q) * (1.0 + q);
        let s = self.eta * n.sigma * one_minus.max(0.0).sqrt();
        let c2 = 1.0 - self.eta * self.eta * one_minus;
        if c2 < 0.0 {
            return Err(Error::InvalidArgument {
                name: "eta",
                reason: format!(
                    "η = {} asks for more noise than σ′ at step {} (η²·(1 − σ̃′²/σ̃²) = {} > 1)",
                    self.eta,
                    ctx.i,
                    1.0 - c2
                ),
            });
        }
        let r = n.sigma * c2.sqrt() / m.sigma;
        Ok(Combination::new(r, &[n.alpha - r * m.alpha]).with_noise(s))
    }
}

//! DDIM with η = 0 (Song, Meng & Ermon 2021, eq. 12):
//! `x′ = α′·x̂₀ + σ′·ε̂` with `ε̂ = (x − α·x̂₀)/σ`, i.e.
//! `x′ = (σ′/σ)·x + (α′ − σ′·α/σ)·x̂₀` — in exact arithmetic the same step
//! as [`super::Euler`], written on the data estimate.

use diffuse_core::Result;

use crate::method::{Combination, Method, Prediction, StepContext};

/// DDIM, deterministic [ddim].
#[derive(Clone, Copy, Debug, Default)]
pub struct Ddim;

impl Method for Ddim {
    fn name(&self) -> &str {
        "ddim"
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
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let r = n.sigma / m.sigma;
        Ok(Combination::new(r, &[n.alpha - r * m.alpha]))
    }
}

//! Euler's method on the probability-flow ODE in the variance-exploding
//! form `dx̃/dσ̃ = ε̂` (Karras et al. 2022, Alg. 2 without churn; k-diffusion
//! `sample_euler`, diffusers `EulerDiscreteScheduler`):
//! `x̃′ = x̃ + (σ̃′ − σ̃)·ε̂`, i.e. `x′ = (α′/α)·x + α′·(σ̃′ − σ̃)·ε̂`.

use diffuse_core::Result;

use super::ve;
use crate::method::{Combination, Method, Prediction, StepContext};

/// Euler [euler].
#[derive(Clone, Copy, Debug, Default)]
pub struct Euler;

impl Method for Euler {
    fn name(&self) -> &str {
        "euler"
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
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        Ok(Combination::new(
            n.alpha / m.alpha,
            &[n.alpha * (ve(n) - ve(m))],
        ))
    }
}

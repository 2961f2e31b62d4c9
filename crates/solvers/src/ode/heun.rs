//! Heun's second-order method (Karras et al. 2022, Alg. 1 without churn;
//! k-diffusion `sample_heun`, diffusers `HeunDiscreteScheduler`): an Euler
//! predictor `x̃* = x̃ + Δ·ε̂(x̃)` with `Δ = σ̃′ − σ̃`, then the trapezoidal
//! corrector `x̃′ = x̃ + Δ·(ε̂(x̃) + ε̂(x̃*))/2`. A step that ends at σ = 0
//! is a plain Euler step (ε̂ is undefined there), as in the paper.

use diffuse_core::Result;

use super::ve;
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};

/// Heun [heun].
#[derive(Clone, Copy, Debug, Default)]
pub struct Heun;

impl Method for Heun {
    fn name(&self) -> &str {
        "heun"
    }
    fn order(&self) -> usize {
        2
    }
    fn nfe_per_step(&self) -> usize {
        2
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        stage_levels(if ctx.to().sigma == 0.0 {
            &[]
        } else {
            &ctx.levels[ctx.i + 1..ctx.i + 2]
        })
    }
    fn stage_input(&self, ctx: &StepContext<'_>, _s: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        Ok(Combination::new(
            n.alpha / m.alpha,
            &[n.alpha * (ve(n) - ve(m))],
        ))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let d = n.alpha * (ve(n) - ve(m));
        Ok(if stages == 1 {
            Combination::new(n.alpha / m.alpha, &[d])
        } else {
            Combination::new(n.alpha / m.alpha, &[0.5 * d, 0.5 * d])
        })
    }
}

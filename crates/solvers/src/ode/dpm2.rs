//! DPM-Solver-2 as k-diffusion's `sample_dpm_2` (and diffusers'
//! `KDPM2DiscreteScheduler`): evaluate at the geometric-mean noise level
//! `σ̃_mid = √(σ̃·σ̃′)` (the midpoint in log-SNR) after an Euler half step,
//! then take the full step with the midpoint slope:
//! `x̃_mid = x̃ + (σ̃_mid − σ̃)·ε̂(x̃)`, `x̃′ = x̃ + (σ̃′ − σ̃)·ε̂(x̃_mid)`
//! (Karras et al. 2022, Alg. 1 with the midpoint rule; Lu et al. 2022).
//! A step that ends at σ = 0 is an Euler step.

use diffuse_core::{NoiseLevel, Result};

use super::ve;
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};

/// DPM-Solver-2 (k-diffusion) [dpm2].
#[derive(Clone, Copy, Debug, Default)]
pub struct Dpm2;

fn midpoint(ctx: &StepContext<'_>) -> Result<NoiseLevel> {
    ctx.level_at_half_lambda(0.5 * (ctx.half_lambda(ctx.i) + ctx.half_lambda(ctx.i + 1)))
}

impl Method for Dpm2 {
    fn name(&self) -> &str {
        "dpm2"
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
        if ctx.to().sigma == 0.0 {
            stage_levels(&[])
        } else {
            stage_levels(&[midpoint(ctx)?])
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, _s: usize) -> Result<Combination> {
        let m = ctx.from();
        let mid = midpoint(ctx)?.marginal;
        Ok(Combination::new(
            mid.alpha / m.alpha,
            &[mid.alpha * (ve(mid) - ve(m))],
        ))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let d = n.alpha * (ve(n) - ve(m));
        Ok(if stages == 1 {
            Combination::new(n.alpha / m.alpha, &[d])
        } else {
            Combination::new(n.alpha / m.alpha, &[0.0, d])
        })
    }
}

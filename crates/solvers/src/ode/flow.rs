//! Euler and Heun on the flow-matching ODE (Lipman et al. 2023; Liu et
//! al. 2023; Esser et al. 2024, SD3), as diffusers'
//! `FlowMatchEulerDiscreteScheduler` and `FlowMatchHeunDiscreteScheduler`
//! step them.
//!
//! On a flow schedule (`α = 1 − τ`, `σ = τ`) the state is
//! `x = (1 − τ)·x₀ + τ·ε` and the probability-flow ODE is `dx/dτ = v` with
//! the velocity `v = ε − x₀`, estimated from the data estimate as
//! `v̂ = (x − x̂₀)/τ`. On any other schedule the same holds for the
//! rescaled state `y = x/(α + σ)` and the flow time `τ = σ/(α + σ)`
//! (`y = (1 − τ)·x₀ + τ·ε`), so both methods run on every schedule and
//! reduce to the usual form on flow schedules. With `Δ = τ′ − τ`:
//!
//! - Euler: `y′ = y + Δ·v̂(y, τ)`. Substituting `v̂` gives
//!   `y′ = (1 − τ′)·x̂₀ + τ′·ε̂`, the DDIM step: [`FlowEuler`] is DDIM under
//!   the flow name, exactly, and it starts from pure noise (`α = 0`).
//! - Heun (trapezoidal rule with an Euler predictor, diffusers'
//!   `FlowMatchHeunDiscreteScheduler`): `y_e = y + Δ·v̂(y, τ)`, then
//!   `y′ = y + Δ/2·(v̂(y, τ) + v̂(y_e, τ′))`, i.e. in terms of the
//!   predictions `P₀ = x̂₀(y, τ)` and `P₁ = x̂₀(y_e, τ′)`:
//!   `y′ = (1 + Δ/2τ + Δ/2τ′·(1 + Δ/τ))·y − (Δ/2τ + Δ²/(2ττ′))·P₀
//!   − Δ/(2τ′)·P₁`. A step to `τ′ = 0` (the clean end) is an Euler step,
//!   as in diffusers and k-diffusion.

use diffuse_core::{Error, Marginal, Result};

use super::Ddim;
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};

/// Euler on the flow ODE [flow-euler]: DDIM, exactly (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowEuler;

impl Method for FlowEuler {
    fn name(&self) -> &str {
        "flow-euler"
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
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        Ddim.update(ctx, stages)
    }
}

/// Heun on the flow ODE [flow-heun] (module docs).
#[derive(Clone, Copy, Debug, Default)]
pub struct FlowHeun;

/// `(s, τ)`: the scale `α + σ` and the flow time `σ/(α + σ)` of a level.
fn flow_time(m: Marginal) -> Result<(f64, f64)> {
    let s = m.alpha + m.sigma;
    if !(s > 0.0 && s.is_finite()) {
        return Err(Error::InvalidArgument {
            name: "grid",
            reason: format!("flow-heun: α + σ = {s} at a level"),
        });
    }
    Ok((s, m.sigma / s))
}

impl Method for FlowHeun {
    fn name(&self) -> &str {
        "flow-heun"
    }
    fn order(&self) -> usize {
        2
    }
    fn nfe_per_step(&self) -> usize {
        2
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        if ctx.to().sigma == 0.0 {
            stage_levels(&[])
        } else {
            stage_levels(&ctx.levels[ctx.i + 1..ctx.i + 2])
        }
    }
    /// The Euler predictor `x_e = s′·y_e`.
    fn stage_input(&self, ctx: &StepContext<'_>, _s: usize) -> Result<Combination> {
        let ((s, tau), (s1, tau1)) = (flow_time(ctx.from())?, flow_time(ctx.to())?);
        let d = tau1 - tau;
        Ok(Combination::new(s1 / s * (1.0 + d / tau), &[-s1 * d / tau]))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        if stages == 1 {
            return Ddim.update(ctx, stages);
        }
        let ((s, tau), (s1, tau1)) = (flow_time(ctx.from())?, flow_time(ctx.to())?);
        let d = tau1 - tau;
        let cy = 1.0 + d / (2.0 * tau) + d / (2.0 * tau1) * (1.0 + d / tau);
        let c0 = -d / (2.0 * tau) - d * d / (2.0 * tau * tau1);
        let c1 = -d / (2.0 * tau1);
        Ok(Combination::new(s1 / s * cy, &[s1 * c0, s1 * c1]))
    }
}

//! DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2; k-diffusion
//! `sample_dpmpp_2m`, diffusers `DPMSolverMultistepScheduler` with
//! `dpmsolver++`, order 2, `midpoint`): with `h = ℓ′ − ℓ`,
//! `x′ = (σ′/σ)·x − α′·(e^{−h} − 1)·D`, where `D = x̂₀` at the first step
//! and `D = (1 + 1/(2r))·x̂₀ − 1/(2r)·x̂₀_prev`, `r = h_prev/h`, after it.
//! The step to σ = 0 (and, with `lower_order_final`, the last step of a
//! grid of fewer than 15 steps) is first order, as in diffusers.

use diffuse_core::Result;

use crate::method::{Combination, Method, Prediction, StepContext};

/// DPM-Solver++(2M) [dpmpp-2m].
#[derive(Clone, Copy, Debug)]
pub struct DpmPp2M {
    /// First order at the last step of a grid of fewer than 15 steps.
    pub lower_order_final: bool,
}

impl Default for DpmPp2M {
    fn default() -> Self {
        Self {
            lower_order_final: true,
        }
    }
}

impl Method for DpmPp2M {
    fn name(&self) -> &str {
        "dpmpp-2m"
    }
    fn order(&self) -> usize {
        2
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn history(&self) -> usize {
        1
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        let (m, n) = (ctx.from(), ctx.to());
        let h = ctx.half_lambda(ctx.i + 1) - ctx.half_lambda(ctx.i);
        // −α′·(e^{−h} − 1), which is α′ when σ′ = 0 (h = ∞).
        let c = -n.alpha * (-h).exp_m1();
        let x = n.sigma / m.sigma;
        let first_order = ctx.history == 0
            || n.sigma == 0.0
            || (self.lower_order_final && ctx.is_last() && ctx.steps() < 15);
        if first_order {
            return Ok(Combination::new(x, &[c]));
        }
        let h_prev = ctx.half_lambda(ctx.i) - ctx.half_lambda(ctx.i - 1);
        let r = h_prev / h;
        let k = 1.0 / (2.0 * r);
        Ok(Combination::new(x, &[c * (1.0 + k)]).with_history(&[-c * k]))
    }
}

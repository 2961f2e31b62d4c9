//! SDE-DPM-Solver++(2M) (Lu et al. 2022b, arXiv 2211.01095, §5 and
//! App. B; k-diffusion `sample_dpmpp_2m_sde` with its `η` generalisation;
//! diffusers `DPMSolverMultistepScheduler` with `algorithm_type =
//! "sde-dpmsolver++"` at `η = 1`). With `h = ℓ′ − ℓ`, `H = (1 + η)·h`,
//! `r = h₋₁/h` and `m₀, m₁` the data predictions at levels `i, i−1`:
//!
//! `x′ = (σ′/σ)·e^{−ηh}·x + α′·(1 − e^{−H})·m₀ + B·(m₀ − m₁)/r + σ′·√(1 − e^{−2ηh})·s_noise·z`
//!
//! with `B = α′·(1 − e^{−H})/2` (midpoint) or `B = α′·(1 − (1 − e^{−H})/H)`
//! (Heun; `= −α′·q₁(−H)`, the exact integral of the linear interpolant).
//! The first step (no `m₁`) is first order; a step to `σ = 0` lands on
//! `α′·m₀`. `η = 0` is [`crate::DpmSolverMultistep`] of order 2, data
//! prediction, without `lower_order_final` (k-diffusion's
//! `sample_dpmpp_2m`).

use diffuse_core::Result;

use super::{non_negative, q1};
use crate::method::{Combination, Method, Prediction, StepContext};
use crate::ode::{DpmAlgorithm, DpmSolverMultistep, SecondOrder, ThirdOrder};

/// SDE-DPM-Solver++(2M) [dpmpp-2m-sde].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPp2MSde {
    /// `η ≥ 0` (1: the paper's SDE solver).
    pub eta: f64,
    /// Scale of the fresh noise.
    pub s_noise: f64,
    /// The second-order form (k-diffusion's `solver_type`).
    pub solver_type: SecondOrder,
}

impl Default for DpmPp2MSde {
    /// k-diffusion's defaults: `η = 1`, `s_noise = 1`, midpoint.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            solver_type: SecondOrder::Midpoint,
        }
    }
}

impl DpmPp2MSde {
    /// The sampler with `eta`, `s_noise` and `solver_type`.
    pub fn new(eta: f64, s_noise: f64, solver_type: SecondOrder) -> Result<Self> {
        let s = Self {
            eta,
            s_noise,
            solver_type,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("eta", self.eta)?;
        non_negative("s_noise", self.s_noise)
    }
}

/// The multistep solver the SDE form reduces to at `η = 0`.
pub(crate) fn ode(order: usize, solver_type: SecondOrder, third: ThirdOrder) -> DpmSolverMultistep {
    DpmSolverMultistep {
        order,
        algorithm: DpmAlgorithm::DataPrediction,
        solver_type,
        lower_order_final: false,
        euler_at_final: false,
        third_order: third,
    }
}

impl Method for DpmPp2MSde {
    fn name(&self) -> &str {
        "dpmpp-2m-sde"
    }
    fn order(&self) -> usize {
        if self.eta == 0.0 { 2 } else { 1 }
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
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.eta == 0.0 {
            return ode(2, self.solver_type, ThirdOrder::Exact).update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        if n.sigma == 0.0 {
            return Ok(Combination::new(0.0, &[n.alpha]));
        }
        let h = ctx.half_lambda(ctx.i + 1) - ctx.half_lambda(ctx.i);
        let eh = self.eta * h;
        let big_h = h + eh;
        let cx = n.sigma / m.sigma * (-eh).exp();
        let a = -n.alpha * (-big_h).exp_m1();
        let noise = n.sigma * (-(-2.0 * eh).exp_m1()).sqrt() * self.s_noise;
        if ctx.history == 0 || ctx.i == 0 {
            return Ok(Combination::new(cx, &[a]).with_noise(noise));
        }
        let r = (ctx.half_lambda(ctx.i) - ctx.half_lambda(ctx.i - 1)) / h;
        let b = match self.solver_type {
            SecondOrder::Midpoint => 0.5 * a,
            SecondOrder::Heun => -n.alpha * q1(-big_h),
        };
        Ok(Combination::new(cx, &[a + b / r])
            .with_history(&[-b / r])
            .with_noise(noise))
    }
}

//! DPM-Solver++(2S) with ancestral noise (Lu et al. 2022b, arXiv
//! 2211.01095, Alg. 1 with `r = 1/2`; k-diffusion
//! `sample_dpmpp_2s_ancestral`): the singlestep data-prediction step of
//! [`crate::DpmPp2S`] towards `σ_down`, then fresh noise `σ_up`
//! (ancestral split in [`super`]). With `ℓ_d = −ln σ_down`,
//! `h = ℓ_d − ℓ` and the stage at `ℓ_s = ℓ + h/2`:
//!
//! `u = (σ_s/σ)·x − α_s·(e^{−h/2} − 1)·x̂₀(x)`,
//! `x′ = α′·[(σ_down/σ)·x − (e^{−h} − 1)·x̂₀(u) + s_noise·σ_up·z]`.
//!
//! When `σ_down = 0` the step lands on `α′·x̂₀(x)` plus the noise.
//! `η = 0` is [`crate::DpmPp2S`].

use diffuse_core::{NoiseLevel, Result};

use super::{ancestral, non_negative, ve};
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};
use crate::ode::DpmPp2S;

/// DPM-Solver++(2S) ancestral [dpmpp-2s-ancestral].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPp2SAncestral {
    /// Ancestral strength `η ≥ 0`.
    pub eta: f64,
    /// Scale of the fresh noise.
    pub s_noise: f64,
}

impl Default for DpmPp2SAncestral {
    /// k-diffusion's defaults: `η = 1`, `s_noise = 1`.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
        }
    }
}

impl DpmPp2SAncestral {
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

    /// `(σ_down, σ_up, h)` of step `ctx.i`.
    fn split(&self, ctx: &StepContext<'_>) -> (f64, f64, f64) {
        let (down, up) = ancestral(ve(ctx.from()), ve(ctx.to()), self.eta);
        (down, up, -down.ln() - ctx.half_lambda(ctx.i))
    }

    fn stage(&self, ctx: &StepContext<'_>, h: f64) -> Result<NoiseLevel> {
        ctx.level_at_half_lambda(ctx.half_lambda(ctx.i) + 0.5 * h)
    }
}

impl Method for DpmPp2SAncestral {
    fn name(&self) -> &str {
        "dpmpp-2s-ancestral"
    }
    fn order(&self) -> usize {
        1
    }
    fn nfe_per_step(&self) -> usize {
        2
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        self.check()?;
        if self.eta == 0.0 {
            return DpmPp2S.stages(ctx);
        }
        let (down, _, h) = self.split(ctx);
        if down == 0.0 {
            stage_levels(&[])
        } else {
            stage_levels(&[self.stage(ctx, h)?])
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        if self.eta == 0.0 {
            return DpmPp2S.stage_input(ctx, s);
        }
        let m = ctx.from();
        let (_, _, h) = self.split(ctx);
        let st = self.stage(ctx, h)?.marginal;
        Ok(Combination::new(
            st.sigma / m.sigma,
            &[-st.alpha * (-0.5 * h).exp_m1()],
        ))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.eta == 0.0 {
            return DpmPp2S.update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        let (down, up, h) = self.split(ctx);
        let noise = n.alpha * self.s_noise * up;
        Ok(if stages == 1 {
            Combination::new(0.0, &[n.alpha]).with_noise(noise)
        } else {
            Combination::new(n.alpha * down / m.sigma, &[0.0, -n.alpha * (-h).exp_m1()])
                .with_noise(noise)
        })
    }
}

//! DPM-Solver++ SDE, the stochastic singlestep sampler of k-diffusion
//! (`sample_dpmpp_sde`, after Lu et al. 2022b): two ancestral
//! DPM-Solver++ half steps per step. With `h = ℓ′ − ℓ`, the stage at
//! `ℓ_s = ℓ + r·h` and `fac = 1/(2r)`:
//!
//! 1. `(d₁, u₁)` = ancestral split from `σ̃` to `σ̃_s`;
//!    `x̃_s = (d₁/σ̃)·x̃ − (d₁/σ̃ − 1)·x̂₀(x) + s_noise·u₁·z₁`;
//! 2. `(d₂, u₂)` = ancestral split from `σ̃` to `σ̃′`;
//!    `x̃′ = (d₂/σ̃)·x̃ − (d₂/σ̃ − 1)·((1 − fac)·x̂₀(x) + fac·x̂₀(x_s)) + s_noise·u₂·z₂`,
//!
//! each written for the state `x = α·x̃` at its level (`d/σ̃ − 1` as
//! `expm1(ln d − ln σ̃)`). A step to `σ = 0` is `x′ = α′·x̂₀(x)`.
//!
//! **Noise.** As in k-diffusion, `z₁` and `z₂` are standardised
//! increments of one Brownian path `W` over `σ̃` (the Brownian tree,
//! [`crate::BrownianNoise`]): `z₁ = (W(σ̃_s) − W(σ̃))/√(σ̃ − σ̃_s)` and
//! `z₂ = (W(σ̃′) − W(σ̃))/√(σ̃ − σ̃′)`, so `z₂` contains `z₁` (their
//! correlation is `√((σ̃ − σ̃_s)/(σ̃ − σ̃′))`), and with a fixed seed the
//! samples converge as the step count grows rather than changing with it.
//! This is the method's [`Method::default_noise`], which a
//! [`crate::Sampler`] uses on a shared grid; any other
//! [`crate::NoiseSource`] can drive it instead (with independent draws
//! of [`crate::PhiloxNoise`] it is an equally consistent discretisation of
//! the same reverse SDE, with other individual samples; callers of
//! [`crate::run_with_noise`] choose the source themselves).
//!
//! With `η = 0` and `r = 1/2` the sampler is [`crate::DpmPp2S`].

use diffuse_core::{Error, NoiseLevel, Result};

use super::{ancestral, non_negative, ve};
use crate::driver::NoiseKind;
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext, stage_levels};
use crate::ode::DpmPp2S;

/// DPM-Solver++ SDE (k-diffusion's singlestep) [dpmpp-sde].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPpSde {
    /// Ancestral strength `η ≥ 0`.
    pub eta: f64,
    /// Scale of the fresh noise.
    pub s_noise: f64,
    /// Relative position of the stage in the step, `0 < r ≤ 1`.
    pub r: f64,
}

impl Default for DpmPpSde {
    /// k-diffusion's defaults: `η = 1`, `s_noise = 1`, `r = 1/2`.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            r: 0.5,
        }
    }
}

impl DpmPpSde {
    /// The sampler with strength `eta`, noise scale `s_noise` and stage
    /// position `r`.
    pub fn new(eta: f64, s_noise: f64, r: f64) -> Result<Self> {
        let s = Self { eta, s_noise, r };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("eta", self.eta)?;
        non_negative("s_noise", self.s_noise)?;
        if !(self.r > 0.0 && self.r <= 1.0) {
            return Err(Error::InvalidArgument {
                name: "r",
                reason: format!("{}; the stage position must be in (0, 1]", self.r),
            });
        }
        Ok(())
    }

    fn is_2s(&self) -> bool {
        self.eta == 0.0 && self.r == 0.5
    }

    fn stage(&self, ctx: &StepContext<'_>) -> Result<NoiseLevel> {
        let h = ctx.half_lambda(ctx.i + 1) - ctx.half_lambda(ctx.i);
        ctx.level_at_half_lambda(ctx.half_lambda(ctx.i) + self.r * h)
    }
}

/// `(d/σ̃, −expm1(ln d − ln σ̃))` for the ancestral target `d`.
fn ratios(d: f64, s: f64) -> (f64, f64) {
    (d / s, -(d.ln() - s.ln()).exp_m1())
}

impl Method for DpmPpSde {
    fn name(&self) -> &str {
        "dpmpp-sde"
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
    /// The Brownian tree, as k-diffusion's `sample_dpmpp_sde`.
    fn default_noise(&self) -> NoiseKind {
        NoiseKind::BrownianTree
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        self.check()?;
        if self.is_2s() {
            return DpmPp2S.stages(ctx);
        }
        if ctx.to().sigma == 0.0 {
            stage_levels(&[])
        } else {
            stage_levels(&[self.stage(ctx)?])
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        if self.is_2s() {
            return DpmPp2S.stage_input(ctx, s);
        }
        let m = ctx.from();
        let st = self.stage(ctx)?.marginal;
        let (down, up) = ancestral(ve(m), ve(st), self.eta);
        let (cx, cd) = ratios(down, ve(m));
        Ok(Combination::new(st.alpha / m.alpha * cx, &[st.alpha * cd])
            .with_noise(st.alpha * self.s_noise * up))
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.is_2s() {
            return DpmPp2S.update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        if stages == 1 {
            return Ok(Combination::new(0.0, &[n.alpha]));
        }
        let (down, up) = ancestral(ve(m), ve(n), self.eta);
        let (cx, cd) = ratios(down, ve(m));
        let fac = 0.5 / self.r;
        Ok(Combination::new(
            n.alpha / m.alpha * cx,
            &[n.alpha * cd * (1.0 - fac), n.alpha * cd * fac],
        )
        .with_noise(n.alpha * self.s_noise * up))
    }
}

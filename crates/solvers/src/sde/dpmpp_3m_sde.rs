//! SDE-DPM-Solver++(3M) (k-diffusion `sample_dpmpp_3m_sde`, after Lu et
//! al. 2022b): the third-order multistep data-prediction update with the
//! SDE weights. With `h = ℓ′ − ℓ`, `H = (1 + η)·h`, `r₀ = h₋₁/h`,
//! `r₁ = h₋₂/h`, data predictions `m₀, m₁, m₂` at levels `i, i−1, i−2`,
//! `D₁₀ = (m₀ − m₁)/r₀`, `D₁₁ = (m₁ − m₂)/r₁`,
//! `d₁ = D₁₀ + r₀/(r₀ + r₁)·(D₁₀ − D₁₁)`, `d₂ = (D₁₀ − D₁₁)/(r₀ + r₁)`,
//! `φ₂ = 1 − (1 − e^{−H})/H` and `φ₃ = φ₂/H − 1/2`:
//!
//! `x′ = (σ′/σ)·e^{−ηh}·x + α′·[(1 − e^{−H})·m₀ + φ₂·d₁ − c·φ₃·d₂] + σ′·√(1 − e^{−2ηh})·s_noise·z`.
//!
//! `c = 2` ([`ThirdOrder::Exact`], the default: `φ₂` and `2φ₃` are the
//! exact weights of the linear and quadratic interpolants, with `H` in
//! place of `h`) or `c = 1` ([`ThirdOrder::AsLibraries`], k-diffusion's
//! numbers; see [`crate::DpmSolverMultistep`]). The first step is first
//! order, the second second order (`φ₂·(m₀ − m₁)/r₀`); a step to `σ = 0`
//! lands on `α′·m₀`. `η = 0` is [`crate::DpmSolverMultistep`] of order 3,
//! data prediction, Heun form, without `lower_order_final`.

use diffuse_core::Result;

use super::dpmpp_2m_sde::ode;
use super::{non_negative, q1, q2};
use crate::method::{Combination, Method, Prediction, StepContext};
use crate::ode::{SecondOrder, ThirdOrder};

/// SDE-DPM-Solver++(3M) [dpmpp-3m-sde].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DpmPp3MSde {
    /// `η ≥ 0`.
    pub eta: f64,
    /// Scale of the fresh noise.
    pub s_noise: f64,
    /// The coefficient of the second difference.
    pub third_order: ThirdOrder,
}

impl Default for DpmPp3MSde {
    /// k-diffusion's `η = 1`, `s_noise = 1`, with the exact third-order
    /// coefficient.
    fn default() -> Self {
        Self {
            eta: 1.0,
            s_noise: 1.0,
            third_order: ThirdOrder::Exact,
        }
    }
}

impl DpmPp3MSde {
    /// The sampler with `eta`, `s_noise` and the third-order coefficient.
    pub fn new(eta: f64, s_noise: f64, third_order: ThirdOrder) -> Result<Self> {
        let s = Self {
            eta,
            s_noise,
            third_order,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        non_negative("eta", self.eta)?;
        non_negative("s_noise", self.s_noise)
    }
}

impl Method for DpmPp3MSde {
    fn name(&self) -> &str {
        "dpmpp-3m-sde"
    }
    fn order(&self) -> usize {
        if self.eta == 0.0 {
            ode(3, SecondOrder::Heun, self.third_order).order()
        } else {
            1
        }
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn history(&self) -> usize {
        2
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        self.check()?;
        if self.eta == 0.0 {
            return ode(3, SecondOrder::Heun, self.third_order).update(ctx, stages);
        }
        let (m, n) = (ctx.from(), ctx.to());
        if n.sigma == 0.0 {
            return Ok(Combination::new(0.0, &[n.alpha]));
        }
        let l = |j: usize| ctx.half_lambda(j);
        let h = l(ctx.i + 1) - l(ctx.i);
        let eh = self.eta * h;
        let big_h = h + eh;
        let cx = n.sigma / m.sigma * (-eh).exp();
        let a = -n.alpha * (-big_h).exp_m1();
        let noise = n.sigma * (-(-2.0 * eh).exp_m1()).sqrt() * self.s_noise;
        let k = 3.min(ctx.history.min(ctx.i) + 1);
        // α′·φ₂ = −α′·q₁(−H), α′·φ₃ = α′·q₂(−H).
        let (b, c3) = (-n.alpha * q1(-big_h), n.alpha * q2(-big_h));
        let c = match k {
            1 => Combination::new(cx, &[a]),
            2 => {
                let r0 = (l(ctx.i) - l(ctx.i - 1)) / h;
                Combination::new(cx, &[a + b / r0]).with_history(&[-b / r0])
            }
            _ => {
                let r0 = (l(ctx.i) - l(ctx.i - 1)) / h;
                let r1 = (l(ctx.i - 1) - l(ctx.i - 2)) / h;
                let scale = match self.third_order {
                    ThirdOrder::Exact => 2.0,
                    ThirdOrder::AsLibraries => 1.0,
                };
                // Coefficients of (m₀, m₁, m₂) in D₁₀, D₁₁, d₁, d₂.
                let d10 = [1.0 / r0, -1.0 / r0, 0.0];
                let d11 = [0.0, 1.0 / r1, -1.0 / r1];
                let w = r0 / (r0 + r1);
                let coef = [0, 1, 2].map(|j| {
                    let diff = d10[j] - d11[j];
                    b * (d10[j] + w * diff) - scale * c3 * diff / (r0 + r1)
                });
                Combination::new(cx, &[a + coef[0]]).with_history(&coef[1..])
            }
        };
        Ok(c.with_noise(noise))
    }
}

//! Euler–Maruyama on the reverse SDE (Song et al. 2021, "Score-based
//! generative modeling through SDEs", eq. 6 and App. D; score_sde's
//! `EulerMaruyamaPredictor`), written through the marginals so that it
//! runs on any schedule (VP, VE, sub-VP, discrete, flow).
//!
//! The forward SDE with marginals `x = α·x₀ + σ·ε` has drift
//! `f = d ln α/dt` and diffusion `g² = dσ²/dt − 2f·σ² = −2σ²·dℓ/dt`
//! (`ℓ = ln(α/σ)`, Kingma et al. 2021, App. A). The reverse SDE
//! `dx = [f·x − g²·∇ log p] dt + g dw̄` with the score `∇ log p = −ε̂/σ`,
//! discretised with its coefficients frozen at the start of the step and
//! the increments `∫f dt ≈ ln(α′/α)`, `∫g² dt ≈ 2σ²·h` (`h = ℓ′ − ℓ`), is
//!
//! `x′ = (1 + ln(α′/α))·x − 2σ·h·ε̂ + σ·√(2h)·z`.
//!
//! On VP this is score_sde's update (`−f·Δt = ½β·Δt`, `g²·Δt = β·Δt`); on
//! VE (`α = 1`) the drift vanishes and `2σ²·h ≈ σ² − σ′²`. The step to a
//! clean level (`σ′ = 0`, `h = ∞`) is the denoising step
//! `x′ = α′·x̂₀ = (α′/α)·x − (α′σ/α)·ε̂` (score_sde's `denoise`).

use diffuse_core::Result;

use crate::method::{Combination, Method, Prediction, StepContext};

/// Euler–Maruyama on the reverse SDE [euler-maruyama].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EulerMaruyama;

/// The Euler–Maruyama update of step `ctx.i` (shared with the
/// predictor–corrector sampler).
pub(crate) fn em_update(ctx: &StepContext<'_>) -> Combination {
    let (m, n) = (ctx.from(), ctx.to());
    if n.sigma == 0.0 {
        return Combination::new(n.alpha / m.alpha, &[-n.alpha * m.sigma / m.alpha]);
    }
    let h = ctx.half_lambda(ctx.i + 1) - ctx.half_lambda(ctx.i);
    Combination::new(1.0 + (n.alpha / m.alpha).ln(), &[-2.0 * m.sigma * h])
        .with_noise(m.sigma * (2.0 * h).sqrt())
}

impl Method for EulerMaruyama {
    fn name(&self) -> &str {
        "euler-maruyama"
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
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        Ok(em_update(ctx))
    }
}

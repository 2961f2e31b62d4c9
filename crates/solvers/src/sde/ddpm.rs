//! Ancestral sampling of DDPM (Ho, Jain & Abbeel 2020, Alg. 2; diffusers
//! `DDPMScheduler.step`) on any grid, in the `(α, σ)` form.
//!
//! Between levels `i` (noisier) and `i + 1`, the forward transition is
//! `x = a·x′ + g·ξ` with `a = α/α′` and `g² = σ² − a²·σ′²` (on a VP
//! schedule `a² = 1 − β_t` and `g² = β_t`). The posterior
//! `q(x′ | x, x₀)` has mean and variance
//!
//! `μ̃ = (α′·g²/σ²)·x̂₀ + (a·σ′²/σ²)·x = α′·(1 − q)·x̂₀ + (α′/α)·q·x`,
//! `β̃ = g²·σ′²/σ² = σ′²·(1 − q)`, with `q = σ̃′²/σ̃²`
//!
//! (Ho et al. 2020, eq. 6–7), and the step is `x′ = μ̃ + s·z` with the
//! standard deviation `s` of [`DdpmVariance`]. A step to `σ′ = 0` adds no
//! noise (diffusers adds none at `t = 0`).

use diffuse_core::{Error, Result};

use super::ve;
use crate::method::{Combination, Method, Prediction, StepContext};

/// The reverse variance of DDPM (diffusers' `variance_type`; survey
/// §2.2.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DdpmVariance {
    /// `β̃`, optimal for a deterministic `x₀` (Ho et al. 2020).
    #[default]
    FixedSmall,
    /// `exp(½·log β̃)`: the same standard deviation as `FixedSmall`
    /// (diffusers' form for rl-diffuser).
    FixedSmallLog,
    /// `g²` (`β_t` on a VP schedule), optimal for `x₀ ~ N(0, I)`.
    FixedLarge,
    /// `exp(½·log β_t)` (GLIDE's "max_log"): the standard deviation of
    /// `FixedLarge`. (diffusers' `step` takes the square root of the log
    /// instead, which is NaN; this is the intended value.)
    FixedLargeLog,
    /// `exp(v·log β_t + (1 − v)·log β̃)` with `v` from a second output
    /// channel of the network (Nichol & Dhariwal 2021). The denoiser
    /// interface returns one output shaped like the state, so this is
    /// [`Error::Unsupported`].
    LearnedRange,
}

impl DdpmVariance {
    /// diffusers' name.
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedSmall => "fixed_small",
            Self::FixedSmallLog => "fixed_small_log",
            Self::FixedLarge => "fixed_large",
            Self::FixedLargeLog => "fixed_large_log",
            Self::LearnedRange => "learned_range",
        }
    }
}

/// DDPM ancestral sampling [ddpm].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ddpm {
    /// The reverse variance.
    pub variance: DdpmVariance,
}

impl Ddpm {
    /// The sampler with `variance`; `LearnedRange` is
    /// [`Error::Unsupported`].
    pub fn new(variance: DdpmVariance) -> Result<Self> {
        let s = Self { variance };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        if self.variance == DdpmVariance::LearnedRange {
            return Err(Error::Unsupported(
                "DDPM with learned_range variance: the denoiser interface has no variance \
                 output channel"
                    .into(),
            ));
        }
        Ok(())
    }
}

impl Method for Ddpm {
    fn name(&self) -> &str {
        "ddpm"
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
    fn stochastic(&self) -> bool {
        true
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        self.check()?;
        let (m, n) = (ctx.from(), ctx.to());
        let q = (ve(n) / ve(m)).powi(2);
        let one_minus = 1.0 - q;
        let std = if n.sigma == 0.0 {
            0.0
        } else {
            match self.variance {
                DdpmVariance::FixedSmall | DdpmVariance::FixedSmallLog => {
                    n.sigma * one_minus.max(0.0).sqrt()
                }
                // g = α·√(σ̃² − σ̃′²) = σ·√(1 − q).
                DdpmVariance::FixedLarge | DdpmVariance::FixedLargeLog => {
                    m.sigma * one_minus.max(0.0).sqrt()
                }
                DdpmVariance::LearnedRange => 0.0,
            }
        };
        Ok(Combination::new(n.alpha / m.alpha * q, &[n.alpha * one_minus]).with_noise(std))
    }
}

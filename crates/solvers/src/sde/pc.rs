//! The predictor–corrector sampler of Song et al. 2021 ("Score-based
//! generative modeling through SDEs", Alg. 1, with the Langevin corrector
//! of Alg. 4/5; score_sde's `get_pc_sampler`): at each level, `n`
//! Langevin corrections, then an Euler–Maruyama predictor step
//! ([`super::EulerMaruyama`]) to the next level.
//!
//! A correction evaluates the score `s = −ε̂/σ` at `x` and moves
//!
//! `x ← x + ε·s + √(2ε)·z`, `ε = 2·a·(r·‖z‖/‖s‖)²`,
//!
//! with the target signal-to-noise ratio `r` ("snr"; 0.16 for VE on
//! CIFAR-10 in the paper) and `a = (α/α′)²`, score_sde's `alpha`
//! (`1 − β` of the discretised VP SDE; 1 on VE).
//!
//! **Norms.** score_sde averages `‖s‖` and `‖z‖` over the batch, which
//! makes a sample depend on the rest of its batch. Here `‖s‖` is the norm
//! of the sample's own row (computed with
//! [`diffuse_core::Backend::reduce_rows`], a second pass), and `‖z‖` is
//! its expected value `√L` for rows of `L` elements — the limit of
//! score_sde's batch mean. (The norm of the draw itself would make the
//! step size depend on the very noise it scales, which biases the chain
//! when rows are short.)
//! A correction is a model evaluation: a step costs `1 + n`.

use diffuse_core::{Error, Result};

use super::euler_maruyama::em_update;
use crate::method::{Combination, Langevin, Method, Prediction, StepContext};

/// Predictor–corrector: Euler–Maruyama with Langevin corrections [pc].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pc {
    /// The target signal-to-noise ratio `r > 0`.
    pub snr: f64,
    /// Langevin corrections per level.
    pub corrector_steps: usize,
}

/// The most corrections per level.
const MAX_CORRECTIONS: usize = 100;

impl Default for Pc {
    /// One correction with `snr = 0.16` (score_sde's VE settings).
    fn default() -> Self {
        Self {
            snr: 0.16,
            corrector_steps: 1,
        }
    }
}

impl Pc {
    /// The sampler with `snr` (positive, finite) and `corrector_steps`
    /// corrections per level (at most 100).
    pub fn new(snr: f64, corrector_steps: usize) -> Result<Self> {
        let s = Self {
            snr,
            corrector_steps,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<()> {
        if !(self.snr.is_finite() && self.snr > 0.0) {
            return Err(Error::InvalidArgument {
                name: "snr",
                reason: format!("{}; the target signal-to-noise ratio must be > 0", self.snr),
            });
        }
        if self.corrector_steps > MAX_CORRECTIONS {
            return Err(Error::InvalidArgument {
                name: "corrector_steps",
                reason: format!("{}; at most {MAX_CORRECTIONS}", self.corrector_steps),
            });
        }
        Ok(())
    }
}

impl Method for Pc {
    fn name(&self) -> &str {
        "pc"
    }
    fn order(&self) -> usize {
        1
    }
    fn nfe_per_step(&self) -> usize {
        1 + self.corrector_steps
    }
    fn prediction(&self) -> Prediction {
        Prediction::Noise
    }
    fn stochastic(&self) -> bool {
        true
    }
    fn corrects(&self) -> bool {
        true
    }
    fn corrector(&self, ctx: &StepContext<'_>) -> Result<Option<Langevin>> {
        self.check()?;
        if self.corrector_steps == 0 {
            return Ok(None);
        }
        let (m, n) = (ctx.from(), ctx.to());
        Ok(Some(Langevin {
            steps: self.corrector_steps,
            snr: self.snr,
            alpha: (m.alpha / n.alpha).powi(2),
        }))
    }
    fn update(&self, ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        self.check()?;
        Ok(em_update(ctx))
    }
}

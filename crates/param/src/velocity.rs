//! v-prediction (Salimans & Ho 2022, "Progressive distillation for fast
//! sampling of diffusion models", §4 and Appendix D).

use crate::{Affine, Error, Marginal, Parameterization, Result, finite};

/// The network predicts `v = α·ε − σ·x₀`.
///
/// From `x = α·x₀ + σ·ε`: `α·x − σ·v = (α² + σ²)·x₀` and
/// `σ·x + α·v = (α² + σ²)·ε`, so `x̂₀ = (α·x − σ·out)/(α² + σ²)` and
/// `ε̂ = (σ·x + α·out)/(α² + σ²)`; on variance-preserving schedules
/// (`α² + σ² = 1`) these are the familiar `α·x − σ·v` and `σ·x + α·v`.
/// Defined everywhere, including SNR = 0 (why zero-terminal-SNR schedules use
/// it, Lin et al. 2024).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Velocity;

fn norm(m: Marginal) -> Result<f64> {
    let n = m.alpha * m.alpha + m.sigma * m.sigma;
    if n > 0.0 {
        Ok(n)
    } else {
        Err(Error::Undefined {
            what: "v-prediction",
            at: "at α = σ = 0".into(),
        })
    }
}

impl Parameterization for Velocity {
    fn name(&self) -> &str {
        "v_prediction"
    }

    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        let n = norm(m)?;
        finite(
            "x̂₀ from a v-prediction",
            m,
            Affine {
                a: m.alpha / n,
                b: -m.sigma / n,
            },
        )
    }

    fn eps_map(&self, m: Marginal) -> Result<Affine> {
        let n = norm(m)?;
        finite(
            "ε̂ from a v-prediction",
            m,
            Affine {
                a: m.sigma / n,
                b: m.alpha / n,
            },
        )
    }
}

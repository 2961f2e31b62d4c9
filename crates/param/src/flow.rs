//! Flow-matching / rectified-flow velocity (Liu, Gong & Liu 2023; Lipman et
//! al. 2023; Esser et al. 2024).

use crate::{Affine, Error, Marginal, Parameterization, Result, finite};

/// The network predicts the velocity `u = ε − x₀` of the straight path
/// `x_t = (1 − t)·x₀ + t·ε` (noise at `t = 1`).
///
/// On that path (`α = 1 − t`, `σ = t`) `x̂₀ = x − σ·out` and
/// `ε̂ = x + α·out`. For a marginal with `α + σ ≠ 1` (a rescaled state) the
/// same target gives `x = (α + σ)·x₀ + σ·u`, hence
/// `x̂₀ = (x − σ·out)/(α + σ)` and `ε̂ = (x + α·out)/(α + σ)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowVelocity;

fn total(m: Marginal) -> Result<f64> {
    let s = m.alpha + m.sigma;
    if s > 0.0 {
        Ok(s)
    } else {
        Err(Error::Undefined {
            what: "flow velocity",
            at: "at α + σ = 0".into(),
        })
    }
}

impl Parameterization for FlowVelocity {
    fn name(&self) -> &str {
        "flow_prediction"
    }

    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        let s = total(m)?;
        finite(
            "x̂₀ from a flow velocity",
            m,
            Affine {
                a: 1.0 / s,
                b: -m.sigma / s,
            },
        )
    }

    fn eps_map(&self, m: Marginal) -> Result<Affine> {
        let s = total(m)?;
        finite(
            "ε̂ from a flow velocity",
            m,
            Affine {
                a: 1.0 / s,
                b: m.alpha / s,
            },
        )
    }
}

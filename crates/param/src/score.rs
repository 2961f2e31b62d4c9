//! Score prediction (Song & Ermon 2019; Song et al. 2021, "Score-based
//! generative modeling through stochastic differential equations", eq. 7).

use crate::{Affine, Error, Marginal, Parameterization, Result, finite};

/// The network predicts the score `∇ₓ log p(x) = −ε/σ` of the noisy
/// marginal: `ε̂ = −σ·out`, `x̂₀ = (x + σ²·out)/α` (Tweedie's formula).
///
/// Undefined at `σ = 0` (the score of the data distribution itself is not
/// a noise estimate) and, for `x̂₀`, at `α = 0`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Score;

fn check_sigma(m: Marginal) -> Result<()> {
    if m.sigma == 0.0 {
        return Err(Error::Undefined {
            what: "a score prediction",
            at: "at σ = 0".into(),
        });
    }
    Ok(())
}

impl Parameterization for Score {
    fn name(&self) -> &str {
        "score"
    }

    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        check_sigma(m)?;
        if m.alpha == 0.0 {
            return Err(Error::Undefined {
                what: "x̂₀ from a score prediction",
                at: "at α = 0 (SNR = 0)".into(),
            });
        }
        finite(
            "x̂₀ from a score prediction",
            m,
            Affine {
                a: 1.0 / m.alpha,
                b: m.sigma * m.sigma / m.alpha,
            },
        )
    }

    fn eps_map(&self, m: Marginal) -> Result<Affine> {
        check_sigma(m)?;
        Ok(Affine {
            a: 0.0,
            b: -m.sigma,
        })
    }
}

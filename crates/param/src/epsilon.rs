//! ε-prediction (Ho, Jain & Abbeel 2020, "Denoising diffusion probabilistic
//! models", eq. 11).

use crate::{Affine, Error, Marginal, Parameterization, Result, finite};

/// The network predicts the noise `ε`: `x̂₀ = (x − σ·out)/α`, `ε̂ = out`.
///
/// `x̂₀` is undefined at `α = 0` (SNR = 0, the terminal state of a
/// zero-terminal-SNR schedule), where the state holds no signal to recover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epsilon;

impl Parameterization for Epsilon {
    fn name(&self) -> &str {
        "epsilon"
    }

    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        if m.alpha == 0.0 {
            return Err(Error::Undefined {
                what: "x̂₀ from an ε-prediction",
                at: "at α = 0 (SNR = 0)".into(),
            });
        }
        finite(
            "x̂₀ from an ε-prediction",
            m,
            Affine {
                a: 1.0 / m.alpha,
                b: -m.sigma / m.alpha,
            },
        )
    }

    fn eps_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

//! x₀-prediction ("sample" in diffusers; Ho et al. 2020, §3.2 ablation).

use crate::{Affine, Marginal, Parameterization, Result};

/// The network predicts the clean data: `x̂₀ = out`, `ε̂ = (x − α·out)/σ`
/// (undefined at `σ = 0`, where there is no noise to estimate).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sample;

impl Parameterization for Sample {
    fn name(&self) -> &str {
        "sample"
    }

    fn x0_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

//! # diffuse-param — reverse process: what the network predicts
//!
//! The parameterisation of the network output (survey §2.2.2, Chang et al.
//! 2023). With the forward marginal `x = α·x₀ + σ·ε`, every common prediction
//! target is an affine function of `(x₀, ε)`, so the clean-data estimate and
//! the noise estimate are affine in the state `x` and the output `out`:
//! `x̂₀ = a·x + b·out`, `ε̂ = a′·x + b′·out`, with scalars that depend only on
//! `(α, σ)`. That is what [`Parameterization`] (from `diffuse-core`, the only
//! crate of ours this one depends on) returns, and what solvers fold into
//! their fused steps.
//!
//! | type | network predicts | `x̂₀` | `ε̂` | undefined at |
//! |---|---|---|---|---|
//! | [`Epsilon`] | `ε` (Ho et al. 2020) | `(x − σ·out)/α` | `out` | `α = 0` (SNR = 0) for `x̂₀` |
//! | [`Sample`] | `x₀` | `out` | `(x − α·out)/σ` | `σ = 0` for `ε̂` |
//! | [`Velocity`] | `v = α·ε − σ·x₀` (Salimans & Ho 2022) | `(α·x − σ·out)/(α² + σ²)` | `(σ·x + α·out)/(α² + σ²)` | never |
//! | [`Score`] | `∇ log p = −ε/σ` (Song et al. 2021) | `(x + σ²·out)/α` | `−σ·out` | `α = 0` for `x̂₀`, `σ = 0` |
//! | [`FlowVelocity`] | `u = ε − x₀` (Liu et al. 2023; Lipman et al. 2023) | `(x − σ·out)/(α + σ)` | `(x + α·out)/(α + σ)` | never |
//! | [`Edm`] | `F` with `D = c_skip·x/α + c_out·F` (Karras et al. 2022, Table 1) | `(c_skip/α)·x + c_out·out` | from `x̂₀` | `α = 0`, and `σ = 0` for `ε̂` |
//!
//! Where a map is undefined the call returns [`Error::Undefined`] rather than
//! an infinity or a NaN.
//!
//! ```
//! use diffuse_param::{Marginal, Parameterization, Velocity};
//! let m = Marginal::new(0.6, 0.8)?;
//! let (x0, eps) = (1.5, -0.5);
//! let x = m.alpha * x0 + m.sigma * eps;
//! let v = m.alpha * eps - m.sigma * x0; // what a v-prediction network outputs
//! let map = Velocity.x0_map(m)?;
//! assert!((map.a * x + map.b * v - x0).abs() < 1e-12);
//! # Ok::<(), diffuse_param::Error>(())
//! ```

mod edm;
mod epsilon;
mod flow;
mod sample;
mod score;
mod velocity;

pub use diffuse_core::{Affine, Error, Marginal, Parameterization, Result};
pub use edm::{Edm, Preconditioning};
pub use epsilon::Epsilon;
pub use flow::FlowVelocity;
pub use sample::Sample;
pub use score::Score;
pub use velocity::Velocity;

/// Checks that a map is finite (a marginal built by hand may not be).
pub(crate) fn finite(what: &'static str, m: Marginal, map: Affine) -> Result<Affine> {
    if map.a.is_finite() && map.b.is_finite() {
        Ok(map)
    } else {
        Err(Error::Undefined {
            what,
            at: format!("at (α, σ) = ({}, {})", m.alpha, m.sigma),
        })
    }
}

/// The parameterisation named as in a diffusers `prediction_type`
/// (`epsilon`, `sample`, `v_prediction`, `flow_prediction`) or by its type
/// name here (`velocity`, `score`, `flow`, `edm`).
pub fn by_name(name: &str) -> Result<Box<dyn Parameterization>> {
    Ok(match name {
        "epsilon" | "eps" => Box::new(Epsilon),
        "sample" | "x0" => Box::new(Sample),
        "v_prediction" | "v" | "velocity" => Box::new(Velocity),
        "score" => Box::new(Score),
        "flow_prediction" | "flow" | "flow_velocity" => Box::new(FlowVelocity),
        "edm" => Box::new(Edm::default()),
        other => {
            return Err(Error::InvalidArgument {
                name: "prediction type",
                reason: format!(
                    "'{other}'; expected epsilon, sample, v_prediction, score, flow_prediction or edm"
                ),
            });
        }
    })
}

//! Deterministic solvers of the probability-flow ODE (survey §2.3.1), each a
//! coefficient recipe ([`crate::Method`]) run by [`crate::Sampler`].
//!
//! Notation: level `i` has `(α, σ)`, `σ̃ = σ/α` (the variance-exploding
//! noise level of k-diffusion and diffusers) and `ℓ = log(α/σ)` (half the
//! log-SNR, DPM-Solver's λ); primes are the next level. The state is
//! `x = α·x̃` with `x̃ = x₀ + σ̃·ε` the variance-exploding state, so the
//! k-diffusion updates written for `x̃` carry a factor `α′/α`.

mod ddim;
mod dpm2;
mod dpmpp_2m;
mod euler;
mod heun;
mod lms;

pub use ddim::Ddim;
pub use dpm2::Dpm2;
pub use dpmpp_2m::DpmPp2M;
pub use euler::Euler;
pub use heun::Heun;
pub use lms::Lms;

use diffuse_core::Marginal;

/// `σ̃ = σ/α`.
pub(crate) fn ve(m: Marginal) -> f64 {
    m.sigma / m.alpha
}

//! Deterministic solvers of the probability-flow ODE (survey §2.3.1), each a
//! coefficient recipe ([`crate::Method`]) run by [`crate::Sampler`].
//!
//! Notation: level `i` has `(α, σ)`, `σ̃ = σ/α` (the variance-exploding
//! noise level of k-diffusion and diffusers) and `ℓ = log(α/σ)` (half the
//! log-SNR, DPM-Solver's λ); primes are the next level. The state is
//! `x = α·x̃` with `x̃ = x₀ + σ̃·ε` the variance-exploding state, so the
//! k-diffusion updates written for `x̃` carry a factor `α′/α`.

mod ddim;
mod deis;
mod dpm2;
mod dpm_adaptive;
mod dpm_multistep;
mod dpm_singlestep;
mod dpmpp_2s;
mod euler;
mod flow;
mod heun;
mod lms;
mod pndm;
mod second_order_start;
mod unipc;

pub use ddim::Ddim;
pub use deis::Deis;
pub use dpm_adaptive::{AdaptiveReport, DpmAdaptive, ErrorNorm};
pub use dpm_multistep::{DpmAlgorithm, DpmSolverMultistep, SecondOrder, ThirdOrder};
pub use dpm_singlestep::{DpmSolverSinglestep, SinglestepStages};
pub use dpm2::Dpm2;
pub use dpmpp_2s::DpmPp2S;
pub use euler::Euler;
pub use flow::{FlowEuler, FlowHeun};
pub use heun::Heun;
pub use lms::Lms;
pub use pndm::{IPndm, Pndm, PndmStart};
pub use second_order_start::SecondOrderStart;
pub use unipc::{UniPc, UniPcVariant};

use diffuse_core::Marginal;

/// `σ̃ = σ/α`.
pub(crate) fn ve(m: Marginal) -> f64 {
    m.sigma / m.alpha
}

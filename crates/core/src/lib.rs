//! # diffuse-core
//!
//! The shared foundation of diffuse: the traits every component meets
//! through, the CPU backend with the fused step, and the public noise stream.
//!
//! - [`Backend`]: f32 tensors (batch first), host transfer, the fused step
//!   [`Backend::lincomb`] described by a [`LinComb`] plan, the noise stream,
//!   per-row reductions ([`RowReduction`]) and the per-row maps that feed
//!   them back into the rows ([`RowScale`]). [`CpuBackend`] implements it with
//!   ndarray-compatible storage and rayon.
//! - Forward process: [`NoiseSchedule`] and its [`Marginal`].
//! - Reverse process: [`Parameterization`] (output → `x̂₀`, `ε̂` as [`Affine`]
//!   maps), [`Denoiser`] and [`VarianceDenoiser`] (learned-range variance).
//! - Sampling process: [`Solver`].
//! - [`noise`]: Philox4x32-10 and the normal transform, bit-identical across
//!   backends (specified in `docs/noise.md`).
//! - [`brownian`]: [`BrownianTree`], Brownian paths on that stream queried
//!   at any time in any order (step-count-stable SDE noise).
//! - [`mixture`]: [`IsotropicMixture`], the validated parameters of an
//!   isotropic Gaussian mixture `Σₖ wₖ N(μₖ, sₖ² I)`, shared by the exact
//!   denoisers on the CPU and the GPU.
//! - [`Error`]: the one error type.
//!
//! One Euler step of the probability-flow ODE in the variance-exploding
//! form, `x ← x + (σ_next − σ)·d` with `d = (x − x̂₀)/σ`, is one fused pass
//! that reads `x` and `x̂₀` and writes `x`:
//!
//! ```
//! use diffuse_core::{Backend, CpuBackend, LinComb, NoiseStream, Operand};
//! let cpu = CpuBackend::new();
//! let mut x = cpu.zeros(&[8, 16])?;
//! cpu.fill_noise(NoiseStream::new(0, 0), 0, &mut x)?; // x_T / σ_max = z
//! let x0_hat = cpu.zeros(&[8, 16])?; // a denoiser's output
//! let (sigma, sigma_next) = (1.0f64, 0.5f64);
//! let h = (sigma_next - sigma) / sigma;
//! // x ← (1 + h)·x − h·x̂₀, coefficients computed in f64.
//! let mut step = LinComb::new(&[Operand::Output(0), Operand::Input(0)], 1)?;
//! step.set(0, 0, 1.0 + h)?.set(0, 1, -h)?;
//! let before = cpu.to_host(&x)?;
//! cpu.lincomb(&step, &[&x0_hat], &mut [&mut x])?;
//! let after = cpu.to_host(&x)?;
//! assert!(after.iter().zip(&before).all(|(a, b)| *a == 0.5 * b));
//! # Ok::<(), diffuse_core::Error>(())
//! ```

pub mod backend;
pub mod bench;
pub mod brownian;
pub mod cpu;
pub mod error;
pub mod forward;
pub mod mixture;
pub mod noise;
pub mod reverse;
pub mod sampling;

pub use backend::{Backend, LinComb, MAX_INPUTS, MAX_OUTPUTS, Operand, RowReduction, RowScale};
pub use brownian::BrownianTree;
pub use cpu::{CpuBackend, CpuTensor};
pub use error::{Error, Result};
pub use forward::{LOG_SNR_SLACK, Marginal, NoiseSchedule, time_of_log_snr};
pub use mixture::{IsotropicMixture, WEIGHT_SUM_TOLERANCE};
pub use noise::NoiseStream;
pub use reverse::{
    Affine, Condition, Denoiser, NoiseLevel, Parameterization, VarianceDenoiser, VectorJacobian,
    check_predict_args,
};
pub use sampling::{MAX_STEPS, SampleReport, SamplingGrid, Solver, check_grid};

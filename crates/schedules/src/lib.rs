//! # diffuse-schedules — forward process
//!
//! Noise schedules and time grids (survey §2.1, Chang et al. 2023): how much
//! signal `α(t)` and noise `σ(t)` the forward marginal `x_t = α·x₀ + σ·ε`
//! holds. Every schedule implements [`NoiseSchedule`] from `diffuse-core`,
//! the only crate of ours this one depends on.
//!
//! Available now: the discrete DDPM family ([`BetaSchedule`]: linear,
//! scaled-linear, cosine, sigmoid, exp, Laplace) as a continuous
//! [`DiscreteVp`] schedule, with zero-terminal-SNR rescaling; and the
//! continuous [`VpLinear`], [`VpCosine`], [`SubVp`], [`VeGeometric`],
//! [`EdmSchedule`] and [`Flow`] (with the SD3 shift). Sampling time grids
//! follow.
//!
//! ```
//! use diffuse_schedules::{BetaSchedule, DiscreteVp, NoiseSchedule};
//! // Stable Diffusion's schedule.
//! let betas = BetaSchedule::ScaledLinear { beta_start: 0.00085, beta_end: 0.012 }.betas(1000)?;
//! let s = DiscreteVp::from_betas(&betas)?;
//! assert!((s.alphas_cumprod()[0] - 0.99915).abs() < 1e-6);
//! let t = 500.25;
//! let m = s.marginal(t);
//! assert!((m.alpha * m.alpha + m.sigma * m.sigma - 1.0).abs() < 1e-12);
//! assert!((s.t_of_log_snr(s.log_snr(t))? - t).abs() < 1e-9);
//! # Ok::<(), diffuse_schedules::Error>(())
//! ```

mod builtin;
mod continuous;
mod discrete;
pub mod grids;

pub use builtin::{BUILTIN_NAMES, Builtin, builtin};
pub use continuous::{
    ChenSigmoid, EdmSchedule, Flow, InterpolatedCosine, ShiftedCosine, SubVp, TimeShift,
    VeGeometric, VpCosine, VpLinear, invert_decreasing,
};
pub use diffuse_core::{Error, Marginal, NoiseSchedule, Result};
pub use discrete::{BetaSchedule, DiscreteVp};
pub use grids::TimeGrid;

//! # diffuse-solvers — sampling process
//!
//! Samplers and solvers of the reverse SDE / probability-flow ODE (survey
//! §2.3): each is a small file whose step computes a coefficient matrix in
//! f64 ([`Method`]) that the driver ([`SolverState`], [`Sampler`]) hands to
//! one fused [`LinComb`] pass per stage of a [`Backend`] from `diffuse-core`,
//! the only crate of ours this one depends on. The conversion of the model
//! output into `x̂₀` or `ε̂` is folded into that pass.
//!
//! Available (canonical names in brackets, see [`by_name`]): DDIM η = 0
//! [ddim], Euler [euler], Heun [heun], DPM-Solver-2 as in k-diffusion
//! [dpm2], linear multistep [lms], PNDM/PLMS [pndm], iPNDM [ipndm], DEIS
//! [deis], DPM-Solver multistep and singlestep orders 1–3
//! [dpm-solver-2m, dpm-solver-3m, dpm-solver-2s, dpm-solver-3s],
//! DPM-Solver++ 2S/2M/3M [dpmpp-2s, dpmpp-2m, dpmpp-3m], UniPC with the UniC
//! corrector [unipc]; and the stochastic samplers of [`sde`] (see
//! [`stochastic_names`]): DDPM ancestral [ddpm], DDIM with η > 0
//! [ddim-eta], Euler ancestral [euler-ancestral], DPM-2 ancestral
//! [dpm2-ancestral], DPM-Solver++(2S) ancestral [dpmpp-2s-ancestral],
//! DPM-Solver++ SDE [dpmpp-sde], SDE-DPM-Solver++ 2M/3M [dpmpp-2m-sde,
//! dpmpp-3m-sde], EDM's churn sampler [edm], Euler–Maruyama on the reverse
//! SDE [euler-maruyama] and predictor–corrector with Langevin correction
//! [pc], whose noise is drawn from the public noise stream by sample index
//! (see [`SolverState`] and [`PhiloxNoise`]: same seed, same samples for
//! any batch split and thread count). Both APIs exist: [`Sampler`] (and
//! [`run`], [`run_with_noise`]) runs a [`Denoiser`] in the loop;
//! [`SolverState`] is advanced by a caller that owns the loop.
//!
//! Also: [`guidance`] (classifier-free guidance with interval and rescale,
//! classifier guidance through a gradient callback, dynamic thresholding
//! and clipping, as denoiser wrappers every solver uses unchanged),
//! [`inversion`] (DDIM / DPM-Solver inversion on a
//! [`SamplingGrid::Inverse`] grid, truncated image-to-image sampling) and
//! [`likelihood`] (log-likelihoods and bits/dim by the probability-flow
//! ODE, with the exact divergence or the Hutchinson estimator).
//!
//! ```
//! use diffuse_solvers::{Backend, CpuBackend, Euler, Marginal, NoiseLevel, SamplingGrid, SolverState};
//! use diffuse_solvers::Parameterization;
//! // ε-prediction of an exact model for data x₀ = 0: ε̂ = x/σ.
//! struct Eps;
//! impl Parameterization for Eps {
//!     fn name(&self) -> &str { "epsilon" }
//!     fn x0_map(&self, m: Marginal) -> diffuse_solvers::Result<diffuse_solvers::Affine> {
//!         Ok(diffuse_solvers::Affine { a: 1.0 / m.alpha, b: -m.sigma / m.alpha })
//!     }
//! }
//! let cpu = CpuBackend::new();
//! let level = |a: f64, s: f64| NoiseLevel { t: 0.0, marginal: Marginal { alpha: a, sigma: s } };
//! let grid = SamplingGrid::Shared(vec![level(0.6, 0.8), level(0.8, 0.6), level(1.0, 0.0)]);
//! let schedule = diffuse_solvers::VeSchedule;
//! let mut x = cpu.upload(&[1, 2], &[0.8, -1.6])?;
//! let mut state = SolverState::new(&cpu, &Euler, &schedule, &grid, &x)?;
//! while !state.is_done() {
//!     let sigma = state.request()[0].marginal.sigma;
//!     let xin = cpu.to_host(state.model_input(&x))?;
//!     let out = cpu.upload(&[1, 2], &xin.iter().map(|v| v / sigma as f32).collect::<Vec<_>>())?;
//!     state.advance(&cpu, &Eps, &mut x, &out)?;
//! }
//! // The exact denoiser for x₀ = 0 lands on 0.
//! assert!(cpu.to_host(&x)?.iter().all(|v| v.abs() < 1e-6));
//! # Ok::<(), diffuse_solvers::Error>(())
//! ```

mod driver;
pub mod guidance;
pub mod inversion;
pub mod likelihood;
mod method;
pub mod ode;
mod registry;
pub mod sde;

pub use diffuse_core::{
    Affine, Backend, Condition, CpuBackend, Denoiser, Error, LinComb, Marginal, NoiseLevel,
    NoiseStream, Operand, Parameterization, Result, SampleReport, SamplingGrid, Solver,
    VarianceDenoiser,
};
pub use driver::{
    BrownianNoise, Draw, DrawInfo, DrawKind, NoiseKind, NoiseSource, PhiloxNoise, Sampler,
    SolverState, noise_source, run, run_with_noise,
};
pub use method::{
    Churn, Combination, Langevin, MAX_HISTORY, MAX_STAGES, Method, Prediction, StageLevels,
    StepContext, stage_levels,
};
pub use ode::{
    AdaptiveReport, Ddim, Deis, Dpm2, DpmAdaptive, DpmAlgorithm, DpmPp2S, DpmSolverMultistep,
    DpmSolverSinglestep, ErrorNorm, Euler, FlowEuler, FlowHeun, Heun, IPndm, Lms, Pndm, PndmStart,
    SecondOrder, SecondOrderStart, SinglestepStages, ThirdOrder, UniPc, UniPcVariant,
};
pub use registry::{by_name, deterministic_names, stochastic_names};
pub use sde::{
    DdimEta, Ddpm, DdpmVariance, Dpm2Ancestral, DpmPp2MSde, DpmPp2SAncestral, DpmPp3MSde, DpmPpSde,
    Edm, EulerAncestral, EulerMaruyama, Pc, run_learned_range,
};

/// The variance-exploding schedule `α = 1`, `σ = t` on `t ∈ [0, ∞)`: the
/// noise levels of k-diffusion, for grids given directly in σ.
#[derive(Clone, Copy, Debug, Default)]
pub struct VeSchedule;

impl diffuse_core::NoiseSchedule for VeSchedule {
    fn name(&self) -> &str {
        "ve-sigma"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, f64::INFINITY)
    }
    fn alpha(&self, _t: f64) -> f64 {
        1.0
    }
    fn sigma(&self, t: f64) -> f64 {
        t
    }
    /// `σ = e^{−λ/2}`.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        if lambda.is_nan() {
            return Err(Error::InvalidArgument {
                name: "log-SNR",
                reason: "NaN".into(),
            });
        }
        Ok((-0.5 * lambda).exp())
    }
}

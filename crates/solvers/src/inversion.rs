//! Inversion (data → noise) and truncated sampling (image-to-image).
//!
//! # Inversion
//! The probability-flow ODE is deterministic, so it can be integrated from
//! a data point towards noise, giving the latent that the sampler would map
//! back to (approximately) the same point: DDIM inversion (Song, Meng &
//! Ermon 2021, §5.4; Dhariwal & Nichol 2021, App. F) and the DPM-Solver
//! inverse (diffusers' `DDIMInverseScheduler` and
//! `DPMSolverMultistepInverseScheduler`; DPM-Solver's `inverse`). A grid is
//! walked the other way as a [`SamplingGrid::Inverse`] (the log-SNR
//! decreasing, no clean level), and the deterministic methods' coefficient
//! recipes, which are functions of the step `h = λ′ − λ` valid for either
//! sign, run on it unchanged through the ordinary driver ([`crate::run`],
//! [`crate::SolverState`]):
//!
//! - DDIM ([`crate::Ddim`]): `x′ = (σ′/σ)·x + (α′ − σ′·α/σ)·x̂₀`, here with
//!   `σ′/α′ > σ/α`;
//! - DPM-Solver / DPM-Solver++ multistep ([`crate::DpmSolverMultistep`]):
//!   the same exponential-integrator updates with `h < 0`.
//!
//! [`inversion_grid`] turns a sampling grid into the inversion grid over
//! the same levels (dropping a final clean level, where the noise estimate
//! is undefined, so inversion starts at the least noisy level with `σ > 0`),
//! and [`invert`] runs a method on it. Inverting with `n` steps and sampling
//! back with `n` steps reproduces the input up to the two discretisation
//! errors, which vanish at the method's order as `n` grows.
//!
//! # Truncated sampling
//! SDEdit (Meng et al. 2022) and diffusers' image-to-image pipelines start
//! sampling from an intermediate level instead of pure noise (the survey's
//! truncation, §2.3.2): the data are noised to the level `t_s`,
//! `x = α(t_s)·x₀ + σ(t_s)·z` with `z` from the noise stream ([`noise_to`]),
//! and the tail of the grid from `t_s` is sampled ([`truncate`]). The start
//! follows diffusers' `strength` rule ([`strength_start`]):
//! `init = min(⌊n·strength⌋, n)` of the `n` steps are kept, starting at
//! level `n − init`. [`sample_from_data`] does all three ([`Truncation`]).
//!
//! ```
//! use diffuse_solvers::inversion::{strength_start, truncate};
//! use diffuse_solvers::{Marginal, NoiseLevel, SamplingGrid};
//! let level = |a: f64, s: f64| NoiseLevel { t: 0.0, marginal: Marginal { alpha: a, sigma: s } };
//! let grid = SamplingGrid::Shared(vec![
//!     level(0.6, 0.8), level(0.8, 0.6), level(0.96, 0.28), level(1.0, 0.0),
//! ]);
//! // Strength 0.7 of 3 steps keeps ⌊2.1⌋ = 2 steps, starting at level 1.
//! let start = strength_start(3, 0.7)?;
//! assert_eq!(start, 1);
//! assert_eq!(truncate(&grid, start)?.steps(), 2);
//! # Ok::<(), diffuse_solvers::Error>(())
//! ```

use diffuse_core::{
    Backend, Denoiser, Error, LinComb, NoiseLevel, NoiseSchedule, NoiseStream, Operand, Result,
    SampleReport, SamplingGrid,
};

use crate::driver::run;
use crate::method::Method;

/// The inversion grid over the levels of a shared sampling grid `grid`
/// (noise → data), walked from data to noise. A final clean level
/// (`σ = 0`) is dropped: the data are taken as the state at the least noisy
/// level with `σ > 0`. An inversion grid is returned unchanged. Errors: a
/// per-row grid, or fewer than two levels left.
pub fn inversion_grid(grid: &SamplingGrid) -> Result<SamplingGrid> {
    match grid {
        SamplingGrid::Inverse(_) => {
            grid.check()?;
            Ok(grid.clone())
        }
        SamplingGrid::Shared(levels) => {
            let mut levels = levels.clone();
            if levels.last().is_some_and(|l| l.marginal.sigma == 0.0) {
                levels.pop();
            }
            SamplingGrid::Shared(levels).reversed()
        }
        SamplingGrid::PerRow(_) => Err(Error::Unsupported(
            "inversion of a per-row grid (inversion grids are shared)".into(),
        )),
    }
}

/// Inverts `x` in place: integrates the probability-flow ODE with `method`
/// and `model` from the data end of `grid` to its noisy end (see
/// [`inversion_grid`] for how a sampling grid is turned around). `x` holds
/// the state at the first level of the inversion grid on entry and the
/// latent at the noisiest level on return.
pub fn invert<B: Backend>(
    backend: &B,
    method: &dyn Method,
    model: &dyn Denoiser<B>,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    x: &mut B::Tensor,
) -> Result<SampleReport> {
    let inverse = inversion_grid(grid)?;
    run(backend, method, model, schedule, &inverse, x)
}

/// The first level of the truncated grid for image-to-image `strength` in
/// `(0, 1]` on a grid of `steps` steps, as diffusers' pipelines compute it:
/// `init = min(⌊steps·strength⌋, steps)` steps are kept, from level
/// `steps − init`. An error when no step would be kept (`strength` too
/// small) or `strength` is outside `(0, 1]`.
pub fn strength_start(steps: usize, strength: f64) -> Result<usize> {
    if !(strength > 0.0 && strength <= 1.0) {
        return Err(Error::InvalidArgument {
            name: "strength",
            reason: format!("{strength}; need 0 < strength ≤ 1"),
        });
    }
    // ⌊steps·strength⌋ computed in f64 as Python's int(steps * strength).
    let init = ((steps as f64 * strength).floor() as usize).min(steps);
    if init == 0 {
        return Err(Error::InvalidArgument {
            name: "strength",
            reason: format!("{strength} of {steps} steps keeps no step"),
        });
    }
    Ok(steps - init)
}

/// The grid from level `start` on (every row of a per-row grid), for
/// sampling from an intermediate level. At least one step must remain.
pub fn truncate(grid: &SamplingGrid, start: usize) -> Result<SamplingGrid> {
    let steps = grid.steps();
    if start >= steps {
        return Err(Error::InvalidArgument {
            name: "start",
            reason: format!("level {start} of a grid of {steps} steps leaves no step"),
        });
    }
    let out = match grid {
        SamplingGrid::Shared(l) => SamplingGrid::Shared(l[start..].to_vec()),
        SamplingGrid::PerRow(rows) => {
            SamplingGrid::PerRow(rows.iter().map(|l| l[start..].to_vec()).collect())
        }
        SamplingGrid::Inverse(_) => {
            return Err(Error::Unsupported(
                "truncating an inversion grid (truncation starts sampling part-way)".into(),
            ));
        }
    };
    out.check()?;
    Ok(out)
}

/// Noises the data `x0` to the forward marginal of `levels` (one shared
/// level, or one per row) into `out`:
/// `x = α·x₀ + σ·z` (the forward marginal, survey §2.0), where `z` of flat
/// element `i` is element `offset + i` of `noise`. One fused pass.
pub fn noise_to<B: Backend>(
    backend: &B,
    x0: &B::Tensor,
    levels: &[NoiseLevel],
    noise: NoiseStream,
    offset: u64,
    out: &mut B::Tensor,
) -> Result<()> {
    let rows = backend.shape(x0).first().copied().unwrap_or(0);
    let mut plan = match levels.len() {
        1 => LinComb::new(&[Operand::Input(0)], 1)?,
        n if n == rows => LinComb::per_row(&[Operand::Input(0)], 1, rows)?,
        n => {
            return Err(Error::ShapeMismatch {
                op: "noise_to: one level, or one per row",
                expected: vec![rows],
                found: vec![n],
            });
        }
    }
    .with_noise(noise, offset);
    for (r, level) in levels.iter().enumerate() {
        let m = level.marginal;
        diffuse_core::Marginal::new(m.alpha, m.sigma)?;
        plan.set_row(r, 0, 0, m.alpha)?;
        plan.set_noise_row(r, 0, m.sigma)?;
    }
    backend.lincomb(&plan, &[x0], &mut [out])
}

/// Where truncated sampling starts and how the data are noised there.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Truncation {
    /// Image-to-image strength in `(0, 1]` ([`strength_start`]): 1 starts
    /// at the grid's first level, smaller values later.
    pub strength: f64,
    /// The draw of the noise `z`; element `i` of the state takes element
    /// `i` of the draw.
    pub noise: NoiseStream,
}

/// Truncated sampling from data (SDEdit / image-to-image): with
/// `start = strength_start(grid.steps(), truncation.strength)`, noises `x`
/// (the data on entry) to level `start` of `grid` ([`noise_to`]), then
/// samples the rest of the grid with `method` and `model`. `x` holds the
/// sample on return.
pub fn sample_from_data<B: Backend>(
    backend: &B,
    method: &dyn Method,
    model: &dyn Denoiser<B>,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    truncation: Truncation,
    x: &mut B::Tensor,
) -> Result<SampleReport> {
    let start = strength_start(grid.steps(), truncation.strength)?;
    let tail = truncate(grid, start)?;
    let levels: Vec<NoiseLevel> = match &tail {
        SamplingGrid::PerRow(r) => r.iter().map(|l| l[0]).collect(),
        other => vec![other.row(0)[0]],
    };
    let mut data = backend.zeros(backend.shape(x))?;
    backend.copy(x, &mut data)?;
    noise_to(backend, &data, &levels, truncation.noise, 0, x)?;
    run(backend, method, model, schedule, &tail, x)
}

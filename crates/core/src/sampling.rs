//! Sampling process: solvers that integrate the reverse SDE or ODE.
//!
//! Survey §2.3: a solver walks a time grid from noise to data, calling a
//! [`Denoiser`] and combining its outputs with the state in fused
//! [`crate::LinComb`] steps. Implementations live in `diffuse-solvers`.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::forward::NoiseSchedule;
use crate::noise::NoiseStream;
use crate::reverse::Denoiser;

/// Most steps a time grid may have.
pub const MAX_STEPS: usize = 100_000;

/// What a sampling run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SampleReport {
    /// Steps taken.
    pub steps: usize,
    /// Model evaluations (number of function evaluations).
    pub nfe: usize,
}

/// A sampler or solver of the reverse process.
pub trait Solver<B: Backend> {
    /// Canonical name (as used on the command line).
    fn name(&self) -> &str;

    /// Order of convergence of the deterministic method (1 for Euler/DDIM).
    fn order(&self) -> usize;

    /// Model evaluations per step.
    fn nfe_per_step(&self) -> usize;

    /// Whether the solver draws noise.
    fn stochastic(&self) -> bool;

    /// Integrates `x` in place along `grid` (times of `schedule`, from the
    /// noisy end to the clean end), drawing any noise from `noise`.
    fn sample(
        &mut self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &dyn NoiseSchedule,
        grid: &[f64],
        x: &mut B::Tensor,
        noise: Option<NoiseStream>,
    ) -> Result<SampleReport>;
}

/// Checks a sampling time grid: 1 to [`MAX_STEPS`] steps, finite times in
/// the schedule's range, strictly decreasing (noise to data).
pub fn check_grid(grid: &[f64], schedule: &dyn NoiseSchedule) -> Result<()> {
    let steps = grid.len().saturating_sub(1);
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(Error::InvalidArgument {
            name: "steps",
            reason: format!("{steps} steps; a grid needs 1 to {MAX_STEPS}"),
        });
    }
    for &t in grid {
        schedule.check_t(t)?;
    }
    if let Some(w) = grid.windows(2).find(|w| w[1] >= w[0]) {
        return Err(Error::InvalidArgument {
            name: "time grid",
            reason: format!("not strictly decreasing at {} → {}", w[0], w[1]),
        });
    }
    Ok(())
}

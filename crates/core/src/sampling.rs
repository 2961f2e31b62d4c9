//! Sampling process: solvers that integrate the reverse SDE or ODE.
//!
//! Survey §2.3: a solver walks a time grid from noise to data, calling a
//! [`Denoiser`] and combining its outputs with the state in fused
//! [`crate::LinComb`] steps. Implementations live in `diffuse-solvers`.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::forward::{Marginal, NoiseSchedule};
use crate::noise::NoiseStream;
use crate::reverse::{Denoiser, NoiseLevel};

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

/// The noise levels a sampler visits, from the noisy end to the clean end,
/// shared by every batch row or given per row (rows may then sit at
/// different noise levels; all rows have the same number of steps).
///
/// Only the last level may be clean (`σ = 0`): the step that reaches it
/// never evaluates the model there, and its `t` is the schedule's clean end.
#[derive(Clone, Debug, PartialEq)]
pub enum SamplingGrid {
    /// One grid for all rows.
    Shared(Vec<NoiseLevel>),
    /// One grid per row, all of the same length.
    PerRow(Vec<Vec<NoiseLevel>>),
    /// One grid for all rows walked the other way, from the clean end to the
    /// noisy end: inversion (data → noise, e.g. DDIM inversion). The
    /// log-SNR strictly decreases and no level is clean (the model is
    /// evaluated at the first level). A deterministic solver's coefficient
    /// recipe, run on such a grid, integrates the same probability-flow ODE
    /// in the increasing-noise direction.
    Inverse(Vec<NoiseLevel>),
}

impl SamplingGrid {
    /// The grid through `times` of `schedule` (checked: 1 to
    /// [`MAX_STEPS`] steps, inside the range, strictly decreasing).
    pub fn from_times(schedule: &dyn NoiseSchedule, times: &[f64]) -> Result<Self> {
        check_grid(times, schedule)?;
        Ok(Self::Shared(
            times
                .iter()
                .map(|&t| NoiseLevel {
                    t,
                    marginal: schedule.marginal(t),
                })
                .collect(),
        ))
    }

    /// The grid through variance-exploding noise levels `σ_VE = σ/α`
    /// (k-diffusion's and diffusers' σ), each mapped to the schedule's time
    /// through `t(λ)` with `λ = −2·ln σ_VE`; a final `σ_VE = 0` is the clean
    /// level `(α, σ) = (1, 0)`.
    pub fn from_sigmas(schedule: &dyn NoiseSchedule, sigmas: &[f64]) -> Result<Self> {
        let steps = sigmas.len().saturating_sub(1);
        if !(1..=MAX_STEPS).contains(&steps) {
            return Err(Error::InvalidArgument {
                name: "steps",
                reason: format!("{steps} steps; a grid needs 1 to {MAX_STEPS}"),
            });
        }
        let mut levels = Vec::with_capacity(sigmas.len());
        for (i, &s) in sigmas.iter().enumerate() {
            let last = i + 1 == sigmas.len();
            if s == 0.0 && last {
                levels.push(NoiseLevel {
                    t: schedule.t_range().0,
                    marginal: Marginal {
                        alpha: 1.0,
                        sigma: 0.0,
                    },
                });
                continue;
            }
            if !(s.is_finite() && s > 0.0) {
                return Err(Error::InvalidArgument {
                    name: "sigmas",
                    reason: format!("σ[{i}] = {s}: need 0 < σ < ∞ (only the last may be 0)"),
                });
            }
            let t = crate::forward::time_of_log_snr(schedule, -2.0 * s.ln())?;
            // The marginal from σ itself (exact), not from the rounded time.
            let alpha = schedule.alpha(t);
            levels.push(NoiseLevel {
                t,
                marginal: Marginal {
                    alpha,
                    sigma: s * alpha,
                },
            });
        }
        let grid = Self::Shared(levels);
        grid.check()?;
        Ok(grid)
    }

    /// Number of steps (levels − 1).
    pub fn steps(&self) -> usize {
        match self {
            Self::Shared(l) | Self::Inverse(l) => l.len().saturating_sub(1),
            Self::PerRow(r) => r.first().map_or(0, |l| l.len().saturating_sub(1)),
        }
    }

    /// The levels of batch row `row`.
    pub fn row(&self, row: usize) -> &[NoiseLevel] {
        match self {
            Self::Shared(l) | Self::Inverse(l) => l,
            Self::PerRow(r) => &r[row.min(r.len() - 1)],
        }
    }

    /// Whether all rows share one grid (sampling or inversion).
    pub fn is_shared(&self) -> bool {
        matches!(self, Self::Shared(_) | Self::Inverse(_))
    }

    /// Whether the grid is walked from the clean end to the noisy end.
    pub fn is_inverse(&self) -> bool {
        matches!(self, Self::Inverse(_))
    }

    /// The same levels walked the other way: a shared sampling grid becomes
    /// an inversion grid and back. An error for per-row grids and for a
    /// sampling grid that ends at a clean level (inversion cannot start
    /// there: drop that level first).
    pub fn reversed(&self) -> Result<Self> {
        let grid = match self {
            Self::Shared(l) => Self::Inverse(l.iter().rev().copied().collect()),
            Self::Inverse(l) => Self::Shared(l.iter().rev().copied().collect()),
            Self::PerRow(_) => {
                return Err(Error::Unsupported(
                    "reversing a per-row grid (inversion grids are shared)".into(),
                ));
            }
        };
        grid.check()?;
        Ok(grid)
    }

    /// Checks the grid: 1 to [`MAX_STEPS`] steps; per-row grids non-empty
    /// and of equal length; finite marginals with `σ` strictly decreasing
    /// relative to `α` (the log-SNR increasing); only the last level clean.
    /// An inversion grid has the log-SNR strictly decreasing instead, and no
    /// clean level.
    pub fn check(&self) -> Result<()> {
        let inverse = self.is_inverse();
        let rows: Vec<&[NoiseLevel]> = match self {
            Self::Shared(l) | Self::Inverse(l) => vec![l.as_slice()],
            Self::PerRow(r) => r.iter().map(Vec::as_slice).collect(),
        };
        if rows.is_empty() {
            return Err(Error::InvalidArgument {
                name: "grid",
                reason: "no rows".into(),
            });
        }
        let len = rows[0].len();
        for (r, levels) in rows.iter().enumerate() {
            if levels.len() != len {
                return Err(Error::InvalidArgument {
                    name: "grid",
                    reason: format!("row {r} has {} levels, row 0 has {len}", levels.len()),
                });
            }
            let steps = len.saturating_sub(1);
            if !(1..=MAX_STEPS).contains(&steps) {
                return Err(Error::InvalidArgument {
                    name: "steps",
                    reason: format!("{steps} steps; a grid needs 1 to {MAX_STEPS}"),
                });
            }
            for (i, l) in levels.iter().enumerate() {
                let m = l.marginal;
                let clean_ok = (!inverse && i + 1 == len) || m.sigma > 0.0;
                let valid = m.alpha.is_finite()
                    && m.sigma.is_finite()
                    && m.alpha >= 0.0
                    && m.sigma >= 0.0
                    && clean_ok
                    && (m.alpha > 0.0 || m.sigma > 0.0);
                if !valid {
                    return Err(Error::InvalidArgument {
                        name: "grid",
                        reason: format!(
                            "row {r}, level {i}: invalid (α, σ) = ({}, {})",
                            m.alpha, m.sigma
                        ),
                    });
                }
            }
            let wrong_way = |w: &[NoiseLevel]| {
                let (a, b) = (w[0].marginal.log_snr(), w[1].marginal.log_snr());
                if inverse { b >= a } else { b <= a }
            };
            if let Some(w) = levels.windows(2).position(wrong_way) {
                return Err(Error::InvalidArgument {
                    name: "grid",
                    reason: format!(
                        "row {r}: the log-SNR does not {} from level {w} to {}",
                        if inverse { "decrease" } else { "increase" },
                        w + 1
                    ),
                });
            }
        }
        Ok(())
    }
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

    /// Integrates `x` in place along `grid` (levels of `schedule`, from the
    /// noisy end to the clean end), drawing any noise from `noise`.
    fn sample(
        &mut self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &dyn NoiseSchedule,
        grid: &SamplingGrid,
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

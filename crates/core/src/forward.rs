//! Forward process: the noise schedule `x_t = α(t)·x₀ + σ(t)·ε`.
//!
//! Survey §2.1 (Chang et al. 2023): a schedule fixes how much signal `α(t)`
//! and noise `σ(t)` the forward marginal holds at time `t`, and with them the
//! log signal-to-noise ratio `λ(t) = 2·ln(α(t)/σ(t))` (Kingma et al. 2021),
//! which exponential-integrator solvers (DPM-Solver, UniPC, DEIS) step in.
//! Implementations live in `diffuse-schedules`.

use crate::error::{Error, Result};

/// The forward marginal at one time: `x_t = α·x₀ + σ·ε`, `ε ~ N(0, I)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Marginal {
    /// Signal scale α ≥ 0.
    pub alpha: f64,
    /// Noise scale σ ≥ 0.
    pub sigma: f64,
}

impl Marginal {
    /// A marginal from `(α, σ)`; both must be finite, non-negative and not
    /// both zero.
    pub fn new(alpha: f64, sigma: f64) -> Result<Self> {
        if !(alpha.is_finite() && sigma.is_finite() && alpha >= 0.0 && sigma >= 0.0)
            || (alpha == 0.0 && sigma == 0.0)
        {
            return Err(Error::InvalidArgument {
                name: "marginal",
                reason: format!("(α, σ) = ({alpha}, {sigma}) is not a forward marginal"),
            });
        }
        Ok(Self { alpha, sigma })
    }

    /// Signal-to-noise ratio `α²/σ²` (∞ at σ = 0).
    pub fn snr(&self) -> f64 {
        (self.alpha / self.sigma).powi(2)
    }

    /// Log-SNR `λ = 2·(ln α − ln σ)` (Kingma et al. 2021, "Variational
    /// diffusion models", eq. 3 in their notation `−γ`).
    pub fn log_snr(&self) -> f64 {
        2.0 * (self.alpha.ln() - self.sigma.ln())
    }

    /// The variance-exploding noise level `σ/α` of the same state written as
    /// `x/α = x₀ + (σ/α)·ε` (Karras et al. 2022, eq. 4 with `s(t) = α`).
    pub fn ve_sigma(&self) -> f64 {
        self.sigma / self.alpha
    }
}

/// A noise schedule: `α(t)`, `σ(t)`, `λ(t)` and the inverse `t(λ)` on a
/// documented time range.
///
/// ```
/// use diffuse_core::{NoiseSchedule, Result};
/// /// The EDM / variance-exploding schedule σ(t) = t, α = 1 (Karras et al. 2022).
/// struct Edm;
/// impl NoiseSchedule for Edm {
///     fn name(&self) -> &str { "edm" }
///     fn t_range(&self) -> (f64, f64) { (0.002, 80.0) }
///     fn alpha(&self, _t: f64) -> f64 { 1.0 }
///     fn sigma(&self, t: f64) -> f64 { t }
///     fn t_of_log_snr(&self, lambda: f64) -> Result<f64> { Ok((-lambda / 2.0).exp()) }
/// }
/// let s = Edm;
/// let t = 3.0;
/// assert!((s.t_of_log_snr(s.log_snr(t))? - t).abs() < 1e-12);
/// # Ok::<(), diffuse_core::Error>(())
/// ```
pub trait NoiseSchedule: Send + Sync {
    /// The schedule's name.
    fn name(&self) -> &str;

    /// The time range `(t_min, t_max)` on which the schedule is defined;
    /// `t_max` is the noisy end.
    fn t_range(&self) -> (f64, f64);

    /// Signal scale `α(t)`.
    fn alpha(&self, t: f64) -> f64;

    /// Noise scale `σ(t)`.
    fn sigma(&self, t: f64) -> f64;

    /// `(α(t), σ(t))` together.
    fn marginal(&self, t: f64) -> Marginal {
        Marginal {
            alpha: self.alpha(t),
            sigma: self.sigma(t),
        }
    }

    /// Log-SNR `λ(t) = 2·ln(α(t)/σ(t))`, strictly decreasing in `t`.
    fn log_snr(&self, t: f64) -> f64 {
        self.marginal(t).log_snr()
    }

    /// The time with `λ(t) = lambda`, or an error outside the schedule's range.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64>;

    /// Checks that `t` is finite and inside [`NoiseSchedule::t_range`].
    fn check_t(&self, t: f64) -> Result<()> {
        let (lo, hi) = self.t_range();
        if !t.is_finite() || t < lo || t > hi {
            return Err(Error::InvalidArgument {
                name: "time",
                reason: format!("t = {t} outside the {} range [{lo}, {hi}]", self.name()),
            });
        }
        Ok(())
    }
}

/// How far outside a schedule's log-SNR range a value may lie and still be
/// taken as its end point: grids stored in float32 (diffusers' σ) round
/// `λ` by about 1e-7.
pub const LOG_SNR_SLACK: f64 = 1e-5;

/// `t(λ)` on `schedule`, with `λ` within [`LOG_SNR_SLACK`] outside the
/// schedule's range moved onto its end point; further out is an error.
pub fn time_of_log_snr(schedule: &dyn NoiseSchedule, lambda: f64) -> Result<f64> {
    let (t0, t1) = schedule.t_range();
    let (hi, lo) = (schedule.log_snr(t0), schedule.log_snr(t1));
    let lambda = if lambda > hi && lambda <= hi + LOG_SNR_SLACK {
        hi
    } else if lambda < lo && lambda >= lo - LOG_SNR_SLACK {
        lo
    } else {
        lambda
    };
    schedule.t_of_log_snr(lambda)
}

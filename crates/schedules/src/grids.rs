//! Time grids: where a sampler evaluates the model (survey §2.3, the time
//! discretisation of the reverse process).
//!
//! A grid is a list of `n` points from the noisy end to the clean end, like
//! `numpy.linspace`: a sampler with `N` steps uses `n = N + 1` points, or
//! `n = N` points followed by a final σ = 0 (k-diffusion, diffusers). Grids
//! in `t` use the schedule's time directly; grids in σ (Karras, exponential,
//! polyexponential, Beta) are defined on the variance-exploding noise level
//! `σ_VE = σ/α = e^{−λ/2}`, the scale in which k-diffusion and diffusers
//! define them, and are mapped to `t` through the schedule's exact inverse
//! `t(λ)`. Every point is computed in f64.

use diffuse_core::{Error, MAX_STEPS, NoiseSchedule, Result};

/// A sampling time grid.
#[derive(Clone, Debug, PartialEq)]
pub enum TimeGrid {
    /// `t` evenly spaced (DDPM/DDIM "uniform"; DPM-Solver `time_uniform`).
    UniformT,
    /// `λ` evenly spaced (DPM-Solver `logSNR`, Lu et al. 2022 §3.3): the
    /// natural grid of exponential-integrator solvers. In σ_VE this is the
    /// same grid as [`TimeGrid::Exponential`].
    UniformLogSnr,
    /// `√t` evenly spaced, `t = (√t_start + i/(n−1)·(√t_end − √t_start))²`
    /// (DDIM's "quadratic" skip, Song et al. 2021; DPM-Solver `time_quadratic`).
    TimeQuadratic,
    /// Karras et al. 2022, eq. 5: `σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`,
    /// ρ = 7 by default.
    Karras {
        /// `ρ > 0`.
        rho: f64,
    },
    /// `log σ` evenly spaced (k-diffusion `get_sigmas_exponential`, diffusers
    /// `use_exponential_sigmas`).
    Exponential,
    /// k-diffusion `get_sigmas_polyexponential`: `log σ_i = log σ_min +
    /// (1 − i/(n−1))^ρ·(log σ_max − log σ_min)`; ρ = 1 is exponential.
    PolyExponential {
        /// `ρ > 0`.
        rho: f64,
    },
    /// Beta-distribution quantiles (Lee et al. 2024, "Beta sampling is all
    /// you need"; diffusers `use_beta_sigmas`): `σ_i = σ_min + F⁻¹(1 − i/(n−1))·(σ_max − σ_min)`
    /// with `F` the CDF of Beta(a, b), a = b = 0.6 by default.
    Beta {
        /// Shape `a > 0`.
        alpha: f64,
        /// Shape `b > 0`.
        beta: f64,
    },
    /// Times given by the caller, from noisy to clean.
    CustomTimes(Vec<f64>),
    /// σ_VE values given by the caller, from noisy to clean.
    CustomSigmas(Vec<f64>),
}

impl TimeGrid {
    /// The grid named as on the command line: `uniform`, `logsnr`,
    /// `quadratic`, `karras[:ρ]`, `exponential`, `polyexponential[:ρ]`,
    /// `beta[:a,b]`.
    pub fn from_name(name: &str) -> Result<Self> {
        let (head, arg) = match name.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (name, None),
        };
        let number = |s: &str| -> Result<f64> {
            s.trim().parse::<f64>().map_err(|_| Error::InvalidArgument {
                name: "time grid",
                reason: format!("'{s}' in '{name}' is not a number"),
            })
        };
        let grid = match (head, arg) {
            ("uniform" | "uniform-t" | "time-uniform", None) => Self::UniformT,
            ("logsnr" | "uniform-logsnr" | "lambda", None) => Self::UniformLogSnr,
            ("quadratic" | "time-quadratic", None) => Self::TimeQuadratic,
            ("karras", None) => Self::Karras { rho: 7.0 },
            ("karras", Some(r)) => Self::Karras { rho: number(r)? },
            ("exponential", None) => Self::Exponential,
            ("polyexponential", None) => Self::PolyExponential { rho: 1.0 },
            ("polyexponential", Some(r)) => Self::PolyExponential { rho: number(r)? },
            ("beta", None) => Self::Beta {
                alpha: 0.6,
                beta: 0.6,
            },
            ("beta", Some(ab)) => {
                let (a, b) = ab.split_once(',').ok_or_else(|| Error::InvalidArgument {
                    name: "time grid",
                    reason: format!("'{name}': expected beta:A,B"),
                })?;
                Self::Beta {
                    alpha: number(a)?,
                    beta: number(b)?,
                }
            }
            _ => {
                return Err(Error::InvalidArgument {
                    name: "time grid",
                    reason: format!(
                        "'{name}'; expected uniform, logsnr, quadratic, karras[:RHO], exponential, polyexponential[:RHO] or beta[:A,B]"
                    ),
                });
            }
        };
        grid.check()?;
        Ok(grid)
    }

    fn check(&self) -> Result<()> {
        let positive = |name: &'static str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(Error::InvalidArgument {
                    name,
                    reason: format!("{v} must be positive and finite"),
                })
            }
        };
        match self {
            Self::Karras { rho } | Self::PolyExponential { rho } => positive("rho", *rho),
            Self::Beta { alpha, beta } => {
                positive("beta grid a", *alpha)?;
                positive("beta grid b", *beta)
            }
            _ => Ok(()),
        }
    }

    /// Whether the grid is defined on σ_VE rather than on `t`.
    pub fn is_sigma_grid(&self) -> bool {
        matches!(
            self,
            Self::Karras { .. }
                | Self::Exponential
                | Self::PolyExponential { .. }
                | Self::Beta { .. }
                | Self::CustomSigmas(_)
        )
    }

    /// `n` σ_VE values from `sigma_max` down to `sigma_min` (for the σ
    /// grids; the `t` grids are converted with `σ_VE = e^{−λ/2}` of a
    /// schedule, so they need [`TimeGrid::times`]).
    pub fn sigmas(&self, sigma_max: f64, sigma_min: f64, n: usize) -> Result<Vec<f64>> {
        self.check()?;
        check_points(n)?;
        if !(sigma_min.is_finite()
            && sigma_max.is_finite()
            && 0.0 < sigma_min
            && sigma_min <= sigma_max)
        {
            return Err(Error::InvalidArgument {
                name: "sigma range",
                reason: format!("need 0 < σ_min ≤ σ_max, finite; got [{sigma_min}, {sigma_max}]"),
            });
        }
        Ok(match self {
            Self::Karras { rho } => karras_sigmas(sigma_max, sigma_min, *rho, n),
            Self::Exponential | Self::UniformLogSnr => exponential_sigmas(sigma_max, sigma_min, n),
            Self::PolyExponential { rho } => polyexponential_sigmas(sigma_max, sigma_min, *rho, n),
            Self::Beta { alpha, beta } => beta_sigmas(sigma_max, sigma_min, *alpha, *beta, n),
            Self::CustomSigmas(s) => {
                check_custom("sigmas", s, n)?;
                s.clone()
            }
            Self::UniformT | Self::TimeQuadratic | Self::CustomTimes(_) => {
                return Err(Error::InvalidArgument {
                    name: "time grid",
                    reason: format!("{self:?} is a grid in t; use times() with a schedule"),
                });
            }
        })
    }

    /// `n` times from `t_start` (noisy) to `t_end` (clean) on `schedule`.
    /// σ grids run between `σ_VE(t_start)` and `σ_VE(t_end)` and map back
    /// through `t(λ)`; custom times must lie in the schedule's range and
    /// strictly decrease.
    pub fn times(
        &self,
        schedule: &dyn NoiseSchedule,
        n: usize,
        t_start: f64,
        t_end: f64,
    ) -> Result<Vec<f64>> {
        self.check()?;
        check_points(n)?;
        schedule.check_t(t_start)?;
        schedule.check_t(t_end)?;
        if t_start <= t_end && n > 1 {
            return Err(Error::InvalidArgument {
                name: "time grid",
                reason: format!(
                    "t_start = {t_start} must be noisier (larger) than t_end = {t_end}"
                ),
            });
        }
        let ramp = |i: usize| {
            if n == 1 {
                0.0
            } else {
                i as f64 / (n - 1) as f64
            }
        };
        let times = match self {
            Self::UniformT => (0..n).map(|i| lerp(t_start, t_end, ramp(i))).collect(),
            Self::TimeQuadratic => {
                let (a, b) = (t_start.sqrt(), t_end.sqrt());
                if t_end < 0.0 {
                    return Err(Error::InvalidArgument {
                        name: "time grid",
                        reason: "the quadratic grid needs t ≥ 0".into(),
                    });
                }
                let mut v: Vec<f64> = (0..n).map(|i| lerp(a, b, ramp(i)).powi(2)).collect();
                ends(&mut v, t_start, t_end);
                v
            }
            Self::UniformLogSnr => {
                let (l0, l1) = (schedule.log_snr(t_start), schedule.log_snr(t_end));
                finite_lambda(l0, t_start)?;
                finite_lambda(l1, t_end)?;
                let mut v = Vec::with_capacity(n);
                for i in 0..n {
                    v.push(schedule.t_of_log_snr(lerp(l0, l1, ramp(i)))?);
                }
                ends(&mut v, t_start, t_end);
                v
            }
            Self::CustomTimes(t) => {
                check_custom("times", t, n)?;
                for &ti in t {
                    schedule.check_t(ti)?;
                }
                t.clone()
            }
            _ => {
                let ve = |t: f64| {
                    let l = schedule.log_snr(t);
                    finite_lambda(l, t).map(|_| (-0.5 * l).exp())
                };
                let sigmas = match self {
                    Self::CustomSigmas(s) => {
                        check_custom("sigmas", s, n)?;
                        s.clone()
                    }
                    _ => self.sigmas(ve(t_start)?, ve(t_end)?, n)?,
                };
                let custom = matches!(self, Self::CustomSigmas(_));
                // Generated grids span exactly [λ(t_start), λ(t_end)]; keep
                // rounding in σ ↔ λ from stepping outside.
                let (l_start, l_end) = (schedule.log_snr(t_start), schedule.log_snr(t_end));
                let mut v = Vec::with_capacity(n);
                for s in sigmas {
                    if !(s.is_finite() && s > 0.0) {
                        return Err(Error::InvalidArgument {
                            name: "sigmas",
                            reason: format!("σ = {s} has no time on a schedule (need 0 < σ < ∞)"),
                        });
                    }
                    let lambda = -2.0 * s.ln();
                    let lambda = if custom {
                        lambda
                    } else {
                        lambda.clamp(l_start, l_end)
                    };
                    v.push(schedule.t_of_log_snr(lambda)?);
                }
                if !custom {
                    ends(&mut v, t_start, t_end);
                }
                v
            }
        };
        Ok(times)
    }
}

fn finite_lambda(l: f64, t: f64) -> Result<()> {
    if l.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name: "time grid",
            reason: format!("log-SNR is {l} at t = {t}; pick an end point with 0 < SNR < ∞"),
        })
    }
}

/// Pins the end points exactly (the round trip through λ is exact only to
/// rounding).
fn ends(v: &mut [f64], t_start: f64, t_end: f64) {
    if let Some(f) = v.first_mut() {
        *f = t_start;
    }
    if v.len() > 1
        && let Some(l) = v.last_mut()
    {
        *l = t_end;
    }
}

fn check_points(n: usize) -> Result<()> {
    if n == 0 || n > MAX_STEPS + 1 {
        return Err(Error::InvalidArgument {
            name: "steps",
            reason: format!("a grid needs 1 to {} points, got {n}", MAX_STEPS + 1),
        });
    }
    Ok(())
}

fn check_custom(name: &'static str, v: &[f64], n: usize) -> Result<()> {
    if v.len() != n {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("{} values given for a grid of {n} points", v.len()),
        });
    }
    if let Some(bad) = v.iter().find(|x| !x.is_finite()) {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("{bad} is not finite"),
        });
    }
    if let Some(w) = v.windows(2).find(|w| w[1] >= w[0]) {
        return Err(Error::InvalidArgument {
            name,
            reason: format!(
                "must strictly decrease from noisy to clean; {} then {}",
                w[0], w[1]
            ),
        });
    }
    Ok(())
}

fn lerp(a: f64, b: f64, w: f64) -> f64 {
    // Exact at both ends.
    if w < 0.5 {
        a + w * (b - a)
    } else {
        b - (1.0 - w) * (b - a)
    }
}

/// `n` evenly spaced values from `a` to `b` with numpy's arithmetic
/// (`numpy.linspace`: `a + i·((b − a)/(n − 1))`, the last value exactly `b`),
/// so grids built on it agree with diffusers' bit for bit.
pub fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![a],
        _ => {
            let step = (b - a) / (n - 1) as f64;
            let mut v: Vec<f64> = if step == 0.0 {
                (0..n)
                    .map(|i| i as f64 / (n - 1) as f64 * (b - a) + a)
                    .collect()
            } else {
                (0..n).map(|i| i as f64 * step + a).collect()
            };
            v[n - 1] = b;
            v
        }
    }
}

/// `linspace(0, 1, n)`.
pub fn ramp(n: usize) -> Vec<f64> {
    linspace(0.0, 1.0, n)
}

/// Karras et al. 2022, eq. 5: `σ_i = (σ_max^{1/ρ} + r_i·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`
/// with `r = linspace(0, 1, n)`. The arithmetic order is k-diffusion's and
/// diffusers' (`_convert_to_karras`), so the values agree to the last bit in f64.
pub fn karras_sigmas(sigma_max: f64, sigma_min: f64, rho: f64, n: usize) -> Vec<f64> {
    let (min_inv, max_inv) = (sigma_min.powf(1.0 / rho), sigma_max.powf(1.0 / rho));
    ramp(n)
        .into_iter()
        .map(|r| (max_inv + r * (min_inv - max_inv)).powf(rho))
        .collect()
}

/// `σ_i = exp(lerp(log σ_max, log σ_min, i/(n − 1)))`: log σ (equivalently
/// the log-SNR) evenly spaced.
pub fn exponential_sigmas(sigma_max: f64, sigma_min: f64, n: usize) -> Vec<f64> {
    linspace(sigma_max.ln(), sigma_min.ln(), n)
        .into_iter()
        .map(f64::exp)
        .collect()
}

/// k-diffusion's polyexponential grid: `σ_i = exp((1 − r_i)^ρ·(log σ_max − log σ_min) + log σ_min)`.
pub fn polyexponential_sigmas(sigma_max: f64, sigma_min: f64, rho: f64, n: usize) -> Vec<f64> {
    let (lmax, lmin) = (sigma_max.ln(), sigma_min.ln());
    ramp(n)
        .into_iter()
        .map(|r| ((1.0 - r).powf(rho) * (lmax - lmin) + lmin).exp())
        .collect()
}

/// Beta-quantile grid (Lee et al. 2024): `σ_i = σ_min + F⁻¹(1 − r_i; a, b)·(σ_max − σ_min)`.
pub fn beta_sigmas(sigma_max: f64, sigma_min: f64, a: f64, b: f64, n: usize) -> Vec<f64> {
    ramp(n)
        .into_iter()
        .map(|r| sigma_min + beta_ppf(1.0 - r, a, b) * (sigma_max - sigma_min))
        .collect()
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, 9 terms; relative error ~1e-15).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x)Γ(1 − x) = π / sin(πx).
        let pi = std::f64::consts::PI;
        return (pi / (pi * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = C[0];
    let t = x + G + 0.5;
    for (i, c) in C.iter().enumerate().skip(1) {
        a += c / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

/// Continued fraction of the incomplete beta function (modified Lentz).
fn beta_cf(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..=500 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// The regularised incomplete beta function `I_x(a, b)`, the CDF of Beta(a, b).
pub fn beta_cdf(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let ln_front = ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln();
    let front = ln_front.exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_cf(x, a, b) / a
    } else {
        1.0 - front * beta_cf(1.0 - x, b, a) / b
    }
}

/// The quantile `F⁻¹(p)` of Beta(a, b), by bisection on the monotone CDF to
/// adjacent floating-point numbers.
pub fn beta_ppf(p: f64, a: f64, b: f64) -> f64 {
    if p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    crate::invert_decreasing(|x| -beta_cdf(x, a, b), -p, 0.0, 1.0)
}

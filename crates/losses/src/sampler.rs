//! Noise-level distributions for training (survey §2.2.5), drawn through
//! their quantile functions from the uniforms of [`LevelRng`].
//!
//! Every distribution here is a monotone map `u ↦ level` of one uniform
//! `u ∈ (0, 1)`, so the variance-reduction [`Scheme`]s (stratified,
//! low-discrepancy, antithetic) apply to all of them alike. Sampling `t`
//! with density `p` is the same, in expectation, as weighting the loss by
//! `p` (Kingma & Gao 2023): the weightings of [`crate::Weighting`] and
//! these distributions are two halves of one design choice.

use crate::rng::{LevelRng, normal_quantile};
use diffuse_core::{Error, Result};
use std::f64::consts::PI;

/// What a drawn value means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LevelKind {
    /// A time in a schedule's range (map it with
    /// [`crate::Level::on_schedule`], or [`crate::Level::flow`] for
    /// `t ∈ (0, 1)` on the straight path).
    Time,
    /// A discrete timestep index `n ∈ {0, …, N − 1}`, as an exact f64.
    Index,
    /// A variance-exploding noise level `σ = σ(t)/α(t)` (map it with
    /// [`crate::Level::edm`]).
    Sigma,
}

/// A distribution of training noise levels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LevelDistribution {
    /// `t ~ U(t_min, t_max)`: `t = t_min + u·(t_max − t_min)` (Song et al.
    /// 2021; Kingma et al. 2021).
    UniformTime {
        /// Lower end.
        t_min: f64,
        /// Upper end (> `t_min`).
        t_max: f64,
    },
    /// `n ~ U{0, …, N − 1}`: `n = min(⌊u·N⌋, N − 1)` (Ho et al. 2020,
    /// Algorithm 1, with 0-based timesteps as in diffusers).
    UniformIndex {
        /// The number of timesteps `N ≥ 1`.
        n: u32,
    },
    /// EDM's log-normal `ln σ ~ N(P_mean, P_std²)`:
    /// `σ = exp(P_mean + P_std·Φ⁻¹(u))` (Karras et al. 2022, §5 and Table 1;
    /// P_mean = −1.2, P_std = 1.2).
    LogNormalSigma {
        /// `P_mean`.
        p_mean: f64,
        /// `P_std > 0`.
        p_std: f64,
    },
    /// Logit-normal `t ∈ (0, 1)`, `logit t ~ N(m, s²)`:
    /// `t = sigmoid(m + s·Φ⁻¹(u))`, density
    /// `π(t) = exp(−(logit t − m)²/(2s²))/(s·√(2π)·t·(1 − t))` (Esser et al.
    /// 2024, "Scaling rectified flow transformers", §3.1; m = 0, s = 1 best).
    /// Values are kept inside `[2⁻⁵³, 1 − 2⁻⁵³]` against rounding in the far
    /// tails.
    LogitNormalTime {
        /// Location `m`.
        mean: f64,
        /// Scale `s > 0`.
        std: f64,
    },
    /// Mode sampling with heavy tails on `t ∈ [0, 1]`:
    /// `t = 1 − u − s·(cos²(πu/2) − 1 + u)` (Esser et al. 2024, §3.1;
    /// `s ∈ [−1, 2/(π − 2)]` keeps the map monotone; diffusers uses
    /// `mode_scale = 1.29`).
    ModeTime {
        /// The scale `s`.
        scale: f64,
    },
    /// Log-uniform `σ ∈ [σ_min, σ_max]`:
    /// `σ = exp(ln σ_min + u·(ln σ_max − ln σ_min))` (k-diffusion
    /// `rand_log_uniform`; EDM's VE loss uses `[0.02, 100]`).
    LogUniformSigma {
        /// `σ_min > 0`.
        sigma_min: f64,
        /// `σ_max > σ_min`.
        sigma_max: f64,
    },
    /// The interpolated cosine distribution of simple diffusion (Hoogeboom,
    /// Heek & Salimans 2023, §3.1–3.2), as k-diffusion's
    /// `rand_cosine_interpolated` computes it: with the angle range
    /// `θ(u) = θ_hi + u·(θ_lo − θ_hi)`, the shifted cosine log-SNR
    /// `λ_d(u) = −2·ln tan θ(u; shift_d) + shift_d`, `shift_d = 2·ln(d_noise/d_image)`,
    /// `θ_hi = atan(e^{−(λ_min − shift)/2})`, `θ_lo = atan(e^{−(λ_max − shift)/2})`,
    /// `λ_min = −2·ln(σ_max/σ_d)`, `λ_max = −2·ln(σ_min/σ_d)`, the
    /// interpolation `λ(u) = (1 − u)·λ_low(u) + u·λ_high(u)` between the
    /// shifts for `noise_d_low` and `noise_d_high`, and
    /// `σ = σ_d·e^{−λ/2}` (`u = 0` gives `σ_max`).
    CosineInterpolatedSigma {
        /// The data resolution `d_image`.
        image_d: f64,
        /// The base resolution whose shift applies at `u = 0` (high noise).
        noise_d_low: f64,
        /// The base resolution whose shift applies at `u = 1` (low noise).
        noise_d_high: f64,
        /// `σ_d` (1 in k-diffusion's default).
        sigma_data: f64,
        /// `σ_min` (1e-3).
        sigma_min: f64,
        /// `σ_max` (1e3).
        sigma_max: f64,
    },
}

impl LevelDistribution {
    /// EDM's defaults, `P_mean = −1.2`, `P_std = 1.2` (Karras et al. 2022).
    pub const EDM: LevelDistribution = LevelDistribution::LogNormalSigma {
        p_mean: -1.2,
        p_std: 1.2,
    };
    /// SD3's default logit-normal, `m = 0`, `s = 1` (Esser et al. 2024).
    pub const SD3: LevelDistribution = LevelDistribution::LogitNormalTime {
        mean: 0.0,
        std: 1.0,
    };

    /// What the drawn values are.
    pub fn kind(&self) -> LevelKind {
        match self {
            LevelDistribution::UniformTime { .. }
            | LevelDistribution::LogitNormalTime { .. }
            | LevelDistribution::ModeTime { .. } => LevelKind::Time,
            LevelDistribution::UniformIndex { .. } => LevelKind::Index,
            LevelDistribution::LogNormalSigma { .. }
            | LevelDistribution::LogUniformSigma { .. }
            | LevelDistribution::CosineInterpolatedSigma { .. } => LevelKind::Sigma,
        }
    }

    /// Checks the parameters.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LevelDistribution::UniformTime { t_min, t_max } => {
                finite("t_min", t_min)?;
                finite("t_max", t_max)?;
                if !(t_max > t_min && (t_max - t_min).is_finite()) {
                    return Err(invalid(
                        "t_max",
                        format!("{t_max} must exceed t_min = {t_min}"),
                    ));
                }
                Ok(())
            }
            LevelDistribution::UniformIndex { n } => {
                if n == 0 {
                    return Err(invalid("n", "the number of timesteps must be ≥ 1".into()));
                }
                Ok(())
            }
            LevelDistribution::LogNormalSigma { p_mean, p_std } => {
                finite("p_mean", p_mean)?;
                positive("p_std", p_std)
            }
            LevelDistribution::LogitNormalTime { mean, std } => {
                finite("mean", mean)?;
                positive("std", std)
            }
            LevelDistribution::ModeTime { scale } => {
                if !(scale.is_finite() && (-1.0..=2.0 / (PI - 2.0)).contains(&scale)) {
                    return Err(invalid(
                        "scale",
                        format!("{scale} is not in [−1, 2/(π − 2)], where t(u) is monotone"),
                    ));
                }
                Ok(())
            }
            LevelDistribution::LogUniformSigma {
                sigma_min,
                sigma_max,
            } => sigma_range(sigma_min, sigma_max),
            LevelDistribution::CosineInterpolatedSigma {
                image_d,
                noise_d_low,
                noise_d_high,
                sigma_data,
                sigma_min,
                sigma_max,
            } => {
                positive("image_d", image_d)?;
                positive("noise_d_low", noise_d_low)?;
                positive("noise_d_high", noise_d_high)?;
                positive("sigma_data", sigma_data)?;
                sigma_range(sigma_min, sigma_max)
            }
        }
    }

    /// The level at uniform `u ∈ (0, 1)` (the quantile function, or its
    /// mirror `u ↦ F⁻¹(1 − u)` for the decreasing maps of mode and cosine
    /// sampling).
    pub fn quantile(&self, u: f64) -> Result<f64> {
        self.validate()?;
        if !(u > 0.0 && u < 1.0) {
            return Err(invalid("u", format!("{u} is not in (0, 1)")));
        }
        let v = match *self {
            LevelDistribution::UniformTime { t_min, t_max } => t_min + u * (t_max - t_min),
            LevelDistribution::UniformIndex { n } => {
                let n = f64::from(n);
                libm::floor(u * n).min(n - 1.0)
            }
            LevelDistribution::LogNormalSigma { p_mean, p_std } => {
                libm::exp(p_mean + p_std * normal_quantile(u))
            }
            LevelDistribution::LogitNormalTime { mean, std } => {
                sigmoid_libm(mean + std * normal_quantile(u)).clamp(U_MIN, U_MAX)
            }
            LevelDistribution::ModeTime { scale } => {
                let c = libm::cos(0.5 * PI * u);
                1.0 - u - scale * (c * c - 1.0 + u)
            }
            LevelDistribution::LogUniformSigma {
                sigma_min,
                sigma_max,
            } => {
                let (lo, hi) = (libm::log(sigma_min), libm::log(sigma_max));
                libm::exp(lo + u * (hi - lo))
            }
            LevelDistribution::CosineInterpolatedSigma {
                image_d,
                noise_d_low,
                noise_d_high,
                sigma_data,
                sigma_min,
                sigma_max,
            } => {
                let log_snr_min = -2.0 * libm::log(sigma_max / sigma_data);
                let log_snr_max = -2.0 * libm::log(sigma_min / sigma_data);
                let shifted = |noise_d: f64| {
                    let shift = 2.0 * libm::log(noise_d / image_d);
                    cosine_log_snr(u, log_snr_min - shift, log_snr_max - shift) + shift
                };
                let (low, high) = (shifted(noise_d_low), shifted(noise_d_high));
                let log_snr = low + u * (high - low);
                sigma_data * libm::exp(-0.5 * log_snr)
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::NonFinite(format!(
                "the level drawn from {self:?} at u = {u}"
            )))
        }
    }
}

/// k-diffusion's `logsnr_schedule_cosine`:
/// `λ(u) = −2·ln tan(θ_hi + u·(θ_lo − θ_hi))` with
/// `θ_hi = atan(e^{−λ_min/2})`, `θ_lo = atan(e^{−λ_max/2})`.
fn cosine_log_snr(u: f64, log_snr_min: f64, log_snr_max: f64) -> f64 {
    let theta_lo = libm::atan(libm::exp(-0.5 * log_snr_max));
    let theta_hi = libm::atan(libm::exp(-0.5 * log_snr_min));
    -2.0 * libm::log(libm::tan(theta_hi + u * (theta_lo - theta_hi)))
}

/// The logistic function with libm's `exp` (platform-independent).
fn sigmoid_libm(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + libm::exp(-x))
    } else {
        let e = libm::exp(x);
        e / (1.0 + e)
    }
}

/// How the uniforms of one batch are drawn.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Row `i` uses its own uniform `u_i`.
    #[default]
    Independent,
    /// One draw per stratum: `u_i = (i + v_i)/B`, `v_i` the row's own
    /// uniform (k-diffusion `stratified_uniform`).
    Stratified,
    /// The low-discrepancy sampler of VDM, `u_i = (u₀ + i/B) mod 1` with one
    /// shared uniform `u₀` (Kingma et al. 2021): also one draw
    /// per stratum, after sorting.
    LowDiscrepancy,
    /// Antithetic pairs: rows `2k` and `2k + 1` use `u` and `1 − u`, `u` the
    /// uniform of row `2k`; an odd last row uses its own uniform.
    Antithetic,
}

/// The smallest and largest uniform handed to a quantile function.
const U_MIN: f64 = 1.0 / 9_007_199_254_740_992.0; // 2⁻⁵³
const U_MAX: f64 = 1.0 - U_MIN;

/// Writes the uniforms of one batch (`out.len()` rows) of step `step`.
pub fn scheme_uniforms(rng: &LevelRng, scheme: Scheme, step: u64, out: &mut [f64]) -> Result<()> {
    let b = out.len();
    let bf = b as f64;
    match scheme {
        Scheme::Independent => {
            for (i, u) in out.iter_mut().enumerate() {
                *u = rng.uniforms(step, i as u64)?[0];
            }
        }
        Scheme::Stratified => {
            for (i, u) in out.iter_mut().enumerate() {
                let v = rng.uniforms(step, i as u64)?[0];
                *u = ((i as f64 + v) / bf).clamp(U_MIN, U_MAX);
            }
        }
        Scheme::LowDiscrepancy => {
            if b > 0 {
                let u0 = rng.uniforms(step, 0)?[0];
                for (i, u) in out.iter_mut().enumerate() {
                    let x = u0 + i as f64 / bf;
                    *u = (x - libm::floor(x)).clamp(U_MIN, U_MAX);
                }
            }
        }
        Scheme::Antithetic => {
            for (k, pair) in out.chunks_mut(2).enumerate() {
                let v = rng.uniforms(step, 2 * k as u64)?[0];
                pair[0] = v;
                if let Some(second) = pair.get_mut(1) {
                    *second = 1.0 - v;
                }
            }
        }
    }
    Ok(())
}

/// Draws training noise levels: a distribution, a variance-reduction scheme
/// and a generator. Deterministic given `(seed, stream, step)` and the batch
/// size, on every platform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelSampler {
    /// The distribution of the levels.
    pub distribution: LevelDistribution,
    /// How the uniforms of a batch are drawn.
    pub scheme: Scheme,
    /// Where the uniforms come from.
    pub rng: LevelRng,
}

impl LevelSampler {
    /// A sampler, with its distribution's parameters checked.
    pub fn new(distribution: LevelDistribution, scheme: Scheme, rng: LevelRng) -> Result<Self> {
        distribution.validate()?;
        Ok(Self {
            distribution,
            scheme,
            rng,
        })
    }

    /// Writes the levels of one batch (`out.len()` rows) at training step
    /// `step`.
    pub fn sample_into(&self, step: u64, out: &mut [f64]) -> Result<()> {
        self.distribution.validate()?;
        scheme_uniforms(&self.rng, self.scheme, step, out)?;
        for v in out.iter_mut() {
            *v = self.distribution.quantile(*v)?;
        }
        Ok(())
    }

    /// The levels of a batch of `batch` rows at training step `step`.
    pub fn sample(&self, step: u64, batch: usize) -> Result<Vec<f64>> {
        let mut out = vec![0.0; batch];
        self.sample_into(step, &mut out)?;
        Ok(out)
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidArgument { name, reason }
}

fn finite(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid(name, format!("{v} is not finite")))
    }
}

fn positive(name: &'static str, v: f64) -> Result<()> {
    crate::target::check_positive(name, v)
}

fn sigma_range(sigma_min: f64, sigma_max: f64) -> Result<()> {
    positive("sigma_min", sigma_min)?;
    positive("sigma_max", sigma_max)?;
    if sigma_max <= sigma_min {
        return Err(invalid(
            "sigma_max",
            format!("{sigma_max} must exceed sigma_min = {sigma_min}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weighting::sigmoid;

    #[test]
    fn sigmoids_agree() {
        for x in [-30.0, -2.0, 0.0, 0.5, 40.0] {
            assert!((sigmoid(x) - sigmoid_libm(x)).abs() < 1e-16);
        }
    }
}

//! Discrete-time schedules of the DDPM family: `β₁ … β_N`, `ᾱ_n = Π (1 − β_i)`.
//!
//! Tables are built as diffusers builds them (f32 values, the same linspace
//! and products), so `ᾱ` agrees with a diffusers scheduler's
//! `alphas_cumprod` to f32 rounding (max relative difference 2.2e-7 on the
//! conformance tables). Between the integer timesteps the schedule is
//! continuous: `log α` is interpolated linearly, as in the discrete
//! `NoiseScheduleVP` of DPM-Solver (Lu et al. 2022, Appendix), so every
//! solver can run on it.

use diffuse_core::{Error, NoiseSchedule, Result};

/// f64 rounded to f32 and back: the tables hold f32 values.
fn f32r(x: f64) -> f64 {
    f64::from(x as f32)
}

/// `torch.linspace(a, b, n, dtype=float32)`: end points and step in f32, the
/// first half counted from `a`, the second from `b` (bit-identical to
/// diffusers' β tables).
fn linspace_f32(a: f64, b: f64, n: usize) -> Vec<f64> {
    let (start, end) = (a as f32, b as f32);
    if n == 1 {
        return vec![start as f64];
    }
    // The step in f32; each value is one fused multiply–add from the nearer
    // end (f32(start + step·i) rounded once), which is what torch's
    // vectorised CPU kernel computes.
    let step = ((end - start) / (n - 1) as f32) as f64;
    (0..n)
        .map(|i| {
            if i < n / 2 {
                f32r(start as f64 + step * i as f64)
            } else {
                f32r(end as f64 - step * (n - 1 - i) as f64)
            }
        })
        .collect()
}

/// The `β` schedules of diffusers' `beta_schedule` option.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BetaSchedule {
    /// `β` evenly spaced from `beta_start` to `beta_end` (Ho et al. 2020:
    /// 1e-4 to 0.02).
    Linear {
        /// First β.
        beta_start: f64,
        /// Last β.
        beta_end: f64,
    },
    /// `√β` evenly spaced (Stable Diffusion: 0.00085 to 0.012; Rombach et
    /// al. 2022).
    ScaledLinear {
        /// First β.
        beta_start: f64,
        /// Last β.
        beta_end: f64,
    },
    /// The cosine schedule of Nichol & Dhariwal 2021, eq. 17:
    /// `ᾱ(t) = cos²((t + s)/(1 + s)·π/2)`, `s = 0.008`,
    /// `β_n = min(1 − ᾱ((n+1)/N)/ᾱ(n/N), 0.999)`.
    SquaredCosCapV2,
    /// `β = sigmoid(linspace(−6, 6))·(beta_end − beta_start) + beta_start`
    /// (GeoDiff, Xu et al. 2022).
    Sigmoid {
        /// Smallest β.
        beta_start: f64,
        /// Largest β.
        beta_end: f64,
    },
    /// `ᾱ(t) = exp(−12·t)`, discretised like the cosine schedule.
    Exp,
    /// The Laplace schedule: `λ(t) = −sign(½ − t)·ln(1 − 2|½ − t| + 10⁻⁶)`
    /// (in units of `½·log SNR`), `ᾱ(t) = √(SNR/(1 + SNR))`, discretised like
    /// the cosine schedule (diffusers' `alpha_transform_type = "laplace"`).
    Laplace,
}

/// `β_n = min(1 − ᾱ((n+1)/N)/ᾱ(n/N), 0.999)` for a continuous `ᾱ`.
fn betas_for_alpha_bar(n: usize, alpha_bar: impl Fn(f64) -> f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let t1 = i as f64 / n as f64;
            let t2 = (i + 1) as f64 / n as f64;
            f32r((1.0 - alpha_bar(t2) / alpha_bar(t1)).min(0.999))
        })
        .collect()
}

impl BetaSchedule {
    /// Parses diffusers' `beta_schedule` name.
    pub fn from_name(name: &str, beta_start: f64, beta_end: f64) -> Result<Self> {
        Ok(match name {
            "linear" => Self::Linear {
                beta_start,
                beta_end,
            },
            "scaled_linear" => Self::ScaledLinear {
                beta_start,
                beta_end,
            },
            "squaredcos_cap_v2" => Self::SquaredCosCapV2,
            "sigmoid" => Self::Sigmoid {
                beta_start,
                beta_end,
            },
            "exp" => Self::Exp,
            "laplace" => Self::Laplace,
            other => {
                return Err(Error::InvalidArgument {
                    name: "beta_schedule",
                    reason: format!(
                        "'{other}'; expected linear, scaled_linear, squaredcos_cap_v2, sigmoid, exp or laplace"
                    ),
                });
            }
        })
    }

    /// The `n` betas, as f32 values.
    pub fn betas(&self, n: usize) -> Result<Vec<f64>> {
        if n < 2 {
            return Err(Error::InvalidArgument {
                name: "num_train_timesteps",
                reason: format!("{n}; a discrete schedule needs at least 2 steps"),
            });
        }
        let check = |beta_start: f64, beta_end: f64| -> Result<()> {
            if !(beta_start > 0.0 && beta_end < 1.0 && beta_start <= beta_end) {
                return Err(Error::InvalidArgument {
                    name: "beta_start/beta_end",
                    reason: format!(
                        "need 0 < beta_start ≤ beta_end < 1, got {beta_start}, {beta_end}"
                    ),
                });
            }
            Ok(())
        };
        Ok(match *self {
            Self::Linear {
                beta_start,
                beta_end,
            } => {
                check(beta_start, beta_end)?;
                linspace_f32(beta_start, beta_end, n)
            }
            Self::ScaledLinear {
                beta_start,
                beta_end,
            } => {
                check(beta_start, beta_end)?;
                linspace_f32(beta_start.sqrt(), beta_end.sqrt(), n)
                    .into_iter()
                    .map(|r| f32r(r * r))
                    .collect()
            }
            Self::Sigmoid {
                beta_start,
                beta_end,
            } => {
                check(beta_start, beta_end)?;
                linspace_f32(-6.0, 6.0, n)
                    .into_iter()
                    .map(|x| f32r(1.0 / (1.0 + (-x).exp()) * (beta_end - beta_start) + beta_start))
                    .collect()
            }
            Self::SquaredCosCapV2 => betas_for_alpha_bar(n, |t| {
                ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
                    .cos()
                    .powi(2)
            }),
            Self::Exp => betas_for_alpha_bar(n, |t| (-12.0 * t).exp()),
            Self::Laplace => betas_for_alpha_bar(n, |t| {
                let lmb = -0.5 * (0.5 - t).signum() * (1.0 - 2.0 * (0.5 - t).abs() + 1e-6).ln();
                let snr = lmb.exp();
                (snr / (1.0 + snr)).sqrt()
            }),
        })
    }
}

/// A discrete variance-preserving schedule given by `ᾱ_0 … ᾱ_{N−1}`
/// (`α_n = √ᾱ_n`, `σ_n = √(1 − ᾱ_n)`), continuous in `t ∈ [0, N − 1]`
/// (the timestep) by linear interpolation of `log α` between integers.
/// If the last `ᾱ` is 0 (zero terminal SNR), `α` itself is interpolated
/// in the last interval so that it reaches 0 continuously.
#[derive(Clone, Debug, PartialEq)]
pub struct DiscreteVp {
    alphas_cumprod: Vec<f64>,
    log_alpha: Vec<f64>,
}

impl DiscreteVp {
    /// From `β_1 … β_N`: `ᾱ_n = Π_{i ≤ n}(1 − β_i)`, with `1 − β` in f32 and
    /// the product accumulated in f64 and stored as f32 (as torch's
    /// `cumprod` on the CPU).
    pub fn from_betas(betas: &[f64]) -> Result<Self> {
        if let Some((i, b)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(b.is_finite() && **b > 0.0 && **b <= 1.0))
        {
            return Err(Error::InvalidArgument {
                name: "betas",
                reason: format!("β[{i}] = {b} is outside (0, 1]"),
            });
        }
        let mut acc = 1.0f64;
        let acp: Vec<f64> = betas
            .iter()
            .map(|&b| {
                acc *= f32r(1.0 - b);
                f32r(acc)
            })
            .collect();
        Self::from_alphas_cumprod(&acp)
    }

    /// From `ᾱ_0 … ᾱ_{N−1}`: strictly decreasing in `(0, 1]`, except that the
    /// last may be 0 (zero terminal SNR).
    pub fn from_alphas_cumprod(acp: &[f64]) -> Result<Self> {
        let bad = |reason: String| Error::InvalidArgument {
            name: "alphas_cumprod",
            reason,
        };
        if acp.len() < 2 {
            return Err(bad(format!("{} values; at least 2 are needed", acp.len())));
        }
        for (i, &a) in acp.iter().enumerate() {
            let last = i + 1 == acp.len();
            if !(a.is_finite() && a <= 1.0 && (a > 0.0 || (last && a == 0.0))) {
                return Err(bad(format!("ᾱ[{i}] = {a} is outside (0, 1]")));
            }
            if i > 0 && a >= acp[i - 1] {
                return Err(bad(format!("not strictly decreasing at {i}")));
            }
        }
        Ok(Self {
            log_alpha: acp.iter().map(|a| 0.5 * a.ln()).collect(),
            alphas_cumprod: acp.to_vec(),
        })
    }

    /// Rescales to zero terminal SNR (Lin, Liu, Li & Yang 2024, "Common
    /// diffusion noise schedules and sample steps are flawed", Algorithm 1):
    /// `√ᾱ ← (√ᾱ − √ᾱ_last)·√ᾱ_0/(√ᾱ_0 − √ᾱ_last)`, which keeps `ᾱ_0` and
    /// makes the last `ᾱ` exactly 0.
    ///
    /// Computed in f64 (stored as f32). diffusers computes it in f32 through
    /// a round trip via betas, and where `√ᾱ − √ᾱ_last` cancels, its rounding
    /// shows in the last steps (`ᾱ` near 2e-7). `diffuse-diffusers`
    /// reproduces diffusers' f32 arithmetic when a table must match theirs.
    pub fn rescale_zero_terminal_snr(&self) -> Result<Self> {
        let first = self.alphas_cumprod[0].sqrt();
        let last = self.alphas_cumprod[self.alphas_cumprod.len() - 1].sqrt();
        let acp: Vec<f64> = self
            .alphas_cumprod
            .iter()
            .map(|a| f32r(((a.sqrt() - last) * first / (first - last)).powi(2)))
            .collect();
        Self::from_alphas_cumprod(&acp)
    }

    /// `ᾱ_0 … ᾱ_{N−1}`.
    pub fn alphas_cumprod(&self) -> &[f64] {
        &self.alphas_cumprod
    }

    /// Number of training timesteps `N`.
    pub fn len(&self) -> usize {
        self.alphas_cumprod.len()
    }

    /// Always false (a schedule has at least 2 steps).
    pub fn is_empty(&self) -> bool {
        false
    }

    fn log_alpha_at(&self, t: f64) -> f64 {
        let last = self.len() - 1;
        let t = t.clamp(0.0, last as f64);
        let n = (t.floor() as usize).min(last - 1);
        let w = t - n as f64;
        let (l0, l1) = (self.log_alpha[n], self.log_alpha[n + 1]);
        if l1 == f64::NEG_INFINITY {
            // Zero terminal SNR: interpolate α itself in the last interval.
            return ((1.0 - w) * l0.exp()).ln();
        }
        l0 + w * (l1 - l0)
    }
}

impl NoiseSchedule for DiscreteVp {
    fn name(&self) -> &str {
        "discrete-vp"
    }

    fn t_range(&self) -> (f64, f64) {
        (0.0, (self.len() - 1) as f64)
    }

    fn alpha(&self, t: f64) -> f64 {
        self.log_alpha_at(t).exp()
    }

    /// `σ = √(1 − α²) = √(−expm1(2·log α))`, accurate where `α` is near 1.
    fn sigma(&self, t: f64) -> f64 {
        (-(2.0 * self.log_alpha_at(t)).exp_m1()).sqrt()
    }

    /// `λ = 2·log α − log(1 − α²)`.
    fn log_snr(&self, t: f64) -> f64 {
        let la = self.log_alpha_at(t);
        2.0 * la - (-(2.0 * la).exp_m1()).ln()
    }

    /// On a VP schedule `α² = sigmoid(λ)`, so `log α = −½·log(1 + e^{−λ})`;
    /// the interval is found by bisection on the table and `t` solved in it.
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        let (lo, hi) = (self.log_snr(0.0), self.log_snr((self.len() - 1) as f64));
        if lambda.is_nan() || lambda > lo || lambda < hi {
            return Err(Error::InvalidArgument {
                name: "log-SNR",
                reason: format!("λ = {lambda} outside the schedule's range [{hi}, {lo}]"),
            });
        }
        let target = -0.5 * (-lambda).exp().ln_1p();
        // Largest n with log_alpha[n] ≥ target.
        let n = self.log_alpha.partition_point(|&l| l >= target).max(1) - 1;
        let n = n.min(self.len() - 2);
        let (l0, l1) = (self.log_alpha[n], self.log_alpha[n + 1]);
        let w = if l1 == f64::NEG_INFINITY {
            1.0 - (target - l0).exp()
        } else {
            (target - l0) / (l1 - l0)
        };
        Ok(n as f64 + w.clamp(0.0, 1.0))
    }
}

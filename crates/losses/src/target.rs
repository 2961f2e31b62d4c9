//! What the network outputs, the regression target in that space, and how a
//! squared error there relates to the squared error of `x̂₀`.
//!
//! Every parameterisation of the reverse process (survey §2.2.2) is an affine
//! map `x̂₀ = a·x + b·out` at fixed state `x`, so an error `e_T` in the
//! output space `T` and the implied error of the clean-data estimate satisfy
//! `e₀ = b·e_T`, that is
//!
//! `‖target_T − out_T‖² = c_T² · ‖x₀ − x̂₀‖²`, with `c_T² = 1/b²`.
//!
//! These `c_T²` are the "SNR factors" that convert one loss weighting into
//! another: a weight `w₀` on the `x₀`-error is the weight `w₀/c_T²` on the
//! error in space `T` (Kingma et al. 2021, "Variational diffusion models",
//! Salimans & Ho 2022, "Progressive distillation", §4; Kingma & Gao 2023,
//! "Understanding diffusion objectives as the ELBO with simple data
//! augmentation").

use diffuse_core::{Error, Marginal, NoiseSchedule, Result};

/// The space the network predicts in; the loss is a squared error there.
///
/// With the forward marginal `x = α·x₀ + σ·ε` every target is linear in
/// `(x₀, ε)`, `target = p·x₀ + q·ε` ([`Target::coefficients`]), and
/// `‖target − out‖² = c_T²·‖x₀ − x̂₀‖²` ([`Target::x0_factor`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Target {
    /// The noise `ε` (Ho, Jain & Abbeel 2020, "Denoising diffusion
    /// probabilistic models", eq. 14). `x̂₀ = (x − σ·ε̂)/α`, so
    /// `c² = α²/σ² = SNR`.
    Epsilon,
    /// The clean data `x₀` (Ho et al. 2020, §3.2 ablation; Karras et al. 2022
    /// write the denoiser `D(x; σ)` in this space). `c² = 1`.
    X0,
    /// The velocity `v = α·ε − σ·x₀` (Salimans & Ho 2022, §4 and Appendix D).
    /// `α·x − σ·v = (α² + σ²)·x₀`, so `x̂₀ = (α·x − σ·v̂)/(α² + σ²)` and
    /// `c² = (α² + σ²)²/σ²`, which is `SNR + 1` on variance-preserving
    /// schedules (`α² + σ² = 1`).
    V,
    /// The raw output `F` of an EDM-preconditioned network (Karras, Aittala,
    /// Aila & Laine 2022, "Elucidating the design space of diffusion-based
    /// generative models", eq. 7–8 and Table 1), in the variance-exploding
    /// form `x/α = x₀ + σ_e·ε` with `σ_e = σ/α`:
    /// `D = c_skip·x/α + c_out·F`, `c_skip = σ_d²/(σ_e² + σ_d²)`,
    /// `c_out = σ_e·σ_d/√(σ_e² + σ_d²)`. Target
    /// `F* = (x₀ − c_skip·x/α)/c_out = (σ·x₀ − σ_d²·α·ε)/(σ_d·√(σ² + σ_d²·α²))`,
    /// and `c² = 1/c_out² = (σ_e² + σ_d²)/(σ_e·σ_d)²`, which is EDM's loss
    /// weight `λ(σ)` (eq. 8).
    EdmF {
        /// The data standard deviation `σ_d` (0.5 in the paper).
        sigma_data: f64,
    },
    /// The flow-matching / rectified-flow velocity `u = ε − x₀` of the
    /// straight path `x_t = (1 − t)·x₀ + t·ε` (Liu, Gong & Liu 2023; Lipman
    /// et al. 2023; Esser et al. 2024, §2; noise at `t = 1`). For a
    /// general marginal `x = (α + σ)·x₀ + σ·u`, so `x̂₀ = (x − σ·û)/(α + σ)`
    /// and `c² = (α + σ)²/σ²`, which is `1/t²` on the straight path.
    FlowVelocity,
    /// The score `∇ₓ log p(x_t | x₀) = −ε/σ` (Song & Ermon 2019; Song et al.
    /// 2021, "Score-based generative modeling through SDEs", eq. 7).
    /// `x̂₀ = (x + σ²·ŝ)/α`, so `c² = α²/σ⁴`.
    Score,
}

/// A positive quantity written as `α^a · σ^s · r` with integer powers, so
/// that ratios of such quantities cancel their powers exactly before any
/// `0` or `∞` is formed (at `SNR = 0` or `SNR = ∞`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Factor {
    pub alpha_pow: i32,
    pub sigma_pow: i32,
    pub rest: f64,
}

impl Factor {
    pub(crate) const fn new(alpha_pow: i32, sigma_pow: i32, rest: f64) -> Self {
        Self {
            alpha_pow,
            sigma_pow,
            rest,
        }
    }

    /// `self / other` evaluated at `m` (may be `∞`; NaN when `0·∞` remains).
    pub(crate) fn ratio(self, other: Factor, m: Marginal) -> f64 {
        let a = m.alpha.powi(self.alpha_pow - other.alpha_pow);
        let s = m.sigma.powi(self.sigma_pow - other.sigma_pow);
        a * s * (self.rest / other.rest)
    }

    /// The value at `m`.
    pub(crate) fn value(self, m: Marginal) -> f64 {
        m.alpha.powi(self.alpha_pow) * m.sigma.powi(self.sigma_pow) * self.rest
    }
}

impl Target {
    /// Checks the target's own parameter (`σ_d` of [`Target::EdmF`]).
    pub fn validate(&self) -> Result<()> {
        if let Target::EdmF { sigma_data } = *self {
            check_positive("sigma_data", sigma_data)?;
        }
        Ok(())
    }

    /// A short name: `epsilon`, `x0`, `v`, `edm_f`, `flow_velocity`, `score`.
    pub fn name(&self) -> &'static str {
        match self {
            Target::Epsilon => "epsilon",
            Target::X0 => "x0",
            Target::V => "v",
            Target::EdmF { .. } => "edm_f",
            Target::FlowVelocity => "flow_velocity",
            Target::Score => "score",
        }
    }

    /// `c_T²` in factored form (see [`Target::x0_factor`]).
    pub(crate) fn factor(&self, m: Marginal) -> Factor {
        let (a, s) = (m.alpha, m.sigma);
        match *self {
            Target::Epsilon => Factor::new(2, -2, 1.0),
            Target::X0 => Factor::new(0, 0, 1.0),
            Target::V => Factor::new(0, -2, (a * a + s * s).powi(2)),
            Target::EdmF { sigma_data: d } => Factor::new(0, -2, (s * s + d * d * a * a) / (d * d)),
            Target::FlowVelocity => Factor::new(0, -2, (a + s).powi(2)),
            Target::Score => Factor::new(2, -4, 1.0),
        }
    }

    /// `c_T²` with `‖target_T − out_T‖² = c_T²·‖x₀ − x̂₀‖²` at marginal `m`
    /// (state `x` fixed): `SNR` (ε), `1` (x₀), `(α² + σ²)²/σ²` (v),
    /// `(σ_e² + σ_d²)/(σ_e·σ_d)²` (EDM F), `(α + σ)²/σ²` (flow velocity),
    /// `α²/σ⁴` (score). It is `1/b²` for the parameterisation's map
    /// `x̂₀ = a·x + b·out`; `∞` where the output does not determine `x̂₀`'s
    /// error (σ = 0), `0` where `x̂₀` does not depend on it.
    pub fn x0_factor(&self, m: Marginal) -> f64 {
        self.factor(m).value(m)
    }

    /// `(p, q)` with `target = p·x₀ + q·ε` at marginal `m`:
    /// ε `(0, 1)`; x₀ `(1, 0)`; v `(−σ, α)`;
    /// EDM F `(σ, −σ_d²·α)/(σ_d·√(σ² + σ_d²·α²))`; flow velocity `(−1, 1)`;
    /// score `(0, −1/σ)` ([`Error::Undefined`] at `σ = 0`).
    pub fn coefficients(&self, m: Marginal) -> Result<(f64, f64)> {
        let (a, s) = (m.alpha, m.sigma);
        Ok(match *self {
            Target::Epsilon => (0.0, 1.0),
            Target::X0 => (1.0, 0.0),
            Target::V => (-s, a),
            Target::EdmF { sigma_data: d } => {
                let n = d * (s * s + d * d * a * a).sqrt();
                (s / n, -d * d * a / n)
            }
            Target::FlowVelocity => (-1.0, 1.0),
            Target::Score => {
                if s == 0.0 {
                    return Err(Error::Undefined {
                        what: "the score target −ε/σ",
                        at: "at σ = 0".into(),
                    });
                }
                (0.0, -1.0 / s)
            }
        })
    }
}

/// One batch row's noise level, as the loss weightings need it: the forward
/// marginal and, for the likelihood-type weightings ([`crate::Weighting::Elbo`],
/// [`crate::Weighting::Likelihood`]), the rate `dλ/dt` of the log-SNR in the
/// time that is sampled.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Level {
    /// `(α, σ)` of `x = α·x₀ + σ·ε`.
    pub marginal: Marginal,
    /// `dλ/dt` with `λ = log(α²/σ²)`, if known (≤ 0 for a schedule whose
    /// noise grows with `t`).
    pub dlog_snr_dt: Option<f64>,
}

impl Level {
    /// A level from its marginal, without `dλ/dt`.
    pub fn new(marginal: Marginal) -> Result<Self> {
        check_marginal(marginal)?;
        Ok(Self {
            marginal,
            dlog_snr_dt: None,
        })
    }

    /// Adds `dλ/dt`; it must be finite.
    pub fn with_dlog_snr_dt(mut self, rate: f64) -> Result<Self> {
        if !rate.is_finite() {
            return Err(Error::InvalidArgument {
                name: "dlog_snr_dt",
                reason: format!("{rate} is not finite"),
            });
        }
        self.dlog_snr_dt = Some(rate);
        Ok(self)
    }

    /// The variance-exploding level of EDM (Karras et al. 2022): `α = 1`,
    /// noise `σ > 0`, with time `t = σ`, so `λ = −2·ln σ` and
    /// `dλ/dσ = −2/σ`.
    pub fn edm(sigma: f64) -> Result<Self> {
        check_positive("sigma", sigma)?;
        Self::new(Marginal::new(1.0, sigma)?)?.with_dlog_snr_dt(-2.0 / sigma)
    }

    /// The straight (rectified-flow) path at `t ∈ (0, 1)`: `α = 1 − t`,
    /// `σ = t`, `λ = 2·ln((1 − t)/t)`, `dλ/dt = −2/(t·(1 − t))` (Esser et al.
    /// 2024).
    pub fn flow(t: f64) -> Result<Self> {
        if !(t.is_finite() && t > 0.0 && t < 1.0) {
            return Err(Error::InvalidArgument {
                name: "t",
                reason: format!("{t} is not in (0, 1)"),
            });
        }
        Self::new(Marginal::new(1.0 - t, t)?)?.with_dlog_snr_dt(-2.0 / (t * (1.0 - t)))
    }

    /// The level of `schedule` at time `t`, with `dλ/dt` from finite
    /// differences of [`NoiseSchedule::log_snr`], Richardson-extrapolated:
    /// with `h = 10⁻⁵·(t_max − t_min)` and the central difference
    /// `D(h) = (λ(t+h) − λ(t−h))/(2h)`, `dλ/dt ≈ (4·D(h/2) − D(h))/3`
    /// (error `O(h⁴)`); within `h` of an end the one-sided
    /// `D(h) = ±(−3λ(t) + 4λ(t±h) − λ(t±2h))/(2h)` is extrapolated the same
    /// way (error `O(h³)`). Relative error about 10⁻⁹ on smooth schedules; on
    /// piecewise-interpolated discrete schedules, the slope of the local
    /// piece. `dλ/dt` is left `None` where it is not finite (an end point
    /// with infinite `λ`).
    pub fn on_schedule(schedule: &dyn NoiseSchedule, t: f64) -> Result<Self> {
        schedule.check_t(t)?;
        let level = Self::new(schedule.marginal(t))?;
        let (lo, hi) = schedule.t_range();
        let h = 1e-5 * (hi - lo);
        let l = |x: f64| schedule.log_snr(x);
        let central = |h: f64| (l(t + h) - l(t - h)) / (2.0 * h);
        let one_sided = |h: f64| (-3.0 * l(t) + 4.0 * l(t + h) - l(t + 2.0 * h)) / (2.0 * h);
        let rate = if !(h > 0.0 && h.is_finite()) {
            f64::NAN
        } else if t - h >= lo && t + h <= hi {
            (4.0 * central(0.5 * h) - central(h)) / 3.0
        } else if t - h < lo {
            (4.0 * one_sided(0.5 * h) - one_sided(h)) / 3.0
        } else {
            (4.0 * one_sided(-0.5 * h) - one_sided(-h)) / 3.0
        };
        Ok(Self {
            dlog_snr_dt: rate.is_finite().then_some(rate),
            ..level
        })
    }

    /// `SNR = α²/σ²`.
    pub fn snr(&self) -> f64 {
        self.marginal.snr()
    }

    /// `λ = log SNR`.
    pub fn log_snr(&self) -> f64 {
        self.marginal.log_snr()
    }
}

/// `α, σ` finite, non-negative, not both zero.
pub(crate) fn check_marginal(m: Marginal) -> Result<()> {
    Marginal::new(m.alpha, m.sigma).map(|_| ())
}

/// `value` finite and `> 0`.
pub(crate) fn check_positive(name: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidArgument {
            name,
            reason: format!("{value} must be positive and finite"),
        })
    }
}

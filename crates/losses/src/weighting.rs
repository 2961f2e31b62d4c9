//! Loss weightings: how much each noise level counts (survey §2.2.4).
//!
//! All the objectives here are `E_{t, x₀, ε}[ w(t)·‖target − out‖² ]` in the
//! space of the network output. Each [`Weighting`] is defined once, by its
//! weight `w₀` on the clean-data error `‖x₀ − x̂₀‖²`; in output space `T` the
//! weight is `w₀/c_T²` with the factor `c_T²` of [`Target::x0_factor`]
//! (Kingma et al. 2021; Kingma & Gao 2023 list the same
//! weightings as functions of `λ = log SNR`). So min-SNR-γ for ε-, x₀- and
//! v-prediction is one variant, [`Weighting::MinSnr`], evaluated in three
//! spaces: `min(SNR, γ)/SNR`, `min(SNR, γ)` and `min(SNR, γ)/(SNR + 1)`.
//!
//! Powers of `α` and `σ` cancel symbolically before evaluation, so the
//! weights stay exact at `SNR = 0` and `SNR = ∞` wherever they have a limit
//! (ε-MSE with an ε-target is exactly 1 everywhere, min-SNR on ε is 1 at
//! `SNR = 0`); where they have none the result is [`Error::Undefined`].

use crate::target::{Factor, Level, Target, check_positive};
use diffuse_core::{Error, Result};

/// A loss weighting, defined by its weight on `‖x₀ − x̂₀‖²` (equations below
/// write `SNR = α²/σ²`, `λ = log SNR`, `σ_e = σ/α`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weighting {
    /// Unit weight on the squared error in space `T`: `w₀ = c_T²`.
    /// `Unit(Target::Epsilon)` is `L_simple` (Ho et al. 2020, eq. 14),
    /// `Unit(Target::X0)` the x₀-MSE, `Unit(Target::V)` the v-MSE (Salimans &
    /// Ho 2022, §4: `w₀ = SNR + 1` when VP), `Unit(Target::EdmF {..})` EDM's
    /// F-loss and `Unit(Target::FlowVelocity)` conditional flow matching
    /// (Lipman et al. 2023; `w₀ = 1/t²` on the straight path, Esser et al.
    /// 2024).
    Unit(Target),
    /// `w₀ = SNR` (the x₀-form of `L_simple`; Kingma et al. 2021 and
    /// Salimans & Ho 2022, §4): the same loss as `Unit(Target::Epsilon)`.
    Snr,
    /// Truncated SNR, `w₀ = max(SNR, 1)` (Salimans & Ho 2022, §4: "truncated
    /// SNR weighting", `L = max(‖x₀ − x̂₀‖²·SNR, ‖x₀ − x̂₀‖²)`).
    TruncatedSnr,
    /// Min-SNR-γ, `w₀ = min(SNR, γ)` (Hang et al. 2023, "Efficient diffusion
    /// training via Min-SNR weighting strategy"; γ = 5):
    /// `min(SNR, γ)/SNR` on ε, `min(SNR, γ)` on x₀, `min(SNR, γ)/(SNR + 1)` on
    /// v (VP).
    MinSnr {
        /// The cap γ > 0.
        gamma: f64,
    },
    /// Soft-min-SNR, `w₀ = (SNR⁻¹ + γ⁻¹)⁻¹ = SNR·γ/(SNR + γ)` (Crowson et al.
    /// 2024, "Scalable high-resolution pixel-space image synthesis with
    /// hourglass diffusion transformers"; k-diffusion's `soft-min-snr`
    /// is γ = 1 with SNR measured against `σ_d`, `(σ_e·σ_d)²/(σ_e² + σ_d²)²`
    /// on EDM's F, up to the constant `1/σ_d²`).
    SoftMinSnr {
        /// The soft cap γ > 0.
        gamma: f64,
    },
    /// P2 weighting, `λ'_t = λ_t/(k + SNR)^γ` on `L_simple`'s ε-error
    /// (Choi et al. 2022, "Perception prioritized training of diffusion
    /// models"; k = 1, γ ∈ {0.5, 1}): `w₀ = SNR/(k + SNR)^γ`.
    P2 {
        /// Offset `k ≥ 0` (1 in the paper).
        k: f64,
        /// Exponent `γ ≥ 0` (0 gives `L_simple`).
        gamma: f64,
    },
    /// EDM's `λ(σ) = (σ_e² + σ_d²)/(σ_e·σ_d)²` on the denoiser's error
    /// `‖D − x₀‖²` (Karras et al. 2022, eq. 8 and Table 1): unit weight on
    /// the preconditioned output `F`, since `λ·c_out² = 1`.
    Edm {
        /// The data standard deviation `σ_d` (0.5).
        sigma_data: f64,
    },
    /// Sigmoid weighting `w(λ) = sigmoid(b − λ)` on the ε-error (Kingma & Gao
    /// 2023; the bias `b` is a hyperparameter):
    /// `w₀ = SNR·sigmoid(b − λ)`. Their objective integrates over `λ`,
    /// `½∫ w(λ)·‖ε − ε̂‖² dλ`: when `t` is sampled, multiply by
    /// `−dλ/dt / p(t)` (per-row weights of the loss) to match it.
    Sigmoid {
        /// The bias `b`.
        bias: f64,
    },
    /// The continuous-time ELBO of VDM, `L_∞ = −½·E_{t~U}[dλ/dt·‖ε − ε̂‖²]`
    /// (Kingma, Salimans, Poole & Ho 2021, "Variational diffusion models",
    /// continuous-time loss, with `γ = −λ`): weight `−½·dλ/dt` on the ε-error,
    /// `w₀ = −½·dλ/dt·SNR = −½·dSNR/dt`. Needs [`Level::dlog_snr_dt`].
    Elbo,
    /// Likelihood weighting `λ(t) = g(t)²` on the score-matching error
    /// `‖s_θ − ∇ log p(x_t|x₀)‖²` (Song, Durkan, Murray & Ermon 2021,
    /// "Maximum likelihood training of score-based diffusion models",
    /// Theorem 1). For the linear SDE with marginal `(α, σ)`,
    /// `g² = dσ²/dt − 2·(d ln α/dt)·σ² = −σ²·dλ/dt`, so the weight is
    /// `−dλ/dt` on the ε-error — twice [`Weighting::Elbo`] — and
    /// `w₀ = −dλ/dt·SNR`. Needs [`Level::dlog_snr_dt`].
    Likelihood,
}

impl Weighting {
    /// `L_simple`: unit weight on the ε-error (Ho et al. 2020, eq. 14).
    pub const EPSILON_MSE: Weighting = Weighting::Unit(Target::Epsilon);
    /// Unit weight on the x₀-error.
    pub const X0_MSE: Weighting = Weighting::Unit(Target::X0);
    /// Unit weight on the v-error (Salimans & Ho 2022).
    pub const V_MSE: Weighting = Weighting::Unit(Target::V);

    /// Min-SNR-γ, checked (`γ` positive and finite, or `+∞` for no cap).
    pub fn min_snr(gamma: f64) -> Result<Self> {
        let w = Weighting::MinSnr { gamma };
        w.validate()?;
        Ok(w)
    }

    /// EDM's `λ(σ)` with data standard deviation `sigma_data`, checked.
    pub fn edm(sigma_data: f64) -> Result<Self> {
        let w = Weighting::Edm { sigma_data };
        w.validate()?;
        Ok(w)
    }

    /// Checks the parameters: `γ > 0` (min-SNR may be `+∞`, no cap), P2's
    /// `k ≥ 0` and `γ ≥ 0` finite, `σ_d > 0` finite, the sigmoid bias in
    /// `[−700, 700]` (so `e^b` is finite).
    pub fn validate(&self) -> Result<()> {
        match *self {
            Weighting::Unit(t) => t.validate(),
            Weighting::Snr | Weighting::TruncatedSnr | Weighting::Elbo | Weighting::Likelihood => {
                Ok(())
            }
            Weighting::MinSnr { gamma } => {
                if gamma > 0.0 && !gamma.is_nan() {
                    Ok(())
                } else {
                    Err(invalid("gamma", format!("{gamma} must be positive")))
                }
            }
            Weighting::SoftMinSnr { gamma } => check_positive("gamma", gamma),
            Weighting::P2 { k, gamma } => {
                if !(k.is_finite() && k >= 0.0) {
                    return Err(invalid("k", format!("{k} must be finite and ≥ 0")));
                }
                if !(gamma.is_finite() && gamma >= 0.0) {
                    return Err(invalid("gamma", format!("{gamma} must be finite and ≥ 0")));
                }
                Ok(())
            }
            Weighting::Edm { sigma_data } => check_positive("sigma_data", sigma_data),
            Weighting::Sigmoid { bias } => {
                // e^b must stay finite (used towards SNR = ∞).
                if bias.is_finite() && bias.abs() <= 700.0 {
                    Ok(())
                } else {
                    Err(invalid("bias", format!("{bias} is not in [−700, 700]")))
                }
            }
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Weighting::Unit(t) => match t {
                Target::Epsilon => "epsilon-mse",
                Target::X0 => "x0-mse",
                Target::V => "v-mse",
                Target::EdmF { .. } => "edm-f-mse",
                Target::FlowVelocity => "flow-matching",
                Target::Score => "score-mse",
            },
            Weighting::Snr => "snr",
            Weighting::TruncatedSnr => "truncated-snr",
            Weighting::MinSnr { .. } => "min-snr",
            Weighting::SoftMinSnr { .. } => "soft-min-snr",
            Weighting::P2 { .. } => "p2",
            Weighting::Edm { .. } => "edm",
            Weighting::Sigmoid { .. } => "sigmoid",
            Weighting::Elbo => "elbo",
            Weighting::Likelihood => "likelihood",
        }
    }

    /// `w₀` in factored form.
    fn factor(&self, level: &Level) -> Result<Factor> {
        let m = level.marginal;
        let (a, s) = (m.alpha, m.sigma);
        let snr = Factor::new(2, -2, 1.0);
        Ok(match *self {
            Weighting::Unit(t) => t.factor(m),
            Weighting::Snr => snr,
            // SNR ≥ 1 ⟺ α ≥ σ.
            Weighting::TruncatedSnr => {
                if a >= s {
                    snr
                } else {
                    Factor::new(0, 0, 1.0)
                }
            }
            // SNR < γ ⟺ α² < γ·σ².
            Weighting::MinSnr { gamma } => {
                if a * a < gamma * s * s {
                    snr
                } else {
                    Factor::new(0, 0, gamma)
                }
            }
            // SNR·γ/(SNR + γ) = α²·γ/(α² + γ·σ²).
            Weighting::SoftMinSnr { gamma } => Factor::new(2, 0, gamma / (a * a + gamma * s * s)),
            // SNR/(k + SNR)^γ = (α²/σ²)·(σ²/(k·σ² + α²))^γ.
            Weighting::P2 { k, gamma } => {
                let d = k * s * s + a * a;
                if d == 0.0 {
                    return Err(undefined(self, level, "k + SNR = 0"));
                }
                Factor::new(2, -2, (s * s / d).powf(gamma))
            }
            Weighting::Edm { sigma_data } => Target::EdmF { sigma_data }.factor(m),
            // SNR·sigmoid(b − λ) = e^b·sigmoid(λ − b): the first form is
            // finite towards SNR = 0, the second towards SNR = ∞.
            Weighting::Sigmoid { bias } => {
                let lambda = level.log_snr();
                if lambda <= bias {
                    Factor::new(2, -2, sigmoid(bias - lambda))
                } else {
                    Factor::new(0, 0, bias.exp() * sigmoid(lambda - bias))
                }
            }
            Weighting::Elbo => Factor::new(2, -2, -0.5 * rate(self, level)?),
            Weighting::Likelihood => Factor::new(2, -2, -rate(self, level)?),
        })
    }

    /// The weight `w₀` on `‖x₀ − x̂₀‖²` at `level`.
    pub fn x0_weight(&self, level: &Level) -> Result<f64> {
        self.weight(Target::X0, level)
    }

    /// The weight on `‖target − out‖²` when the network predicts in space
    /// `target`: `w₀/c_T²`, with powers of `α` and `σ` cancelled first.
    /// Finite and `≥ 0`, or [`Error::Undefined`] where the weighting has no
    /// value in that space (for example the x₀-MSE of an ε-predicting
    /// network at `SNR = 0`), or [`Error::InvalidArgument`] for bad
    /// parameters or a level without the `dλ/dt` it needs.
    pub fn weight(&self, target: Target, level: &Level) -> Result<f64> {
        self.validate()?;
        target.validate()?;
        crate::target::check_marginal(level.marginal)?;
        let m = level.marginal;
        let w = self.factor(level)?.ratio(target.factor(m), m);
        if w.is_finite() && w >= 0.0 {
            Ok(w)
        } else {
            Err(Error::Undefined {
                what: "the loss weight",
                at: format!(
                    "for {} on a {} output at (α, σ) = ({}, {}) (value {w})",
                    self.name(),
                    target.name(),
                    m.alpha,
                    m.sigma
                ),
            })
        }
    }
}

/// `dλ/dt`, required and `≤ 0`.
fn rate(w: &Weighting, level: &Level) -> Result<f64> {
    match level.dlog_snr_dt {
        None => Err(invalid(
            "dlog_snr_dt",
            format!(
                "the {} weighting needs dλ/dt at the level (Level::with_dlog_snr_dt)",
                w.name()
            ),
        )),
        Some(r) if r.is_finite() && r <= 0.0 => Ok(r),
        Some(r) => Err(invalid(
            "dlog_snr_dt",
            format!(
                "{r}: the log-SNR must be non-increasing in t for the {} weighting",
                w.name()
            ),
        )),
    }
}

/// The logistic function, without overflow: `1/(1 + e⁻ˣ)` for `x ≥ 0`,
/// `eˣ/(1 + eˣ)` otherwise.
pub(crate) fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidArgument { name, reason }
}

fn undefined(w: &Weighting, level: &Level, why: &str) -> Error {
    Error::Undefined {
        what: "the loss weight",
        at: format!(
            "for {} at (α, σ) = ({}, {}): {why}",
            w.name(),
            level.marginal.alpha,
            level.marginal.sigma
        ),
    }
}

//! Preconditioned networks, Karras, Aittala, Aila & Laine 2022, "Elucidating
//! the design space of diffusion-based generative models", Table 1.

use crate::{Affine, Error, Marginal, Parameterization, Result, finite};

/// The four preconditionings of Karras et al. 2022, Table 1. All are written
/// in the variance-exploding form `x/α = x₀ + σ_ve·ε` with `σ_ve = σ/α`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Preconditioning {
    /// VP (Song et al. 2021): `c_skip = 1`, `c_out = −σ_ve`,
    /// `c_in = 1/√(σ_ve² + 1)`, `c_noise = (M − 1)·t(σ_ve)` with the VP time
    /// `t(σ) = (√(β_min² + 2β_d·ln(σ² + 1)) − β_min)/β_d`.
    Vp {
        /// `β_d` (19.9 in the paper).
        beta_d: f64,
        /// `β_min` (0.1).
        beta_min: f64,
        /// `M` (1000).
        m: f64,
    },
    /// VE (Song et al. 2021): `c_skip = 1`, `c_out = σ_ve`, `c_in = 1`,
    /// `c_noise = ln(σ_ve/2)`.
    Ve,
    /// iDDPM (Nichol & Dhariwal 2021): `c_skip = 1`, `c_out = −σ_ve`,
    /// `c_in = 1/√(σ_ve² + 1)`, `c_noise = M − 1 − j(σ_ve)`, the discrete
    /// timestep of the noise level: here the schedule time `t`, which is that
    /// timestep on diffuse's discrete schedules.
    Iddpm,
    /// EDM: `c_skip = σ_d²/(σ_ve² + σ_d²)`, `c_out = σ_ve·σ_d/√(σ_ve² + σ_d²)`,
    /// `c_in = 1/√(σ_ve² + σ_d²)`, `c_noise = ¼·ln σ_ve`.
    Edm,
}

/// A preconditioned network `F`: the denoiser is
/// `D(x/α; σ_ve) = c_skip·x/α + c_out·F(c_in·x/α; c_noise)`, so
/// `x̂₀ = (c_skip/α)·x + c_out·out`, the network sees `(c_in/α)·x`, and is
/// conditioned on `c_noise` (Karras et al. 2022, eq. 7 and Table 1).
///
/// Undefined at `α = 0` (infinite `σ_ve`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Edm {
    /// The data standard deviation `σ_d` (0.5 in the paper); used by
    /// [`Preconditioning::Edm`].
    pub sigma_data: f64,
    /// Which row of Table 1.
    pub preconditioning: Preconditioning,
}

impl Default for Edm {
    fn default() -> Self {
        Self {
            sigma_data: 0.5,
            preconditioning: Preconditioning::Edm,
        }
    }
}

impl Edm {
    /// EDM preconditioning with data standard deviation `sigma_data`.
    pub fn new(sigma_data: f64) -> Result<Self> {
        if !(sigma_data.is_finite() && sigma_data > 0.0) {
            return Err(Error::InvalidArgument {
                name: "sigma_data",
                reason: format!("{sigma_data} must be positive and finite"),
            });
        }
        Ok(Self {
            sigma_data,
            preconditioning: Preconditioning::Edm,
        })
    }

    fn sigma_ve(&self, m: Marginal) -> Result<f64> {
        if m.alpha == 0.0 {
            return Err(Error::Undefined {
                what: "EDM preconditioning",
                at: "at α = 0 (σ_ve = ∞)".into(),
            });
        }
        Ok(m.sigma / m.alpha)
    }

    /// `(c_skip, c_out, c_in)` at `σ_ve` (Table 1).
    pub fn coefficients(&self, sigma_ve: f64) -> (f64, f64, f64) {
        let s = sigma_ve;
        match self.preconditioning {
            Preconditioning::Vp { .. } | Preconditioning::Iddpm => {
                (1.0, -s, 1.0 / (s * s + 1.0).sqrt())
            }
            Preconditioning::Ve => (1.0, s, 1.0),
            Preconditioning::Edm => {
                let d2 = self.sigma_data * self.sigma_data;
                let r = (s * s + d2).sqrt();
                (d2 / (s * s + d2), s * self.sigma_data / r, 1.0 / r)
            }
        }
    }
}

impl Parameterization for Edm {
    fn name(&self) -> &str {
        "edm"
    }

    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        let (c_skip, c_out, _) = self.coefficients(self.sigma_ve(m)?);
        finite(
            "x̂₀ from a preconditioned network",
            m,
            Affine {
                a: c_skip / m.alpha,
                b: c_out,
            },
        )
    }

    /// `c_in/α`, written without `σ_ve` so it stays finite as `α → 0`:
    /// `1/√(σ² + α²)` (VP, iDDPM), `1/√(σ² + α²σ_d²)` (EDM), `1/α` (VE, which
    /// has no finite limit; its `x̂₀` map is an error there anyway).
    fn input_scale(&self, m: Marginal) -> f64 {
        let (a, s) = (m.alpha, m.sigma);
        match self.preconditioning {
            Preconditioning::Vp { .. } | Preconditioning::Iddpm => 1.0 / (s * s + a * a).sqrt(),
            Preconditioning::Ve => 1.0 / a,
            Preconditioning::Edm => {
                1.0 / (s * s + a * a * self.sigma_data * self.sigma_data).sqrt()
            }
        }
    }

    fn noise_conditioning(&self, t: f64, m: Marginal) -> Result<f64> {
        let s = self.sigma_ve(m)?;
        let c = match self.preconditioning {
            Preconditioning::Vp {
                beta_d,
                beta_min,
                m,
            } => {
                let t_vp = ((beta_min * beta_min + 2.0 * beta_d * (s * s).ln_1p()).sqrt()
                    - beta_min)
                    / beta_d;
                (m - 1.0) * t_vp
            }
            Preconditioning::Ve => (0.5 * s).ln(),
            Preconditioning::Iddpm => t,
            Preconditioning::Edm => 0.25 * s.ln(),
        };
        if c.is_finite() {
            Ok(c)
        } else {
            Err(Error::Undefined {
                what: "c_noise",
                at: format!("at σ_ve = {s}"),
            })
        }
    }
}

//! Exponential moving averages of the parameters: the classic EMA with
//! warm-up, and the power-function EMA of Karras et al. 2024 (EDM2).
//!
//! Both update `θ̄ ← β·θ̄ + (1 − β)·θ` once per optimiser step, with a
//! decay `β` that depends on the step, computed in f64.

use diffuse_core::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// How the decay `β` follows the step count.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EmaKind {
    /// `β = min(decay, (1 + s)/(10 + s))` with `s` the number of updates
    /// done before this one (the warm-up of TensorFlow's
    /// `ExponentialMovingAverage(num_updates=…)`, used by DDPM and
    /// score_sde); without `warmup`, `β = decay`.
    Classic {
        /// The asymptotic decay (0.9999 in DDPM).
        decay: f64,
        /// Whether to warm up.
        warmup: bool,
    },
    /// Power-function EMA (Karras et al. 2024, "Analyzing and improving the
    /// training dynamics of diffusion models", Eq. 2): at update `t = 1, 2,
    /// …`, `β_t = (1 − 1/t)^(γ+1)`, which averages the parameter history with
    /// weights `∝ τ^γ`. The first update copies the parameters.
    Power {
        /// The exponent `γ` (see [`gamma_from_sigma_rel`]).
        gamma: f64,
    },
}

/// `σ_rel(γ) = √((γ + 1)/((γ + 2)²·(γ + 3)))`: the relative standard
/// deviation of the power-function EMA profile (Karras et al. 2024, Eq. 3).
pub fn sigma_rel_from_gamma(gamma: f64) -> Result<f64> {
    if !(gamma.is_finite() && gamma > -1.0) {
        return Err(invalid(
            "gamma",
            format!("must be finite and > −1, got {gamma}"),
        ));
    }
    Ok(((gamma + 1.0) / ((gamma + 2.0).powi(2) * (gamma + 3.0))).sqrt())
}

/// The exponent `γ` with [`sigma_rel_from_gamma`]`(γ) = σ_rel`: the largest
/// real root of `γ³ + 7γ² + (16 − σ_rel⁻²)·γ + (12 − σ_rel⁻²) = 0` (EDM2's
/// `std_to_exp`), by Newton's method from the right (the cubic is convex
/// right of its inflection point −7/3, so the iteration decreases
/// monotonically to the root). `σ_rel` must lie in `(0, 0.28]` (the decreasing
/// branch of the profile width, `γ ≳ 0.17`), e.g. 0.05 → 16.97, 0.10 → 6.94.
pub fn gamma_from_sigma_rel(sigma_rel: f64) -> Result<f64> {
    if !(sigma_rel.is_finite() && sigma_rel > 0.0 && sigma_rel <= 0.28) {
        return Err(invalid(
            "sigma_rel",
            format!("must be in (0, 0.28], got {sigma_rel}"),
        ));
    }
    let t = sigma_rel.powi(-2);
    let f = |g: f64| ((g + 7.0) * g + (16.0 - t)) * g + (12.0 - t);
    let df = |g: f64| (3.0 * g + 14.0) * g + (16.0 - t);
    // f(√t) > 0 for t ≥ 12.7 (σ_rel ≤ 0.28), and the root is below it.
    let mut g = t.sqrt();
    for _ in 0..200 {
        let step = f(g) / df(g);
        g -= step;
        if step.abs() <= 1e-15 * g.abs().max(1.0) {
            break;
        }
    }
    if !(g.is_finite() && g > -1.0) {
        return Err(Error::Undefined {
            what: "the power-EMA exponent",
            at: format!("at σ_rel = {sigma_rel}"),
        });
    }
    Ok(g)
}

/// An EMA copy of a flat parameter buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct Ema {
    kind: EmaKind,
    values: Vec<f32>,
    updates: u64,
}

impl Ema {
    /// An EMA starting at `params`.
    pub fn new(kind: EmaKind, params: &[f32]) -> Result<Self> {
        match kind {
            EmaKind::Classic { decay, .. } => {
                if !(0.0..=1.0).contains(&decay) {
                    return Err(invalid(
                        "EMA decay",
                        format!("must be in [0, 1], got {decay}"),
                    ));
                }
            }
            EmaKind::Power { gamma } => {
                sigma_rel_from_gamma(gamma)?;
            }
        }
        Ok(Self {
            kind,
            values: params.to_vec(),
            updates: 0,
        })
    }

    /// An EMA restored from a checkpoint.
    pub fn from_state(kind: EmaKind, values: Vec<f32>, updates: u64) -> Result<Self> {
        let mut e = Self::new(kind, &[])?;
        e.values = values;
        e.updates = updates;
        Ok(e)
    }

    /// The kind.
    pub fn kind(&self) -> EmaKind {
        self.kind
    }

    /// The averaged parameters.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Number of updates done.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The decay `β` the next update will use.
    pub fn next_decay(&self) -> f64 {
        let s = self.updates as f64;
        match self.kind {
            EmaKind::Classic {
                decay,
                warmup: true,
            } => decay.min((1.0 + s) / (10.0 + s)),
            EmaKind::Classic {
                decay,
                warmup: false,
            } => decay,
            EmaKind::Power { gamma } => {
                let t = s + 1.0;
                (1.0 - 1.0 / t).powf(gamma + 1.0)
            }
        }
    }

    /// `θ̄ ← β·θ̄ + (1 − β)·θ`; returns `β`.
    pub fn update(&mut self, params: &[f32]) -> Result<f64> {
        if params.len() != self.values.len() {
            return Err(Error::ShapeMismatch {
                op: "Ema::update",
                expected: vec![self.values.len()],
                found: vec![params.len()],
            });
        }
        let beta = self.next_decay();
        let (b, a) = (beta as f32, (1.0 - beta) as f32);
        self.values
            .par_chunks_mut(1 << 15)
            .zip(params.par_chunks(1 << 15))
            .for_each(|(e, p)| e.iter_mut().zip(p).for_each(|(e, p)| *e = b * *e + a * *p));
        self.updates += 1;
        Ok(beta)
    }
}

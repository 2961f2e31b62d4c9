//! Optimisers on flat parameter buffers: Adam and AdamW, gradient clipping
//! by global norm, learning-rate warm-up and cosine decay.

use diffuse_core::{Error, Result};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// Elements per parallel chunk of the element-wise loops.
const CHUNK: usize = 1 << 15;

/// Hyperparameters of [`Adam`].
///
/// With `decoupled = false` the weight decay is an L2 term added to the
/// gradient (Adam, Kingma & Ba 2015, as PyTorch's `Adam(weight_decay=…)`);
/// with `decoupled = true` it is applied to the weights directly, scaled by
/// the learning rate (AdamW, Loshchilov & Hutter 2019, as PyTorch's
/// `AdamW`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamConfig {
    /// `β₁`, decay of the first moment (0.9).
    pub beta1: f64,
    /// `β₂`, decay of the second moment (0.999).
    pub beta2: f64,
    /// `ε` added to `√v̂` (1e-8).
    pub eps: f64,
    /// Weight decay `λ` (0 for plain Adam).
    pub weight_decay: f64,
    /// AdamW's decoupled weight decay.
    pub decoupled: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        }
    }
}

impl AdamConfig {
    /// AdamW with weight decay `λ` (PyTorch's default is 0.01).
    pub fn adamw(weight_decay: f64) -> Self {
        Self {
            weight_decay,
            decoupled: true,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(invalid(name, format!("must be in [0, 1), got {v}")));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(invalid(
                "eps",
                format!("must be finite and > 0, got {}", self.eps),
            ));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(invalid(
                "weight_decay",
                format!("must be finite and ≥ 0, got {}", self.weight_decay),
            ));
        }
        Ok(())
    }
}

/// Adam / AdamW state: first and second moments of every parameter and the
/// step count.
///
/// Step `t` (counted from 1), gradient `g`, learning rate `η`:
///
/// ```text
/// g  ← g + λ·θ                      (Adam with L2 decay only)
/// m  ← β₁·m + (1 − β₁)·g
/// v  ← β₂·v + (1 − β₂)·g²
/// m̂ = m/(1 − β₁ᵗ),  v̂ = v/(1 − β₂ᵗ)          (bias correction)
/// θ  ← θ − η·λ·θ                    (AdamW only)
/// θ  ← θ − η·m̂/(√v̂ + ε)
/// ```
///
/// (Kingma & Ba 2015, Algorithm 1; Loshchilov & Hutter 2019, Algorithm 2.)
/// The scalars `η/(1 − β₁ᵗ)`, `1/√(1 − β₂ᵗ)` are computed in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Adam {
    config: AdamConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    step: u64,
}

impl Adam {
    /// A fresh state for `len` parameters.
    pub fn new(config: AdamConfig, len: usize) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            m: vec![0.0; len],
            v: vec![0.0; len],
            step: 0,
        })
    }

    /// A state restored from a checkpoint.
    pub fn from_state(config: AdamConfig, m: Vec<f32>, v: Vec<f32>, step: u64) -> Result<Self> {
        config.validate()?;
        if m.len() != v.len() {
            return Err(Error::ShapeMismatch {
                op: "Adam::from_state",
                expected: vec![m.len()],
                found: vec![v.len()],
            });
        }
        if v.iter().any(|x| !(x.is_finite() && *x >= 0.0)) || m.iter().any(|x| !x.is_finite()) {
            return Err(Error::NonFinite("Adam moments".into()));
        }
        Ok(Self { config, m, v, step })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }

    /// First moments.
    pub fn m(&self) -> &[f32] {
        &self.m
    }

    /// Second moments.
    pub fn v(&self) -> &[f32] {
        &self.v
    }

    /// Number of updates done.
    pub fn step(&self) -> u64 {
        self.step
    }

    /// One update of `params` with `grads` at learning rate `lr`.
    pub fn update(&mut self, params: &mut [f32], grads: &[f32], lr: f64) -> Result<()> {
        if params.len() != self.m.len() || grads.len() != self.m.len() {
            return Err(Error::ShapeMismatch {
                op: "Adam::update",
                expected: vec![self.m.len()],
                found: vec![params.len(), grads.len()],
            });
        }
        if !(lr.is_finite() && lr >= 0.0) {
            return Err(invalid(
                "learning rate",
                format!("must be finite and ≥ 0, got {lr}"),
            ));
        }
        let t = self.step + 1;
        let c = &self.config;
        let bc1 = 1.0 - c.beta1.powf(t as f64);
        let bc2 = 1.0 - c.beta2.powf(t as f64);
        // θ ← θ − (η/bc1)·m / (√v/√bc2 + ε)
        let step_size = (lr / bc1) as f32;
        let inv_sqrt_bc2 = (1.0 / bc2.sqrt()) as f32;
        let (b1, b2, eps) = (c.beta1 as f32, c.beta2 as f32, c.eps as f32);
        let (one_m_b1, one_m_b2) = ((1.0 - c.beta1) as f32, (1.0 - c.beta2) as f32);
        let l2 = if c.decoupled {
            0.0
        } else {
            c.weight_decay as f32
        };
        let shrink = if c.decoupled {
            (1.0 - lr * c.weight_decay) as f32
        } else {
            1.0
        };
        // Every chunk is updated (a reduction, not a short-circuiting
        // `all`), and checked while it is still in cache.
        let finite = params
            .par_chunks_mut(CHUNK)
            .zip(grads.par_chunks(CHUNK))
            .zip(self.m.par_chunks_mut(CHUNK))
            .zip(self.v.par_chunks_mut(CHUNK))
            .map(|(((p, g), m), v)| {
                for (((p, g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                    let g = *g + l2 * *p;
                    *m = b1 * *m + one_m_b1 * g;
                    *v = b2 * *v + one_m_b2 * (g * g);
                    let denom = v.sqrt() * inv_sqrt_bc2 + eps;
                    *p = shrink * *p - step_size * (*m / denom);
                }
                p.iter().all(|p| p.is_finite())
            })
            .reduce(|| true, |a, b| a && b);
        self.step = t;
        if !finite {
            return Err(Error::NonFinite("parameters after the Adam update".into()));
        }
        Ok(())
    }
}

/// The global L2 norm `‖g‖ = √(Σ gᵢ²)` of a flat gradient, accumulated in
/// f64.
pub fn global_norm(grads: &[f32]) -> f64 {
    grads
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&g| f64::from(g) * f64::from(g)).sum::<f64>())
        .collect::<Vec<_>>()
        .iter()
        .sum::<f64>()
        .sqrt()
}

/// Clipping by global norm (Pascanu et al. 2013; PyTorch's
/// `clip_grad_norm_`): when `‖g‖ > max_norm`, `g ← g·max_norm/(‖g‖ + 1e-6)`.
/// Returns the norm before clipping; a non-finite norm is an error.
pub fn clip_grad_norm(grads: &mut [f32], max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(invalid(
            "max_norm",
            format!("must be finite and > 0, got {max_norm}"),
        ));
    }
    let norm = global_norm(grads);
    if !norm.is_finite() {
        return Err(Error::NonFinite("gradient norm".into()));
    }
    if norm > max_norm {
        let s = (max_norm / (norm + 1e-6)) as f32;
        grads
            .par_chunks_mut(CHUNK)
            .for_each(|c| c.iter_mut().for_each(|g| *g *= s));
    }
    Ok(norm)
}

/// Learning rate as a function of the step: linear warm-up, then constant or
/// cosine decay.
///
/// ```text
/// η(s) = η₀·(s + 1)/W                                  s < W
/// η(s) = η_min + ½(η₀ − η_min)(1 + cos(π·p)),  p = min(1, (s − W)/(T − W))   (cosine)
/// η(s) = η₀                                              (constant)
/// ```
///
/// (warm-up: Goyal et al. 2017; cosine: Loshchilov & Hutter 2017, SGDR
/// without restarts). Steps count from 0.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// Peak learning rate `η₀`.
    pub base: f64,
    /// Warm-up steps `W`.
    pub warmup_steps: u64,
    /// Cosine decay to `min` over `total_steps` (`T`, including warm-up);
    /// `None` keeps `η₀` after the warm-up.
    pub cosine: Option<CosineDecay>,
}

/// The cosine part of an [`LrSchedule`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CosineDecay {
    /// `T`: the step where the rate reaches `min`.
    pub total_steps: u64,
    /// `η_min`.
    pub min: f64,
}

impl LrSchedule {
    /// A constant rate.
    pub fn constant(base: f64) -> Self {
        Self {
            base,
            warmup_steps: 0,
            cosine: None,
        }
    }

    /// Warm-up then cosine decay to `min` at `total_steps`.
    pub fn warmup_cosine(base: f64, warmup_steps: u64, total_steps: u64, min: f64) -> Self {
        Self {
            base,
            warmup_steps,
            cosine: Some(CosineDecay { total_steps, min }),
        }
    }

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if !(self.base.is_finite() && self.base >= 0.0) {
            return Err(invalid(
                "learning rate",
                format!("must be finite and ≥ 0, got {}", self.base),
            ));
        }
        if let Some(c) = &self.cosine {
            if !(c.min.is_finite() && c.min >= 0.0 && c.min <= self.base) {
                return Err(invalid(
                    "min learning rate",
                    format!("must be in [0, {}], got {}", self.base, c.min),
                ));
            }
            if c.total_steps < self.warmup_steps {
                return Err(invalid("total_steps", "must be at least the warm-up steps"));
            }
        }
        Ok(())
    }

    /// `η(step)`.
    pub fn at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        match &self.cosine {
            None => self.base,
            Some(c) => {
                let span = c.total_steps.saturating_sub(self.warmup_steps);
                let p = if span == 0 {
                    1.0
                } else {
                    ((step - self.warmup_steps) as f64 / span as f64).min(1.0)
                };
                c.min + 0.5 * (self.base - c.min) * (1.0 + (std::f64::consts::PI * p).cos())
            }
        }
    }
}

//! The training loss of a batch and its gradient with respect to the
//! network output.
//!
//! For rows `i = 0..B` of `D` elements each, with per-row weight
//! `w_i = weighting(target, level_i)·extra_i`,
//!
//! `L = (1/B)·Σ_i w_i·ρ·Σ_j (out_ij − target_ij)²`, with `ρ = 1/D`
//! ([`Reduction::Mean`], the element mean of PyTorch's `mse_loss`) or
//! `ρ = 1` ([`Reduction::Sum`], the per-example sum of VDM), and
//!
//! `∂L/∂out_ij = (2/B)·w_i·ρ·(out_ij − target_ij)`.
//!
//! Sums are accumulated in f64; the gradient is stored in f32.

use crate::target::{Level, Target};
use crate::weighting::Weighting;
use diffuse_core::{Error, Result};

/// How a row's squared errors are reduced before the batch mean.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Reduction {
    /// Mean over the row's elements.
    #[default]
    Mean,
    /// Sum over the row's elements.
    Sum,
}

/// The regression targets of a batch.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// Targets already in the output space, shaped like the output.
    Given(&'a [f32]),
    /// Clean data and noise, each shaped like the output; the target is
    /// `p·x₀ + q·ε` with `(p, q)` from [`Target::coefficients`].
    Pair {
        /// The clean data `x₀`.
        x0: &'a [f32],
        /// The noise `ε` of `x = α·x₀ + σ·ε`.
        eps: &'a [f32],
    },
}

/// One batch for [`Objective::loss`].
#[derive(Clone, Copy, Debug)]
pub struct Batch<'a> {
    /// One noise level per row.
    pub levels: &'a [Level],
    /// The network output, `B·D` values, row-major.
    pub output: &'a [f32],
    /// The targets.
    pub targets: Targets<'a>,
    /// Optional extra weight per row (importance weights, `1/p(t)` …):
    /// finite and `≥ 0`.
    pub row_weights: Option<&'a [f64]>,
}

/// The loss of a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct LossValue {
    /// The batch loss `L`.
    pub loss: f64,
    /// Each row's weighted, reduced loss `w_i·ρ·Σ_j (out_ij − target_ij)²`;
    /// `L` is their mean.
    pub row_losses: Vec<f64>,
    /// Each row's unweighted reduced squared error `ρ·Σ_j (…)²` (what the
    /// iDDPM importance sampler records).
    pub row_errors: Vec<f64>,
    /// Each row's total weight `w_i`.
    pub weights: Vec<f64>,
}

/// A training objective: what the network predicts and how the levels are
/// weighted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Objective {
    /// The space of the network output.
    pub target: Target,
    /// The weighting, defined on the x₀-error and converted to `target`.
    pub weighting: Weighting,
    /// How each row's squared errors are reduced.
    pub reduction: Reduction,
}

impl Objective {
    /// An objective with [`Reduction::Mean`], parameters checked.
    pub fn new(target: Target, weighting: Weighting) -> Result<Self> {
        target.validate()?;
        weighting.validate()?;
        Ok(Self {
            target,
            weighting,
            reduction: Reduction::Mean,
        })
    }

    /// The same objective with another reduction.
    pub fn with_reduction(mut self, reduction: Reduction) -> Self {
        self.reduction = reduction;
        self
    }

    /// The weight of one row at `level` in the output space.
    pub fn row_weight(&self, level: &Level) -> Result<f64> {
        self.weighting.weight(self.target, level)
    }

    /// Writes the targets for `x₀`, `ε` (each `B·D` values) at the rows'
    /// levels into `out`.
    pub fn targets_into(
        &self,
        levels: &[Level],
        x0: &[f32],
        eps: &[f32],
        out: &mut [f32],
    ) -> Result<()> {
        let d = row_len("targets", levels.len(), out.len())?;
        same_len("x0", out.len(), x0.len())?;
        same_len("eps", out.len(), eps.len())?;
        for (i, level) in levels.iter().enumerate() {
            crate::target::check_marginal(level.marginal)?;
            let (p, q) = self.target.coefficients(level.marginal)?;
            let r = i * d..(i + 1) * d;
            for ((o, &a), &e) in out[r.clone()].iter_mut().zip(&x0[r.clone()]).zip(&eps[r]) {
                *o = (p * f64::from(a) + q * f64::from(e)) as f32;
            }
        }
        Ok(())
    }

    /// The loss of a batch, without the gradient.
    pub fn loss(&self, batch: &Batch<'_>) -> Result<LossValue> {
        self.run(batch, None)
    }

    /// The loss of a batch and its gradient with respect to the output,
    /// written into `grad` (shaped like the output; its contents are
    /// unspecified when an error is returned).
    pub fn loss_and_grad(&self, batch: &Batch<'_>, grad: &mut [f32]) -> Result<LossValue> {
        same_len("grad", batch.output.len(), grad.len())?;
        self.run(batch, Some(grad))
    }

    fn run(&self, batch: &Batch<'_>, mut grad: Option<&mut [f32]>) -> Result<LossValue> {
        self.target.validate()?;
        self.weighting.validate()?;
        let b = batch.levels.len();
        let n = batch.output.len();
        let d = row_len("output", b, n)?;
        match batch.targets {
            Targets::Given(t) => same_len("targets", n, t.len())?,
            Targets::Pair { x0, eps } => {
                same_len("x0", n, x0.len())?;
                same_len("eps", n, eps.len())?;
            }
        }
        if let Some(extra) = batch.row_weights {
            same_len("row_weights", b, extra.len())?;
            if let Some(w) = extra.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
                return Err(Error::InvalidArgument {
                    name: "row_weights",
                    reason: format!("{w} is not finite and ≥ 0"),
                });
            }
        }
        let rho = match self.reduction {
            Reduction::Mean => 1.0 / d as f64,
            Reduction::Sum => 1.0,
        };
        let mut value = LossValue {
            loss: 0.0,
            row_losses: Vec::with_capacity(b),
            row_errors: Vec::with_capacity(b),
            weights: Vec::with_capacity(b),
        };
        let mut total = 0.0f64;
        for (i, level) in batch.levels.iter().enumerate() {
            let extra = batch.row_weights.map_or(1.0, |w| w[i]);
            let w = self.row_weight(level)? * extra;
            let r = i * d..(i + 1) * d;
            let out = &batch.output[r.clone()];
            let c = 2.0 * w * rho / b as f64;
            let g = grad.as_deref_mut().map(|g| &mut g[r.clone()]);
            let sq = match batch.targets {
                Targets::Given(t) => {
                    let t = &t[r];
                    row_pass(out, |j| f64::from(t[j]), g, c)
                }
                Targets::Pair { x0, eps } => {
                    let (p, q) = self.target.coefficients(level.marginal)?;
                    let (x0, eps) = (&x0[r.clone()], &eps[r]);
                    row_pass(out, |j| p * f64::from(x0[j]) + q * f64::from(eps[j]), g, c)
                }
            };
            if !sq.is_finite() {
                return Err(Error::NonFinite(format!(
                    "the squared error of row {i} (output or target not finite)"
                )));
            }
            let err = rho * sq;
            value.row_errors.push(err);
            value.row_losses.push(w * err);
            value.weights.push(w);
            total += w * err;
        }
        value.loss = if b == 0 { 0.0 } else { total / b as f64 };
        if !value.loss.is_finite() {
            return Err(Error::NonFinite("the batch loss".into()));
        }
        Ok(value)
    }
}

/// One pass over a row: returns `Σ_j (out_j − target(j))²` (four f64
/// partial sums, added pairwise) and, with `grad`, writes
/// `c·(out_j − target(j))` into it.
#[inline(always)]
fn row_pass(out: &[f32], target: impl Fn(usize) -> f64, grad: Option<&mut [f32]>, c: f64) -> f64 {
    let mut acc = [0.0f64; 4];
    match grad {
        Some(g) => {
            for (j, (gj, &o)) in g.iter_mut().zip(out).enumerate() {
                let e = f64::from(o) - target(j);
                acc[j & 3] += e * e;
                *gj = (c * e) as f32;
            }
        }
        None => {
            for (j, &o) in out.iter().enumerate() {
                let e = f64::from(o) - target(j);
                acc[j & 3] += e * e;
            }
        }
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3])
}

/// Writes the noisy states `x = α·x₀ + σ·ε` of a batch (the forward
/// marginal, Ho et al. 2020, eq. 4; Kingma et al. 2021) into `out`.
pub fn forward_into(levels: &[Level], x0: &[f32], eps: &[f32], out: &mut [f32]) -> Result<()> {
    let d = row_len("states", levels.len(), out.len())?;
    same_len("x0", out.len(), x0.len())?;
    same_len("eps", out.len(), eps.len())?;
    for (i, level) in levels.iter().enumerate() {
        crate::target::check_marginal(level.marginal)?;
        let (a, s) = (level.marginal.alpha, level.marginal.sigma);
        let r = i * d..(i + 1) * d;
        for ((o, &x), &e) in out[r.clone()].iter_mut().zip(&x0[r.clone()]).zip(&eps[r]) {
            *o = (a * f64::from(x) + s * f64::from(e)) as f32;
        }
    }
    Ok(())
}

/// The row length `D` of `n` values over `b` rows.
fn row_len(op: &'static str, b: usize, n: usize) -> Result<usize> {
    if b == 0 {
        if n == 0 {
            return Ok(0);
        }
        return Err(Error::ShapeMismatch {
            op,
            expected: vec![0],
            found: vec![n],
        });
    }
    if !n.is_multiple_of(b) || n == 0 {
        return Err(Error::InvalidShape {
            shape: vec![n],
            reason: format!("{op}: {n} values do not split into {b} non-empty rows"),
        });
    }
    Ok(n / b)
}

fn same_len(op: &'static str, expected: usize, found: usize) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::ShapeMismatch {
            op,
            expected: vec![expected],
            found: vec![found],
        })
    }
}

//! The validated parameters of an isotropic Gaussian mixture.
//!
//! An isotropic Gaussian mixture in `d ≥ 1` dimensions is the density
//!
//! ```text
//! p₀ = Σₖ wₖ N(μₖ, sₖ² I)        k = 0 … K−1,  wₖ ≥ 0,  Σₖ wₖ = 1,  sₖ > 0
//! ```
//!
//! For such data the posterior mean `E[x₀ | x]` under any forward marginal
//! `x = α·x₀ + σ·ε` is closed-form, which makes the mixture the analytic
//! reference model of the project. The evaluations live where they are
//! used (the CPU reference `diffuse_nets::GaussianMixture`, the CUDA kernel
//! of `diffuse_cuda::CudaGmmDenoiser`); [`IsotropicMixture`] is what they
//! share: the rules a mixture must satisfy, checked once, and the derived
//! numbers both evaluate from (`ln wₖ`, `sₖ²`, the components of positive
//! weight, the prior mean), computed once in one operation order so that
//! every consumer sees the same bits.

use crate::error::{Error, Result};

/// How far the weights may sum from 1 before [`IsotropicMixture::new`]
/// rejects them.
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

/// A validated isotropic Gaussian mixture `p₀ = Σₖ wₖ N(μₖ, sₖ² I)` in
/// `d ≥ 1` dimensions, with the numbers derived from it.
///
/// # Rules
/// [`IsotropicMixture::new`] accepts `weights`, `means` and `stds` when:
/// - there is at least one component;
/// - there are as many means and standard deviations as weights;
/// - every mean has the dimension `d` of the first, and `d ≥ 1`;
/// - every number is finite;
/// - every weight is `≥ 0` and they sum to 1 within
///   [`WEIGHT_SUM_TOLERANCE`] (they are then divided by their sum, so the
///   stored weights sum to 1 up to rounding);
/// - every standard deviation is `> 0` and its square `sₖ²` is a normal f64
///   (it neither underflows to a subnormal or zero nor overflows);
/// - the prior mean `Σₖ wₖ μₖ` is finite.
///
/// # Errors
/// Each error names the offending field:
///
/// | case | error |
/// | --- | --- |
/// | no component | [`Error::InvalidArgument`] `weights` (“empty: …”) |
/// | means count ≠ weights count | [`Error::InvalidArgument`] `means` |
/// | stds count ≠ weights count | [`Error::InvalidArgument`] `stds` |
/// | first mean of dimension 0 | [`Error::InvalidArgument`] `means` |
/// | a mean of another dimension | [`Error::InvalidArgument`] `means` |
/// | NaN or infinite mean coordinate | [`Error::NonFinite`] naming `means[k][i]` |
/// | NaN or infinite weight | [`Error::NonFinite`] naming `weights[k]` |
/// | negative weight | [`Error::InvalidArgument`] `weights` |
/// | weights not summing to 1 | [`Error::InvalidArgument`] `weights` |
/// | NaN or infinite standard deviation | [`Error::NonFinite`] naming `stds[k]` |
/// | standard deviation `≤ 0` | [`Error::InvalidArgument`] `stds` |
/// | `sₖ²` outside f64's normal range | [`Error::InvalidArgument`] `stds` |
/// | prior mean overflows | [`Error::NonFinite`] |
///
/// The checks run in the order of the table; the first failure is reported.
///
/// ```
/// use diffuse_core::{Error, IsotropicMixture};
/// let m = IsotropicMixture::new(vec![0.0, 0.25, 0.75], vec![vec![9.0], vec![-1.0], vec![1.0]], vec![1.0, 0.5, 2.0])?;
/// assert_eq!((m.dim(), m.components()), (1, 3));
/// assert_eq!(m.active(), [1, 2]); // the zero-weight component never contributes
/// assert_eq!(m.variances(), [1.0, 0.25, 4.0]);
/// assert_eq!(m.prior_mean(), [0.5]);
/// let bad = IsotropicMixture::new(vec![1.0], vec![vec![0.0]], vec![0.0]);
/// assert!(matches!(bad, Err(Error::InvalidArgument { name: "stds", .. })));
/// # Ok::<(), Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct IsotropicMixture {
    /// `wₖ`, normalised to sum to 1.
    weights: Vec<f64>,
    /// `μₖ`, each of length `dim`.
    means: Vec<Vec<f64>>,
    /// `sₖ`, as given.
    stds: Vec<f64>,
    /// `d`.
    dim: usize,
    /// `ln wₖ` (−∞ for a zero weight).
    log_weights: Vec<f64>,
    /// `sₖ²`.
    variances: Vec<f64>,
    /// Indices of the components with positive weight, ascending.
    active: Vec<usize>,
    /// `Σₖ wₖ μₖ`.
    prior_mean: Vec<f64>,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

impl IsotropicMixture {
    /// Validates the mixture `Σₖ weights[k]·N(means[k], stds[k]²·I)` and
    /// derives its numbers (see the type's documentation for the rules and
    /// the errors).
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>) -> Result<Self> {
        let k = weights.len();
        if k == 0 {
            return Err(invalid(
                "weights",
                "empty: a mixture needs at least one component",
            ));
        }
        if means.len() != k {
            return Err(invalid(
                "means",
                format!("{} means for {k} weights", means.len()),
            ));
        }
        if stds.len() != k {
            return Err(invalid(
                "stds",
                format!("{} standard deviations for {k} weights", stds.len()),
            ));
        }
        let dim = means[0].len();
        if dim == 0 {
            return Err(invalid("means", "component 0 has dimension 0"));
        }
        for (j, mu) in means.iter().enumerate() {
            if mu.len() != dim {
                return Err(invalid(
                    "means",
                    format!(
                        "component {j} has dimension {}, component 0 has {dim}",
                        mu.len()
                    ),
                ));
            }
            if let Some(i) = mu.iter().position(|v| !v.is_finite()) {
                return Err(Error::NonFinite(format!(
                    "Gaussian-mixture means[{j}][{i}] = {}",
                    mu[i]
                )));
            }
        }
        for (j, &w) in weights.iter().enumerate() {
            if !w.is_finite() {
                return Err(Error::NonFinite(format!(
                    "Gaussian-mixture weights[{j}] = {w}"
                )));
            }
            if w < 0.0 {
                return Err(invalid("weights", format!("weights[{j}] = {w} < 0")));
            }
        }
        let sum: f64 = weights.iter().sum();
        if (sum - 1.0).abs() > WEIGHT_SUM_TOLERANCE {
            return Err(invalid(
                "weights",
                format!("they sum to {sum}, not 1 (within {WEIGHT_SUM_TOLERANCE:e})"),
            ));
        }
        let mut variances = Vec::with_capacity(k);
        for (j, &s) in stds.iter().enumerate() {
            if !s.is_finite() {
                return Err(Error::NonFinite(format!(
                    "Gaussian-mixture stds[{j}] = {s}"
                )));
            }
            if s <= 0.0 {
                return Err(invalid("stds", format!("stds[{j}] = {s} is not positive")));
            }
            let var = s * s;
            if !var.is_normal() {
                return Err(invalid(
                    "stds",
                    format!("stds[{j}] = {s}: its square {var} leaves f64's normal range"),
                ));
            }
            variances.push(var);
        }
        let weights: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        let log_weights = weights.iter().map(|w| w.ln()).collect();
        let active: Vec<usize> = (0..k).filter(|&j| weights[j] > 0.0).collect();
        let mut prior_mean = vec![0.0; dim];
        for &j in &active {
            for (p, m) in prior_mean.iter_mut().zip(&means[j]) {
                *p += weights[j] * m;
            }
        }
        if prior_mean.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(
                "the Gaussian-mixture prior mean Σ wₖ μₖ overflows".into(),
            ));
        }
        Ok(Self {
            weights,
            means,
            stds,
            dim,
            log_weights,
            variances,
            active,
            prior_mean,
        })
    }

    /// The dimension `d ≥ 1` of the data.
    #[inline]
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of components `K ≥ 1`, zero weights included.
    #[inline]
    pub fn components(&self) -> usize {
        self.weights.len()
    }

    /// The weights `wₖ`, normalised to sum to 1 (up to rounding).
    #[inline]
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The means `μₖ`, each of length [`IsotropicMixture::dim`].
    #[inline]
    pub fn means(&self) -> &[Vec<f64>] {
        &self.means
    }

    /// The standard deviations `sₖ`, as given.
    #[inline]
    pub fn stds(&self) -> &[f64] {
        &self.stds
    }

    /// `ln wₖ` of the normalised weights (−∞ for a zero weight).
    #[inline]
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }

    /// The variances `sₖ² = sₖ·sₖ`, each a normal f64.
    #[inline]
    pub fn variances(&self) -> &[f64] {
        &self.variances
    }

    /// The indices `k` of the components with `wₖ > 0`, ascending (the
    /// others never contribute to a density or a posterior). Never empty.
    #[inline]
    pub fn active(&self) -> &[usize] {
        &self.active
    }

    /// The mean of the data distribution, `Σₖ wₖ μₖ` summed over the active
    /// components in ascending order (the posterior mean at `α = 0`).
    #[inline]
    pub fn prior_mean(&self) -> &[f64] {
        &self.prior_mean
    }
}

//! The exact denoiser of an isotropic Gaussian mixture.
//!
//! For data `p₀ = Σₖ wₖ N(μₖ, sₖ² I)` and the forward marginal
//! `x = α·x₀ + σ·ε`, the posterior `p(x₀ | x)` is again a Gaussian mixture,
//! so the minimum-mean-squared-error denoiser `E[x₀ | x]` has a closed form
//! (the analytic problem of `conformance/README.md`):
//!
//! ```text
//! vₖ       = α²·sₖ² + σ²
//! log rₖ   = log wₖ − (d/2)·log(2π·vₖ) − |x − α·μₖ|² / (2·vₖ)     (softmax over k)
//! E[x₀|x]  = Σₖ rₖ·(μₖ + α·sₖ²/vₖ·(x − α·μₖ))
//! ```
//!
//! [`GaussianMixture`] holds the mixture and evaluates that formula;
//! [`GmmDenoiser`] wraps it as a [`Denoiser`] for any backend, producing the
//! output a network with a given [`Parameterization`] would ideally produce.
//! It is the reference model of tests and of the command line: a sampler run
//! with it has no model error, only discretisation error.
//!
//! # Class-conditional mixtures
//! A mixture may carry one class label per component
//! ([`GaussianMixture::with_labels`], JSON key `labels`). Class `y` is then
//! the mixture of the components labelled `y`, weights renormalised:
//! `p₀(x₀ | y) = Σ_{k∈y} wₖ N(μₖ, sₖ² I) / Σ_{k∈y} wₖ`. [`GmmDenoiser`]
//! honours [`Condition::Class`] with that class (the null label `None`
//! meaning the whole mixture), so classifier-free guidance has an exact
//! conditional and unconditional model, and
//! [`GmmDenoiser::classifier_gradient`] gives the exact classifier
//! gradient `∇ₓ log p(y | x)` of the noisy state, with
//! `p(y | x) = Σ_{k∈y} rₖ(x)` (the responsibilities above):
//!
//! ```text
//! ∇ₓ log p(y | x) = ∇ₓ log p(x | y) − ∇ₓ log p(x) = α·(E[x₀ | x, y] − E[x₀ | x]) / σ²
//! ```
//!
//! by Tweedie's formula `∇ₓ log p(x) = (α·E[x₀ | x] − x)/σ²` applied to the
//! class mixture and to the whole one (`log p(y)` does not depend on `x`).
//!
//! The Jacobian of the posterior mean is closed-form too,
//! `∂E[x₀|x]/∂x = (α/σ²)·Cov[x₀|x]` ([`GaussianMixture::posterior_jacobian`]),
//! so the divergence of the probability-flow drift is exact:
//! [`GmmDenoiser`] implements [`VectorJacobian`] with the exact divergence,
//! which probability-flow likelihoods use.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub use diffuse_core::WEIGHT_SUM_TOLERANCE;
use diffuse_core::{
    Backend, Condition, Denoiser, Error, IsotropicMixture, Marginal, NoiseLevel, Parameterization,
    Result, VectorJacobian,
};
use rayon::prelude::*;
use serde_json::{Map, Value};

/// `ln(2π)`.
const LN_2PI: f64 = 1.837_877_066_409_345_5;

/// An isotropic Gaussian mixture `p₀ = Σₖ wₖ N(μₖ, sₖ² I)` in `d ≥ 1`
/// dimensions.
///
/// Built by [`GaussianMixture::new`] or read from JSON, always validated
/// by [`IsotropicMixture::new`] (the parameter set it holds, shared with the
/// GPU denoiser; [`GaussianMixture::isotropic`]):
/// at least one component; as many weights, means and standard deviations;
/// all means of the same dimension `d ≥ 1`; every number finite; weights
/// `≥ 0` summing to 1 within [`WEIGHT_SUM_TOLERANCE`] (they are then divided
/// by their sum, so the stored weights sum to 1 up to rounding); standard
/// deviations `> 0` with a variance `sₖ²` that neither underflows nor
/// overflows.
///
/// ```
/// use diffuse_nets::{GaussianMixture, Marginal};
/// let gmm = GaussianMixture::from_json_str(
///     r#"{"weights": [0.5, 0.5], "means": [[-1.0], [1.0]], "stds": [0.5, 0.5]}"#,
/// )?;
/// assert_eq!((gmm.dim(), gmm.components()), (1, 2));
/// // By symmetry the posterior mean at x = 0 is 0 at every noise level.
/// let x0 = gmm.posterior_mean(&[0.0], Marginal::new(0.6, 0.8)?)?;
/// assert!(x0[0].abs() < 1e-15);
/// # Ok::<(), diffuse_nets::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GaussianMixture {
    /// The validated parameters and the numbers derived from them.
    mixture: IsotropicMixture,
    /// One class label per component, if the mixture is class-conditional.
    labels: Option<Vec<u32>>,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

impl From<IsotropicMixture> for GaussianMixture {
    /// The unconditional mixture of these parameters.
    fn from(mixture: IsotropicMixture) -> Self {
        Self {
            mixture,
            labels: None,
        }
    }
}

impl GaussianMixture {
    /// A validated mixture (see the type's documentation for the rules).
    /// Errors name the offending field: [`Error::InvalidArgument`] with name
    /// `weights`, `means` or `stds`, or [`Error::NonFinite`] for a NaN or
    /// infinity.
    pub fn new(weights: Vec<f64>, means: Vec<Vec<f64>>, stds: Vec<f64>) -> Result<Self> {
        Ok(IsotropicMixture::new(weights, means, stds)?.into())
    }

    /// The validated parameters the mixture evaluates from (shared with the
    /// GPU denoiser of `diffuse-cuda`).
    pub fn isotropic(&self) -> &IsotropicMixture {
        &self.mixture
    }

    /// The same mixture with one class label per component (see the module
    /// documentation). [`Error::InvalidArgument`] (name `labels`) unless
    /// there are exactly [`GaussianMixture::components`] labels.
    pub fn with_labels(mut self, labels: Vec<u32>) -> Result<Self> {
        if labels.len() != self.components() {
            return Err(invalid(
                "labels",
                format!(
                    "{} labels for {} components",
                    labels.len(),
                    self.components()
                ),
            ));
        }
        self.labels = Some(labels);
        Ok(self)
    }

    /// The class label of each component, if the mixture has them.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_deref()
    }

    /// The distinct class labels, ascending (empty without labels).
    pub fn classes(&self) -> Vec<u32> {
        let mut v = self.labels.clone().unwrap_or_default();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// The mixture of class `label`: the components labelled `label`, with
    /// their weights divided by their sum, `p₀(x₀ | y)`.
    ///
    /// Errors: [`Error::Unsupported`] if the mixture has no labels;
    /// [`Error::InvalidArgument`] (name `class`) if no component of
    /// positive weight has the label.
    pub fn class_mixture(&self, label: u32) -> Result<GaussianMixture> {
        let labels = self.labels.as_ref().ok_or_else(|| {
            Error::Unsupported(
                "class conditions: the Gaussian mixture has no labels (it is unconditional)".into(),
            )
        })?;
        let members: Vec<usize> = (0..self.components())
            .filter(|&j| labels[j] == label)
            .collect();
        let total: f64 = members.iter().map(|&j| self.mixture.weights()[j]).sum();
        if total <= 0.0 {
            return Err(invalid(
                "class",
                format!(
                    "no component of positive weight has label {label} (classes: {:?})",
                    self.classes()
                ),
            ));
        }
        Self::new(
            members
                .iter()
                .map(|&j| self.mixture.weights()[j] / total)
                .collect(),
            members
                .iter()
                .map(|&j| self.mixture.means()[j].clone())
                .collect(),
            members.iter().map(|&j| self.mixture.stds()[j]).collect(),
        )?
        .with_labels(vec![label; members.len()])
    }

    /// Parses the JSON object `{"weights": [...], "means": [[...], ...],
    /// "stds": [...]}` (optionally `"labels": [...]`); see
    /// [`GaussianMixture::from_json_value`].
    pub fn from_json_str(text: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| invalid("Gaussian-mixture JSON", e.to_string()))?;
        Self::from_json_value(&value)
    }

    /// Reads the JSON object `{"weights": [...], "means": [[...], ...],
    /// "stds": [...]}`, such as the `gmm` object of a conformance case.
    ///
    /// An optional `labels` array (one non-negative integer class label per
    /// component) makes the mixture class-conditional
    /// ([`GaussianMixture::with_labels`]). Other keys are ignored, except
    /// `dim` and `components` (present in the conformance files): where
    /// given they must equal the mixture's dimension and component count.
    pub fn from_json_value(value: &Value) -> Result<Self> {
        let obj = value.as_object().ok_or_else(|| {
            invalid(
                "Gaussian-mixture JSON",
                format!(
                    "expected an object with weights, means and stds, found {}",
                    json_kind(value)
                ),
            )
        })?;
        let weights = number_array(required(obj, "weights")?, "weights", "weights")?;
        let stds = number_array(required(obj, "stds")?, "stds", "stds")?;
        let rows = required(obj, "means")?
            .as_array()
            .ok_or_else(|| invalid("means", "expected an array of arrays of numbers"))?;
        let means = rows
            .iter()
            .enumerate()
            .map(|(j, row)| number_array(row, "means", &format!("means[{j}]")))
            .collect::<Result<Vec<_>>>()?;
        let mut gmm = Self::new(weights, means, stds)?;
        if let Some(v) = obj.get("labels") {
            let items = v.as_array().ok_or_else(|| {
                invalid(
                    "labels",
                    format!("expected an array of class labels, found {}", json_kind(v)),
                )
            })?;
            let labels = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| {
                            invalid(
                                "labels",
                                format!("labels[{i}] = {item} is not a class label (0 ..= 2³²−1)"),
                            )
                        })
                })
                .collect::<Result<Vec<_>>>()?;
            gmm = gmm.with_labels(labels)?;
        }
        for (key, expected) in [("dim", gmm.dim()), ("components", gmm.components())] {
            if let Some(v) = obj.get(key) {
                let ok = v.as_u64().is_some_and(|n| n == expected as u64);
                if !ok {
                    return Err(invalid(
                        key,
                        format!("{v} given, but the mixture has {expected}"),
                    ));
                }
            }
        }
        Ok(gmm)
    }

    /// Reads a JSON file holding the object of
    /// [`GaussianMixture::from_json_value`]. A file that cannot be read gives
    /// [`Error::Io`] naming the path.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Io(std::io::Error::new(
                e.kind(),
                format!("{}: {e}", path.display()),
            ))
        })?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| invalid("Gaussian-mixture JSON", format!("{}: {e}", path.display())))?;
        Self::from_json_value(&value)
    }

    /// The dimension `d` of the data.
    pub fn dim(&self) -> usize {
        self.mixture.dim()
    }

    /// The number of components `K`.
    pub fn components(&self) -> usize {
        self.mixture.components()
    }

    /// The weights `wₖ`, normalised to sum to 1.
    pub fn weights(&self) -> &[f64] {
        self.mixture.weights()
    }

    /// The means `μₖ`, each of length [`GaussianMixture::dim`].
    pub fn means(&self) -> &[Vec<f64>] {
        self.mixture.means()
    }

    /// The standard deviations `sₖ`.
    pub fn stds(&self) -> &[f64] {
        self.mixture.stds()
    }

    /// The mean of the data distribution, `Σₖ wₖ μₖ` (the posterior mean at
    /// `α = 0`).
    pub fn prior_mean(&self) -> &[f64] {
        self.mixture.prior_mean()
    }

    fn check_len(&self, op: &'static str, len: usize) -> Result<()> {
        if len != self.mixture.dim() {
            return Err(Error::ShapeMismatch {
                op,
                expected: vec![self.mixture.dim()],
                found: vec![len],
            });
        }
        Ok(())
    }

    /// The exact log density `ln p₀(x₀) = ln Σₖ wₖ N(x₀; μₖ, sₖ² I)`,
    /// computed with a max-subtracted log-sum-exp.
    ///
    /// Errors: [`Error::ShapeMismatch`] if `x0` does not have length
    /// [`GaussianMixture::dim`], [`Error::NonFinite`] for a non-finite `x0`
    /// or a squared distance that overflows f64.
    pub fn log_density(&self, x0: &[f64]) -> Result<f64> {
        self.check_len("GaussianMixture::log_density", x0.len())?;
        if let Some(i) = x0.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "x0[{i}] = {} given to GaussianMixture::log_density",
                x0[i]
            )));
        }
        let half_d = 0.5 * self.mixture.dim() as f64;
        let mut max = f64::NEG_INFINITY;
        let mut total = 0.0;
        for &j in self.mixture.active() {
            let var = self.mixture.variances()[j];
            let dist2: f64 = x0
                .iter()
                .zip(&self.mixture.means()[j])
                .map(|(x, m)| (x - m) * (x - m))
                .sum();
            let term =
                self.mixture.log_weights()[j] - half_d * (LN_2PI + var.ln()) - dist2 / (2.0 * var);
            if !term.is_finite() {
                return Err(Error::NonFinite(format!(
                    "GaussianMixture::log_density: component {j} has log term {term}"
                )));
            }
            if term > max {
                total *= (max - term).exp();
                max = term;
            }
            total += (term - max).exp();
        }
        Ok(max + total.ln())
    }

    /// The posterior mean `E[x₀ | x]` for `x = α·x₀ + σ·ε`, allocated; see
    /// [`GaussianMixture::posterior_mean_into`].
    pub fn posterior_mean(&self, x: &[f64], m: Marginal) -> Result<Vec<f64>> {
        let mut out = vec![0.0; self.mixture.dim()];
        self.posterior_mean_into(x, m, &mut out)?;
        Ok(out)
    }

    /// Writes the posterior mean `E[x₀ | x]` for `x = α·x₀ + σ·ε` into `out`
    /// (no allocation).
    ///
    /// Computed in f64 with the formula of the module documentation, the
    /// softmax over components in log space with a running maximum. Since
    /// the posterior is unchanged when `(x, α, σ)` are divided by a common
    /// factor, they are first divided by `max(α, σ)`, so no variance
    /// under- or overflows whatever the scale of the marginal. Exact special
    /// cases: `σ = 0` (with `α > 0`) gives `x/α` (there is no noise), `α = 0`
    /// gives the prior mean `Σₖ wₖ μₖ` (`x` carries no information).
    ///
    /// Errors: [`Error::InvalidArgument`] for a marginal with a negative or
    /// non-finite entry or `α = σ = 0`; [`Error::ShapeMismatch`] if `x` or
    /// `out` does not have length [`GaussianMixture::dim`];
    /// [`Error::NonFinite`] for a non-finite `x` or an overflow.
    pub fn posterior_mean_into(&self, x: &[f64], m: Marginal, out: &mut [f64]) -> Result<()> {
        let (alpha, sigma) = (m.alpha, m.sigma);
        Marginal::new(alpha, sigma)?;
        self.check_len("GaussianMixture::posterior_mean (x)", x.len())?;
        self.check_len("GaussianMixture::posterior_mean (out)", out.len())?;
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "x[{i}] = {} given to GaussianMixture::posterior_mean",
                x[i]
            )));
        }
        if alpha == 0.0 {
            out.copy_from_slice(self.mixture.prior_mean());
            return Ok(());
        }
        if sigma == 0.0 {
            for (o, &xi) in out.iter_mut().zip(x) {
                *o = xi / alpha;
            }
        } else {
            self.posterior_mean_noisy(x, alpha, sigma, out)?;
        }
        if let Some(i) = out.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "GaussianMixture::posterior_mean overflows at element {i} for (α, σ) = ({alpha}, {sigma})"
            )));
        }
        Ok(())
    }

    /// The general case `α > 0`, `σ > 0` of `posterior_mean_into`.
    ///
    /// The logarithm and exponential are the `libm` crate's (fdlibm's
    /// `e_log.c` and `e_exp.c`, written with IEEE `+ − × ÷` and bit
    /// operations only), and the operation order is the one the CUDA kernel
    /// `kernels/gmm.cu` spells out: the kernel carries the same two
    /// algorithms, so the GPU path gives the same bits (a platform math
    /// library's `ln` and `exp` differ from the GPU's in the last bit).
    fn posterior_mean_noisy(
        &self,
        x: &[f64],
        alpha: f64,
        sigma: f64,
        out: &mut [f64],
    ) -> Result<()> {
        let c = alpha.max(sigma);
        let (a, s) = (alpha / c, sigma / c);
        let half_d = 0.5 * self.mixture.dim() as f64;
        let mut max = f64::NEG_INFINITY;
        let mut total = 0.0;
        out.fill(0.0);
        for &j in self.mixture.active() {
            let mu = &self.mixture.means()[j];
            let var = self.mixture.variances()[j];
            // max(a, s) = 1, so v ≥ min(sₖ², 1) > 0.
            let v = a * a * var + s * s;
            let dist2: f64 = x
                .iter()
                .zip(mu)
                .map(|(&xi, &mi)| {
                    let r = xi / c - a * mi;
                    r * r
                })
                .sum();
            let log_r = self.mixture.log_weights()[j]
                - half_d * (LN_2PI + libm::log(v))
                - dist2 / (2.0 * v);
            if !log_r.is_finite() {
                return Err(Error::NonFinite(format!(
                    "GaussianMixture::posterior_mean: log responsibility {log_r} of component \
                     {j} at (α, σ) = ({alpha}, {sigma})"
                )));
            }
            if log_r > max {
                let scale = libm::exp(max - log_r);
                out.iter_mut().for_each(|o| *o *= scale);
                total *= scale;
                max = log_r;
            }
            let r = libm::exp(log_r - max);
            total += r;
            let gain = a * var / v;
            for ((o, &xi), &mi) in out.iter_mut().zip(x).zip(mu) {
                *o += r * (mi + gain * (xi / c - a * mi));
            }
        }
        // The component with the largest log responsibility contributes 1.
        out.iter_mut().for_each(|o| *o /= total);
        Ok(())
    }

    /// The Jacobian `J = ∂E[x₀ | x]/∂x` in factored form, with the posterior
    /// mean written into `mean`; for a mixture posterior, `visit(rₖ, δₖ)` is
    /// called for every active component with its responsibility and
    /// `δₖ = mₖ − E[x₀ | x]` (see [`GaussianMixture::posterior_jacobian`]).
    fn jacobian_parts(
        &self,
        x: &[f64],
        m: Marginal,
        mean: &mut [f64],
        mut visit: impl FnMut(f64, &[f64]),
    ) -> Result<JacobianParts> {
        self.posterior_mean_into(x, m, mean)?;
        let (alpha, sigma) = (m.alpha, m.sigma);
        if alpha == 0.0 {
            return Ok(JacobianParts::Zero);
        }
        if sigma == 0.0 {
            return Ok(JacobianParts::Identity(1.0 / alpha));
        }
        let c = alpha.max(sigma);
        let (a, s) = (alpha / c, sigma / c);
        let half_d = 0.5 * self.mixture.dim() as f64;
        // Log responsibilities, then their softmax.
        let mut log_r = Vec::with_capacity(self.mixture.active().len());
        let mut max = f64::NEG_INFINITY;
        for &j in self.mixture.active() {
            let var = self.mixture.variances()[j];
            let v = a * a * var + s * s;
            let dist2: f64 = x
                .iter()
                .zip(&self.mixture.means()[j])
                .map(|(&xi, &mi)| {
                    let r = xi / c - a * mi;
                    r * r
                })
                .sum();
            let l = self.mixture.log_weights()[j] - half_d * (LN_2PI + v.ln()) - dist2 / (2.0 * v);
            max = max.max(l);
            log_r.push(l);
        }
        let total: f64 = log_r.iter().map(|l| (l - max).exp()).sum();
        let mut gain_mean = 0.0;
        let mut delta = vec![0.0; self.mixture.dim()];
        for (&j, &l) in self.mixture.active().iter().zip(&log_r) {
            let r = (l - max).exp() / total;
            let var = self.mixture.variances()[j];
            let gain = a * var / (a * a * var + s * s);
            gain_mean += r * gain;
            for ((dk, &xi), (&mi, &me)) in delta
                .iter_mut()
                .zip(x)
                .zip(self.mixture.means()[j].iter().zip(mean.iter()))
            {
                *dk = mi + gain * (xi / c - a * mi) - me;
            }
            visit(r, &delta);
        }
        Ok(JacobianParts::Mixture {
            inv_c: 1.0 / c,
            gain_mean,
            spread: a / (s * s),
        })
    }

    /// The Jacobian `J = ∂E[x₀ | x]/∂x` of the posterior mean for
    /// `x = α·x₀ + σ·ε`, row-major `d × d`.
    ///
    /// Differentiating the posterior `p(x₀ | x) ∝ p₀(x₀)·N(x; α·x₀, σ²I)`
    /// under the integral gives `J = (α/σ²)·Cov[x₀ | x]` (the second-order
    /// Tweedie formula; Efron 2011, "Tweedie's formula and selection bias").
    /// The posterior is the mixture of `N(mₖ, cₖ I)` with responsibilities
    /// `rₖ`, `mₖ = μₖ + gₖ·(x − α·μₖ)`, `gₖ = α·sₖ²/vₖ`, `cₖ = sₖ²·σ²/vₖ`,
    /// `vₖ = α²sₖ² + σ²`, so with `δₖ = mₖ − E[x₀ | x]`
    ///
    /// ```text
    /// J = (Σₖ rₖ·gₖ)·I + (α/σ²)·Σₖ rₖ·δₖ·δₖᵀ        (symmetric)
    /// ```
    ///
    /// (`(α/σ²)·cₖ = gₖ`). Special cases: `α = 0` gives `J = 0`, `σ = 0`
    /// gives `J = I/α`. Computed in f64 with the scaling of
    /// [`GaussianMixture::posterior_mean_into`]; errors as there.
    pub fn posterior_jacobian(&self, x: &[f64], m: Marginal) -> Result<Vec<f64>> {
        let d = self.mixture.dim();
        let mut mean = vec![0.0; d];
        let mut outer = vec![0.0; d * d];
        let parts = self.jacobian_parts(x, m, &mut mean, |r, delta| {
            for (row, &di) in outer.chunks_mut(d).zip(delta) {
                for (o, &dj) in row.iter_mut().zip(delta) {
                    *o += r * di * dj;
                }
            }
        })?;
        let (diag, scale) = parts.diagonal_and_spread();
        for (i, row) in outer.chunks_mut(d).enumerate() {
            for o in row.iter_mut() {
                *o *= scale;
            }
            row[i] += diag;
        }
        finite_or_error("GaussianMixture::posterior_jacobian", m, &outer)?;
        Ok(outer)
    }

    /// The divergence `∇·E[x₀ | x] = tr J` of the posterior mean (see
    /// [`GaussianMixture::posterior_jacobian`]):
    /// `d·Σₖ rₖ·gₖ + (α/σ²)·Σₖ rₖ·|δₖ|²`, `d/α` at `σ = 0`, 0 at `α = 0`.
    pub fn posterior_divergence(&self, x: &[f64], m: Marginal) -> Result<f64> {
        let mut mean = vec![0.0; self.mixture.dim()];
        let mut spread_sum = 0.0;
        let parts = self.jacobian_parts(x, m, &mut mean, |r, delta| {
            spread_sum += r * delta.iter().map(|v| v * v).sum::<f64>();
        })?;
        let (diag, scale) = parts.diagonal_and_spread();
        let div = self.mixture.dim() as f64 * diag + scale * spread_sum;
        finite_or_error("GaussianMixture::posterior_divergence", m, &[div])?;
        Ok(div)
    }

    /// Writes the vector–Jacobian product `vᵀ·J` (equal to `J·v`, `J` being
    /// symmetric) of the posterior mean into `out`:
    /// `(Σₖ rₖ·gₖ)·v + (α/σ²)·Σₖ rₖ·(δₖ·v)·δₖ` (see
    /// [`GaussianMixture::posterior_jacobian`]). `v` and `out` have length
    /// [`GaussianMixture::dim`]; a non-finite `v` is an error.
    pub fn posterior_vjp_into(
        &self,
        x: &[f64],
        m: Marginal,
        v: &[f64],
        out: &mut [f64],
    ) -> Result<()> {
        self.check_len("GaussianMixture::posterior_vjp (v)", v.len())?;
        self.check_len("GaussianMixture::posterior_vjp (out)", out.len())?;
        if let Some(i) = v.iter().position(|e| !e.is_finite()) {
            return Err(Error::NonFinite(format!(
                "v[{i}] = {} given to GaussianMixture::posterior_vjp",
                v[i]
            )));
        }
        let mut mean = vec![0.0; self.mixture.dim()];
        out.fill(0.0);
        let parts = self.jacobian_parts(x, m, &mut mean, |r, delta| {
            let dot: f64 = delta.iter().zip(v).map(|(a, b)| a * b).sum();
            for (o, &dk) in out.iter_mut().zip(delta) {
                *o += r * dot * dk;
            }
        })?;
        let (diag, scale) = parts.diagonal_and_spread();
        for (o, &vi) in out.iter_mut().zip(v) {
            *o = diag * vi + scale * *o;
        }
        finite_or_error("GaussianMixture::posterior_vjp", m, out)
    }
}

/// `∂E[x₀ | x]/∂x` in factored form.
enum JacobianParts {
    /// `α = 0`: the posterior mean does not depend on `x`.
    Zero,
    /// `σ = 0`: `I/α`.
    Identity(f64),
    /// `inv_c·(gain_mean·I + spread·Σₖ rₖ δₖ δₖᵀ)`, with `x` scaled by `c`.
    Mixture {
        inv_c: f64,
        gain_mean: f64,
        spread: f64,
    },
}

impl JacobianParts {
    /// `(diagonal term, factor of Σₖ rₖ δₖ δₖᵀ)`.
    fn diagonal_and_spread(&self) -> (f64, f64) {
        match *self {
            Self::Zero => (0.0, 0.0),
            Self::Identity(inv_alpha) => (inv_alpha, 0.0),
            Self::Mixture {
                inv_c,
                gain_mean,
                spread,
            } => (inv_c * gain_mean, inv_c * spread),
        }
    }
}

fn finite_or_error(op: &str, m: Marginal, values: &[f64]) -> Result<()> {
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(Error::NonFinite(format!(
            "{op} overflows at element {i} for (α, σ) = ({}, {})",
            m.alpha, m.sigma
        )));
    }
    Ok(())
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn required<'v>(obj: &'v Map<String, Value>, key: &'static str) -> Result<&'v Value> {
    obj.get(key)
        .ok_or_else(|| invalid(key, "missing from the Gaussian-mixture JSON object"))
}

fn number_array(v: &Value, name: &'static str, path: &str) -> Result<Vec<f64>> {
    let items = v.as_array().ok_or_else(|| {
        invalid(
            name,
            format!("{path}: expected an array, found {}", json_kind(v)),
        )
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.as_f64().ok_or_else(|| {
                invalid(
                    name,
                    format!("{path}[{i}] is {}, not a number", json_kind(item)),
                )
            })
        })
        .collect()
}

/// The exact posterior-mean denoiser of a [`GaussianMixture`], reporting its
/// output in a given [`Parameterization`].
///
/// # State and network input
/// [`Denoiser::predict`] receives the state `x` the solver holds, and the
/// parameterisation's [`Parameterization::x0_map`] is defined on that same
/// state: `x̂₀ = a·x + b·out`. So for each row this denoiser computes
/// `x̂₀ = E[x₀ | x]` at the row's marginal and returns
/// `out = (x̂₀ − a·x)/b`, which the solver's map turns back into `x̂₀`
/// exactly (up to the f32 storage of `out`).
/// [`Parameterization::input_scale`] (EDM's `c_in/α`) is the scale a
/// trained network applies to `x` before its first layer: it is internal
/// to the network and does not enter the `x̂₀` map, so an exact denoiser,
/// which needs no normalised input, does not use it. Likewise the row's time
/// `t` is not used: the posterior depends on the marginal `(α, σ)` only.
///
/// # Conditions
/// [`Condition::Unconditional`] is the whole mixture. [`Condition::Class`]
/// gives each row the mixture of its label ([`GmmDenoiser::mixture_for`]:
/// the class mixture for `Some(c)`, the whole mixture for the null label
/// `None`), as an exact class-conditional model for guidance.
///
/// # Errors
/// [`Error::ShapeMismatch`] if a row (all axes after the first) does not
/// have the mixture's dimension, if `out` is not shaped like `x`, or if
/// there is not exactly one [`NoiseLevel`] per row (or one label per row
/// of a [`Condition::Class`]);
/// [`Error::Unsupported`] for a [`Condition::Tensor`], and for a
/// [`Condition::Class`] on a mixture without labels;
/// [`Error::InvalidArgument`] for an unknown class label; [`Error::Undefined`] where the
/// parameterisation cannot express `x̂₀` (its map fails, is not finite, or
/// has `b = 0`, as ε-prediction at `σ = 0`); [`Error::InvalidArgument`] for
/// an invalid marginal; [`Error::NonFinite`] for a non-finite state or an
/// output beyond f32's range.
///
/// # Backends
/// The computation runs on the host in f64, rows in parallel with rayon:
/// `x` is downloaded with [`Backend::to_host`], and the result uploaded into
/// a new tensor and copied into `out`. On a GPU backend this path therefore
/// copies through host memory (a device kernel is future work).
///
/// ```
/// use std::sync::Arc;
/// use diffuse_core::{Affine, Backend, CpuBackend, Parameterization};
/// use diffuse_nets::{Condition, Denoiser, GaussianMixture, GmmDenoiser, Marginal, NoiseLevel};
/// /// x₀-prediction: x̂₀ = out.
/// struct Sample;
/// impl Parameterization for Sample {
///     fn name(&self) -> &str { "sample" }
///     fn x0_map(&self, _m: Marginal) -> diffuse_nets::Result<Affine> {
///         Ok(Affine { a: 0.0, b: 1.0 })
///     }
/// }
/// let gmm = GaussianMixture::from_json_str(
///     r#"{"weights": [1.0], "means": [[1.0, -1.0]], "stds": [1.0]}"#,
/// )?;
/// let model = GmmDenoiser::new(gmm, Arc::new(Sample));
/// let cpu = CpuBackend::new();
/// let x = cpu.upload(&[1, 2], &[0.0, 0.0])?;
/// let mut out = cpu.zeros(&[1, 2])?;
/// let level = NoiseLevel { t: 0.5, marginal: Marginal::new(1.0, 1.0)? };
/// model.predict(&cpu, &x, &[level], Condition::Unconditional, &mut out)?;
/// // One Gaussian: μ + α s²/(α² s² + σ²)·(x − α μ) = μ/2.
/// assert_eq!(cpu.to_host(&out)?, vec![0.5, -0.5]);
/// # Ok::<(), diffuse_nets::Error>(())
/// ```
#[derive(Clone)]
pub struct GmmDenoiser {
    mixture: GaussianMixture,
    parameterization: Arc<dyn Parameterization>,
    /// The mixture of each class of positive weight, by label.
    classes: Vec<(u32, GaussianMixture)>,
}

impl fmt::Debug for GmmDenoiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GmmDenoiser")
            .field("mixture", &self.mixture)
            .field("parameterization", &self.parameterization.name())
            .finish()
    }
}

impl GmmDenoiser {
    /// The exact denoiser of `mixture`, reporting its output in
    /// `parameterization` (a `Box<dyn Parameterization>`, as returned by
    /// `diffuse_param::by_name`, converts with `Arc::from`).
    pub fn new(mixture: GaussianMixture, parameterization: Arc<dyn Parameterization>) -> Self {
        // Classes whose components all have zero weight are left out (and
        // rejected as unknown when asked for).
        let classes = mixture
            .classes()
            .into_iter()
            .filter_map(|c| mixture.class_mixture(c).ok().map(|m| (c, m)))
            .collect();
        Self {
            mixture,
            parameterization,
            classes,
        }
    }

    /// The mixture a row with class label `label` is sampled from: the
    /// whole mixture for the null label `None`, the class mixture
    /// ([`GaussianMixture::class_mixture`]) for `Some(c)`.
    ///
    /// Errors: [`Error::Unsupported`] for `Some(c)` if the mixture has no
    /// labels; [`Error::InvalidArgument`] (name `class`) for a label no
    /// component of positive weight carries.
    pub fn mixture_for(&self, label: Option<u32>) -> Result<&GaussianMixture> {
        let Some(c) = label else {
            return Ok(&self.mixture);
        };
        if self.mixture.labels.is_none() {
            return Err(Error::Unsupported(
                "class conditions: the Gaussian mixture has no labels (it is unconditional)".into(),
            ));
        }
        self.classes
            .iter()
            .find(|(k, _)| *k == c)
            .map(|(_, m)| m)
            .ok_or_else(|| {
                invalid(
                    "class",
                    format!(
                        "unknown class label {c}; the mixture's classes of positive weight are {:?}",
                        self.classes.iter().map(|(k, _)| *k).collect::<Vec<_>>()
                    ),
                )
            })
    }

    /// The mixture of each batch row under `condition` (one entry per row).
    fn row_mixtures(
        &self,
        condition: Condition<'_, impl Sized>,
        rows: usize,
    ) -> Result<Vec<&GaussianMixture>> {
        match condition {
            Condition::Unconditional => Ok(vec![&self.mixture; rows]),
            Condition::Class(labels) => {
                if labels.len() != rows {
                    return Err(Error::ShapeMismatch {
                        op: "GmmDenoiser: one class label per row",
                        expected: vec![rows],
                        found: vec![labels.len()],
                    });
                }
                labels.iter().map(|&l| self.mixture_for(l)).collect()
            }
            Condition::Tensor(_) => Err(Error::Unsupported(
                "tensor conditions: the Gaussian-mixture denoiser is unconditional".into(),
            )),
        }
    }

    /// The exact classifier gradient `∇ₓ log p(y | x)` of each row of `x`
    /// (host, f64, flat row-major, one [`NoiseLevel`] and one label per
    /// row), `α·(E[x₀ | x, y] − E[x₀ | x])/σ²` (module documentation). A row
    /// with the null label `None` gets zero (no class, no guidance); `α = 0`
    /// gives zero (`p(y | x) = p(y)`).
    ///
    /// Errors: as [`GmmDenoiser::mixture_for`] for a label;
    /// [`Error::ShapeMismatch`] for sizes that do not agree;
    /// [`Error::Undefined`] at `σ = 0` (the class posterior is then a step
    /// function of `x`); as [`GaussianMixture::posterior_mean_into`]
    /// otherwise.
    pub fn classifier_gradient(
        &self,
        levels: &[NoiseLevel],
        x: &[f64],
        labels: &[Option<u32>],
    ) -> Result<Vec<f64>> {
        let d = self.check_rows("GmmDenoiser::classifier_gradient", levels, x.len())?;
        if labels.len() != levels.len() {
            return Err(Error::ShapeMismatch {
                op: "GmmDenoiser::classifier_gradient: one class label per row",
                expected: vec![levels.len()],
                found: vec![labels.len()],
            });
        }
        let mut out = vec![0.0; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d))
            .zip(levels.par_iter().zip(labels.par_iter()))
            .try_for_each(|((o, row), (level, &label))| -> Result<()> {
                let m = level.marginal;
                Marginal::new(m.alpha, m.sigma)?;
                let Some(_) = label else {
                    return Ok(());
                };
                let class = self.mixture_for(label)?;
                if m.sigma == 0.0 {
                    return Err(Error::Undefined {
                        what: "the classifier gradient ∇ₓ log p(y | x)",
                        at: "at σ = 0".into(),
                    });
                }
                if m.alpha == 0.0 {
                    return Ok(());
                }
                let mut all = vec![0.0; d];
                self.mixture.posterior_mean_into(row, m, &mut all)?;
                class.posterior_mean_into(row, m, o)?;
                let scale = m.alpha / (m.sigma * m.sigma);
                for (g, a) in o.iter_mut().zip(&all) {
                    *g = scale * (*g - a);
                }
                finite_or_error("GmmDenoiser::classifier_gradient", m, o)
            })?;
        Ok(out)
    }

    /// The data distribution.
    pub fn mixture(&self) -> &GaussianMixture {
        &self.mixture
    }

    /// The parameterisation the output is reported in, shared.
    pub fn parameterization_arc(&self) -> Arc<dyn Parameterization> {
        Arc::clone(&self.parameterization)
    }

    /// Checks host rows `x` (flat, `levels.len()` rows of the mixture's
    /// dimension) and returns the dimension.
    fn check_rows(&self, op: &'static str, levels: &[NoiseLevel], len: usize) -> Result<usize> {
        let d = self.mixture.dim();
        if len != levels.len() * d {
            return Err(Error::ShapeMismatch {
                op,
                expected: vec![levels.len(), d],
                found: vec![len],
            });
        }
        Ok(d)
    }

    /// The exact divergence `∇·x̂₀ = tr(∂E[x₀ | x]/∂x)` of each row of `x`
    /// (host, f64, flat row-major with one [`NoiseLevel`] per row), from
    /// [`GaussianMixture::posterior_divergence`]. This is the Jacobian of the
    /// data estimate; a parameterisation's output `(x̂₀ − a·x)/b` has
    /// divergence `(∇·x̂₀ − a·d)/b`.
    pub fn divergence(&self, levels: &[NoiseLevel], x: &[f64]) -> Result<Vec<f64>> {
        let d = self.check_rows("GmmDenoiser::divergence", levels, x.len())?;
        x.par_chunks(d)
            .zip(levels.par_iter())
            .map(|(row, level)| self.mixture.posterior_divergence(row, level.marginal))
            .collect()
    }

    /// The vector–Jacobian products `vᵀ·∂x̂₀/∂x` of each row (host, f64,
    /// flat row-major like `x` and `v`), from
    /// [`GaussianMixture::posterior_vjp_into`].
    pub fn vjp(&self, levels: &[NoiseLevel], x: &[f64], v: &[f64]) -> Result<Vec<f64>> {
        let d = self.check_rows("GmmDenoiser::vjp (x)", levels, x.len())?;
        self.check_rows("GmmDenoiser::vjp (v)", levels, v.len())?;
        let mut out = vec![0.0; x.len()];
        out.par_chunks_mut(d)
            .zip(x.par_chunks(d).zip(v.par_chunks(d)))
            .zip(levels.par_iter())
            .try_for_each(|((o, (row, vr)), level)| {
                self.mixture.posterior_vjp_into(row, level.marginal, vr, o)
            })?;
        Ok(out)
    }

    /// Downloads a backend tensor of rows of the mixture's dimension as f64,
    /// checking the shape against `levels`.
    fn host_rows<B: Backend>(
        &self,
        backend: &B,
        op: &'static str,
        x: &B::Tensor,
        levels: &[NoiseLevel],
    ) -> Result<Vec<f64>> {
        let shape = backend.shape(x);
        let rows = shape.first().copied().unwrap_or(0);
        let row_len: usize = shape.iter().skip(1).product();
        if shape.is_empty() || row_len != self.mixture.dim() || rows != levels.len() {
            return Err(Error::ShapeMismatch {
                op,
                expected: vec![levels.len(), self.mixture.dim()],
                found: shape.to_vec(),
            });
        }
        Ok(backend.to_host(x)?.into_iter().map(f64::from).collect())
    }
}

/// The exact Jacobian of the Gaussian-mixture denoiser: products and the
/// divergence from the closed form of
/// [`GaussianMixture::posterior_jacobian`], on the host in f64 (tensors are
/// downloaded and the products uploaded, as [`Denoiser::predict`] does).
impl<B: Backend> VectorJacobian<B> for GmmDenoiser {
    fn x0_vjp(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        v: &B::Tensor,
        out: &mut B::Tensor,
    ) -> Result<()> {
        unconditional(condition)?;
        let xs = self.host_rows(backend, "GmmDenoiser::x0_vjp (x)", x, levels)?;
        let vs = self.host_rows(backend, "GmmDenoiser::x0_vjp (v)", v, levels)?;
        if backend.shape(out) != backend.shape(x) {
            return Err(Error::ShapeMismatch {
                op: "GmmDenoiser::x0_vjp: out against x",
                expected: backend.shape(x).to_vec(),
                found: backend.shape(out).to_vec(),
            });
        }
        let product = self.vjp(levels, &xs, &vs)?;
        let mut result = Vec::with_capacity(product.len());
        for (i, &p) in product.iter().enumerate() {
            let p32 = p as f32;
            if !p32.is_finite() {
                return Err(Error::NonFinite(format!(
                    "GmmDenoiser::x0_vjp: element {i} = {p} is beyond f32's range"
                )));
            }
            result.push(p32);
        }
        let tensor = backend.upload(backend.shape(x), &result)?;
        backend.copy(&tensor, out)
    }

    fn x0_divergence(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
    ) -> Result<Option<Vec<f64>>> {
        unconditional(condition)?;
        let xs = self.host_rows(backend, "GmmDenoiser::x0_divergence", x, levels)?;
        self.divergence(levels, &xs).map(Some)
    }
}

/// Only unconditional calls are supported by the mixture denoiser.
fn unconditional<T>(condition: Condition<'_, T>) -> Result<()> {
    match condition {
        Condition::Unconditional => Ok(()),
        Condition::Class(_) => Err(Error::Unsupported(
            "class conditions: the Gaussian-mixture denoiser is unconditional".into(),
        )),
        Condition::Tensor(_) => Err(Error::Unsupported(
            "tensor conditions: the Gaussian-mixture denoiser is unconditional".into(),
        )),
    }
}

impl<B: Backend> Denoiser<B> for GmmDenoiser {
    fn parameterization(&self) -> &dyn Parameterization {
        &*self.parameterization
    }

    fn predict(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let d = self.mixture.dim();
        let rows = diffuse_core::check_predict_args(backend, x, levels, out, d)?;
        let shape = backend.shape(x).to_vec();
        let mixtures = self.row_mixtures(condition, rows)?;
        // Per-row maps first, on the host, so errors name the first bad row.
        let mut maps = Vec::with_capacity(rows);
        for (i, level) in levels.iter().enumerate() {
            let m = level.marginal;
            Marginal::new(m.alpha, m.sigma)?;
            let map = self.parameterization.x0_map(m)?;
            if !(map.a.is_finite() && map.b.is_finite()) || map.b == 0.0 {
                return Err(Error::Undefined {
                    what: "the Gaussian-mixture denoiser's output",
                    at: format!(
                        "in row {i} at (α, σ) = ({}, {}): the {} map x̂₀ = a·x + b·out has \
                         (a, b) = ({}, {})",
                        m.alpha,
                        m.sigma,
                        self.parameterization.name(),
                        map.a,
                        map.b
                    ),
                });
            }
            maps.push(map);
        }
        let host = backend.to_host(x)?;
        if let Some(i) = host.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "GmmDenoiser::predict: x[{}][{}] = {}",
                i / d,
                i % d,
                host[i]
            )));
        }
        let mut result = vec![0.0f32; host.len()];
        // Enough rows per task to amortise rayon's scheduling.
        let min_rows = (16_384 / (d * self.mixture.components()).max(1)).max(1);
        host.par_chunks(d)
            .zip(result.par_chunks_mut(d))
            .zip(levels.par_iter().zip(maps.par_iter().zip(mixtures.par_iter())))
            .enumerate()
            .with_min_len(min_rows)
            .try_for_each_init(
                || (vec![0.0f64; d], vec![0.0f64; d]),
                |(xs, x0), (i, ((row, dst), (level, (map, mixture))))| -> Result<()> {
                    for (a, &b) in xs.iter_mut().zip(row) {
                        *a = f64::from(b);
                    }
                    mixture.posterior_mean_into(xs, level.marginal, x0)?;
                    for (j, (o, (&xj, &x0j))) in dst.iter_mut().zip(xs.iter().zip(x0.iter())).enumerate() {
                        let v = (x0j - map.a * xj) / map.b;
                        let v32 = v as f32;
                        if !v32.is_finite() {
                            return Err(Error::NonFinite(format!(
                                "GmmDenoiser::predict: output [{i}][{j}] = {v} is beyond f32's range"
                            )));
                        }
                        *o = v32;
                    }
                    Ok(())
                },
            )?;
        let tensor = backend.upload(&shape, &result)?;
        backend.copy(&tensor, out)
    }
}

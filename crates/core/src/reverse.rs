//! Reverse process: what the network predicts, and the network itself.
//!
//! Survey §2.2: a network output `out` at state `x` with marginal `(α, σ)`
//! is turned into a clean-data estimate `x̂₀` and a noise estimate `ε̂` by
//! linear maps; ε-, x₀-, v-, score-, flow-velocity-prediction and EDM
//! preconditioning differ only in those maps. Implementations live in
//! `diffuse-param` (parameterisations) and `diffuse-nets` (denoisers).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::forward::Marginal;

/// A scalar affine map of a state and a network output, `y = a·x + b·out`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Affine {
    /// Weight of the state `x`.
    pub a: f64,
    /// Weight of the network output.
    pub b: f64,
}

/// How a network output relates to `x̂₀` and `ε̂`.
///
/// ```
/// use diffuse_core::{Affine, Marginal, Parameterization, Result};
/// /// ε-prediction (Ho et al. 2020): x̂₀ = (x − σ·out)/α.
/// struct Epsilon;
/// impl Parameterization for Epsilon {
///     fn name(&self) -> &str { "epsilon" }
///     fn x0_map(&self, m: Marginal) -> Result<Affine> {
///         Ok(Affine { a: 1.0 / m.alpha, b: -m.sigma / m.alpha })
///     }
/// }
/// let m = Marginal::new(0.6, 0.8)?;
/// let eps = Epsilon.eps_map(m)?; // ε̂ = (x − α·x̂₀)/σ = out
/// assert!(eps.a.abs() < 1e-12 && (eps.b - 1.0).abs() < 1e-12);
/// # Ok::<(), diffuse_core::Error>(())
/// ```
pub trait Parameterization: Send + Sync {
    /// The parameterisation's name.
    fn name(&self) -> &str;

    /// `(a, b)` with `x̂₀ = a·x + b·out` at marginal `m`, or
    /// [`Error::Undefined`] where the parameterisation cannot recover `x̂₀`.
    fn x0_map(&self, m: Marginal) -> Result<Affine>;

    /// `(a, b)` with `ε̂ = a·x + b·out`. The default follows from the forward
    /// marginal, `ε̂ = (x − α·x̂₀)/σ`, and is undefined at `σ = 0`.
    fn eps_map(&self, m: Marginal) -> Result<Affine> {
        if m.sigma == 0.0 {
            return Err(Error::Undefined {
                what: "the noise estimate ε̂",
                at: "at σ = 0 (SNR = ∞)".into(),
            });
        }
        let x0 = self.x0_map(m)?;
        Ok(Affine {
            a: (1.0 - m.alpha * x0.a) / m.sigma,
            b: -m.alpha * x0.b / m.sigma,
        })
    }

    /// The scale applied to the state `x` before it enters the network; 1 by
    /// default. (EDM preconditioning: `c_in` of Karras et al. 2022 Table 1,
    /// divided by `α` because diffuse's state is `α`-scaled.)
    fn input_scale(&self, _m: Marginal) -> f64 {
        1.0
    }

    /// The scalar the network is conditioned on at time `t` with marginal
    /// `m`; the schedule time `t` by default (EDM: `c_noise`).
    fn noise_conditioning(&self, t: f64, _m: Marginal) -> Result<f64> {
        Ok(t)
    }
}

/// The noise level of one batch row, as handed to a [`Denoiser`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NoiseLevel {
    /// Time in the schedule's range.
    pub t: f64,
    /// The forward marginal at `t`.
    pub marginal: Marginal,
}

/// What a denoiser is conditioned on.
#[derive(Clone, Copy, Debug, Default)]
pub enum Condition<'a, T> {
    /// No condition.
    #[default]
    Unconditional,
    /// One class label per batch row; `None` is the null label that
    /// classifier-free guidance uses.
    Class(&'a [Option<u32>]),
    /// A conditioning tensor with the batch as leading axis.
    Tensor(&'a T),
}

/// A model of the reverse process: predicts from a noisy state.
pub trait Denoiser<B: Backend>: Send + Sync {
    /// What the output means.
    fn parameterization(&self) -> &dyn Parameterization;

    /// Writes the prediction for state `x` (one [`NoiseLevel`] per batch row)
    /// into `out`, a tensor shaped like `x`.
    fn predict(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()>;
}

/// The argument checks every [`Denoiser::predict`] makes: `x` is
/// `[rows, …]` with `dim` elements per row, `out` is shaped like `x`, and
/// there is one [`NoiseLevel`] per row. Returns the number of rows;
/// [`Error::ShapeMismatch`] otherwise.
pub fn check_predict_args<B: Backend>(
    backend: &B,
    x: &B::Tensor,
    levels: &[NoiseLevel],
    out: &B::Tensor,
    dim: usize,
) -> Result<usize> {
    let shape = backend.shape(x);
    let rows = shape.first().copied().unwrap_or(0);
    if shape.is_empty() || shape.iter().skip(1).product::<usize>() != dim {
        return Err(Error::ShapeMismatch {
            op: "Denoiser::predict: rows of x against the model's data dimension",
            expected: vec![rows, dim],
            found: shape.to_vec(),
        });
    }
    if backend.shape(out) != shape {
        return Err(Error::ShapeMismatch {
            op: "Denoiser::predict: out against x",
            expected: shape.to_vec(),
            found: backend.shape(out).to_vec(),
        });
    }
    if levels.len() != rows {
        return Err(Error::ShapeMismatch {
            op: "Denoiser::predict: one noise level per row",
            expected: vec![rows],
            found: vec![levels.len()],
        });
    }
    Ok(rows)
}

/// A denoiser whose data estimate can be differentiated with respect to its
/// input: what probability-flow likelihoods need (Song et al. 2021, "Score-
/// based generative modeling through SDEs", eq. 39, the divergence of the
/// drift; Grathwohl et al. 2019, FFJORD, for the trace estimator).
///
/// The derivative is that of the data estimate `x̂₀(x)` with respect to the
/// state `x` a [`Denoiser::predict`] call receives, row by row: the
/// parameterisation's output is `(x̂₀ − a·x)/b` with scalar `(a, b)`, so its
/// Jacobian `(∂x̂₀/∂x − a·I)/b` follows and `∂x̂₀/∂x` is the form that does
/// not depend on the parameterisation.
pub trait VectorJacobian<B: Backend>: Denoiser<B> {
    /// Writes `vᵀ·∂x̂₀/∂x` of each row into `out` (shaped like `x` and `v`),
    /// at the row's [`NoiseLevel`].
    fn x0_vjp(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        v: &B::Tensor,
        out: &mut B::Tensor,
    ) -> Result<()>;

    /// The exact divergence `∇·x̂₀ = tr(∂x̂₀/∂x)` of each row (f64), where
    /// the model can give it in closed form; `None` (the default) when only
    /// vector–Jacobian products are available (likelihoods then use a trace
    /// estimator).
    fn x0_divergence(
        &self,
        _backend: &B,
        _x: &B::Tensor,
        _levels: &[NoiseLevel],
        _condition: Condition<'_, B::Tensor>,
    ) -> Result<Option<Vec<f64>>> {
        Ok(None)
    }
}

/// A denoiser that also predicts the interpolation of a learned-range
/// reverse variance (Nichol & Dhariwal 2021, "Improved denoising diffusion
/// probabilistic models", eq. 15; diffusers' `variance_type =
/// "learned_range"`): the reverse step's variance is
///
/// `log Σ = f·log β_t + (1 − f)·log β̃_t`, `f = (v + 1)/2`,
///
/// per element, with `β_t` the forward variance of the step (DDPM's
/// `fixed_large`) and `β̃_t` the posterior variance (`fixed_small`).
pub trait VarianceDenoiser<B: Backend>: Denoiser<B> {
    /// Writes `v` (nominally in `[−1, 1]`; `−1` selects `β̃_t`, `+1`
    /// selects `β_t`) for each element of state `x` (one [`NoiseLevel`]
    /// per batch row) into `out`, a tensor shaped like `x`.
    fn predict_variance(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()>;
}

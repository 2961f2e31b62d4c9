//! Classifier guidance through a gradient callback.

use diffuse_core::{
    Backend, Condition, Denoiser, Error, LinComb, NoiseLevel, Operand, Parameterization, Result,
};

use super::{GuidanceInterval, Scratch, check_call, check_scale, guided};

/// The gradient of a classifier's log-probability of its target class with
/// respect to the noisy state, `∇ₓ log p_φ(y | x_t)`: the callback of
/// [`ClassifierGuided`]. The classifier knows its target labels (one per
/// batch row); any model can be plugged in, a trained noisy classifier
/// (Dhariwal & Nichol 2021) or an exact one.
pub trait ClassifierGradient<B: Backend>: Send + Sync {
    /// Writes `∇ₓ log p(y | x)` of each row of `x` (at the row's
    /// [`NoiseLevel`]) into `out`, shaped like `x`.
    fn gradient(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        out: &mut B::Tensor,
    ) -> Result<()>;
}

/// Classifier guidance (Dhariwal & Nichol 2021, "Diffusion models beat GANs
/// on image synthesis", Algorithm 2 and eq. 14): the score of the wrapped
/// model plus `s` times the classifier's gradient,
/// `∇log p(x) + s·∇log p(y | x)`.
///
/// # Derivation in diffuse's convention
/// For `x = α·x₀ + σ·ε`, Tweedie's formula gives the score
/// `∇log p(x) = (α·x̂₀ − x)/σ² = −ε̂/σ`. Adding `s·g`, `g = ∇ₓ log p(y | x)`:
///
/// ```text
/// ε̂' = ε̂ − s·σ·g                       (Dhariwal & Nichol, eq. 14)
/// x̂₀' = x̂₀ + s·(σ²/α)·g
/// out' = out + s·σ²/(α·b)·g              (out = (x̂₀ − a·x)/b in the model's map)
/// ```
///
/// so the wrapper keeps the wrapped [`Parameterization`] and adds the
/// gradient in its output space with a per-row coefficient. `α = 0` (pure
/// noise) on a guided row is [`Error::Undefined`] (the data estimate has
/// no gradient to follow there); so is a map with `b = 0`.
///
/// With an exact classifier and the exact unconditional model, scale 1 is
/// the exact conditional model (Bayes), and scale `s` equals
/// classifier-free guidance at scale `s` ([`super::ClassifierFree`]).
///
/// # Cost
/// One model evaluation, one gradient evaluation into a scratch tensor and
/// one [`Backend::lincomb`] pass (reads 2, writes 1). When no row is guided
/// (`s = 0`, or every row outside the interval) the gradient is not
/// evaluated and the model's output is returned as is.
///
/// The condition handed to [`Denoiser::predict`] is passed to the wrapped
/// model unchanged.
pub struct ClassifierGuided<'m, B: Backend> {
    model: &'m dyn Denoiser<B>,
    classifier: &'m dyn ClassifierGradient<B>,
    scale: f64,
    interval: Option<GuidanceInterval>,
    scratch: Scratch<(B::Tensor, LinComb)>,
}

impl<'m, B: Backend> ClassifierGuided<'m, B> {
    /// Guidance of `model` by `classifier` at scale `scale` (finite).
    pub fn new(
        model: &'m dyn Denoiser<B>,
        classifier: &'m dyn ClassifierGradient<B>,
        scale: f64,
    ) -> Result<Self> {
        check_scale("classifier guidance scale", scale)?;
        Ok(Self {
            model,
            classifier,
            scale,
            interval: None,
            scratch: Scratch::new(),
        })
    }

    /// Guides only inside `interval` (see [`GuidanceInterval`]).
    pub fn interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = Some(interval);
        self
    }
}

impl<B: Backend> Denoiser<B> for ClassifierGuided<'_, B> {
    fn parameterization(&self) -> &dyn Parameterization {
        self.model.parameterization()
    }

    fn predict(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let shape = check_call(backend, "ClassifierGuided::predict", x, levels, out)?;
        let rows = shape[0];
        self.model.predict(backend, x, levels, condition, out)?;
        let any = self.scale != 0.0 && levels.iter().any(|l| guided(self.interval, l));
        if !any {
            return Ok(());
        }
        let mut s = self.scratch.get(&shape, || {
            Ok((
                backend.zeros(&shape)?,
                LinComb::per_row(&[Operand::Output(0), Operand::Input(0)], 1, rows)?,
            ))
        })?;
        let (grad, plan) = &mut *s;
        let param = self.model.parameterization();
        for (r, level) in levels.iter().enumerate() {
            let c = if guided(self.interval, level) {
                let m = level.marginal;
                let b = param.x0_map(m)?.b;
                let c = self.scale * m.sigma * m.sigma / (m.alpha * b);
                if m.alpha == 0.0 || b == 0.0 || !c.is_finite() {
                    return Err(Error::Undefined {
                        what: "classifier guidance",
                        at: format!(
                            "in row {r} at (α, σ) = ({}, {}) with the {} map's b = {b}",
                            m.alpha,
                            m.sigma,
                            param.name()
                        ),
                    });
                }
                c
            } else {
                0.0
            };
            plan.set_row(r, 0, 0, 1.0)?.set_row(r, 0, 1, c)?;
        }
        self.classifier.gradient(backend, x, levels, grad)?;
        backend.lincomb(plan, &[grad], &mut [out])
    }
}

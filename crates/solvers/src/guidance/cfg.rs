//! Classifier-free guidance.

use diffuse_core::{
    Backend, Condition, Denoiser, Error, LinComb, NoiseLevel, Operand, Parameterization, Result,
    RowReduction, RowScale,
};

use super::{GuidanceInterval, Scratch, check_call, check_scale, guided};

/// What the guided model is conditioned on, and its null counterpart.
pub enum Conditioning<'c, B: Backend> {
    /// One class label per batch row; the unconditional evaluation uses the
    /// null label `None` on every row.
    Class(&'c [Option<u32>]),
    /// A conditioning tensor (batch first) and the null conditioning the
    /// unconditional evaluation uses (an empty prompt's embedding, say).
    Tensor {
        /// The condition.
        cond: &'c B::Tensor,
        /// The null condition.
        null: &'c B::Tensor,
    },
}

/// Classifier-free guidance (Ho & Salimans 2022, "Classifier-free
/// diffusion guidance", eq. 6) around a conditional denoiser:
///
/// ```text
/// out = out_u + s·(out_c − out_u) = (1 − s)·out_u + s·out_c
/// ```
///
/// with `out_c` the prediction under the condition and `out_u` under the
/// null condition, in the wrapped denoiser's own output space (its
/// [`Parameterization`], which this wrapper keeps). Because the
/// coefficients sum to 1 and every parameterisation is affine in `x̂₀` with
/// the same map for both evaluations, this is the same guidance in `x̂₀`,
/// `ε̂` or score: `ε̂ = ε̂_u + s·(ε̂_c − ε̂_u)`, i.e. the score
/// `∇log p(x) + s·∇log p(y | x)` of an exact model. The convention is
/// diffusers' `guidance_scale`: `s = 1` is plain conditional sampling,
/// `s = 0` unconditional.
///
/// # Options
/// - [`ClassifierFree::interval`]: guidance only for `σ̃ = σ/α` in
///   `(σ̃_lo, σ̃_hi]` (Kynkäänniemi et al. 2024); outside it the conditional
///   prediction is returned.
/// - [`ClassifierFree::rescale`]: the guidance rescale of Lin et al. 2024
///   ("Common diffusion noise schedules and sample steps are flawed",
///   §3.4, eq. 15–16), computed like diffusers' `rescale_noise_cfg`:
///
///   ```text
///   out_r = out · std(out_c)/std(out)        std over each row, unbiased
///   out   ← φ·out_r + (1 − φ)·out  = out·(1 + φ·(std(out_c)/std(out) − 1))
///   ```
///
///   in the wrapped denoiser's output space (where diffusers applies it to
///   the guided `noise_pred`: ε or v, whatever the model predicts). A row
///   whose guided prediction has zero spread is left unscaled.
///
/// # Cost
/// When no row is guided (`s = 1`, or every row outside the interval): one
/// evaluation (conditional), nothing else — the output is the conditional
/// prediction bit for bit. Otherwise two evaluations of the whole batch and
/// one [`Backend::lincomb`] pass (reads 2 tensors, writes 1; rows outside
/// the interval get coefficients (0, 1)); with `φ > 0` also two
/// [`RowReduction::Std`] reductions and one [`Backend::scale_rows`] pass.
/// The unconditional output lives in a scratch tensor kept between calls.
///
/// # Conditions
/// The wrapper carries its condition ([`Conditioning`]) because samplers
/// call the model unconditionally: [`Denoiser::predict`] must be called
/// with [`Condition::Unconditional`] and a batch of as many rows as the
/// conditioning has.
pub struct ClassifierFree<'m, B: Backend> {
    model: &'m dyn Denoiser<B>,
    conditioning: Conditioning<'m, B>,
    nulls: Vec<Option<u32>>,
    scale: f64,
    interval: Option<GuidanceInterval>,
    rescale: f64,
    scratch: Scratch<CfgScratch<B>>,
}

/// The unconditional output, the per-row plan and the two std vectors.
struct CfgScratch<B: Backend> {
    uncond: B::Tensor,
    plan: LinComb,
    std_c: B::Tensor,
    std_g: B::Tensor,
}

impl<'m, B: Backend> ClassifierFree<'m, B> {
    /// Guidance of `model` at scale `scale` (finite; 1 = conditional) under
    /// `conditioning`, without interval or rescale.
    pub fn new(
        model: &'m dyn Denoiser<B>,
        conditioning: Conditioning<'m, B>,
        scale: f64,
    ) -> Result<Self> {
        check_scale("guidance scale", scale)?;
        let nulls = match &conditioning {
            Conditioning::Class(labels) => vec![None; labels.len()],
            Conditioning::Tensor { .. } => Vec::new(),
        };
        Ok(Self {
            model,
            conditioning,
            nulls,
            scale,
            interval: None,
            rescale: 0.0,
            scratch: Scratch::new(),
        })
    }

    /// Guides only inside `interval` (see [`GuidanceInterval`]).
    pub fn interval(mut self, interval: GuidanceInterval) -> Self {
        self.interval = Some(interval);
        self
    }

    /// Rescales the guided prediction by `φ ∈ [0, 1]` (0 = off);
    /// [`Error::InvalidArgument`] outside.
    pub fn rescale(mut self, phi: f64) -> Result<Self> {
        if !(0.0..=1.0).contains(&phi) {
            return Err(Error::InvalidArgument {
                name: "guidance rescale",
                reason: format!("φ = {phi} is outside [0, 1]"),
            });
        }
        self.rescale = phi;
        Ok(self)
    }

    /// The guidance scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    fn conditions(&self) -> (Condition<'_, B::Tensor>, Condition<'_, B::Tensor>) {
        match &self.conditioning {
            Conditioning::Class(labels) => {
                (Condition::Class(labels), Condition::Class(&self.nulls))
            }
            Conditioning::Tensor { cond, null } => {
                (Condition::Tensor(cond), Condition::Tensor(null))
            }
        }
    }

    fn rows(&self, backend: &B) -> usize {
        match &self.conditioning {
            Conditioning::Class(labels) => labels.len(),
            Conditioning::Tensor { cond, .. } => backend.shape(cond).first().copied().unwrap_or(0),
        }
    }
}

impl<B: Backend> Denoiser<B> for ClassifierFree<'_, B> {
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
        if !matches!(condition, Condition::Unconditional) {
            return Err(Error::InvalidArgument {
                name: "condition",
                reason: "classifier-free guidance carries its own conditioning; call it \
                         unconditionally"
                    .into(),
            });
        }
        let shape = check_call(backend, "ClassifierFree::predict", x, levels, out)?;
        let rows = shape[0];
        if self.rows(backend) != rows {
            return Err(Error::ShapeMismatch {
                op: "ClassifierFree::predict: conditioning rows against the batch",
                expected: vec![rows],
                found: vec![self.rows(backend)],
            });
        }
        let (cond, null) = self.conditions();
        let any = self.scale != 1.0 && levels.iter().any(|l| guided(self.interval, l));
        self.model.predict(backend, x, levels, cond, out)?;
        if !any {
            return Ok(());
        }
        let mut s = self.scratch.get(&shape, || {
            Ok(CfgScratch {
                uncond: backend.zeros(&shape)?,
                plan: LinComb::per_row(&[Operand::Input(0), Operand::Output(0)], 1, rows)?,
                std_c: backend.zeros(&[rows])?,
                std_g: backend.zeros(&[rows])?,
            })
        })?;
        let s = &mut *s;
        self.model
            .predict(backend, x, levels, null, &mut s.uncond)?;
        let rescale = self.rescale > 0.0;
        if rescale {
            backend.reduce_rows(out, RowReduction::Std { correction: 1 }, &mut s.std_c)?;
        }
        // out ← (1 − s)·out_u + s·out_c on guided rows, out_c elsewhere.
        for (r, level) in levels.iter().enumerate() {
            let w = if guided(self.interval, level) {
                self.scale
            } else {
                1.0
            };
            s.plan.set_row(r, 0, 0, 1.0 - w)?.set_row(r, 0, 1, w)?;
        }
        backend.lincomb(&s.plan, &[&s.uncond], &mut [out])?;
        if rescale {
            backend.reduce_rows(out, RowReduction::Std { correction: 1 }, &mut s.std_g)?;
            backend.scale_rows(
                RowScale::Ratio {
                    weight: self.rescale,
                },
                &[&s.std_c, &s.std_g],
                out,
            )?;
        }
        Ok(())
    }
}

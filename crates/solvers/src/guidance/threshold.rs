//! Dynamic thresholding and static clipping of the data estimate.

use diffuse_core::{
    Backend, Condition, Denoiser, Error, LinComb, NoiseLevel, Operand, Parameterization, Result,
    RowReduction, RowScale,
};

use super::{DataPrediction, Scratch, check_call};

/// How [`Thresholded`] bounds the data estimate `x̂₀`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Imagen's dynamic thresholding (Saharia et al. 2022, "Photorealistic
    /// text-to-image diffusion models with deep language understanding",
    /// §2.3), per batch row:
    ///
    /// ```text
    /// s  = quantile_p(|x̂₀|)            linear interpolation (numpy's default)
    /// s  = min(max(s, 1), max_value)
    /// x̂₀ ← clamp(x̂₀, −s, s) / s
    /// ```
    ///
    /// as diffusers' `_threshold_sample` (`dynamic_thresholding_ratio` = p,
    /// `sample_max_value` = max_value).
    Dynamic {
        /// The quantile `p ∈ (0, 1]` (Imagen: 0.995).
        percentile: f64,
        /// The largest threshold, `≥ 1` (may be `+∞`).
        max_value: f64,
    },
    /// Static clipping (Ho et al. 2020): `x̂₀ ← clamp(x̂₀, −c, c)`.
    Static {
        /// The bound `c > 0` (1 for data scaled to `[−1, 1]`).
        bound: f64,
    },
}

impl Threshold {
    /// Imagen's dynamic thresholding at `percentile` with `max_value`;
    /// [`Error::InvalidArgument`] unless `0 < p ≤ 1` and `max_value ≥ 1`.
    pub fn dynamic(percentile: f64, max_value: f64) -> Result<Self> {
        let t = Threshold::Dynamic {
            percentile,
            max_value,
        };
        t.check()?;
        Ok(t)
    }

    /// Static clipping to `[−bound, bound]`; [`Error::InvalidArgument`]
    /// unless `bound` is positive and finite.
    pub fn clip(bound: f64) -> Result<Self> {
        let t = Threshold::Static { bound };
        t.check()?;
        Ok(t)
    }

    fn check(self) -> Result<()> {
        match self {
            Threshold::Dynamic {
                percentile,
                max_value,
            } => {
                if !(percentile > 0.0 && percentile <= 1.0) {
                    return Err(Error::InvalidArgument {
                        name: "threshold percentile",
                        reason: format!("p = {percentile} is outside (0, 1]"),
                    });
                }
                if max_value.is_nan() || max_value < 1.0 {
                    return Err(Error::InvalidArgument {
                        name: "threshold max value",
                        reason: format!("{max_value} is below 1"),
                    });
                }
            }
            Threshold::Static { bound } => {
                if !(bound.is_finite() && bound > 0.0 && (bound as f32) > 0.0) {
                    return Err(Error::InvalidArgument {
                        name: "clipping bound",
                        reason: format!("{bound} is not positive and finite"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A denoiser whose data estimate is thresholded ([`Threshold`]). It works
/// in data-prediction space: its output is `x̂₀` itself
/// ([`DataPrediction`], `x̂₀ = out`), so a solver's output → `x̂₀` map is the
/// identity, whatever the wrapped model predicts.
///
/// # Cost
/// The wrapped evaluation, then, unless the wrapped model already predicts
/// `x̂₀` with the identity map at every row, one [`Backend::lincomb`] pass
/// `x̂₀ = a·x + b·out` (reads 2, writes 1, in place); then for dynamic
/// thresholding one [`RowReduction::AbsQuantile`] reduction and one
/// [`Backend::scale_rows`] pass (the per-row threshold stays where the
/// reduction left it), for static clipping one [`Backend::scale_rows`]
/// pass.
///
/// The condition is passed to the wrapped model unchanged.
pub struct Thresholded<'m, B: Backend> {
    model: &'m dyn Denoiser<B>,
    threshold: Threshold,
    scratch: Scratch<(LinComb, B::Tensor)>,
}

impl<'m, B: Backend> Thresholded<'m, B> {
    /// `model` with its data estimate thresholded by `threshold` (checked
    /// as [`Threshold::dynamic`] and [`Threshold::clip`] do).
    pub fn new(model: &'m dyn Denoiser<B>, threshold: Threshold) -> Result<Self> {
        threshold.check()?;
        Ok(Self {
            model,
            threshold,
            scratch: Scratch::new(),
        })
    }
}

impl<B: Backend> Denoiser<B> for Thresholded<'_, B> {
    fn parameterization(&self) -> &dyn Parameterization {
        &DataPrediction
    }

    fn predict(
        &self,
        backend: &B,
        x: &B::Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, B::Tensor>,
        out: &mut B::Tensor,
    ) -> Result<()> {
        let shape = check_call(backend, "Thresholded::predict", x, levels, out)?;
        let rows = shape[0];
        self.model.predict(backend, x, levels, condition, out)?;
        let mut s = self.scratch.get(&shape, || {
            Ok((
                LinComb::per_row(&[Operand::Input(0), Operand::Output(0)], 1, rows)?,
                backend.zeros(&[rows])?,
            ))
        })?;
        let (plan, bound) = &mut *s;
        // x̂₀ = a·x + b·out, skipped when the map is the identity everywhere.
        let param = self.model.parameterization();
        let mut identity = true;
        for (r, level) in levels.iter().enumerate() {
            let map = param.x0_map(level.marginal)?;
            identity &= map.a == 0.0 && map.b == 1.0;
            plan.set_row(r, 0, 0, map.a)?.set_row(r, 0, 1, map.b)?;
        }
        if !identity {
            backend.lincomb(plan, &[x], &mut [out])?;
        }
        match self.threshold {
            Threshold::Dynamic {
                percentile,
                max_value,
            } => {
                backend.reduce_rows(out, RowReduction::AbsQuantile(percentile), bound)?;
                backend.scale_rows(
                    RowScale::ClampDivide {
                        lo: 1.0,
                        hi: max_value,
                    },
                    &[bound],
                    out,
                )
            }
            Threshold::Static { bound: c } => {
                backend.scale_rows(RowScale::Clamp { bound: c }, &[], out)
            }
        }
    }
}

//! Guidance and corrections of the model prediction (survey §2.3,
//! "conditional generation: guiding mechanisms"), as [`Denoiser`] wrappers
//! generic over the [`Backend`], so every solver uses them unchanged:
//!
//! - [`ClassifierFree`]: classifier-free guidance (Ho & Salimans 2022) with
//!   a guidance scale, an optional guidance interval (Kynkäänniemi et al.
//!   2024) and the guidance rescale φ of Lin et al. 2024;
//! - [`ClassifierGuided`]: classifier guidance (Dhariwal & Nichol 2021)
//!   through a gradient callback ([`ClassifierGradient`]);
//! - [`Thresholded`]: Imagen's dynamic thresholding (Saharia et al. 2022)
//!   and static clipping of `x̂₀` ([`Threshold`]).
//!
//! Each wrapper states its cost in passes over memory. Element-wise work is
//! one fused [`Backend::lincomb`] pass; what needs a statistic of a row (the
//! threshold of dynamic thresholding, the standard deviations of the
//! rescale) is a [`Backend::reduce_rows`] followed by one
//! [`Backend::scale_rows`] pass that reads the per-row results where the
//! reduction left them (on a GPU: no trip through host memory).
//!
//! The wrappers keep their scratch tensors between calls (behind a mutex,
//! rebuilt only when the batch shape changes), so a sampling loop allocates
//! device memory once.
//!
//! Wrappers compose: `Thresholded::new(&ClassifierFree::new(…), …)`
//! thresholds the guided prediction, as Imagen does.

mod cfg;
mod classifier;
mod threshold;

use std::sync::{Mutex, MutexGuard};

use diffuse_core::{Affine, Backend, Error, Marginal, NoiseLevel, Parameterization, Result};

pub use cfg::{ClassifierFree, Conditioning};
pub use classifier::{ClassifierGradient, ClassifierGuided};
pub use threshold::{Threshold, Thresholded};

/// The guidance interval of Kynkäänniemi et al. 2024 ("Applying guidance
/// in a limited interval improves sample and distribution quality in
/// diffusion models"): guidance acts only at noise levels `σ̃ = σ/α` in
/// `(lo, hi]`, the variance-exploding noise level of the marginal (EDM's
/// σ, which the paper's intervals are given in). Outside it the guided
/// wrapper returns the conditional prediction.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuidanceInterval {
    /// Lower end `σ̃_lo ≥ 0` (excluded).
    pub lo: f64,
    /// Upper end `σ̃_hi > σ̃_lo` (included; may be `+∞`).
    pub hi: f64,
}

impl GuidanceInterval {
    /// The interval `(lo, hi]` in `σ̃ = σ/α`; [`Error::InvalidArgument`]
    /// unless `0 ≤ lo < hi` (with `lo` finite, `hi` possibly `+∞`).
    pub fn new(lo: f64, hi: f64) -> Result<Self> {
        if !(lo.is_finite() && lo >= 0.0) || hi.is_nan() || hi <= lo {
            return Err(Error::InvalidArgument {
                name: "guidance interval",
                reason: format!("({lo}, {hi}] is not an interval 0 ≤ σ_lo < σ_hi"),
            });
        }
        Ok(Self { lo, hi })
    }

    /// Whether a row at marginal `m` is guided: `lo < σ/α ≤ hi` (with
    /// `σ/α = +∞` at `α = 0`).
    pub fn contains(&self, m: Marginal) -> bool {
        let s = if m.alpha == 0.0 {
            f64::INFINITY
        } else {
            m.sigma / m.alpha
        };
        self.lo < s && s <= self.hi
    }
}

/// Whether row level `level` is guided under an optional interval.
fn guided(interval: Option<GuidanceInterval>, level: &NoiseLevel) -> bool {
    interval.is_none_or(|i| i.contains(level.marginal))
}

/// Checks a guidance scale: finite.
fn check_scale(name: &'static str, scale: f64) -> Result<()> {
    if !scale.is_finite() {
        return Err(Error::InvalidArgument {
            name,
            reason: format!("{scale} is not finite"),
        });
    }
    Ok(())
}

/// Data prediction, `x̂₀ = out`: the parameterisation of the thresholding
/// wrapper's output (the "sample" prediction type of diffusers).
#[derive(Clone, Copy, Debug, Default)]
pub struct DataPrediction;

impl Parameterization for DataPrediction {
    fn name(&self) -> &str {
        "sample"
    }
    /// `x̂₀ = 0·x + 1·out`.
    fn x0_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

/// Scratch kept by a wrapper between calls, rebuilt when the state shape
/// changes.
struct Scratch<T> {
    slot: Mutex<Option<(Vec<usize>, T)>>,
}

impl<T> Scratch<T> {
    fn new() -> Self {
        Self {
            slot: Mutex::new(None),
        }
    }

    /// The scratch for `shape`, built by `build` if there is none for it.
    fn get(
        &self,
        shape: &[usize],
        build: impl FnOnce() -> Result<T>,
    ) -> Result<ScratchGuard<'_, T>> {
        let mut guard = self.slot.lock().map_err(|_| Error::Backend {
            backend: "guidance".into(),
            message: "a scratch lock was poisoned by a panic".into(),
        })?;
        if guard.as_ref().is_none_or(|(s, _)| s.as_slice() != shape) {
            *guard = Some((shape.to_vec(), build()?));
        }
        Ok(ScratchGuard(guard))
    }
}

/// A locked scratch slot that holds a value.
struct ScratchGuard<'a, T>(MutexGuard<'a, Option<(Vec<usize>, T)>>);

impl<T> std::ops::Deref for ScratchGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // `get` fills the slot before handing out the guard.
        match self.0.as_ref() {
            Some((_, t)) => t,
            None => unreachable!("scratch filled by Scratch::get"),
        }
    }
}

impl<T> std::ops::DerefMut for ScratchGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        match self.0.as_mut() {
            Some((_, t)) => t,
            None => unreachable!("scratch filled by Scratch::get"),
        }
    }
}

/// Checks `x`, `out` and `levels` against each other; returns the shape.
fn check_call<B: Backend>(
    backend: &B,
    op: &'static str,
    x: &B::Tensor,
    levels: &[NoiseLevel],
    out: &B::Tensor,
) -> Result<Vec<usize>> {
    let shape = backend.shape(x).to_vec();
    if backend.shape(out) != shape.as_slice() {
        return Err(Error::ShapeMismatch {
            op,
            expected: shape,
            found: backend.shape(out).to_vec(),
        });
    }
    if shape.first() != Some(&levels.len()) {
        return Err(Error::ShapeMismatch {
            op,
            expected: vec![levels.len()],
            found: shape,
        });
    }
    Ok(shape)
}

//! The exact denoiser of an isotropic Gaussian mixture on the GPU
//! ([`CudaGmmDenoiser`], kernel `kernels/gmm.cu`).
//!
//! For data `p₀ = Σₖ wₖ N(μₖ, sₖ² I)` and the forward marginal
//! `x = α·x₀ + σ·ε`, the posterior mean has the closed form
//!
//! ```text
//! vₖ       = α²·sₖ² + σ²
//! log rₖ   = log wₖ − (d/2)·log(2π·vₖ) − |x − α·μₖ|² / (2·vₖ)     (softmax over k)
//! E[x₀|x]  = Σₖ rₖ·(μₖ + α·sₖ²/vₖ·(x − α·μₖ))
//! ```
//!
//! (the analytic problem of `conformance/README.md`, as in
//! `diffuse_nets::GaussianMixture`), and the denoiser reports it in a
//! [`Parameterization`]: `out = (E[x₀|x] − a·x)/b` with the row's
//! `x̂₀ = a·x + b·out`. The kernel evaluates this in f64 (accuracy over
//! speed: it is the reference model), in the operation order of the CPU
//! reference `diffuse_nets::GmmDenoiser` and with the same hand-written
//! logarithm and exponential, so the two agree bit for bit.
//!
//! This crate does not depend on `diffuse-nets`: the mixture comes in as the
//! validated parameter set both crates share, [`IsotropicMixture`] of
//! `diffuse-core` (so the same rules, errors and derived bits), laid out for
//! the kernel by [`ActiveComponents`].

use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg};
use diffuse_core::{
    Backend, Condition, Denoiser, Error, IsotropicMixture, Marginal, NoiseLevel, Parameterization,
    Result,
};

use crate::backend::CudaBackend;
use crate::kernels::{self, GmmArgs, KernelModule};

// SAFETY: a plain-old-data `#[repr(C)]` struct laid out as `DfGmmArgs`
// (size asserted on both sides).
unsafe impl DeviceRepr for GmmArgs {}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// The components of positive weight of an [`IsotropicMixture`] as the
/// kernel reads them, f64 on the host: means flattened `[components][dim]`
/// row-major, `sₖ²` and `ln wₖ`, in ascending component order
/// ([`IsotropicMixture::active`]). The numbers are the mixture's own (copied,
/// not recomputed), so the kernel sees the bits the CPU reference uses. The
/// prior mean is [`IsotropicMixture::prior_mean`].
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveComponents {
    /// Means of the active components, `[components][dim]` row-major.
    pub means: Vec<f64>,
    /// `sₖ²` of the active components.
    pub variances: Vec<f64>,
    /// `ln wₖ` of the active components (normalised weights).
    pub log_weights: Vec<f64>,
}

impl ActiveComponents {
    /// The active components of `mixture`.
    pub fn of(mixture: &IsotropicMixture) -> Self {
        let active = mixture.active();
        let mut means = Vec::with_capacity(active.len() * mixture.dim());
        for &j in active {
            means.extend_from_slice(&mixture.means()[j]);
        }
        Self {
            means,
            variances: active.iter().map(|&j| mixture.variances()[j]).collect(),
            log_weights: active.iter().map(|&j| mixture.log_weights()[j]).collect(),
        }
    }

    /// The number of active components (those with positive weight; the
    /// others never contribute and are left out).
    pub fn components(&self) -> usize {
        self.variances.len()
    }
}

/// The per-row level parameters the kernel reads, `[α, σ, a, b]` per row,
/// with `(a, b)` the parameterisation's map `x̂₀ = a·x + b·out` at the
/// row's marginal.
///
/// Errors as `diffuse_nets::GmmDenoiser::predict`: [`Error::InvalidArgument`]
/// for an invalid marginal, [`Error::Undefined`] where the parameterisation
/// cannot express `x̂₀` (its map fails, is not finite, or has `b = 0`).
pub fn row_levels(
    parameterization: &dyn Parameterization,
    levels: &[NoiseLevel],
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(4 * levels.len());
    for (i, level) in levels.iter().enumerate() {
        let m = level.marginal;
        Marginal::new(m.alpha, m.sigma)?;
        let map = parameterization.x0_map(m)?;
        if !(map.a.is_finite() && map.b.is_finite()) || map.b == 0.0 {
            return Err(Error::Undefined {
                what: "the Gaussian-mixture denoiser's output",
                at: format!(
                    "in row {i} at (α, σ) = ({}, {}): the {} map x̂₀ = a·x + b·out has \
                     (a, b) = ({}, {})",
                    m.alpha,
                    m.sigma,
                    parameterization.name(),
                    map.a,
                    map.b
                ),
            });
        }
        out.extend_from_slice(&[m.alpha, m.sigma, map.a, map.b]);
    }
    Ok(out)
}

/// Only unconditional calls: the mixture has no labels.
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

/// Per-call device buffers, grown with the batch and otherwise reused.
struct Work {
    /// Rows the buffers hold.
    rows: usize,
    /// `[rows][4]` level parameters, uploaded per call.
    levels: CudaSlice<f64>,
    /// `[rows][dim]` f64 scratch.
    acc: CudaSlice<f64>,
    /// `[rows]` sticky status words.
    status: CudaSlice<u32>,
    /// A failure read from status words that were replaced by larger ones.
    pending: Option<Error>,
}

/// The mixture's parameters in device memory, uploaded once.
struct DeviceMixture {
    means: CudaSlice<f64>,
    variances: CudaSlice<f64>,
    log_weights: CudaSlice<f64>,
    prior_mean: CudaSlice<f64>,
}

/// The exact posterior-mean denoiser of an isotropic Gaussian mixture on a
/// CUDA device, reporting its output in a given [`Parameterization`]: the
/// GPU counterpart of `diffuse_nets::GmmDenoiser`, with the same output bit
/// for bit (see the [module documentation](self)).
///
/// # Work per call
/// The mixture is uploaded once, at construction. [`Denoiser::predict`]
/// uploads the rows' level parameters `[α, σ, a, b]` (32 bytes per row, into
/// a reused buffer) and queues one kernel launch, one thread per row; it
/// copies nothing back and does not wait for the device.
///
/// # Errors
/// Checked on the host before the launch, as the CPU reference does:
/// [`Error::ShapeMismatch`] if a row of `x` (all axes after the first) does
/// not have the mixture's dimension, `out` is not shaped like `x`, or there
/// is not one [`NoiseLevel`] per row; [`Error::Unsupported`] for a class or
/// tensor condition; [`Error::InvalidArgument`] for an invalid marginal or a
/// backend on another device; [`Error::Undefined`] where the
/// parameterisation cannot express `x̂₀`.
///
/// Found by the kernel (a non-finite state, a non-finite log responsibility
/// or posterior mean, an output beyond f32): the row's output is filled with
/// NaN and the failure is kept in a per-row status word on the device, read
/// without stalling the loop only when asked: [`CudaGmmDenoiser::check`]
/// waits for the device and returns the first failure as
/// [`Error::NonFinite`] naming the row. Call it after a run (the command
/// line does).
pub struct CudaGmmDenoiser {
    mixture: IsotropicMixture,
    /// The number of active components the kernel loops over.
    components: usize,
    parameterization: Arc<dyn Parameterization>,
    ordinal: usize,
    kernel: CudaFunction,
    device: DeviceMixture,
    work: Mutex<Option<Work>>,
}

impl fmt::Debug for CudaGmmDenoiser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CudaGmmDenoiser")
            .field("ordinal", &self.ordinal)
            .field("dim", &self.mixture.dim())
            .field("components", &self.components)
            .field("parameterization", &self.parameterization.name())
            .finish_non_exhaustive()
    }
}

fn lock_error(backend: &CudaBackend) -> Error {
    Error::Backend {
        backend: backend.name(),
        message: "Gaussian-mixture work buffers: lock poisoned".into(),
    }
}

impl CudaGmmDenoiser {
    /// The exact denoiser of `mixture` on `backend`'s device, its output in
    /// `parameterization`. Uploads the mixture's active components
    /// ([`ActiveComponents`]) and prior mean, and loads the kernel (compiled
    /// by NVRTC once per process).
    pub fn new(
        backend: &CudaBackend,
        mixture: &IsotropicMixture,
        parameterization: Arc<dyn Parameterization>,
    ) -> Result<Self> {
        let module = backend.load(KernelModule::Gmm)?;
        let kernel = backend.kernel(&module, kernels::GMM_PREDICT_KERNEL)?;
        let upload = |data: &[f64]| -> Result<CudaSlice<f64>> {
            let mut d = backend.alloc::<f64>(data.len())?;
            backend
                .stream()
                .memcpy_htod(data, &mut d)
                .map_err(|e| backend.err("Gaussian-mixture upload", e))?;
            Ok(d)
        };
        let active = ActiveComponents::of(mixture);
        let device = DeviceMixture {
            means: upload(&active.means)?,
            variances: upload(&active.variances)?,
            log_weights: upload(&active.log_weights)?,
            prior_mean: upload(mixture.prior_mean())?,
        };
        Ok(Self {
            mixture: mixture.clone(),
            components: active.components(),
            parameterization,
            ordinal: backend.ordinal(),
            kernel,
            device,
            work: Mutex::new(None),
        })
    }

    /// The mixture on the device.
    pub fn mixture(&self) -> &IsotropicMixture {
        &self.mixture
    }

    /// The parameterisation the output is reported in, shared.
    pub fn parameterization_arc(&self) -> Arc<dyn Parameterization> {
        Arc::clone(&self.parameterization)
    }

    /// Waits for the device and returns the first failure the kernel
    /// recorded since the last check (see the type's documentation), then
    /// clears the record. `Ok` when every row of every call succeeded.
    pub fn check(&self, backend: &CudaBackend) -> Result<()> {
        self.same_device(backend)?;
        let mut guard = self.work.lock().map_err(|_| lock_error(backend))?;
        let Some(work) = guard.as_mut() else {
            return Ok(());
        };
        let status = backend
            .stream()
            .clone_dtoh(&work.status)
            .map_err(|e| backend.err("Gaussian-mixture status", e))?;
        backend.synchronize()?;
        let pending = work.pending.take();
        if status.iter().any(|&s| s != 0) {
            backend
                .stream()
                .memset_zeros(&mut work.status)
                .map_err(|e| backend.err("Gaussian-mixture status reset", e))?;
        }
        match pending {
            Some(e) => Err(e),
            None => kernels::check_gmm_status(&status),
        }
    }

    fn same_device(&self, backend: &CudaBackend) -> Result<()> {
        if backend.ordinal() != self.ordinal {
            return Err(invalid(
                "backend",
                format!(
                    "the Gaussian-mixture denoiser lives on cuda:{}, not {}",
                    self.ordinal,
                    backend.name()
                ),
            ));
        }
        Ok(())
    }

    /// The work buffers for `rows` rows, grown if needed (only then is the
    /// device waited for, to keep a failure recorded in the old status).
    fn work_for<'w>(
        &self,
        backend: &CudaBackend,
        slot: &'w mut Option<Work>,
        rows: usize,
    ) -> Result<&'w mut Work> {
        let pending = match slot.take() {
            Some(w) if w.rows >= rows => return Ok(slot.insert(w)),
            Some(w) => {
                let status = backend
                    .stream()
                    .clone_dtoh(&w.status)
                    .map_err(|e| backend.err("Gaussian-mixture status", e))?;
                backend.synchronize()?;
                w.pending.or(kernels::check_gmm_status(&status).err())
            }
            None => None,
        };
        let elements = rows
            .checked_mul(self.mixture.dim())
            .ok_or_else(|| invalid("x", "rows × dimension overflows"))?;
        Ok(slot.insert(Work {
            rows,
            levels: backend.alloc::<f64>(4 * rows)?,
            acc: backend.alloc::<f64>(elements)?,
            status: backend.alloc::<u32>(rows)?,
            pending,
        }))
    }
}

impl Denoiser<CudaBackend> for CudaGmmDenoiser {
    fn parameterization(&self) -> &dyn Parameterization {
        &*self.parameterization
    }

    fn predict(
        &self,
        backend: &CudaBackend,
        x: &crate::CudaTensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, crate::CudaTensor>,
        out: &mut crate::CudaTensor,
    ) -> Result<()> {
        unconditional(condition)?;
        self.same_device(backend)?;
        let d = self.mixture.dim();
        let rows = diffuse_core::check_predict_args(backend, x, levels, out, d)?;
        let host_levels = row_levels(&*self.parameterization, levels)?;
        let mut guard = self.work.lock().map_err(|_| lock_error(backend))?;
        let work = self.work_for(backend, &mut guard, rows)?;
        let stream = backend.stream();
        // Stream order keeps this upload behind the previous launch that
        // reads the buffer.
        stream
            .memcpy_htod(&host_levels, &mut work.levels)
            .map_err(|e| backend.err("Gaussian-mixture levels upload", e))?;
        let (xp, _gx) = x.data.device_ptr(stream);
        let (op, _go) = out.data.device_ptr_mut(stream);
        let (ap, _ga) = work.acc.device_ptr_mut(stream);
        let (sp, _gs) = work.status.device_ptr_mut(stream);
        let (lp, _gl) = work.levels.device_ptr(stream);
        let (mp, _gm) = self.device.means.device_ptr(stream);
        let (vp, _gv) = self.device.variances.device_ptr(stream);
        let (wp, _gw) = self.device.log_weights.device_ptr(stream);
        let (pp, _gp) = self.device.prior_mean.device_ptr(stream);
        let args = GmmArgs {
            x: xp,
            out: op,
            acc: ap,
            status: sp,
            levels: lp,
            means: mp,
            variances: vp,
            log_weights: wp,
            prior_mean: pp,
            rows: rows as u64,
            dim: d as u64,
            components: self.components as u64,
        };
        let mut b = stream.launch_builder(&self.kernel);
        b.arg(&args);
        // SAFETY: every pointer in `args` is a live device buffer of the size
        // the kernel reads for `rows`, `dim` and `components`.
        unsafe { b.launch(backend.config(rows as u64)) }
            .map_err(|e| backend.err("Gaussian-mixture kernel", e))?;
        Ok(())
    }
}

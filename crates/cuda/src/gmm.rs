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
//! This crate does not depend on `diffuse-nets`: the mixture comes in as its
//! raw parameters ([`MixtureParams`]), validated and normalised by the same
//! rules.

use std::fmt;
use std::sync::{Arc, Mutex};

use cudarc::driver::{CudaFunction, CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, PushKernelArg};
use diffuse_core::{
    Backend, Condition, Denoiser, Error, Marginal, NoiseLevel, Parameterization, Result,
};

use crate::backend::CudaBackend;
use crate::kernels::{self, GmmArgs, KernelModule};

// SAFETY: a plain-old-data `#[repr(C)]` struct laid out as `DfGmmArgs`
// (size asserted on both sides).
unsafe impl DeviceRepr for GmmArgs {}

/// How far the weights may sum from 1 before they are rejected (as in
/// `diffuse_nets::gmm::WEIGHT_SUM_TOLERANCE`).
pub const WEIGHT_SUM_TOLERANCE: f64 = 1e-6;

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// A validated isotropic Gaussian mixture as the kernel reads it: the
/// components with positive weight only, their means flattened, `ln wₖ`,
/// `sₖ²` and the prior mean `Σₖ wₖ μₖ`, all f64 on the host.
///
/// The rules are `diffuse_nets::GaussianMixture::new`'s: at least one
/// component; as many weights, means and standard deviations; means of one
/// dimension `d ≥ 1`; finite numbers; weights `≥ 0` summing to 1 within
/// [`WEIGHT_SUM_TOLERANCE`] (then divided by their sum); standard deviations
/// `> 0` whose square is a normal f64. The derived numbers are computed in
/// the same order, so they are the same bits.
#[derive(Clone, Debug, PartialEq)]
pub struct MixtureParams {
    dim: usize,
    /// Means of the active components, `[components][dim]` row-major.
    means: Vec<f64>,
    /// `sₖ²` of the active components.
    variances: Vec<f64>,
    /// `ln wₖ` of the active components (normalised weights).
    log_weights: Vec<f64>,
    /// `Σₖ wₖ μₖ`.
    prior_mean: Vec<f64>,
}

impl MixtureParams {
    /// Validates and prepares the mixture `Σₖ weights[k]·N(means[k],
    /// stds[k]²·I)`. Errors name the field: [`Error::InvalidArgument`]
    /// (`weights`, `means`, `stds`) or [`Error::NonFinite`].
    pub fn new(weights: &[f64], means: &[Vec<f64>], stds: &[f64]) -> Result<Self> {
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
        for (j, &s) in stds.iter().enumerate() {
            if !s.is_finite() {
                return Err(Error::NonFinite(format!(
                    "Gaussian-mixture stds[{j}] = {s}"
                )));
            }
            if s <= 0.0 {
                return Err(invalid("stds", format!("stds[{j}] = {s} is not positive")));
            }
            if !(s * s).is_normal() {
                return Err(invalid(
                    "stds",
                    format!(
                        "stds[{j}] = {s}: its square {} leaves f64's normal range",
                        s * s
                    ),
                ));
            }
        }
        let normalised: Vec<f64> = weights.iter().map(|w| w / sum).collect();
        let mut params = Self {
            dim,
            means: Vec::new(),
            variances: Vec::new(),
            log_weights: Vec::new(),
            prior_mean: vec![0.0; dim],
        };
        for (j, &w) in normalised.iter().enumerate() {
            if w > 0.0 {
                params.means.extend_from_slice(&means[j]);
                params.variances.push(stds[j] * stds[j]);
                params.log_weights.push(w.ln());
                for (p, m) in params.prior_mean.iter_mut().zip(&means[j]) {
                    *p += w * m;
                }
            }
        }
        if params.prior_mean.iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(
                "the Gaussian-mixture prior mean Σ wₖ μₖ overflows".into(),
            ));
        }
        Ok(params)
    }

    /// The data dimension `d`.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of components with positive weight (the others never
    /// contribute and are left out).
    pub fn components(&self) -> usize {
        self.variances.len()
    }

    /// Means of the active components, `[components][dim]` row-major.
    pub fn means(&self) -> &[f64] {
        &self.means
    }

    /// `sₖ²` of the active components.
    pub fn variances(&self) -> &[f64] {
        &self.variances
    }

    /// `ln wₖ` of the active components.
    pub fn log_weights(&self) -> &[f64] {
        &self.log_weights
    }

    /// The prior mean `Σₖ wₖ μₖ` (the posterior mean at `α = 0`).
    pub fn prior_mean(&self) -> &[f64] {
        &self.prior_mean
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
    params: MixtureParams,
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
            .field("dim", &self.params.dim)
            .field("components", &self.params.components())
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
    /// The exact denoiser of the mixture `Σₖ weights[k]·N(means[k],
    /// stds[k]²·I)` on `backend`'s device, its output in `parameterization`.
    /// Validates the mixture ([`MixtureParams::new`]), uploads it and loads
    /// the kernel (compiled by NVRTC once per process).
    pub fn new(
        backend: &CudaBackend,
        weights: &[f64],
        means: &[Vec<f64>],
        stds: &[f64],
        parameterization: Arc<dyn Parameterization>,
    ) -> Result<Self> {
        Self::from_params(
            backend,
            MixtureParams::new(weights, means, stds)?,
            parameterization,
        )
    }

    /// As [`CudaGmmDenoiser::new`], from prepared parameters.
    pub fn from_params(
        backend: &CudaBackend,
        params: MixtureParams,
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
        let device = DeviceMixture {
            means: upload(&params.means)?,
            variances: upload(&params.variances)?,
            log_weights: upload(&params.log_weights)?,
            prior_mean: upload(&params.prior_mean)?,
        };
        Ok(Self {
            params,
            parameterization,
            ordinal: backend.ordinal(),
            kernel,
            device,
            work: Mutex::new(None),
        })
    }

    /// The mixture as the kernel reads it.
    pub fn params(&self) -> &MixtureParams {
        &self.params
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
            .checked_mul(self.params.dim)
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
        let shape = x.shape().to_vec();
        let d = self.params.dim;
        let rows = shape.first().copied().unwrap_or(0);
        let row_len: usize = shape.iter().skip(1).product();
        if shape.is_empty() || row_len != d {
            return Err(Error::ShapeMismatch {
                op: "CudaGmmDenoiser::predict: rows of x against the mixture dimension",
                expected: vec![rows, d],
                found: shape,
            });
        }
        if out.shape() != shape.as_slice() {
            return Err(Error::ShapeMismatch {
                op: "CudaGmmDenoiser::predict: out against x",
                expected: shape,
                found: out.shape().to_vec(),
            });
        }
        if levels.len() != rows {
            return Err(Error::ShapeMismatch {
                op: "CudaGmmDenoiser::predict: one noise level per row",
                expected: vec![rows],
                found: vec![levels.len()],
            });
        }
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
            components: self.params.components() as u64,
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

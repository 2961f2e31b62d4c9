//! [`CudaBackend`]: the [`Backend`] trait on one CUDA device.

use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    DeviceRepr, DriverError, LaunchConfig, PushKernelArg,
};
use diffuse_core::backend::{
    Backend, LinComb, RowReduction, RowScale, check_shape, log_scale_params,
};
use diffuse_core::noise::{NoiseStream, seed_key};
use diffuse_core::{Error, Result};

use crate::kernels::{
    self, BLOCK_THREADS, KernelModule, LinCombArgs, ReduceArgs, ReduceBuffers, ReduceScratch,
    RowScaleArgs,
};
use crate::nvrtc::{self, Compiled};

// SAFETY: plain-old-data `#[repr(C)]` structs laid out as the kernels'
// argument structs (sizes asserted on both sides).
unsafe impl DeviceRepr for LinCombArgs {}
// SAFETY: as above.
unsafe impl DeviceRepr for ReduceArgs {}
// SAFETY: as above.
unsafe impl DeviceRepr for RowScaleArgs {}

/// An f32 tensor in device memory, row-major, batch first.
#[derive(Debug)]
pub struct CudaTensor {
    shape: Vec<usize>,
    pub(crate) data: CudaSlice<f32>,
}

impl CudaTensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements (never: shapes have no zero axis).
    pub fn is_empty(&self) -> bool {
        self.data.len() == 0
    }
}

/// The CUDA backend on device `ordinal`.
///
/// All work is queued on the device's default stream in call order;
/// [`Backend::lincomb`] and [`Backend::fill_noise`] return as soon as the
/// kernel is queued (no host synchronisation), [`Backend::to_host`] and
/// [`Backend::reduce_rows`] wait for the results they return. The kernels
/// (`kernels/`) are compiled by NVRTC once per process and architecture.
pub struct CudaBackend {
    ordinal: usize,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    capability: (i32, i32),
    fill_noise: CudaFunction,
    fill_noise_log_scaled: CudaFunction,
    /// The per-row `(a, b)` of the last `fill_noise_log_scaled`, reused as
    /// `row_coef` is.
    log_scale: Mutex<Option<CudaSlice<f32>>>,
    /// The fused-step kernels `[without, with noise]` of each `(K, M)`,
    /// indexed by `(K − 1)·MAX_OUTPUTS + (M − 1)`, loaded on first use.
    lincomb: Mutex<Vec<Option<Arc<[CudaFunction; 2]>>>>,
    reduce: Vec<(&'static str, CudaFunction)>,
    scale_rows: CudaFunction,
    max_blocks: u32,
    /// Per-row coefficients of the last per-row step, reused (stream order
    /// keeps a later upload behind the kernel that reads the previous one).
    row_coef: Mutex<Option<CudaSlice<f32>>>,
    /// Scratch of [`Backend::reduce_rows`], grown when a larger reduction
    /// comes and otherwise reused, so a sampling loop does not allocate
    /// device memory per call.
    reduce_scratch: Mutex<Option<ReduceScratchBuffers>>,
}

/// The device buffers of [`ReduceScratch`].
struct ReduceScratchBuffers {
    sizes: ReduceScratch,
    partial_a: CudaSlice<f64>,
    partial_b: CudaSlice<f64>,
    mean: CudaSlice<f64>,
    prefix: CudaSlice<u32>,
    status: CudaSlice<u32>,
}

impl ReduceScratch {
    /// Whether buffers of these sizes can serve a reduction needing `need`.
    fn covers(&self, need: &ReduceScratch) -> bool {
        self.partial_a >= need.partial_a
            && self.partial_b >= need.partial_b
            && self.mean >= need.mean
            && self.prefix >= need.prefix
            && self.status >= need.status
    }

    /// The element-wise maximum of two sizes.
    fn max(&self, other: &ReduceScratch) -> ReduceScratch {
        ReduceScratch {
            partial_a: self.partial_a.max(other.partial_a),
            partial_b: self.partial_b.max(other.partial_b),
            mean: self.mean.max(other.mean),
            prefix: self.prefix.max(other.prefix),
            status: self.status.max(other.status),
        }
    }
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("ordinal", &self.ordinal)
            .field("max_blocks", &self.max_blocks)
            .finish_non_exhaustive()
    }
}

fn driver_error(ordinal: usize, what: &str, e: DriverError) -> Error {
    Error::Backend {
        backend: format!("cuda:{ordinal}"),
        message: format!("{what}: {e}"),
    }
}

/// Whether the CUDA driver library (`libcuda`) can be loaded.
pub fn driver_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of CUDA devices; 0 without a driver.
pub fn device_count() -> usize {
    if !driver_available() {
        return 0;
    }
    CudaContext::device_count().map_or(0, |n| n.max(0) as usize)
}

impl CudaBackend {
    /// Opens CUDA device `ordinal` and loads the kernels (compiling them with
    /// NVRTC on first use in the process).
    ///
    /// Errors, never panics: [`Error::Unsupported`] when the driver library
    /// is missing, there is no device `ordinal` or NVRTC cannot be loaded;
    /// [`Error::Backend`] when the driver or NVRTC fails.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_available() {
            return Err(Error::Unsupported(format!(
                "CUDA device {ordinal}: no CUDA driver (libcuda) on this machine"
            )));
        }
        let count = CudaContext::device_count()
            .map_err(|e| driver_error(ordinal, "counting devices", e))?
            .max(0) as usize;
        if ordinal >= count {
            return Err(Error::Unsupported(format!(
                "CUDA device {ordinal}: the driver reports {count} device(s)"
            )));
        }
        if !nvrtc::nvrtc_available() {
            return Err(Error::Unsupported(format!(
                "CUDA device {ordinal}: NVRTC (libnvrtc) is not on the loader path; install the \
                 CUDA toolkit or the `nvidia-cuda-nvrtc-cu12` wheel and add its lib directory to \
                 LD_LIBRARY_PATH"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_error(ordinal, "context", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_error(ordinal, "compute capability", e))?;
        let sms = ctx
            .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| driver_error(ordinal, "multiprocessor count", e))?;
        let noise = load_module(&ctx, ordinal, (major, minor), KernelModule::Noise)?;
        let fill_noise = function(&noise, ordinal, kernels::FILL_NOISE_KERNEL)?;
        let fill_noise_log_scaled =
            function(&noise, ordinal, kernels::FILL_NOISE_LOG_SCALED_KERNEL)?;
        let reduce_module = load_module(&ctx, ordinal, (major, minor), KernelModule::Reduce)?;
        let reduce = kernels::REDUCE_KERNELS
            .iter()
            .map(|&name| Ok((name, function(&reduce_module, ordinal, name)?)))
            .collect::<Result<Vec<_>>>()?;
        let rowscale = load_module(&ctx, ordinal, (major, minor), KernelModule::RowScale)?;
        let scale_rows = function(&rowscale, ordinal, kernels::SCALE_ROWS_KERNEL)?;
        let stream = ctx.default_stream();
        Ok(Self {
            ordinal,
            max_blocks: (sms.max(1) as u32).saturating_mul(16),
            ctx,
            stream,
            capability: (major, minor),
            fill_noise,
            fill_noise_log_scaled,
            log_scale: Mutex::new(None),
            lincomb: Mutex::new(vec![
                None;
                diffuse_core::MAX_INPUTS * diffuse_core::MAX_OUTPUTS
            ]),
            reduce,
            scale_rows,
            row_coef: Mutex::new(None),
            reduce_scratch: Mutex::new(None),
        })
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The device's name as the driver reports it.
    pub fn device_name(&self) -> Result<String> {
        self.ctx.name().map_err(|e| self.err("device name", e))
    }

    /// Waits until all queued work has finished (for timing).
    pub fn synchronize(&self) -> Result<()> {
        self.stream
            .synchronize()
            .map_err(|e| self.err("synchronize", e))
    }

    pub(crate) fn err(&self, what: &str, e: DriverError) -> Error {
        driver_error(self.ordinal, what, e)
    }

    /// The stream all work is queued on.
    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Loads `module` (compiled by NVRTC once per process) into this
    /// device's context.
    pub(crate) fn load(&self, module: KernelModule) -> Result<Arc<CudaModule>> {
        load_module(&self.ctx, self.ordinal, self.capability, module)
    }

    /// Loads kernel `name` of `module`.
    pub(crate) fn kernel(&self, module: &Arc<CudaModule>, name: &str) -> Result<CudaFunction> {
        function(module, self.ordinal, name)
    }

    /// The launch configuration of a grid-stride kernel over `items` work
    /// items.
    pub(crate) fn config(&self, items: u64) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (kernels::grid_blocks(items, self.max_blocks), 1, 1),
            block_dim: (BLOCK_THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    /// `n` zeroed elements of device memory (out of memory as
    /// [`Error::OutOfMemory`]).
    pub(crate) fn alloc<T: DeviceRepr + cudarc::driver::ValidAsZeroBits>(
        &self,
        n: usize,
    ) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros::<T>(n).map_err(|e| match e.0 {
            cudarc::driver::sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY => Error::OutOfMemory {
                bytes: n.saturating_mul(std::mem::size_of::<T>()),
            },
            _ => self.err("allocation", e),
        })
    }

    /// Compiles (once per process) and loads the fused-step kernels for
    /// `inputs` operands and `outputs` outputs, so the first
    /// [`Backend::lincomb`] of that shape does not pay for it inside a
    /// sampling loop.
    pub fn prepare(&self, inputs: usize, outputs: usize) -> Result<()> {
        self.lincomb_fns(inputs, outputs).map(|_| ())
    }

    fn lincomb_fns(&self, inputs: usize, outputs: usize) -> Result<Arc<[CudaFunction; 2]>> {
        if !(1..=diffuse_core::MAX_INPUTS).contains(&inputs)
            || !(1..=diffuse_core::MAX_OUTPUTS).contains(&outputs)
        {
            return Err(Error::InvalidPlan(format!(
                "{inputs} operands and {outputs} outputs: a plan has 1 to {} and 1 to {}",
                diffuse_core::MAX_INPUTS,
                diffuse_core::MAX_OUTPUTS
            )));
        }
        let index = (inputs - 1) * diffuse_core::MAX_OUTPUTS + outputs - 1;
        let mut table = self.lincomb.lock().map_err(|_| Error::Backend {
            backend: self.name(),
            message: "kernel table lock poisoned".into(),
        })?;
        if let Some(f) = &table[index] {
            return Ok(f.clone());
        }
        let module = KernelModule::LinComb { inputs, outputs };
        let m = load_module(&self.ctx, self.ordinal, self.capability, module)?;
        let f = Arc::new([
            function(
                &m,
                self.ordinal,
                &kernels::lincomb_kernel_name(inputs, outputs, false),
            )?,
            function(
                &m,
                self.ordinal,
                &kernels::lincomb_kernel_name(inputs, outputs, true),
            )?,
        ]);
        table[index] = Some(f.clone());
        Ok(f)
    }

    fn reduce_fn(&self, name: &str) -> Result<&CudaFunction> {
        self.reduce
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| f)
            .ok_or_else(|| Error::Backend {
                backend: self.name(),
                message: format!("no kernel {name}"),
            })
    }
}

/// Loads `module` (compiled once per process and architecture) into `ctx`.
fn load_module(
    ctx: &Arc<CudaContext>,
    ordinal: usize,
    (major, minor): (i32, i32),
    module: KernelModule,
) -> Result<Arc<CudaModule>> {
    let compiled = nvrtc::compiled_for(module, major, minor)?;
    let image = match &*compiled {
        Compiled::Cubin(b) | Compiled::Ptx(b) => b.clone(),
    };
    ctx.load_module(cudarc::nvrtc::Ptx::from_binary(image))
        .map_err(|e| {
            driver_error(
                ordinal,
                &format!("loading the {} kernels", module.name()),
                e,
            )
        })
}

fn function(module: &Arc<CudaModule>, ordinal: usize, name: &str) -> Result<CudaFunction> {
    module
        .load_function(name)
        .map_err(|e| driver_error(ordinal, &format!("kernel {name}"), e))
}

fn same_shape(op: &'static str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected != found {
        return Err(Error::ShapeMismatch {
            op,
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(())
}

impl Backend for CudaBackend {
    type Tensor = CudaTensor;

    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    fn zeros(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n = check_shape(shape)?;
        Ok(CudaTensor {
            shape: shape.to_vec(),
            data: self.alloc(n)?,
        })
    }

    fn upload(&self, shape: &[usize], data: &[f32]) -> Result<CudaTensor> {
        let n = check_shape(shape)?;
        if data.len() != n {
            return Err(Error::InvalidShape {
                shape: shape.to_vec(),
                reason: format!("{} elements given for {n}", data.len()),
            });
        }
        let mut t = self.zeros(shape)?;
        self.stream
            .memcpy_htod(data, &mut t.data)
            .map_err(|e| self.err("upload", e))?;
        Ok(t)
    }

    fn to_host(&self, tensor: &CudaTensor) -> Result<Vec<f32>> {
        let v = self
            .stream
            .clone_dtoh(&tensor.data)
            .map_err(|e| self.err("download", e))?;
        self.synchronize()?;
        Ok(v)
    }

    fn shape<'t>(&self, tensor: &'t CudaTensor) -> &'t [usize] {
        &tensor.shape
    }

    fn copy(&self, src: &CudaTensor, dst: &mut CudaTensor) -> Result<()> {
        same_shape("copy", &src.shape, &dst.shape)?;
        self.stream
            .memcpy_dtod(&src.data, &mut dst.data)
            .map_err(|e| self.err("copy", e))
    }

    fn fill_noise(&self, stream: NoiseStream, offset: u64, out: &mut CudaTensor) -> Result<()> {
        let n = out.data.len();
        let key = seed_key(stream.seed);
        let n64 = n as u64;
        let cfg = self.config(kernels::element_groups(n));
        let mut b = self.stream.launch_builder(&self.fill_noise);
        b.arg(&mut out.data)
            .arg(&n64)
            .arg(&key[0])
            .arg(&key[1])
            .arg(&stream.stream)
            .arg(&offset);
        // SAFETY: the arguments match `diffuse_fill_noise`'s signature and
        // `out` holds `n` elements.
        unsafe { b.launch(cfg) }.map_err(|e| self.err("fill_noise", e))?;
        Ok(())
    }

    fn fill_noise_log_scaled(
        &self,
        stream: NoiseStream,
        offset: u64,
        v: &CudaTensor,
        a: &[f64],
        b: &[f64],
        out: &mut CudaTensor,
    ) -> Result<()> {
        same_shape("fill_noise_log_scaled", &out.shape, &v.shape)?;
        let n = out.data.len();
        let (a, b, row_len) = log_scale_params(a, b, n)?;
        let rows = a.len() as u64;
        let mut ab = a;
        ab.extend_from_slice(&b);
        let mut guard = self.log_scale.lock().map_err(|_| Error::Backend {
            backend: self.name(),
            message: "log-scale buffer lock poisoned".into(),
        })?;
        if guard.as_ref().is_none_or(|buf| buf.len() < ab.len()) {
            *guard = Some(self.alloc::<f32>(ab.len())?);
        }
        let buf = guard.as_mut().ok_or_else(|| Error::Backend {
            backend: self.name(),
            message: "log-scale buffer missing".into(),
        })?;
        self.stream
            .memcpy_htod(&ab, buf)
            .map_err(|e| self.err("log-scale upload", e))?;
        let key = seed_key(stream.seed);
        let (n64, row_len64) = (n as u64, row_len as u64);
        let cfg = self.config(kernels::element_groups(n));
        let mut l = self.stream.launch_builder(&self.fill_noise_log_scaled);
        l.arg(&mut out.data)
            .arg(&v.data)
            .arg(&*buf)
            .arg(&n64)
            .arg(&rows)
            .arg(&row_len64)
            .arg(&key[0])
            .arg(&key[1])
            .arg(&stream.stream)
            .arg(&offset);
        // SAFETY: the arguments match `diffuse_fill_noise_log_scaled`'s
        // signature; `out` and `v` hold `n` elements, `buf` at least
        // `2·rows` and `rows·row_len = n`.
        unsafe { l.launch(cfg) }.map_err(|e| self.err("fill_noise_log_scaled", e))?;
        Ok(())
    }

    fn lincomb(
        &self,
        plan: &LinComb,
        inputs: &[&CudaTensor],
        outputs: &mut [&mut CudaTensor],
    ) -> Result<()> {
        plan.validate(inputs.len(), outputs.len())?;
        let shape = outputs[0].shape.clone();
        for t in inputs {
            same_shape("lincomb input", &shape, &t.shape)?;
        }
        for t in outputs.iter().skip(1) {
            same_shape("lincomb output", &shape, &t.shape)?;
        }
        if let Some(rows) = plan.rows()
            && rows != shape[0]
        {
            return Err(Error::InvalidPlan(format!(
                "per-row plan for {rows} rows applied to a batch of {}",
                shape[0]
            )));
        }
        let n = outputs[0].data.len();
        let row_len = n / shape[0];
        let mut coef_guard = self.row_coef.lock().map_err(|_| Error::Backend {
            backend: self.name(),
            message: "coefficient buffer lock poisoned".into(),
        })?;
        let packed = kernels::pack_row_coefficients(plan)?;
        if !packed.is_empty() {
            if coef_guard.as_ref().is_none_or(|b| b.len() < packed.len()) {
                *coef_guard = Some(self.alloc::<f32>(packed.len())?);
            }
            if let Some(buf) = coef_guard.as_mut() {
                self.stream
                    .memcpy_htod(&packed, buf)
                    .map_err(|e| self.err("coefficient upload", e))?;
            }
        }
        let mut guards = Vec::with_capacity(inputs.len() + outputs.len() + 1);
        let mut in_ptrs = Vec::with_capacity(inputs.len());
        for t in inputs {
            let (p, g) = t.data.device_ptr(&self.stream);
            in_ptrs.push(p);
            guards.push(g);
        }
        let mut out_ptrs = Vec::with_capacity(outputs.len());
        for t in outputs.iter_mut() {
            let (p, g) = t.data.device_ptr_mut(&self.stream);
            out_ptrs.push(p);
            guards.push(g);
        }
        let row_coef = match (packed.is_empty(), coef_guard.as_ref()) {
            (false, Some(buf)) => {
                let (p, g) = buf.device_ptr(&self.stream);
                guards.push(g);
                p
            }
            _ => 0,
        };
        let args = LinCombArgs::new(plan, &in_ptrs, &out_ptrs, n, row_len, row_coef)?;
        let fns = self.lincomb_fns(plan.inputs(), plan.outputs())?;
        let mut b = self
            .stream
            .launch_builder(&fns[usize::from(plan.noise().is_some())]);
        b.arg(&args);
        // SAFETY: `args` holds live device pointers to `n` elements each (and
        // the packed coefficients), matching the kernel's argument struct.
        unsafe { b.launch(self.config(kernels::element_groups(n))) }
            .map_err(|e| self.err("lincomb", e))?;
        drop(guards);
        Ok(())
    }

    fn reduce_rows(&self, x: &CudaTensor, op: RowReduction, out: &mut CudaTensor) -> Result<()> {
        let rows = x.shape[0];
        same_shape("reduce_rows output", &[rows], &out.shape)?;
        let row_len = x.data.len() / rows;
        kernels::check_reduction(op, row_len)?;
        let need = ReduceScratch::new(rows, row_len);
        let mut scratch_guard = self.reduce_scratch.lock().map_err(|_| Error::Backend {
            backend: self.name(),
            message: "reduction scratch lock poisoned".into(),
        })?;
        if !scratch_guard
            .as_ref()
            .is_some_and(|s| s.sizes.covers(&need))
        {
            let sizes = scratch_guard.as_ref().map_or(need, |s| s.sizes.max(&need));
            // Drop the old buffers before allocating the larger ones.
            *scratch_guard = None;
            *scratch_guard = Some(ReduceScratchBuffers {
                sizes,
                partial_a: self.alloc::<f64>(sizes.partial_a.max(1))?,
                partial_b: self.alloc::<f64>(sizes.partial_b.max(1))?,
                mean: self.alloc::<f64>(sizes.mean.max(1))?,
                prefix: self.alloc::<u32>(sizes.prefix.max(1))?,
                status: self.alloc::<u32>(sizes.status.max(1))?,
            });
        }
        let Some(scratch) = scratch_guard.as_mut() else {
            return Err(Error::Backend {
                backend: self.name(),
                message: "reduction scratch missing".into(),
            });
        };
        {
            let (xp, _gx) = x.data.device_ptr(&self.stream);
            let (op_, _go) = out.data.device_ptr_mut(&self.stream);
            let (ap, _ga) = scratch.partial_a.device_ptr(&self.stream);
            let (bp, _gb) = scratch.partial_b.device_ptr(&self.stream);
            let (mp, _gm) = scratch.mean.device_ptr(&self.stream);
            let (pp, _gp) = scratch.prefix.device_ptr(&self.stream);
            let (sp, _gs) = scratch.status.device_ptr(&self.stream);
            let bufs = ReduceBuffers {
                x: xp,
                out: op_,
                partial_a: ap,
                partial_b: bp,
                mean: mp,
                prefix: pp,
                status: sp,
            };
            for l in kernels::reduce_launches(op, rows, row_len, &bufs)? {
                let f = self.reduce_fn(l.kernel)?;
                let mut b = self.stream.launch_builder(f);
                b.arg(&l.args);
                // SAFETY: the arguments point into the buffers above, at
                // least as large as ReduceScratch asks for this shape.
                unsafe { b.launch(self.config(l.items)) }
                    .map_err(|e| self.err("reduce_rows", e))?;
            }
        }
        // The first `rows` status words are this reduction's (the init
        // kernel clears them).
        let status_view = scratch.status.slice(..rows);
        let mut status = vec![0u32; rows];
        self.stream
            .memcpy_dtoh(&status_view, &mut status)
            .map_err(|e| self.err("reduce_rows status", e))?;
        self.synchronize()?;
        kernels::check_status(op, &status)
    }

    fn scale_rows(&self, op: RowScale, factors: &[&CudaTensor], x: &mut CudaTensor) -> Result<()> {
        op.check(factors.len())?;
        let rows = x.shape[0];
        for f in factors {
            same_shape("scale_rows factors", &[rows], &f.shape)?;
        }
        let n = x.data.len();
        let row_len = n / rows;
        let (xp, _gx) = x.data.device_ptr_mut(&self.stream);
        let mut ptrs = [0u64; 2];
        let mut guards = Vec::with_capacity(2);
        for (p, f) in ptrs.iter_mut().zip(factors) {
            let (fp, g) = f.data.device_ptr(&self.stream);
            *p = fp;
            guards.push(g);
        }
        let args = RowScaleArgs::new(op, xp, &ptrs[..factors.len()], n, row_len)?;
        let mut b = self.stream.launch_builder(&self.scale_rows);
        b.arg(&args);
        // SAFETY: `args` holds live device pointers: `x` with `n` elements
        // and each factor tensor with one element per row.
        unsafe { b.launch(self.config(n as u64)) }.map_err(|e| self.err("scale_rows", e))?;
        drop(guards);
        Ok(())
    }
}

//! Run-time compilation of the kernels with NVRTC, loaded with `dlopen` on
//! first use (no CUDA toolkit is needed to build this crate).
//!
//! Every module is compiled with [`NVRTC_OPTIONS`] (`--fmad=false` above
//! all) once per process and GPU architecture, then cached.

use std::collections::HashMap;
use std::ffi::{CString, c_char};
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::{result, sys};
use diffuse_core::{Error, Result};

use crate::kernels::{KernelModule, NVRTC_OPTIONS};

/// Whether the NVRTC library (`libnvrtc.so.12` or similar) can be loaded
/// from the loader path.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to open the library.
    unsafe { sys::is_culib_present() }
}

fn nvrtc_error(module: KernelModule, what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Backend {
        backend: "nvrtc".into(),
        message: format!("{what} of the {} kernels: {detail}", module.name()),
    }
}

/// What NVRTC produced for one module.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Compiled {
    /// PTX text (NUL-terminated), loaded through the driver's JIT.
    Ptx(Vec<u8>),
    /// A CUBIN for one architecture, loaded as is.
    Cubin(Vec<u8>),
}

/// An NVRTC program, destroyed on drop.
struct Program {
    prog: sys::nvrtcProgram,
    module: KernelModule,
}

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: created by create_program, destroyed once.
        let _ = unsafe { result::destroy_program(self.prog) };
    }
}

fn log_of(prog: sys::nvrtcProgram) -> String {
    // SAFETY: prog is a live program.
    match unsafe { result::get_program_log(prog) } {
        Ok(raw) => {
            let bytes: Vec<u8> = raw
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8)
                .collect();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        Err(e) => format!("(no log: {e:?})"),
    }
}

fn compile(module: KernelModule, arch: Option<&str>) -> Result<Program> {
    if !nvrtc_available() {
        return Err(Error::Unsupported(
            "NVRTC (libnvrtc) is not on the loader path; install the CUDA toolkit or the \
             `nvidia-cuda-nvrtc-cu12` wheel and add its lib directory to LD_LIBRARY_PATH"
                .into(),
        ));
    }
    let src =
        CString::new(module.source()).map_err(|e| nvrtc_error(module, "reading the source", e))?;
    let name = CString::new(format!("diffuse_{}.cu", module.name()))
        .map_err(|e| nvrtc_error(module, "naming the program", e))?;
    let prog = result::create_program(&src, Some(&name))
        .map_err(|e| nvrtc_error(module, "creating the program", format!("{e:?}")))?;
    let prog = Program { prog, module };
    let mut options: Vec<String> = NVRTC_OPTIONS.iter().map(|s| s.to_string()).collect();
    if let Some(arch) = arch {
        options.push(format!("--gpu-architecture={arch}"));
    }
    // SAFETY: prog is live; the source outlives the compilation.
    let compiled = unsafe { result::compile_program(prog.prog, &options) };
    drop(src);
    if let Err(e) = compiled {
        return Err(nvrtc_error(
            module,
            "compilation",
            format!("{e:?}\n{}", log_of(prog.prog)),
        ));
    }
    Ok(prog)
}

/// Compiles `module` to PTX text with [`NVRTC_OPTIONS`] (for `arch`, a
/// virtual architecture such as `compute_90`, or NVRTC's default). A compile
/// error is returned with NVRTC's log.
pub fn compile_ptx(module: KernelModule, arch: Option<&str>) -> Result<String> {
    let prog = compile(module, arch)?;
    // SAFETY: prog is live and compiled.
    let raw = unsafe { result::get_ptx(prog.prog) }
        .map_err(|e| nvrtc_error(prog.module, "reading the PTX", format!("{e:?}")))?;
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Compiles `module` to a CUBIN for the real architecture `arch` (`sm_90`).
pub fn compile_cubin(module: KernelModule, arch: &str) -> Result<Vec<u8>> {
    let prog = compile(module, Some(arch))?;
    let mut size = 0usize;
    // SAFETY: prog is live and compiled; the buffer has the size NVRTC gave.
    unsafe {
        sys::nvrtcGetCUBINSize(prog.prog, &mut size)
            .result()
            .map_err(|e| nvrtc_error(module, "sizing the CUBIN", format!("{e:?}")))?;
        let mut cubin = vec![0u8; size];
        sys::nvrtcGetCUBIN(prog.prog, cubin.as_mut_ptr().cast::<c_char>())
            .result()
            .map_err(|e| nvrtc_error(module, "reading the CUBIN", format!("{e:?}")))?;
        Ok(cubin)
    }
}

/// Instructions the PTX of `module` must not contain: any fused
/// multiply–add (`fma.rn`, a sign that `--fmad=false` was lost), and for the
/// step module any double-precision operation (`.f64`). Returns the
/// offending lines.
pub fn ptx_violations(module: KernelModule, ptx: &str) -> Vec<String> {
    ptx.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| l.contains("fma.") || (!module.allows_f64() && l.contains(".f64")))
        .map(str::to_string)
        .collect()
}

/// The process-wide cache: one compilation per (module, architecture).
type Cache = Mutex<HashMap<(KernelModule, String), Arc<Compiled>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// `module` compiled for compute capability `(major, minor)`, from the
/// process-wide cache: a CUBIN for `sm_{major}{minor}` (no JIT, so it loads
/// on drivers older than the NVRTC), or PTX for NVRTC's default virtual
/// architecture if this NVRTC does not know the GPU (the driver JIT then
/// compiles it).
pub fn compiled_for(module: KernelModule, major: i32, minor: i32) -> Result<Arc<Compiled>> {
    let arch = format!("sm_{major}{minor}");
    let key = (module, arch.clone());
    if let Some(c) = cache().lock().map_err(|_| poisoned())?.get(&key) {
        return Ok(c.clone());
    }
    let compiled = match compile_cubin(module, &arch) {
        Ok(cubin) => Compiled::Cubin(cubin),
        Err(Error::Backend { .. }) => {
            let mut ptx = compile_ptx(module, None)?.into_bytes();
            ptx.push(0);
            Compiled::Ptx(ptx)
        }
        Err(e) => return Err(e),
    };
    let compiled = Arc::new(compiled);
    cache()
        .lock()
        .map_err(|_| poisoned())?
        .insert(key, compiled.clone());
    Ok(compiled)
}

fn poisoned() -> Error {
    Error::Backend {
        backend: "nvrtc".into(),
        message: "the kernel cache lock was poisoned".into(),
    }
}

/// NVRTC's version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32)> {
    if !nvrtc_available() {
        return Err(Error::Unsupported("NVRTC is not on the loader path".into()));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: writes two ints.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| Error::Backend {
            backend: "nvrtc".into(),
            message: format!("nvrtcVersion: {e:?}"),
        })?;
    Ok((major, minor))
}

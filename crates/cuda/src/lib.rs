//! # diffuse-cuda — the backend trait on NVIDIA GPUs
//!
//! [`CudaBackend`] implements the [`Backend`] trait of `diffuse-core` (the
//! only crate of ours this one depends on) with hand-written CUDA kernels
//! from `kernels/`: the fused step ([`Backend::lincomb`], one launch per
//! step, 16-byte loads, grid-stride loops), the public noise stream and the
//! per-row reductions. The sources are embedded in the crate
//! ([`kernels`]), compiled at run time by NVRTC with `--fmad=false` once per
//! process ([`nvrtc`]; each `(K, M)` of the fused step on first use, or
//! ahead with [`CudaBackend::prepare`]) and launched through cudarc. The step and noise
//! kernels spell out the CPU backend's f32 operation order, so both backends
//! give the same numbers bit for bit; the reductions agree within rounding.
//! [`CudaGmmDenoiser`] is the exact Gaussian-mixture denoiser on the GPU
//! (one kernel, f64 inside, bit-identical to the CPU reference), so every
//! solver runs end to end on the device with it. Trained networks do not
//! run on the GPU yet.
//! The per-row maps ([`Backend::scale_rows`]) are one element-wise launch,
//! bit-identical to the CPU too.
//!
//! The CUDA driver and NVRTC are loaded with `dlopen` at first use: the
//! crate builds and links on machines without CUDA, and
//! [`CudaBackend::new`] then reports what is missing as a typed error.
//!
//! ```
//! use diffuse_core::{Backend, CpuBackend, Error};
//! use diffuse_cuda::{CudaBackend, kernels::KernelModule};
//!
//! // Use the GPU when there is one, the CPU otherwise.
//! match CudaBackend::new(0) {
//!     Ok(gpu) => assert_eq!(gpu.name(), "cuda:0"),
//!     Err(Error::Unsupported(why)) => assert!(why.contains("CUDA device 0")),
//!     Err(e) => return Err(e),
//! }
//! // The kernel sources are plain CUDA C, here without a GPU.
//! let step = KernelModule::LinComb { inputs: 3, outputs: 2 };
//! assert!(step.source().contains("DF_LINCOMB_KERNELS(3, 2)"));
//! assert_eq!(step.kernel_names(), ["diffuse_lincomb_k3_m2", "diffuse_lincomb_k3_m2_noise"]);
//! assert_eq!(KernelModule::all().len(), 1 + 8 * 4 + 3);
//! # let _ = CpuBackend::new();
//! # Ok::<(), Error>(())
//! ```

mod backend;
pub mod gmm;
pub mod kernels;
pub mod nvrtc;

pub use backend::{CudaBackend, CudaTensor, device_count, driver_available};
pub use diffuse_core::{Backend, Error, Result};
pub use gmm::{ActiveComponents, CudaGmmDenoiser};

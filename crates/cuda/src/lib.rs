//! # diffuse-cuda — the backend trait on NVIDIA GPUs
//!
//! The [`Backend`] trait of `diffuse-core` (the only crate of ours this one
//! depends on) implemented with hand-written CUDA kernels from `kernels/`,
//! compiled at run time by NVRTC and launched through cudarc. The kernels
//! follow the operation order of the CPU backend so both give the same
//! numbers bit for bit.
//!
//! This crate is being filled in: [`CudaBackend::new`] reports that the
//! CUDA path is not built yet, as a typed error rather than a panic.
//!
//! ```
//! let err = diffuse_cuda::CudaBackend::new(0).unwrap_err();
//! assert!(err.to_string().contains("CUDA"));
//! ```

pub use diffuse_core::{Backend, Error, Result};

/// The CUDA backend (device `ordinal`).
#[derive(Debug)]
pub struct CudaBackend {
    _ordinal: usize,
}

impl CudaBackend {
    /// Opens CUDA device `ordinal`. Not available in this version: always
    /// returns [`Error::Unsupported`].
    pub fn new(ordinal: usize) -> Result<Self> {
        Err(Error::Unsupported(format!(
            "the CUDA backend (device {ordinal}) is not available in this build yet"
        )))
    }
}

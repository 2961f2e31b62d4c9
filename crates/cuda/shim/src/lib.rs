//! The CUDA kernels of `kernels/` compiled for the host by g++ (see
//! `shim.h`): a launch runs every thread of the grid in turn. Test support
//! for `diffuse-cuda`, whose tests compare these kernels with the CPU
//! backend bit for bit.
//!
//! The arguments are the `#[repr(C)]` structs of `diffuse_cuda::kernels`,
//! passed here as raw pointers so this crate depends on nothing.

use std::ffi::{CString, c_char, c_int, c_void};

unsafe extern "C" {
    fn diffuse_shim_lincomb(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *const c_void,
    ) -> c_int;
    fn diffuse_shim_reduce(
        name: *const c_char,
        grid: u32,
        block: u32,
        args: *const c_void,
    ) -> c_int;
    fn diffuse_shim_gmm(grid: u32, block: u32, args: *const c_void);
    fn diffuse_shim_scale_rows(grid: u32, block: u32, args: *const c_void);
    fn diffuse_shim_fill_noise(
        grid: u32,
        block: u32,
        out: *mut f32,
        n: u64,
        key0: u32,
        key1: u32,
        stream: u64,
        offset: u64,
    );
    fn diffuse_shim_fill_noise_log_scaled(
        grid: u32,
        block: u32,
        out: *mut f32,
        v: *const f32,
        ab: *const f32,
        n: u64,
        rows: u64,
        row_len: u64,
        key0: u32,
        key1: u32,
        stream: u64,
        offset: u64,
    );
}

/// Runs the fused-step kernel `name` over `grid` blocks of `block` threads.
/// Returns false for an unknown kernel name.
///
/// # Safety
/// `args` must point to a `DfLinCombArgs` (`diffuse_cuda::kernels::LinCombArgs`)
/// whose pointers are valid host addresses for its element counts.
pub unsafe fn lincomb(name: &str, grid: u32, block: u32, args: *const c_void) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: forwarded from the caller.
    unsafe { diffuse_shim_lincomb(name.as_ptr(), grid, block, args) == 0 }
}

/// Runs the reduction kernel `name` over `grid` blocks of `block` threads.
/// Returns false for an unknown kernel name.
///
/// # Safety
/// `args` must point to a `DfReduceArgs` (`diffuse_cuda::kernels::ReduceArgs`)
/// whose pointers are valid host addresses of the sizes it implies.
pub unsafe fn reduce(name: &str, grid: u32, block: u32, args: *const c_void) -> bool {
    let Ok(name) = CString::new(name) else {
        return false;
    };
    // SAFETY: forwarded from the caller.
    unsafe { diffuse_shim_reduce(name.as_ptr(), grid, block, args) == 0 }
}

/// Runs `diffuse_scale_rows` over `grid` blocks of `block` threads.
///
/// # Safety
/// `args` must point to a `DfRowScaleArgs` (`diffuse_cuda::kernels::RowScaleArgs`)
/// whose pointers are valid host addresses of the sizes it implies.
pub unsafe fn scale_rows(grid: u32, block: u32, args: *const c_void) {
    // SAFETY: forwarded from the caller.
    unsafe { diffuse_shim_scale_rows(grid, block, args) }
}

/// Runs `diffuse_fill_noise` over `grid` blocks of `block` threads into
/// `out` (elements `offset ..` of draw `stream` under the key).
pub fn fill_noise(grid: u32, block: u32, out: &mut [f32], key: [u32; 2], stream: u64, offset: u64) {
    // SAFETY: the kernel writes at most `out.len()` elements of `out`.
    unsafe {
        diffuse_shim_fill_noise(
            grid,
            block,
            out.as_mut_ptr(),
            out.len() as u64,
            key[0],
            key[1],
            stream,
            offset,
        )
    }
}

/// Runs `diffuse_gmm_predict` (the Gaussian-mixture denoiser) over `grid`
/// blocks of `block` threads.
///
/// # Safety
/// `args` must point to a `DfGmmArgs` (`diffuse_cuda::kernels::GmmArgs`)
/// whose pointers are valid host addresses of the sizes it implies.
pub unsafe fn gmm(grid: u32, block: u32, args: *const c_void) {
    // SAFETY: forwarded from the caller.
    unsafe { diffuse_shim_gmm(grid, block, args) }
}

/// Runs `diffuse_fill_noise_log_scaled` over `grid` blocks of `block`
/// threads into `out`: `out[i] = exp(a_r + b_r·v[i])·z[i]` with `z` elements
/// `offset ..` of draw `stream` under the key and `r = i / row_len`, where
/// `ab` holds the `rows` entries of `a` and then those of `b`. Returns
/// false (and runs nothing) unless `v` is as long as `out`, `ab` holds
/// `2·rows` entries and `rows·row_len = out.len()`.
#[allow(clippy::too_many_arguments)]
pub fn fill_noise_log_scaled(
    grid: u32,
    block: u32,
    out: &mut [f32],
    v: &[f32],
    ab: &[f32],
    row_len: usize,
    key: [u32; 2],
    stream: u64,
    offset: u64,
) -> bool {
    let rows = ab.len() / 2;
    if v.len() != out.len() || ab.len() != 2 * rows || rows.checked_mul(row_len) != Some(out.len())
    {
        return false;
    }
    // SAFETY: checked above: the kernel reads `v` and `ab` and writes `out`
    // within their lengths.
    unsafe {
        diffuse_shim_fill_noise_log_scaled(
            grid,
            block,
            out.as_mut_ptr(),
            v.as_ptr(),
            ab.as_ptr(),
            out.len() as u64,
            rows as u64,
            row_len as u64,
            key[0],
            key[1],
            stream,
            offset,
        );
    }
    true
}

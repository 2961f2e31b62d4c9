//! Every kernel compiled by NVRTC (loaded with dlopen; no GPU needed) with
//! the backend's options: a compile error fails, and the PTX must hold no
//! fused multiply–add (`--fmad=false` took effect) and, for the step and
//! noise kernels, no double-precision operation (only the reductions and
//! the Gaussian-mixture denoiser compute in f64).
//!
//! Without NVRTC on the loader path the test prints a skip message and
//! passes, unless `DIFFUSE_REQUIRE_NVRTC=1` (set by `.ci/run`), which makes
//! the skip a failure. To run it locally:
//!
//! ```text
//! python3 -m venv .venv && .venv/bin/pip install nvidia-cuda-nvrtc-cu12==12.9.86
//! export LD_LIBRARY_PATH=$PWD/.venv/lib/python3.11/site-packages/nvidia/cuda_nvrtc/lib
//! cargo test -p diffuse-cuda --test nvrtc
//! ```

use std::io::Write;

use diffuse_cuda::kernels::KernelModule;
use diffuse_cuda::nvrtc;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Whether NVRTC is here; panics if it is required and missing.
fn nvrtc_or_skip(test: &str) -> bool {
    if nvrtc::nvrtc_available() {
        return true;
    }
    let required = std::env::var("DIFFUSE_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: DIFFUSE_REQUIRE_NVRTC=1 but libnvrtc cannot be loaded (LD_LIBRARY_PATH = {:?})",
        std::env::var("LD_LIBRARY_PATH").unwrap_or_default()
    );
    report(&format!(
        "SKIPPED {test}: NVRTC (libnvrtc.so) is not on the loader path; pip install \
         nvidia-cuda-nvrtc-cu12 and add its lib directory to LD_LIBRARY_PATH to run it"
    ));
    false
}

/// The modules checked: all of them with `DIFFUSE_NVRTC_ALL=1` (as in
/// `.ci/run`; about 10 s), otherwise the noise stream, the reductions, the
/// Gaussian-mixture denoiser, the per-row maps and the fused step for
/// (K, M) = (1, 1), (3, 2) and (8, 4).
fn modules() -> Vec<KernelModule> {
    if std::env::var("DIFFUSE_NVRTC_ALL").is_ok_and(|v| v == "1") {
        return KernelModule::all();
    }
    let mut v = vec![
        KernelModule::Noise,
        KernelModule::Reduce,
        KernelModule::Gmm,
        KernelModule::RowScale,
    ];
    for (inputs, outputs) in [(1, 1), (3, 2), (8, 4)] {
        v.push(KernelModule::LinComb { inputs, outputs });
    }
    v
}

#[test]
fn every_kernel_compiles_without_fma_or_stray_f64() {
    if !nvrtc_or_skip("every_kernel_compiles_without_fma_or_stray_f64") {
        return;
    }
    let (major, minor) = nvrtc::nvrtc_version().unwrap();
    let start = std::time::Instant::now();
    let (mut kernels, mut lines) = (0, 0);
    let modules = modules();
    for &module in &modules {
        let ptx = nvrtc::compile_ptx(module, None)
            .unwrap_or_else(|e| panic!("{} kernels: {e}", module.name()));
        let bad = nvrtc::ptx_violations(module, &ptx);
        assert!(
            bad.is_empty(),
            "{} kernels: {} forbidden instructions, e.g. {:?}",
            module.name(),
            bad.len(),
            &bad[..bad.len().min(5)]
        );
        if !module.allows_f64() {
            // The products and sums are there, as separate round-to-nearest
            // operations.
            assert!(ptx.contains("mul.rn.f32") && ptx.contains("add.rn.f32"));
        }
        for name in module.kernel_names() {
            assert!(
                ptx.contains(&format!(".entry {name}(")),
                "{} kernels: no entry {name}",
                module.name()
            );
            kernels += 1;
        }
        lines += ptx.lines().count();
    }
    report(&format!(
        "nvrtc {major}.{minor}: {kernels} kernels in {} modules compiled in {:.2} s ({lines} PTX \
         lines): no fma anywhere, no .f64 outside the reductions and the mixture",
        modules.len(),
        start.elapsed().as_secs_f64()
    ));
}

#[test]
fn cubins_for_a_real_architecture() {
    if !nvrtc_or_skip("cubins_for_a_real_architecture") {
        return;
    }
    // As CudaBackend loads them (no driver JIT).
    let cubin = nvrtc::compile_cubin(KernelModule::Noise, "sm_80").unwrap();
    assert_eq!(&cubin[..4], b"\x7fELF");
    // An architecture NVRTC does not know is a typed error with the log.
    let err = nvrtc::compile_cubin(KernelModule::Noise, "sm_1").unwrap_err();
    assert!(matches!(err, diffuse_core::Error::Backend { .. }), "{err}");
}

#[test]
fn the_violation_check_catches_fma_and_f64() {
    let ptx = "\tmul.rn.f32 %f1, %f2, %f3;\n\tfma.rn.f32 %f4, %f1, %f2, %f3;\n\tadd.f64 %fd1, %fd2, %fd3;\n// fma.rn.f32 in a comment\n";
    let step = KernelModule::LinComb {
        inputs: 1,
        outputs: 1,
    };
    assert_eq!(nvrtc::ptx_violations(step, ptx).len(), 2);
    assert_eq!(nvrtc::ptx_violations(KernelModule::Reduce, ptx).len(), 1);
    assert_eq!(nvrtc::ptx_violations(KernelModule::Gmm, ptx).len(), 1);
}

#[test]
fn the_mixture_kernel_computes_in_f64_without_fma_or_libm() {
    if !nvrtc_or_skip("the_mixture_kernel_computes_in_f64_without_fma_or_libm") {
        return;
    }
    let ptx = nvrtc::compile_ptx(KernelModule::Gmm, None).unwrap();
    assert!(nvrtc::ptx_violations(KernelModule::Gmm, &ptx).is_empty());
    // Separate f64 products, sums and IEEE quotients; no call into a math
    // library (the logarithm and exponential are spelled out).
    for op in ["mul.rn.f64", "add.rn.f64", "div.rn.f64", "cvt.rn.f32.f64"] {
        assert!(ptx.contains(op), "no {op} in the mixture kernel");
    }
    assert!(!ptx.contains("call"), "the mixture kernel calls a function");
}

#[test]
fn a_compile_error_is_reported_with_the_log() {
    if !nvrtc_or_skip("a_compile_error_is_reported_with_the_log") {
        return;
    }
    // Without --fmad=false the same source does contract (the check has
    // teeth): compile the step module through cudarc's default options.
    let step = KernelModule::LinComb {
        inputs: 2,
        outputs: 1,
    };
    let ptx = cudarc::nvrtc::compile_ptx(step.source()).unwrap().to_src();
    assert!(!nvrtc::ptx_violations(step, &ptx).is_empty());
    let err = cudarc::nvrtc::compile_ptx("extern \"C\" __global__ void k() { undefined_thing; }")
        .unwrap_err();
    assert!(format!("{err}").contains("undefined_thing"));
}

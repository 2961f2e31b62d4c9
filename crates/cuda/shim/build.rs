//! Compiles `kernels/*.cu` for the host under `shim.h` (the CUDA built-ins
//! as plain C++), with the rules that keep the results bit-identical to the
//! CPU backend and the GPU: no contraction (`-ffp-contract=off`), no fast
//! math, and no implicit float-to-double promotion (`-Wdouble-promotion`
//! as an error, which catches a float literal without its `f` suffix).

fn main() {
    let kernels = "../../../kernels";
    for f in [
        "common.cuh",
        "noise.cu",
        "lincomb.cu",
        "reduce.cu",
        "gmm.cu",
        "rowscale.cu",
    ] {
        println!("cargo:rerun-if-changed={kernels}/{f}");
    }
    println!("cargo:rerun-if-changed=shim.h");
    println!("cargo:rerun-if-changed=shim.cpp");
    cc::Build::new()
        .cpp(true)
        .file("shim.cpp")
        .include(".")
        .include(kernels)
        .flag("-std=c++17")
        .flag("-ffp-contract=off")
        .flag("-fno-fast-math")
        .flag("-fno-strict-aliasing")
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Wdouble-promotion")
        .flag("-Wno-unknown-pragmas")
        .flag("-Werror")
        .compile("diffuse_cuda_shim");
}

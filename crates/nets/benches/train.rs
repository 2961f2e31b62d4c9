//! The reference training step (2-D data, 128-feature sinusoidal time
//! embedding, 3 × 256 SiLU MLP, batch 4096, Adam, ε-prediction MSE) and the
//! forward pass of the same network on 65 536 points.
//!
//! The `gemm` group times, alone and single-threaded, the matrix products
//! one shard (`SHARD_ROWS` rows) of that step runs, with the strides the
//! layers use; criterion's element rate is the product's floating-point rate
//! (`Gelem/s` = GFLOP/s, two per multiply–add).
//!
//! Run with `cargo bench -p diffuse-nets --bench train`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diffuse_core::{NoiseSchedule, NoiseStream, Result};
use diffuse_nets::{DenoiserNet, EpsTrainer, NetConfig, SHARD_ROWS, reference_train_step};
use ndarray::Array2;

/// The cosine VP schedule (Nichol & Dhariwal 2021) without offset:
/// `α = cos(πt/2)`, `σ = sin(πt/2)` on `[1e-3, 1 − 1e-3]`.
struct Cosine;

impl NoiseSchedule for Cosine {
    fn name(&self) -> &str {
        "cosine"
    }
    fn t_range(&self) -> (f64, f64) {
        (1e-3, 1.0 - 1e-3)
    }
    fn alpha(&self, t: f64) -> f64 {
        (std::f64::consts::FRAC_PI_2 * t).cos()
    }
    fn sigma(&self, t: f64) -> f64 {
        (std::f64::consts::FRAC_PI_2 * t).sin()
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        Ok((-lambda / 2.0).exp().atan() / std::f64::consts::FRAC_PI_2)
    }
}

fn data(rows: usize, seed: u64) -> Array2<f32> {
    let mut v = vec![0.0f32; rows * 2];
    NoiseStream::new(seed, 0).fill(0, &mut v);
    Array2::from_shape_vec((rows, 2), v).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut trainer = EpsTrainer::reference(0).unwrap();
    let x0 = data(4096, 1);
    let mut g = c.benchmark_group("nets");
    g.sample_size(30);
    g.throughput(Throughput::Elements(1));
    g.bench_function("reference_train_step_b4096", |b| {
        b.iter(|| reference_train_step(&mut trainer, black_box(x0.view()), &Cosine).unwrap())
    });
    let net = DenoiserNet::new(NetConfig::reference(0)).unwrap();
    let x = data(65_536, 2);
    let times: Vec<f64> = (0..65_536).map(|i| (i as f64 + 0.5) / 65_536.0).collect();
    let mut out = Array2::<f32>::zeros((65_536, 2));
    g.sample_size(20);
    g.throughput(Throughput::Elements(65_536));
    g.bench_function("forward_65536", |b| {
        b.iter(|| {
            net.forward(black_box(x.view()), &times, None, out.view_mut())
                .unwrap()
        })
    });
    g.finish();
}

/// A row-major matrix as (pointer, row stride, column stride).
type Mat = (*const f32, isize, isize);

/// `C (m×n) ← A (m×k)·B (k×n)` (`+ C` when `acc`), single-threaded, as the
/// layers call it; the three operands as (pointer, row stride, column
/// stride).
fn sgemm(m: usize, n: usize, k: usize, c: (*mut f32, isize, isize), acc: bool, a: Mat, b: Mat) {
    // SAFETY: the callers pass buffers of at least the sizes the shapes and
    // strides address; `c` aliases neither `a` nor `b`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.0,
            c.2,
            c.1,
            acc,
            a.0,
            a.2,
            a.1,
            b.0,
            b.2,
            b.1,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

fn bench_gemm(c: &mut Criterion) {
    let r = SHARD_ROWS;
    let mut g = c.benchmark_group("gemm");
    g.sample_size(30);
    let x = vec![0.5f32; r * 256];
    let w = vec![0.25f32; 256 * 256];
    let mut out = vec![0.0f32; r * 256];
    let mut gw = vec![0.0f32; 256 * 256];
    let mut dx = vec![0.0f32; r * 256];
    let ri = |v: usize| v as isize;
    // Forward `Z = X·Wᵀ` (X: r×k, W: n×k, both row-major).
    for (k, n) in [(130usize, 256usize), (256, 256), (256, 2)] {
        g.throughput(Throughput::Elements((2 * r * n * k) as u64));
        g.bench_function(format!("forward_{r}x{k}_to_{n}"), |b| {
            b.iter(|| {
                sgemm(
                    r,
                    n,
                    k,
                    (out.as_mut_ptr(), ri(n), 1),
                    false,
                    (x.as_ptr(), ri(k), 1),
                    (w.as_ptr(), 1, ri(k)),
                )
            })
        });
    }
    // Backward `∂W += dZᵀ·X` (dZ: r×n, X: r×k).
    for (k, n) in [(130usize, 256usize), (256, 256), (256, 2)] {
        g.throughput(Throughput::Elements((2 * r * n * k) as u64));
        g.bench_function(format!("weight_grad_{n}x{k}_over_{r}"), |b| {
            b.iter(|| {
                sgemm(
                    n,
                    k,
                    r,
                    (gw.as_mut_ptr(), ri(k), 1),
                    true,
                    (out.as_ptr(), 1, ri(n)),
                    (x.as_ptr(), ri(k), 1),
                )
            })
        });
    }
    // Backward `dX = dZ·W` (dZ: r×n, W: n×k).
    for (k, n) in [(256usize, 256usize), (256, 2)] {
        g.throughput(Throughput::Elements((2 * r * n * k) as u64));
        g.bench_function(format!("input_grad_{r}x{n}_to_{k}"), |b| {
            b.iter(|| {
                sgemm(
                    r,
                    k,
                    n,
                    (dx.as_mut_ptr(), ri(k), 1),
                    false,
                    (out.as_ptr(), ri(n), 1),
                    (w.as_ptr(), ri(k), 1),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench, bench_gemm);
criterion_main!(benches);

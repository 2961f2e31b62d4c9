//! The reference training step (2-D data, 128-feature sinusoidal time
//! embedding, 3 × 256 SiLU MLP, batch 4096, Adam, ε-prediction MSE) and the
//! forward pass of the same network on 65 536 points.
//!
//! Run with `cargo bench -p diffuse-nets --bench train`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diffuse_core::{NoiseSchedule, NoiseStream, Result};
use diffuse_nets::{DenoiserNet, EpsTrainer, NetConfig, reference_train_step};
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

criterion_group!(benches, bench);
criterion_main!(benches);

//! The fused step against the STREAM triad, in one binary so both run under
//! the same conditions. `cargo xtask bench` runs this and writes
//! `docs/benchmarks.md`; `DIFFUSE_BENCH_ELEMENTS` overrides the size (2²⁴).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diffuse_core::bench::{StepWorkload, Triad};
use diffuse_core::{Backend, CpuBackend, NoiseStream};
use std::hint::black_box;
use std::time::Duration;

fn elements() -> usize {
    std::env::var("DIFFUSE_BENCH_ELEMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 24)
}

fn lincomb(c: &mut Criterion) {
    let n = elements();
    let cpu = CpuBackend::new();
    let mut group = c.benchmark_group("lincomb");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));

    let mut triad = Triad::new(cpu.clone(), n).expect("allocate the triad");
    group.throughput(Throughput::Bytes(triad.bytes()));
    group.bench_function("triad", |b| {
        b.iter(|| {
            triad.run();
            black_box(triad.output()[0]);
        })
    });

    // The noise stream alone: n normals written (4·n bytes). Generating them
    // is compute work, so this bounds every step that adds noise.
    let mut z = cpu.zeros(&[n]).expect("allocate the noise tensor");
    group.throughput(Throughput::Bytes(4 * n as u64));
    group.bench_function("noise_fill", |b| {
        b.iter(|| {
            cpu.fill_noise(NoiseStream::new(0, 3), 0, &mut z)
                .expect("fill_noise");
            black_box(z.as_slice()[0]);
        })
    });

    for (k, m, noise) in [(2, 1, false), (3, 2, false), (3, 2, true), (1, 1, true)] {
        let mut work = StepWorkload::new(cpu.clone(), n, k, m, noise).expect("allocate the step");
        let id = format!("k{k}_m{m}{}", if noise { "_noise" } else { "" });
        group.throughput(Throughput::Bytes(work.bytes()));
        group.bench_function(id, |b| {
            b.iter(|| {
                work.run().expect("lincomb");
                black_box(work.output().as_slice()[0]);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, lincomb);
criterion_main!(benches);

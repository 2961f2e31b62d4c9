//! The fused step against the STREAM triad, in one binary so both run under
//! the same conditions. `cargo xtask bench` runs this and writes
//! `docs/benchmarks.md`; `DIFFUSE_BENCH_ELEMENTS` overrides the size (2²⁴).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diffuse_core::CpuBackend;
use diffuse_core::bench::{StepWorkload, Triad};
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

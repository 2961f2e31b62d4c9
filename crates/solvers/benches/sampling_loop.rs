//! The sampling loop against its fused step: a run of DDIM and of
//! DPM-Solver++(2M) with a model that costs nothing (it leaves its output
//! as it is), per step, against one `lincomb` with the same plan layout
//! (DDIM: K = 2, M = 1; 2M: K = 3, M = 2, the prediction kept for the
//! history). Runs of 100 and 400 steps separate the cost per step (the
//! difference over 300 steps: host coefficients, plan updates, bookkeeping
//! and the pass itself) from the cost of starting a run (allocating and
//! first touching its buffers). `cargo xtask bench` runs this and writes
//! the ratios into `docs/benchmarks.md`; `DIFFUSE_BENCH_LOOP_ELEMENTS`
//! overrides the size (2²⁰).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use diffuse_solvers::{
    Affine, Backend, Condition, CpuBackend, Denoiser, LinComb, Marginal, NoiseLevel, Operand,
    Parameterization, Result, SamplingGrid, by_name, run,
};

/// Steps of the short and the long timed run.
pub const STEPS: [usize; 2] = [100, 400];
const ROWS: usize = 16;

fn elements() -> usize {
    std::env::var("DIFFUSE_BENCH_LOOP_ELEMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1 << 20)
}

/// The model output is `x̂₀`.
struct Data;

impl Parameterization for Data {
    fn name(&self) -> &str {
        "sample"
    }
    fn x0_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

/// A model that costs nothing: its output tensor keeps its contents.
struct Free;

impl Denoiser<CpuBackend> for Free {
    fn parameterization(&self) -> &dyn Parameterization {
        &Data
    }
    fn predict(
        &self,
        _backend: &CpuBackend,
        _x: &<CpuBackend as Backend>::Tensor,
        _levels: &[NoiseLevel],
        _condition: Condition<'_, <CpuBackend as Backend>::Tensor>,
        _out: &mut <CpuBackend as Backend>::Tensor,
    ) -> Result<()> {
        Ok(())
    }
}

/// `steps` VE levels σ from 2 to 1, geometric (the state stays far from
/// subnormal numbers).
fn grid(steps: usize) -> SamplingGrid {
    SamplingGrid::Shared(
        (0..=steps)
            .map(|i| {
                let sigma = 2.0 * 0.5f64.powf(i as f64 / steps as f64);
                NoiseLevel {
                    t: sigma,
                    marginal: Marginal { alpha: 1.0, sigma },
                }
            })
            .collect(),
    )
}

fn sampling_loop(c: &mut Criterion) {
    let n = elements();
    let cols = n / ROWS;
    let shape = [ROWS, cols];
    let cpu = CpuBackend::new();
    let init: Vec<f32> = (0..ROWS * cols).map(|i| (i % 17) as f32 * 0.1).collect();
    let mut group = c.benchmark_group("sampling_loop");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));

    // One fused step of each layout, timed alone (per step).
    for (id, k, m) in [("fused_k2_m1", 2usize, 1usize), ("fused_k3_m2", 3, 2)] {
        let mut operands = vec![Operand::Output(0)];
        operands.extend((0..k - 1).map(Operand::Input));
        let mut plan = LinComb::new(&operands, m).expect("plan");
        for mm in 0..m {
            for kk in 0..k {
                plan.set(mm, kk, 0.5 / (1 + kk) as f64)
                    .expect("coefficient");
            }
        }
        let inputs: Vec<_> = (0..k - 1)
            .map(|_| cpu.upload(&shape, &init).expect("upload"))
            .collect();
        let refs: Vec<_> = inputs.iter().collect();
        let mut outputs: Vec<_> = (0..m)
            .map(|_| cpu.upload(&shape, &init).expect("upload"))
            .collect();
        group.throughput(Throughput::Bytes((4 * n * (k + m)) as u64));
        group.bench_function(id, |b| {
            b.iter(|| {
                let mut targets: Vec<_> = outputs.iter_mut().collect();
                cpu.lincomb(&plan, &refs, &mut targets).expect("lincomb");
            })
        });
    }

    // Whole runs; criterion reports the time of a run of `steps` steps.
    for (id, name, steps) in [
        ("ddim_run_100", "ddim", STEPS[0]),
        ("ddim_run_400", "ddim", STEPS[1]),
        ("dpmpp_2m_run_100", "dpmpp-2m", STEPS[0]),
        ("dpmpp_2m_run_400", "dpmpp-2m", STEPS[1]),
    ] {
        let method = by_name(name).expect("solver");
        let grid = grid(steps);
        group.throughput(Throughput::Elements(steps as u64));
        group.bench_function(id, |b| {
            b.iter_batched_ref(
                || cpu.upload(&shape, &init).expect("upload"),
                |x| {
                    let report = run(
                        &cpu,
                        method.as_ref(),
                        &Free,
                        &diffuse_solvers::VeSchedule,
                        &grid,
                        x,
                    )
                    .expect("run");
                    black_box(report.nfe);
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, sampling_loop);
criterion_main!(benches);

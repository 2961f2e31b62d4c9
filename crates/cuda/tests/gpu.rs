//! The real kernels on a GPU through `CudaBackend`, against `CpuBackend`:
//! the fused step, the noise and sampler runs with the Gaussian-mixture
//! denoiser bit for bit, the reductions within rounding.
//! Every test prints a skip message and passes when there is no CUDA device
//! (or no driver, or no NVRTC).

use std::io::Write;

use diffuse_core::{Backend, CpuBackend, Error, LinComb, NoiseStream, Operand, RowReduction};
use diffuse_cuda::CudaBackend;

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

fn gpu_or_skip(test: &str) -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(gpu) => Some(gpu),
        Err(Error::Unsupported(why)) => {
            report(&format!("SKIPPED {test}: {why}"));
            None
        }
        Err(e) => panic!("{test}: CUDA is present but failed: {e}"),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn new_returns_a_typed_error_without_a_device() {
    match CudaBackend::new(usize::MAX) {
        Err(Error::Unsupported(why)) => assert!(why.contains("CUDA device")),
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("device usize::MAX exists"),
    }
}

#[test]
fn lincomb_and_noise_match_the_cpu_bit_for_bit() {
    let Some(gpu) = gpu_or_skip("lincomb_and_noise_match_the_cpu_bit_for_bit") else {
        return;
    };
    let cpu = CpuBackend::new();
    let mut compared = 0usize;
    for &(rows, cols) in &[(1usize, 1usize), (3, 37), (4, 1 << 12), (2, 100_003)] {
        let shape = [rows, cols];
        let n = rows * cols;
        for &offset in &[0u64, 3, u64::MAX - 5] {
            let s = NoiseStream::new(7, 3);
            let mut zc = cpu.zeros(&shape).unwrap();
            let mut zg = gpu.zeros(&shape).unwrap();
            cpu.fill_noise(s, offset, &mut zc).unwrap();
            gpu.fill_noise(s, offset, &mut zg).unwrap();
            assert_eq!(
                bits(&gpu.to_host(&zg).unwrap()),
                bits(&cpu.to_host(&zc).unwrap())
            );
            compared += n;
        }
        for k in 1..=8usize {
            for m in 1..=4usize {
                for (per_row, noise) in [(false, false), (true, true), (false, true)] {
                    let ops: Vec<Operand> = (0..k)
                        .map(|i| {
                            if i % 3 == 0 {
                                Operand::Output(i % m)
                            } else {
                                Operand::Input(i % 2)
                            }
                        })
                        .collect();
                    let mut plan = if per_row {
                        LinComb::per_row(&ops, m, rows).unwrap()
                    } else {
                        LinComb::new(&ops, m).unwrap()
                    };
                    if noise {
                        plan = plan.with_noise(NoiseStream::new(11, k as u64), 1 + m as u64);
                    }
                    for r in 0..plan.rows().unwrap_or(1) {
                        for mm in 0..m {
                            for kk in 0..k {
                                let c = 1.0 / (1.0 + (r + mm + 2 * kk) as f64) - 0.3;
                                plan.set_row(r, mm, kk, c).unwrap();
                            }
                            if noise {
                                plan.set_noise_row(r, mm, 0.1 * (1 + r) as f64).unwrap();
                            }
                        }
                    }
                    let data = |seed: u64| {
                        let mut v = vec![0.0f32; n];
                        NoiseStream::new(seed, 0).fill(0, &mut v);
                        v
                    };
                    let ins: Vec<Vec<f32>> = (0..2).map(|i| data(100 + i)).collect();
                    let outs: Vec<Vec<f32>> = (0..m).map(|i| data(200 + i as u64)).collect();
                    let ci: Vec<_> = ins.iter().map(|d| cpu.upload(&shape, d).unwrap()).collect();
                    let gi: Vec<_> = ins.iter().map(|d| gpu.upload(&shape, d).unwrap()).collect();
                    let mut co: Vec<_> = outs
                        .iter()
                        .map(|d| cpu.upload(&shape, d).unwrap())
                        .collect();
                    let mut go: Vec<_> = outs
                        .iter()
                        .map(|d| gpu.upload(&shape, d).unwrap())
                        .collect();
                    cpu.lincomb(
                        &plan,
                        &ci.iter().collect::<Vec<_>>(),
                        &mut co.iter_mut().collect::<Vec<_>>(),
                    )
                    .unwrap();
                    gpu.lincomb(
                        &plan,
                        &gi.iter().collect::<Vec<_>>(),
                        &mut go.iter_mut().collect::<Vec<_>>(),
                    )
                    .unwrap();
                    for (c, g) in co.iter().zip(&go) {
                        assert_eq!(
                            bits(&gpu.to_host(g).unwrap()),
                            bits(&cpu.to_host(c).unwrap()),
                            "K={k} M={m} per_row={per_row} noise={noise} shape={shape:?}"
                        );
                        compared += n;
                    }
                }
            }
        }
    }
    report(&format!(
        "{}: {compared} elements bit-identical to CpuBackend",
        gpu.name()
    ));
}

#[test]
fn reductions_match_the_cpu_within_rounding() {
    let Some(gpu) = gpu_or_skip("reductions_match_the_cpu_within_rounding") else {
        return;
    };
    let cpu = CpuBackend::new();
    for &(rows, cols) in &[(1usize, 2usize), (3, 1000), (2, 1 << 20)] {
        let mut v = vec![0.0f32; rows * cols];
        NoiseStream::new(5, 5).fill(0, &mut v);
        let xc = cpu.upload(&[rows, cols], &v).unwrap();
        let xg = gpu.upload(&[rows, cols], &v).unwrap();
        for op in [
            RowReduction::SumSquares,
            RowReduction::Rms,
            RowReduction::Mean,
            RowReduction::Std { correction: 1 },
            RowReduction::AbsQuantile(0.995),
        ] {
            let mut oc = cpu.zeros(&[rows]).unwrap();
            let mut og = gpu.zeros(&[rows]).unwrap();
            cpu.reduce_rows(&xc, op, &mut oc).unwrap();
            gpu.reduce_rows(&xg, op, &mut og).unwrap();
            for (g, c) in gpu
                .to_host(&og)
                .unwrap()
                .iter()
                .zip(cpu.to_host(&oc).unwrap())
            {
                let tol = 4.0 * f32::EPSILON * c.abs() + 1e-7;
                assert!((g - c).abs() <= tol, "{op:?} {rows}x{cols}: {g} vs {c}");
            }
        }
    }
}

/// A sampler run with the CUDA mixture denoiser against the same run on the
/// CPU with `diffuse_nets::GmmDenoiser`: every operation of the loop is
/// bit-identical across the backends (the fused step, the noise, and the
/// mixture kernel, which follows the CPU's f64 operation order with the same
/// hand-written logarithm and exponential and no contraction), so the
/// samples are the same bits.
#[test]
fn samplers_with_the_mixture_denoiser_match_the_cpu_bit_for_bit() {
    use std::sync::Arc;

    use diffuse_core::{NoiseSchedule, Parameterization, SamplingGrid};
    use diffuse_cuda::CudaGmmDenoiser;
    use diffuse_nets::{GaussianMixture, GmmDenoiser};
    use diffuse_schedules::TimeGrid;
    use diffuse_solvers::{PhiloxNoise, by_name, run, run_with_noise};

    let weights = vec![0.3, 0.5, 0.2];
    let means = vec![vec![-2.0, 0.5], vec![1.0, 1.0], vec![0.5, -2.5]];
    let stds = vec![0.3, 0.5, 0.2];
    let mixture = GaussianMixture::new(weights, means, stds).unwrap();
    let sched = diffuse_schedules::builtin("vp-cosine").unwrap();
    let s: &dyn NoiseSchedule = &*sched.schedule;
    let times = TimeGrid::from_name("logsnr")
        .unwrap()
        .times(s, 26, sched.t_start, sched.t_end)
        .unwrap();
    let grid = SamplingGrid::from_times(s, &times).unwrap();
    let (n, d) = (1000usize, 2usize);
    let mut start = vec![0.0f32; n * d];
    NoiseStream::new(5, 0).fill(0, &mut start);
    let scale = s.sigma(sched.t_start) as f32;
    start.iter_mut().for_each(|v| *v *= scale);
    let runs: Vec<(&str, &str)> = ["x0", "epsilon", "v"]
        .into_iter()
        .flat_map(|p| ["ddim", "dpmpp-2m", "euler-ancestral"].map(|m| (p, m)))
        .collect();
    let param = |name: &str| -> Arc<dyn Parameterization> {
        Arc::from(diffuse_param::by_name(name).unwrap())
    };
    // The CPU runs first (they need no device).
    let cpu = CpuBackend::new();
    let mut expected = Vec::new();
    for &(param_name, solver) in &runs {
        let model = GmmDenoiser::new(mixture.clone(), param(param_name));
        let method = by_name(solver).unwrap();
        let mut x = cpu.upload(&[n, d], &start).unwrap();
        if method.stochastic() {
            let noise = Box::new(PhiloxNoise::new(NoiseStream::new(5, 1)));
            run_with_noise(&cpu, &*method, &model, s, &grid, &mut x, noise, 0).unwrap();
        } else {
            run(&cpu, &*method, &model, s, &grid, &mut x).unwrap();
        }
        let x = cpu.to_host(&x).unwrap();
        assert!(x.iter().all(|v| v.is_finite()));
        expected.push(x);
    }
    let Some(gpu) = gpu_or_skip("samplers_with_the_mixture_denoiser_match_the_cpu_bit_for_bit")
    else {
        return;
    };
    let mut compared = 0usize;
    for (&(param_name, solver), want) in runs.iter().zip(&expected) {
        let model = CudaGmmDenoiser::new(&gpu, mixture.isotropic(), param(param_name)).unwrap();
        let method = by_name(solver).unwrap();
        let mut x = gpu.upload(&[n, d], &start).unwrap();
        if method.stochastic() {
            let noise = Box::new(PhiloxNoise::new(NoiseStream::new(5, 1)));
            run_with_noise(&gpu, &*method, &model, s, &grid, &mut x, noise, 0).unwrap();
        } else {
            run(&gpu, &*method, &model, s, &grid, &mut x).unwrap();
        }
        model.check(&gpu).unwrap();
        let got = gpu.to_host(&x).unwrap();
        assert_eq!(bits(&got), bits(want), "{solver} with {param_name}");
        compared += got.len();
    }
    report(&format!(
        "mixture denoiser on {}: ddim, dpmpp-2m, euler-ancestral × x0, epsilon, v: {compared} \
         sample elements bit for bit",
        gpu.name()
    ));
}

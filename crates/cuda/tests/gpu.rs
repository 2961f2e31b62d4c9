//! The real kernels on a GPU through `CudaBackend`, against `CpuBackend`:
//! the fused step and the noise bit for bit, the reductions within rounding.
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

//! The kernels of `kernels/` compiled for the host (the shim crate: g++
//! with `-ffp-contract=off`, CUDA built-ins as loops) against the CPU
//! backend: the fused step, the noise stream and the per-row maps bit for
//! bit, the reductions within rounding (the quantile exactly). The arguments come from
//! `diffuse_cuda::kernels`, the same code that builds the GPU launches.
//!
//! Each test prints how many elements it compared (to stderr directly, so
//! the line shows in `cargo test` output without `--nocapture`).

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use diffuse_core::noise::seed_key;
use diffuse_core::{
    Backend, CpuBackend, Error, LinComb, NoiseStream, Operand, RowReduction, RowScale,
};
use diffuse_cuda::kernels::{
    self, LinCombArgs, ReduceArgs, ReduceBuffers, ReduceScratch, RowScaleArgs, lincomb_kernel_name,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Prints a summary line that libtest does not capture.
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Host buffers whose first element may be misaligned by `shift` floats.
struct Buf {
    store: Vec<f32>,
    shift: usize,
    n: usize,
}

impl Buf {
    fn new(data: &[f32], shift: usize) -> Self {
        let mut store = vec![0.0f32; data.len() + 4];
        store[shift..shift + data.len()].copy_from_slice(data);
        Self {
            store,
            shift,
            n: data.len(),
        }
    }
    fn ptr(&mut self) -> u64 {
        self.store[self.shift..].as_mut_ptr() as u64
    }
    fn data(&self) -> &[f32] {
        &self.store[self.shift..self.shift + self.n]
    }
}

/// One fused step in the shim; returns the outputs.
#[allow(clippy::too_many_arguments)]
fn shim_lincomb(
    plan: &LinComb,
    inputs: &[Vec<f32>],
    outputs: &[Vec<f32>],
    row_len: usize,
    shifts: &[usize],
    grid: u32,
    block: u32,
) -> Vec<Vec<f32>> {
    let n = outputs[0].len();
    let mut shift = shifts.iter().copied().cycle();
    let mut ins: Vec<Buf> = inputs
        .iter()
        .map(|d| Buf::new(d, shift.next().unwrap_or(0)))
        .collect();
    let mut outs: Vec<Buf> = outputs
        .iter()
        .map(|d| Buf::new(d, shift.next().unwrap_or(0)))
        .collect();
    let packed = kernels::pack_row_coefficients(plan).unwrap();
    let row_coef = if packed.is_empty() {
        0
    } else {
        packed.as_ptr() as u64
    };
    let in_ptrs: Vec<u64> = ins.iter_mut().map(Buf::ptr).collect();
    let out_ptrs: Vec<u64> = outs.iter_mut().map(Buf::ptr).collect();
    let args = LinCombArgs::new(plan, &in_ptrs, &out_ptrs, n, row_len, row_coef).unwrap();
    let name = lincomb_kernel_name(plan.inputs(), plan.outputs(), plan.noise().is_some());
    // SAFETY: every pointer covers n elements of a live buffer.
    assert!(unsafe { diffuse_cuda_shim::lincomb(&name, grid, block, (&raw const args).cast()) });
    outs.iter().map(|b| b.data().to_vec()).collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// A random fused step: plan, tensors and launch geometry.
#[derive(Clone, Debug)]
struct Case {
    k: usize,
    m: usize,
    n_inputs: usize,
    operand_picks: Vec<(bool, usize)>,
    rows: usize,
    cols: usize,
    per_row: bool,
    noise: Option<(u64, u64, u64)>,
    coef_seed: u64,
    data_seed: u64,
    shifts: Vec<usize>,
    grid: u32,
    block: u32,
}

fn offsets() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..64, any::<u64>(), (u64::MAX - 40)..=u64::MAX]
}

fn case() -> impl Strategy<Value = Case> {
    (
        (1usize..=8, 1usize..=4, 0usize..=3),
        prop::collection::vec((any::<bool>(), 0usize..8), 8),
        (1usize..=5, 1usize..=67, any::<bool>()),
        prop::option::of((any::<u64>(), any::<u64>(), offsets())),
        (any::<u64>(), any::<u64>()),
        prop::collection::vec(0usize..4, 12),
        (1u32..=3, prop::sample::select(vec![1u32, 3, 32, 64])),
    )
        .prop_map(
            |((k, m, n_inputs), operand_picks, (rows, cols, per_row), noise, seeds, shifts, g)| {
                Case {
                    k,
                    m,
                    n_inputs,
                    operand_picks,
                    rows,
                    cols,
                    per_row,
                    noise,
                    coef_seed: seeds.0,
                    data_seed: seeds.1,
                    shifts,
                    grid: g.0,
                    block: g.1,
                }
            },
        )
}

/// Coefficient `i` of a case: mostly O(1), sometimes tiny (subnormal in
/// f32), zero or large, from the noise stream so the case is reproducible.
fn coefficient(seed: u64, i: u64) -> f64 {
    let z = NoiseStream::new(seed, 9).at(i) as f64;
    match i % 7 {
        3 => z * 1e-41,
        5 => 0.0,
        6 => z * 1e3,
        _ => z,
    }
}

fn build_plan(c: &Case) -> (LinComb, Vec<Operand>) {
    let operands: Vec<Operand> = c.operand_picks[..c.k]
        .iter()
        .map(|&(use_output, i)| {
            if use_output || c.n_inputs == 0 {
                Operand::Output(i % c.m)
            } else {
                Operand::Input(i % c.n_inputs)
            }
        })
        .collect();
    let mut plan = if c.per_row {
        LinComb::per_row(&operands, c.m, c.rows).unwrap()
    } else {
        LinComb::new(&operands, c.m).unwrap()
    };
    if let Some((seed, stream, offset)) = c.noise {
        plan = plan.with_noise(NoiseStream::new(seed, stream), offset);
    }
    let rows = if c.per_row { c.rows } else { 1 };
    let mut i = 0u64;
    for r in 0..rows {
        for m in 0..c.m {
            for k in 0..c.k {
                plan.set_row(r, m, k, coefficient(c.coef_seed, i)).unwrap();
                i += 1;
            }
            if c.noise.is_some() {
                plan.set_noise_row(r, m, coefficient(c.coef_seed, i))
                    .unwrap();
                i += 1;
            }
        }
    }
    (plan, operands)
}

fn tensor_data(seed: u64, which: u64, n: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, 100 + which).fill(0, &mut v);
    // A few exact values and signed zeros among the normals.
    for (i, x) in v.iter_mut().enumerate() {
        match (i as u64 + which) % 11 {
            0 => *x = 0.0,
            1 => *x = -0.0,
            2 => *x *= 1e-30,
            _ => {}
        }
    }
    v
}

static LINCOMB_ELEMENTS: AtomicU64 = AtomicU64::new(0);

fn check_case(c: &Case) -> Result<(), TestCaseError> {
    let (plan, _) = build_plan(c);
    let shape = [c.rows, c.cols];
    let n = c.rows * c.cols;
    let inputs: Vec<Vec<f32>> = (0..c.n_inputs)
        .map(|i| tensor_data(c.data_seed, i as u64, n))
        .collect();
    let outputs: Vec<Vec<f32>> = (0..c.m)
        .map(|m| tensor_data(c.data_seed, 50 + m as u64, n))
        .collect();
    let cpu = CpuBackend::new();
    let cin: Vec<_> = inputs
        .iter()
        .map(|d| cpu.upload(&shape, d).unwrap())
        .collect();
    let mut cout: Vec<_> = outputs
        .iter()
        .map(|d| cpu.upload(&shape, d).unwrap())
        .collect();
    let in_refs: Vec<_> = cin.iter().collect();
    let mut out_refs: Vec<_> = cout.iter_mut().collect();
    cpu.lincomb(&plan, &in_refs, &mut out_refs).unwrap();
    let shim = shim_lincomb(&plan, &inputs, &outputs, c.cols, &c.shifts, c.grid, c.block);
    for (m, (s, t)) in shim.iter().zip(&cout).enumerate() {
        let want = cpu.to_host(t).unwrap();
        prop_assert_eq!(bits(s), bits(&want), "output {} differs", m);
        LINCOMB_ELEMENTS.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

#[test]
fn lincomb_matches_the_cpu_bit_for_bit() {
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&case(), |c| check_case(&c)).unwrap();
    report(&format!(
        "shim lincomb: {} output elements bit-identical to CpuBackend over 400 random plans",
        LINCOMB_ELEMENTS.load(Ordering::Relaxed)
    ));
}

#[test]
fn lincomb_in_place_with_every_operand_kind() {
    // x ← a·x + b·d + c·x_prev-of-output-1 + noise, K = 3, M = 2, aligned
    // and misaligned, one row and per-row coefficients.
    let (rows, cols) = (3, 37);
    let n = rows * cols;
    let ops = [Operand::Output(0), Operand::Input(0), Operand::Output(1)];
    for per_row in [false, true] {
        let mut plan = if per_row {
            LinComb::per_row(&ops, 2, rows).unwrap()
        } else {
            LinComb::new(&ops, 2).unwrap()
        }
        .with_noise(NoiseStream::new(42, 7), 5);
        for r in 0..if per_row { rows } else { 1 } {
            let s = 1.0 + r as f64;
            plan.set_row(r, 0, 0, 0.5 * s).unwrap();
            plan.set_row(r, 0, 1, 0.25).unwrap();
            plan.set_row(r, 0, 2, -1.0 / 3.0).unwrap();
            plan.set_row(r, 1, 1, 1.0).unwrap();
            plan.set_noise_row(r, 0, 0.1 * s).unwrap();
        }
        let inputs = vec![tensor_data(1, 0, n)];
        let outputs = vec![tensor_data(1, 1, n), tensor_data(1, 2, n)];
        let cpu = CpuBackend::new();
        let d = cpu.upload(&[rows, cols], &inputs[0]).unwrap();
        let mut x = cpu.upload(&[rows, cols], &outputs[0]).unwrap();
        let mut y = cpu.upload(&[rows, cols], &outputs[1]).unwrap();
        cpu.lincomb(&plan, &[&d], &mut [&mut x, &mut y]).unwrap();
        for shifts in [[0, 0, 0], [1, 2, 3]] {
            let got = shim_lincomb(&plan, &inputs, &outputs, cols, &shifts, 2, 32);
            assert_eq!(bits(&got[0]), bits(&cpu.to_host(&x).unwrap()));
            assert_eq!(bits(&got[1]), bits(&cpu.to_host(&y).unwrap()));
            // Output 1 is the input (−0 turns into +0: −0 + 0·x = +0).
            assert_eq!(got[1], inputs[0]);
        }
    }
}

#[test]
fn lincomb_arguments_are_checked() {
    let mut plan = LinComb::per_row(&[Operand::Input(0)], 1, 2).unwrap();
    plan.set(0, 0, 1.0).unwrap();
    // A per-row plan without its coefficient array, and a bad row length.
    assert!(LinCombArgs::new(&plan, &[1], &[2], 8, 4, 0).is_err());
    assert!(LinCombArgs::new(&plan, &[1], &[2], 8, 3, 64).is_err());
    assert!(LinCombArgs::new(&plan, &[], &[2], 8, 4, 64).is_err());
    let a = LinCombArgs::new(&plan, &[16], &[32], 8, 4, 64).unwrap();
    assert_eq!(
        (a.src[0], a.dst[0], a.row_coef, a.n, a.row_len),
        (16, 32, 64, 8, 4)
    );
    assert_eq!(
        kernels::pack_row_coefficients(&plan).unwrap(),
        vec![1.0, 0.0, 1.0, 0.0]
    );
}

static NOISE_ELEMENTS: AtomicU64 = AtomicU64::new(0);

proptest! {
    #![proptest_config(Config { cases: 200, failure_persistence: None, ..Config::default() })]

    #[test]
    fn fill_noise_matches_the_stream(
        seed in any::<u64>(),
        stream in any::<u64>(),
        offset in offsets(),
        len in 1usize..300,
        shift in 0usize..4,
        grid in 1u32..4,
        block in prop::sample::select(vec![1u32, 7, 64]),
    ) {
        let mut want = vec![0.0f32; len];
        NoiseStream::new(seed, stream).fill(offset, &mut want);
        let mut store = vec![0.0f32; len + 4];
        let out = &mut store[shift..shift + len];
        diffuse_cuda_shim::fill_noise(grid, block, out, seed_key(seed), stream, offset);
        prop_assert_eq!(bits(out), bits(&want));
        NOISE_ELEMENTS.fetch_add(len as u64, Ordering::Relaxed);
    }
}

#[test]
fn noise_known_answers_and_report() {
    // docs/noise.md, section 6 (f64 values; the f32 stream is within 2e-6).
    let mut z = [0.0f32; 4];
    diffuse_cuda_shim::fill_noise(1, 1, &mut z, seed_key(42), 7, 0);
    let want = [1.0651505649, -0.8175249834, -0.6584499792, 1.1328658710];
    for (a, b) in z.iter().zip(want) {
        assert!((f64::from(*a) - b).abs() < 2e-6);
    }
    // A large fill, compared with the CPU backend.
    let n = 1 << 16;
    let mut got = vec![0.0f32; n];
    diffuse_cuda_shim::fill_noise(8, 64, &mut got, seed_key(3), 1, 12345);
    let cpu = CpuBackend::new();
    let mut t = cpu.zeros(&[n]).unwrap();
    cpu.fill_noise(NoiseStream::new(3, 1), 12345, &mut t)
        .unwrap();
    assert_eq!(bits(&got), bits(&cpu.to_host(&t).unwrap()));
    report(&format!(
        "shim fill_noise: {} elements bit-identical to CpuBackend (plus the random cases of \
         fill_noise_matches_the_stream)",
        n as u64 + 4
    ));
}

/// A reduction in the shim, through `kernels::reduce_launches`.
fn shim_reduce(x: &[f32], rows: usize, op: RowReduction) -> diffuse_core::Result<Vec<f32>> {
    let row_len = x.len() / rows;
    let s = ReduceScratch::new(rows, row_len);
    let mut out = vec![0.0f32; rows];
    let mut a = vec![0.0f64; s.partial_a];
    let mut b = vec![0.0f64; s.partial_b];
    let mut mean = vec![0.0f64; s.mean];
    let mut prefix = vec![0u32; s.prefix];
    let mut status = vec![7u32; s.status];
    let bufs = ReduceBuffers {
        x: x.as_ptr() as u64,
        out: out.as_mut_ptr() as u64,
        partial_a: a.as_mut_ptr() as u64,
        partial_b: b.as_mut_ptr() as u64,
        mean: mean.as_mut_ptr() as u64,
        prefix: prefix.as_mut_ptr() as u64,
        status: status.as_mut_ptr() as u64,
    };
    for l in kernels::reduce_launches(op, rows, row_len, &bufs)? {
        let block = 32u32;
        let grid = kernels::grid_blocks(l.items, 3);
        let args: ReduceArgs = l.args;
        // SAFETY: the buffers are sized by ReduceScratch for this shape.
        assert!(unsafe {
            diffuse_cuda_shim::reduce(l.kernel, grid, block, (&raw const args).cast())
        });
    }
    kernels::check_status(op, &status)?;
    Ok(out)
}

fn cpu_reduce(x: &[f32], rows: usize, op: RowReduction) -> diffuse_core::Result<Vec<f32>> {
    let cpu = CpuBackend::new();
    let t = cpu.upload(&[rows, x.len() / rows], x)?;
    let mut out = cpu.zeros(&[rows])?;
    cpu.reduce_rows(&t, op, &mut out)?;
    cpu.to_host(&out)
}

static REDUCED: AtomicU64 = AtomicU64::new(0);

fn ops() -> impl Strategy<Value = RowReduction> {
    prop_oneof![
        Just(RowReduction::SumSquares),
        Just(RowReduction::Rms),
        Just(RowReduction::Mean),
        (0u32..=1).prop_map(|correction| RowReduction::Std { correction }),
        prop_oneof![0.0f64..=1.0, Just(0.0), Just(1.0), Just(0.5)]
            .prop_map(RowReduction::AbsQuantile),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 150, failure_persistence: None, ..Config::default() })]

    #[test]
    fn reductions_agree_with_the_cpu(
        op in ops(),
        rows in 1usize..4,
        cols in prop_oneof![2usize..40, 250usize..700],
        seed in any::<u64>(),
        scale in prop_oneof![Just(1.0f32), Just(1e-20f32), Just(1e15f32)],
        shift in -2.0f32..2.0,
        ties in any::<bool>(),
    ) {
        let mut x = tensor_data(seed, 0, rows * cols);
        for v in x.iter_mut() {
            *v = (*v + shift) * scale;
            if ties {
                *v = (*v * 4.0).round() / 4.0;
            }
        }
        let want = cpu_reduce(&x, rows, op).unwrap();
        let got = shim_reduce(&x, rows, op).unwrap();
        for (r, (g, w)) in got.iter().zip(&want).enumerate() {
            if let RowReduction::AbsQuantile(_) = op {
                // Exact order statistics and the CPU's f64 interpolation.
                prop_assert_eq!(g.to_bits(), w.to_bits(), "row {}", r);
            } else {
                // Both sum in f64; only the order differs. Scale the
                // tolerance by the row's magnitude (means cancel).
                let row = &x[r * cols..(r + 1) * cols];
                let mag = row.iter().map(|v| f64::from(v.abs())).fold(0.0, f64::max);
                let mag = match op {
                    RowReduction::SumSquares => mag * mag * cols as f64,
                    _ => mag,
                };
                let tol = 4.0 * f64::from(f32::EPSILON) * f64::from(w.abs()) + 1e-12 * mag;
                prop_assert!(
                    (f64::from(*g) - f64::from(*w)).abs() <= tol,
                    "{:?} row {}: shim {} cpu {}", op, r, g, w
                );
            }
        }
        REDUCED.fetch_add((rows * cols) as u64, Ordering::Relaxed);
    }
}

#[test]
fn reductions_report_bad_input_like_the_cpu() {
    let mut x = tensor_data(5, 0, 3 * 20);
    x[27] = f32::INFINITY;
    for op in [
        RowReduction::SumSquares,
        RowReduction::Rms,
        RowReduction::Mean,
        RowReduction::Std { correction: 1 },
        RowReduction::AbsQuantile(0.9),
    ] {
        let err = shim_reduce(&x, 3, op).unwrap_err();
        assert!(
            matches!(err, Error::NonFinite(ref s) if s.contains("row 1")),
            "{op:?}: {err}"
        );
        assert!(matches!(cpu_reduce(&x, 3, op), Err(Error::NonFinite(_))));
    }
    x[27] = f32::NAN;
    assert!(matches!(
        shim_reduce(&x, 3, RowReduction::Mean),
        Err(Error::NonFinite(_))
    ));
    // Overflow of the f32 result.
    let big = vec![3e38f32; 8];
    assert!(matches!(
        shim_reduce(&big, 1, RowReduction::SumSquares),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(
        cpu_reduce(&big, 1, RowReduction::SumSquares),
        Err(Error::NonFinite(_))
    ));
    // Parameters out of range.
    for op in [
        RowReduction::AbsQuantile(1.5),
        RowReduction::AbsQuantile(f64::NAN),
        RowReduction::Std { correction: 2 },
    ] {
        assert!(matches!(
            shim_reduce(&x, 3, op),
            Err(Error::InvalidArgument { .. })
        ));
    }
    assert!(shim_reduce(&[1.0, 2.0], 2, RowReduction::Std { correction: 1 }).is_err());
}

#[test]
fn reductions_of_long_rows_and_report() {
    // Three passes per sum (65 536 → 256 → 1).
    let (rows, cols) = (2, 1 << 16);
    let x = tensor_data(11, 0, rows * cols);
    for op in [
        RowReduction::Rms,
        RowReduction::Std { correction: 1 },
        RowReduction::AbsQuantile(0.995),
    ] {
        let got = shim_reduce(&x, rows, op).unwrap();
        let want = cpu_reduce(&x, rows, op).unwrap();
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= 2.0 * f32::EPSILON * w.abs(),
                "{op:?}: {g} vs {w}"
            );
        }
    }
    report(&format!(
        "shim reduce_rows: long rows agree with CpuBackend (plus {} elements in random cases)",
        REDUCED.load(Ordering::Relaxed)
    ));
}

/// A random per-row map: shape, parameters, data with special values, the
/// factors (zeros among them for the ratio) and the launch geometry.
fn row_scale_case() -> impl Strategy<Value = (RowScale, usize, usize, u64, u32, u32)> {
    let op = prop_oneof![
        (-2.0f64..2.0).prop_map(|weight| RowScale::Ratio { weight }),
        (0.01f64..3.0, prop_oneof![Just(f64::INFINITY), 1.0f64..50.0])
            .prop_map(|(lo, extra)| RowScale::ClampDivide { lo, hi: lo + extra }),
        prop_oneof![Just(f64::INFINITY), 1e-3f64..5.0].prop_map(|bound| RowScale::Clamp { bound }),
    ];
    (
        op,
        1usize..=6,
        1usize..=70,
        any::<u64>(),
        1u32..=3,
        prop::sample::select(vec![1u32, 7, 32, 256]),
    )
}

static ROW_SCALE_ELEMENTS: AtomicU64 = AtomicU64::new(0);

fn check_row_scale(
    (op, rows, cols, seed, grid, block): (RowScale, usize, usize, u64, u32, u32),
) -> Result<(), TestCaseError> {
    let n = rows * cols;
    let mut data = tensor_data(seed, 0, n);
    // Scale some rows up so the clamps bite, and a NaN and infinities.
    for (i, x) in data.iter_mut().enumerate() {
        *x *= [1.0f32, 4.0, 0.25][(i / cols) % 3];
        match i % 29 {
            5 => *x = f32::INFINITY,
            6 => *x = f32::NEG_INFINITY,
            7 => *x = f32::NAN,
            _ => {}
        }
    }
    let factor = |which: u64| -> Vec<f32> {
        let mut v = tensor_data(seed, which, rows);
        for (r, x) in v.iter_mut().enumerate() {
            *x = x.abs() * 3.0;
            if (r as u64 + which).is_multiple_of(4) {
                *x = 0.0;
            }
        }
        v
    };
    let factors: Vec<Vec<f32>> = (0..op.factors() as u64).map(|w| factor(1 + w)).collect();
    let cpu = CpuBackend::new();
    let mut x = cpu.upload(&[rows, cols], &data).unwrap();
    let ft: Vec<_> = factors
        .iter()
        .map(|f| cpu.upload(&[rows], f).unwrap())
        .collect();
    let refs: Vec<_> = ft.iter().collect();
    cpu.scale_rows(op, &refs, &mut x).unwrap();
    let want = cpu.to_host(&x).unwrap();
    let mut shim = Buf::new(&data, (seed % 4) as usize);
    let ptrs: Vec<u64> = factors.iter().map(|f| f.as_ptr() as u64).collect();
    let args = RowScaleArgs::new(op, shim.ptr(), &ptrs, n, cols).unwrap();
    // SAFETY: `x` covers n elements and each factor `rows`.
    unsafe { diffuse_cuda_shim::scale_rows(grid, block, (&raw const args).cast()) };
    prop_assert_eq!(bits(shim.data()), bits(&want), "{:?}", op);
    ROW_SCALE_ELEMENTS.fetch_add(n as u64, Ordering::Relaxed);
    Ok(())
}

#[test]
fn scale_rows_matches_the_cpu_bit_for_bit() {
    let mut runner = TestRunner::new(Config {
        cases: 300,
        failure_persistence: None,
        ..Config::default()
    });
    runner.run(&row_scale_case(), check_row_scale).unwrap();
    report(&format!(
        "shim scale_rows: {} elements bit-identical to CpuBackend over 300 random maps",
        ROW_SCALE_ELEMENTS.load(Ordering::Relaxed)
    ));
}

#[test]
fn scale_rows_arguments_are_checked() {
    let clamp = RowScale::ClampDivide { lo: 1.0, hi: 2.0 };
    assert!(RowScaleArgs::new(clamp, 8, &[], 6, 3).is_err());
    assert!(RowScaleArgs::new(clamp, 8, &[16], 7, 3).is_err());
    assert!(RowScaleArgs::new(RowScale::Clamp { bound: 0.0 }, 8, &[], 6, 3).is_err());
    let args = RowScaleArgs::new(RowScale::Ratio { weight: 0.7 }, 8, &[16, 24], 6, 3).unwrap();
    assert_eq!((args.u, args.v, args.mode, args.row_len), (16, 24, 0, 3));
    assert_eq!((args.p0, args.p1), (0.7f32, 0.0));
}

/// `fill_noise_log_scaled` in the shim and on the CPU backend for one case;
/// the number of elements compared. NaN outputs are compared as NaN.
#[allow(clippy::too_many_arguments)]
fn compare_log_scaled(
    shape: &[usize],
    rows: usize,
    stream: NoiseStream,
    offset: u64,
    a: &[f64],
    b: &[f64],
    v: &[f32],
    launch: (u32, u32),
) -> Result<u64, TestCaseError> {
    let cpu = CpuBackend::new();
    let n = v.len();
    let vt = cpu.upload(shape, v).unwrap();
    let mut out = cpu.zeros(shape).unwrap();
    cpu.fill_noise_log_scaled(stream, offset, &vt, a, b, &mut out)
        .unwrap();
    let want = cpu.to_host(&out).unwrap();
    let ab: Vec<f32> = a.iter().chain(b).map(|&x| x as f32).collect();
    let mut got = vec![0.0f32; n];
    prop_assert!(diffuse_cuda_shim::fill_noise_log_scaled(
        launch.0,
        launch.1,
        &mut got,
        v,
        &ab,
        n / rows,
        seed_key(stream.seed),
        stream.stream,
        offset,
    ));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        prop_assert!(
            g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()),
            "element {i}: shim {g:e}, cpu {w:e} (v = {:e})",
            v[i]
        );
    }
    Ok(n as u64)
}

#[test]
fn fill_noise_log_scaled_matches_the_cpu_backend() {
    let mut runner = TestRunner::new(Config {
        cases: 200,
        failure_persistence: None,
        ..Config::default()
    });
    let elements = AtomicU64::new(0);
    let strategy = (
        (1usize..6, 1usize..70, 1usize..4),
        any::<u64>(),
        any::<u64>(),
        offsets(),
        any::<bool>(),
        (1u32..4, prop::sample::select(vec![1u32, 7, 64])),
        any::<u64>(),
    );
    runner
        .run(
            &strategy,
            |((batch, d1, d2), seed, stream, offset, per_row, launch, pseed)| {
                let shape = [batch, d1, d2];
                let n = batch * d1 * d2;
                let rows = if per_row { batch } else { 1 };
                // (a, b, v) from the public stream of `pseed`: a ∈ (−8, 2),
                // b ∈ (−3, 3), v spread over [−4, 4] with a few extremes.
                let mut u = vec![0.0f32; 2 * rows + n];
                NoiseStream::new(pseed, 0).fill(0, &mut u);
                let a: Vec<f64> = u[..rows]
                    .iter()
                    .map(|&x| -3.0 + 2.5 * f64::from(x))
                    .collect();
                let b: Vec<f64> = u[rows..2 * rows].iter().map(|&x| f64::from(x)).collect();
                let mut v: Vec<f32> = u[2 * rows..].iter().map(|&x| 1.5 * x).collect();
                if n > 3 {
                    v[0] = 60.0;
                    v[1] = -60.0;
                    v[2] = f32::NAN;
                }
                let e = compare_log_scaled(
                    &shape,
                    rows,
                    NoiseStream::new(seed, stream),
                    offset,
                    &a,
                    &b,
                    &v,
                    launch,
                )?;
                elements.fetch_add(e, Ordering::Relaxed);
                Ok(())
            },
        )
        .unwrap();
    // The exponential over its whole range: a = 0, b = 1, so the scale is
    // exp(v) for v from −110 to 95 (underflow, subnormals, overflow).
    let n = 1 << 16;
    let v: Vec<f32> = (0..n)
        .map(|i| -110.0 + 205.0 * i as f32 / n as f32)
        .collect();
    let e = compare_log_scaled(
        &[n],
        1,
        NoiseStream::new(5, 9),
        77,
        &[0.0],
        &[1.0],
        &v,
        (8, 64),
    )
    .unwrap();
    elements.fetch_add(e, Ordering::Relaxed);
    report(&format!(
        "shim fill_noise_log_scaled: {} elements bit-identical to CpuBackend",
        elements.load(Ordering::Relaxed)
    ));
}

//! The CPU fused step against a plain scalar loop, thread-count and
//! sharding invariance of the noise, per-row reductions, and bad input.

use diffuse_core::{
    Backend, CpuBackend, CpuTensor, Error, LinComb, NoiseStream, Operand, RowReduction,
};
use proptest::prelude::*;

/// The documented arithmetic, one element at a time.
fn reference(plan: &LinComb, inputs: &[Vec<f32>], outputs: &mut [Vec<f32>], row_len: usize) {
    let n = outputs[0].len();
    let noise = plan.noise();
    for i in 0..n {
        let row = i / row_len;
        let v: Vec<f32> = plan
            .operands()
            .iter()
            .map(|op| match *op {
                Operand::Input(j) => inputs[j][i],
                Operand::Output(m) => outputs[m][i],
            })
            .collect();
        let row = if plan.rows().is_some() { row } else { 0 };
        let c = |m, k| plan.coefficient(row, m, k).unwrap() as f32;
        let z = noise.map(|(s, off)| s.at(off.wrapping_add(i as u64)));
        for m in 0..plan.outputs() {
            let mut acc = c(m, 0) * v[0];
            for (k, vk) in v.iter().enumerate().skip(1) {
                acc += c(m, k) * vk;
            }
            if let Some(z) = z {
                acc += plan.noise_coefficient(row, m).unwrap() as f32 * z;
            }
            outputs[m][i] = acc;
        }
    }
}

#[derive(Debug, Clone)]
struct Case {
    rows: usize,
    row_len: usize,
    inputs: usize,
    outputs: usize,
    operands: Vec<Operand>,
    per_row: bool,
    coef: Vec<f64>,
    noise: Option<(u64, u64, u64)>,
    data_seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..=4,
        1usize..=5,
        1usize..=4,
        1usize..=700,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_flat_map(|(outputs, rows, inputs, row_len, per_row, data_seed)| {
            let operand = prop_oneof![
                (0..inputs).prop_map(Operand::Input),
                (0..outputs).prop_map(Operand::Output),
            ];
            (
                Just((outputs, rows, inputs, row_len, per_row, data_seed)),
                prop::collection::vec(operand, 1..=8),
                prop::option::of((any::<u64>(), any::<u64>(), 0u64..1_000_003)),
            )
        })
        .prop_flat_map(
            |((outputs, rows, inputs, row_len, per_row, data_seed), operands, noise)| {
                let count = if per_row { rows } else { 1 } * outputs * (operands.len() + 1);
                (
                    Just((
                        outputs, rows, inputs, row_len, per_row, data_seed, operands, noise,
                    )),
                    prop::collection::vec(-3.0f64..3.0, count),
                )
            },
        )
        .prop_map(
            |((outputs, rows, inputs, row_len, per_row, data_seed, operands, noise), coef)| Case {
                rows,
                row_len,
                inputs,
                outputs,
                operands,
                per_row,
                coef,
                noise,
                data_seed,
            },
        )
}

fn build(case: &Case) -> LinComb {
    let k = case.operands.len();
    let mut plan = if case.per_row {
        LinComb::per_row(&case.operands, case.outputs, case.rows).unwrap()
    } else {
        LinComb::new(&case.operands, case.outputs).unwrap()
    };
    if let Some((seed, stream, offset)) = case.noise {
        plan = plan.with_noise(NoiseStream::new(seed, stream), offset);
    }
    let mut it = case.coef.iter();
    for row in 0..plan.rows().unwrap_or(1) {
        for m in 0..case.outputs {
            for kk in 0..k {
                plan.set_row(row, m, kk, *it.next().unwrap()).unwrap();
            }
            if case.noise.is_some() {
                plan.set_noise_row(row, m, *it.next().unwrap()).unwrap();
            }
        }
    }
    plan
}

fn data(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut v = vec![0.0; n];
    NoiseStream::new(seed, stream).fill(0, &mut v);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn lincomb_equals_the_scalar_loop(case in case(), portable in any::<bool>()) {
        let cpu = if portable { CpuBackend::new().portable() } else { CpuBackend::new() };
        let plan = build(&case);
        let shape = [case.rows, case.row_len];
        let n = case.rows * case.row_len;
        let inputs: Vec<Vec<f32>> = (0..case.inputs).map(|j| data(case.data_seed, j as u64, n)).collect();
        let mut want: Vec<Vec<f32>> =
            (0..case.outputs).map(|m| data(case.data_seed, 100 + m as u64, n)).collect();
        let in_t: Vec<CpuTensor> = inputs.iter().map(|v| cpu.upload(&shape, v).unwrap()).collect();
        let mut out_t: Vec<CpuTensor> = want.iter().map(|v| cpu.upload(&shape, v).unwrap()).collect();
        reference(&plan, &inputs, &mut want, case.row_len);
        let in_refs: Vec<&CpuTensor> = in_t.iter().collect();
        let mut out_refs: Vec<&mut CpuTensor> = out_t.iter_mut().collect();
        cpu.lincomb(&plan, &in_refs, &mut out_refs).unwrap();
        for (m, (t, w)) in out_t.iter().zip(&want).enumerate() {
            let got = t.as_slice();
            for (i, (g, w)) in got.iter().zip(w).enumerate() {
                prop_assert_eq!(g.to_bits(), w.to_bits(), "output {} element {}", m, i);
            }
        }
    }

    /// A batch split into shards of rows, each run with the matching noise
    /// offset, gives the same bits as the whole batch.
    #[test]
    fn sharded_lincomb_equals_the_whole(seed in any::<u64>(), rows in 2usize..9, row_len in 1usize..300, cut in 1usize..8) {
        let cut = cut.min(rows - 1);
        let cpu = CpuBackend::new();
        let n = rows * row_len;
        let x = data(seed, 1, n);
        let step = |rows: usize, first_row: usize, x: &[f32]| {
            let mut plan = LinComb::per_row(&[Operand::Output(0)], 1, rows)
                .unwrap()
                .with_noise(NoiseStream::new(seed, 9), (first_row * row_len) as u64);
            for r in 0..rows {
                plan.set_row(r, 0, 0, 0.5 + (first_row + r) as f64).unwrap();
                plan.set_noise_row(r, 0, 1.0 / (1 + first_row + r) as f64).unwrap();
            }
            let mut t = cpu.upload(&[rows, row_len], x).unwrap();
            cpu.lincomb(&plan, &[], &mut [&mut t]).unwrap();
            t.into_vec()
        };
        let whole = step(rows, 0, &x);
        let mut parts = step(cut, 0, &x[..cut * row_len]);
        parts.extend(step(rows - cut, cut, &x[cut * row_len..]));
        prop_assert_eq!(whole, parts);
    }
}

#[test]
fn noise_is_identical_for_one_and_two_threads_and_any_split() {
    let one = CpuBackend::with_threads(1).unwrap();
    let two = CpuBackend::with_threads(2).unwrap();
    let shape = [3, 3 * diffuse_core::cpu::CHUNK / 2 + 17];
    let n = shape[0] * shape[1];
    let stream = NoiseStream::new(20240601, 5);
    let mut a = one.zeros(&shape).unwrap();
    let mut b = two.zeros(&shape).unwrap();
    one.fill_noise(stream, 11, &mut a).unwrap();
    two.fill_noise(stream, 11, &mut b).unwrap();
    assert_eq!(a, b);
    // Any split of the index range, at any alignment.
    for cuts in [[1usize, 2], [4, 9], [5, 4099], [n / 3, n / 2 + 3]] {
        let mut pieces = Vec::new();
        let mut start = 0;
        for end in [cuts[0], cuts[0] + cuts[1], n] {
            let mut piece = vec![0.0f32; end - start];
            stream.fill(11 + start as u64, &mut piece);
            pieces.extend(piece);
            start = end;
        }
        assert_eq!(a.as_slice(), &pieces[..]);
    }
    // The fused step with noise, per-row coefficients, in place.
    let mut plan = LinComb::per_row(&[Operand::Output(0), Operand::Input(0)], 2, shape[0])
        .unwrap()
        .with_noise(stream, 0);
    for r in 0..shape[0] {
        plan.set_row(r, 0, 0, 0.9 - 0.1 * r as f64).unwrap();
        plan.set_row(r, 0, 1, -0.3).unwrap();
        plan.set_row(r, 1, 1, 2.0).unwrap();
        plan.set_noise_row(r, 0, 0.25 * r as f64).unwrap();
    }
    let d = one.upload(&shape, &data(1, 2, n)).unwrap();
    let mut results = Vec::new();
    for cpu in [&one, &two] {
        let mut x = cpu.upload(&shape, &data(1, 1, n)).unwrap();
        let mut y = cpu.zeros(&shape).unwrap();
        cpu.lincomb(&plan, &[&d], &mut [&mut x, &mut y]).unwrap();
        results.push((x, y));
    }
    assert_eq!(results[0], results[1]);
}

/// Rows of odd length straddling the rayon chunks and the staging blocks,
/// with a noise offset that wraps past 2⁶⁴: every element against the scalar
/// loop, on the SIMD and portable paths, with one and two threads.
#[test]
fn per_row_coefficients_survive_chunk_boundaries() {
    let chunk = diffuse_core::cpu::CHUNK;
    let shape = [7, chunk / 3 + 101];
    let n = shape[0] * shape[1];
    assert!(n > 2 * chunk);
    let stream = NoiseStream::new(99, 4);
    let mut plan = LinComb::per_row(
        &[Operand::Output(0), Operand::Input(0), Operand::Output(1)],
        2,
        shape[0],
    )
    .unwrap()
    .with_noise(stream, u64::MAX - (n as u64) / 2);
    for r in 0..shape[0] {
        let x = r as f64;
        plan.set_row(r, 0, 0, 1.0 - 0.1 * x).unwrap();
        plan.set_row(r, 0, 1, 0.5 + x).unwrap();
        plan.set_row(r, 0, 2, -0.25 * x).unwrap();
        plan.set_row(r, 1, 1, 3.0 - x).unwrap();
        plan.set_row(r, 1, 2, 0.125 + x).unwrap();
        plan.set_noise_row(r, 0, 0.01 * (x + 1.0)).unwrap();
        plan.set_noise_row(r, 1, -0.5 * x).unwrap();
    }
    let d = data(7, 1, n);
    let x0 = data(7, 2, n);
    let y0 = data(7, 3, n);
    let mut want = vec![x0.clone(), y0.clone()];
    reference(&plan, std::slice::from_ref(&d), &mut want, shape[1]);
    for cpu in [
        CpuBackend::with_threads(1).unwrap(),
        CpuBackend::with_threads(2).unwrap(),
        CpuBackend::with_threads(2).unwrap().portable(),
    ] {
        let dt = cpu.upload(&shape, &d).unwrap();
        let mut x = cpu.upload(&shape, &x0).unwrap();
        let mut y = cpu.upload(&shape, &y0).unwrap();
        cpu.lincomb(&plan, &[&dt], &mut [&mut x, &mut y]).unwrap();
        for (got, want) in [(&x, &want[0]), (&y, &want[1])] {
            let mismatches = got
                .as_slice()
                .iter()
                .zip(want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            assert_eq!(mismatches, 0, "{} threads", cpu.threads());
        }
    }
    // fill_noise across chunks and the wrap, on both paths.
    for cpu in [CpuBackend::new(), CpuBackend::new().portable()] {
        let mut z = cpu.zeros(&shape).unwrap();
        cpu.fill_noise(stream, u64::MAX - 1000, &mut z).unwrap();
        for (i, v) in z.as_slice().iter().enumerate().step_by(97) {
            assert_eq!(
                v.to_bits(),
                stream
                    .at((u64::MAX - 1000).wrapping_add(i as u64))
                    .to_bits()
            );
        }
    }
}

#[test]
fn tensors_from_sliced_arrays() {
    use ndarray::{Array2, s};
    let a = Array2::from_shape_fn((3, 4), |(i, j)| (4 * i + j) as f32);
    let rows = CpuTensor::from_array(a.clone().slice_move(s![1.., ..]).into_dyn()).unwrap();
    assert_eq!(rows.shape(), &[2, 4]);
    assert_eq!(rows.as_slice(), &[4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0]);
    let cols = CpuTensor::from_array(a.slice_move(s![.., 1..3]).into_dyn()).unwrap();
    assert_eq!(cols.as_slice(), &[1.0, 2.0, 5.0, 6.0, 9.0, 10.0]);
}

#[test]
fn reductions_match_f64_loops() {
    let cpu = CpuBackend::with_threads(2).unwrap();
    let shape = [3, 10_007];
    let x: Vec<f32> = data(4, 0, 3 * 10_007)
        .iter()
        .map(|v| 2.0 * v + 0.5)
        .collect();
    let t = cpu.upload(&shape, &x).unwrap();
    let mut out = cpu.zeros(&[3]).unwrap();
    for (r, row) in x.chunks(shape[1]).enumerate() {
        let row: Vec<f64> = row.iter().map(|&v| f64::from(v)).collect();
        let n = row.len() as f64;
        let ss: f64 = row.iter().map(|v| v * v).sum();
        let mean = row.iter().sum::<f64>() / n;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>();
        let mut sorted: Vec<f64> = row.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f64::total_cmp);
        let h = (n - 1.0) * 0.995;
        let q =
            sorted[h as usize] + (h - h.floor()) * (sorted[h as usize + 1] - sorted[h as usize]);
        for (op, want) in [
            (RowReduction::SumSquares, ss),
            (RowReduction::Rms, (ss / n).sqrt()),
            (RowReduction::Mean, mean),
            (RowReduction::Std { correction: 0 }, (var / n).sqrt()),
            (
                RowReduction::Std { correction: 1 },
                (var / (n - 1.0)).sqrt(),
            ),
            (RowReduction::AbsQuantile(0.995), q),
        ] {
            cpu.reduce_rows(&t, op, &mut out).unwrap();
            let got = f64::from(out.as_slice()[r]);
            assert!(
                (got - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{op:?} row {r}: {got} vs {want}"
            );
        }
    }
}

#[test]
fn bad_input_gives_typed_errors() {
    let cpu = CpuBackend::new();
    let a = cpu.zeros(&[2, 3]).unwrap();
    let mut b = cpu.zeros(&[2, 4]).unwrap();
    let mut plan = LinComb::new(&[Operand::Input(0)], 1).unwrap();
    plan.set(0, 0, 1.0).unwrap();
    assert!(matches!(
        cpu.lincomb(&plan, &[&a], &mut [&mut b]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        cpu.lincomb(&plan, &[], &mut [&mut b]),
        Err(Error::InvalidPlan(_))
    ));
    let per_row = LinComb::per_row(&[Operand::Input(0)], 1, 3).unwrap();
    let mut c = cpu.zeros(&[2, 3]).unwrap();
    assert!(matches!(
        cpu.lincomb(&per_row, &[&a], &mut [&mut c]),
        Err(Error::InvalidPlan(_))
    ));
    assert!(matches!(cpu.zeros(&[]), Err(Error::InvalidShape { .. })));
    assert!(matches!(
        cpu.zeros(&[4, 0]),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        cpu.upload(&[2, 2], &[1.0; 3]),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        cpu.zeros(&[1 << 40, 1 << 30]),
        Err(Error::InvalidShape { .. } | Error::OutOfMemory { .. })
    ));
    let mut r = cpu.zeros(&[2]).unwrap();
    assert!(
        cpu.reduce_rows(&a, RowReduction::AbsQuantile(1.5), &mut r)
            .is_err()
    );
    assert!(
        cpu.reduce_rows(&a, RowReduction::Std { correction: 2 }, &mut r)
            .is_err()
    );
    let mut wrong = cpu.zeros(&[3]).unwrap();
    assert!(matches!(
        cpu.reduce_rows(&a, RowReduction::Mean, &mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    let nan = cpu.upload(&[2, 2], &[1.0, f32::NAN, 0.0, 0.0]).unwrap();
    assert!(matches!(
        cpu.reduce_rows(&nan, RowReduction::Rms, &mut r),
        Err(Error::NonFinite(_))
    ));
    assert!(CpuBackend::with_threads(0).is_err());
    // Results that overflow f32 are errors, not infinities.
    let big = cpu.upload(&[1, 2], &[3e38, -3e38]).unwrap();
    let mut one = cpu.zeros(&[1]).unwrap();
    assert!(matches!(
        cpu.reduce_rows(&big, RowReduction::SumSquares, &mut one),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(
        cpu.reduce_rows(&big, RowReduction::Std { correction: 1 }, &mut one),
        Err(Error::NonFinite(_))
    ));
    // Plans whose size overflows, and rows out of range.
    assert!(LinComb::per_row(&[Operand::Input(0); 8], 4, usize::MAX / 8).is_err());
    let p = LinComb::per_row(&[Operand::Input(0)], 1, 2).unwrap();
    assert!(p.f32_row(2).is_err());
    assert!(p.coefficient(2, 0, 0).is_err());
    assert!(p.noise_coefficient(0, 1).is_err());
}

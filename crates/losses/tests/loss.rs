//! The batch loss and its gradient.

use diffuse_core::{Error, Marginal};
use diffuse_losses::{Batch, Level, Objective, Reduction, Target, Targets, Weighting};
use proptest::prelude::*;

/// Deterministic pseudo-random values in [−2, 2] (splitmix-style), so the
/// proptests only draw seeds.
fn values(seed: u64, n: usize) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            ((z >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0) as f32
        })
        .collect()
}

fn vp_levels(lambdas: &[f64]) -> Vec<Level> {
    lambdas
        .iter()
        .map(|&l| {
            let a = (1.0 / (1.0 + (-l).exp())).sqrt();
            let s = (1.0 / (1.0 + l.exp())).sqrt();
            Level::new(Marginal::new(a, s).unwrap())
                .unwrap()
                .with_dlog_snr_dt(-2.0)
                .unwrap()
        })
        .collect()
}

fn objectives() -> Vec<Objective> {
    let f = Target::EdmF { sigma_data: 0.5 };
    vec![
        Objective::new(Target::Epsilon, Weighting::EPSILON_MSE).unwrap(),
        Objective::new(Target::Epsilon, Weighting::MinSnr { gamma: 5.0 }).unwrap(),
        Objective::new(Target::X0, Weighting::TruncatedSnr).unwrap(),
        Objective::new(Target::V, Weighting::Sigmoid { bias: 1.0 }).unwrap(),
        Objective::new(f, Weighting::edm(0.5).unwrap())
            .unwrap()
            .with_reduction(Reduction::Sum),
        Objective::new(Target::FlowVelocity, Weighting::Elbo).unwrap(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The gradient equals central finite differences. The loss is quadratic
    /// in each output, so the difference quotient over the two f32
    /// neighbours is exact up to rounding.
    #[test]
    fn gradient_matches_finite_differences(seed in any::<u64>(), rows in 1usize..5, d in 1usize..7) {
        let lambdas: Vec<f64> = values(seed ^ 1, rows).iter().map(|&v| 3.0 * f64::from(v)).collect();
        let levels = vp_levels(&lambdas);
        let n = rows * d;
        let (x0, eps, out) = (values(seed ^ 2, n), values(seed ^ 3, n), values(seed ^ 4, n));
        let extra: Vec<f64> = values(seed ^ 5, rows).iter().map(|&v| f64::from(v.abs())).collect();
        for obj in objectives() {
            let batch = Batch { levels: &levels, output: &out, targets: Targets::Pair { x0: &x0, eps: &eps }, row_weights: Some(&extra) };
            let mut grad = vec![0.0f32; n];
            let value = obj.loss_and_grad(&batch, &mut grad).unwrap();
            prop_assert!((value.loss - obj.loss(&batch).unwrap().loss).abs() == 0.0);
            for j in 0..n {
                let h = 1e-2f32;
                let (mut up, mut down) = (out.clone(), out.clone());
                up[j] += h;
                down[j] -= h;
                let lu = obj.loss(&Batch { output: &up, ..batch }).unwrap().loss;
                let ld = obj.loss(&Batch { output: &down, ..batch }).unwrap().loss;
                let fd = (lu - ld) / f64::from(up[j] - down[j]);
                let g = f64::from(grad[j]);
                // ∂L/∂out = c·(out − target): the quotient is c·(midpoint −
                // target), and the f32 midpoint is within ~2⁻²² of out.
                let rho = match obj.reduction { Reduction::Mean => 1.0 / d as f64, Reduction::Sum => 1.0 };
                let c = 2.0 * value.weights[j / d] * rho / rows as f64;
                prop_assert!((fd - g).abs() <= 1e-6 * g.abs() + 1e-6 * c, "{obj:?} j={j}: fd {fd} vs grad {g}");
            }
        }
    }

    /// Targets given directly and targets from (x₀, ε) give the same loss.
    #[test]
    fn given_targets_match_pairs(seed in any::<u64>()) {
        let (rows, d) = (3, 5);
        let levels = vp_levels(&[-4.0, 0.5, 6.0]);
        let (x0, eps, out) = (values(seed, rows * d), values(seed ^ 7, rows * d), values(seed ^ 9, rows * d));
        for obj in objectives() {
            let mut t = vec![0.0f32; rows * d];
            obj.targets_into(&levels, &x0, &eps, &mut t).unwrap();
            let a = obj.loss(&Batch { levels: &levels, output: &out, targets: Targets::Given(&t), row_weights: None }).unwrap();
            let b = obj.loss(&Batch { levels: &levels, output: &out, targets: Targets::Pair { x0: &x0, eps: &eps }, row_weights: None }).unwrap();
            prop_assert!((a.loss - b.loss).abs() <= 1e-6 * b.loss.max(1e-6), "{obj:?}");
        }
    }

    /// One prediction, seen in every output space, has one loss: the
    /// network that predicts (x̂₀, ε̂) with x = α·x̂₀ + σ·ε̂ outputs
    /// p·x̂₀ + q·ε̂ in space (p, q), and the weighting converts exactly.
    #[test]
    fn same_prediction_same_loss_in_every_space(seed in any::<u64>(), lambda in -6.0f64..6.0) {
        let d = 16;
        let levels = vp_levels(&[lambda]);
        let m = levels[0].marginal;
        let (x0, eps, eps_hat) = (values(seed, d), values(seed ^ 11, d), values(seed ^ 13, d));
        // x̂₀ from ε̂ at the true state x.
        let x0_hat: Vec<f64> = (0..d)
            .map(|j| {
                let x = m.alpha * f64::from(x0[j]) + m.sigma * f64::from(eps[j]);
                (x - m.sigma * f64::from(eps_hat[j])) / m.alpha
            })
            .collect();
        let spaces = [Target::Epsilon, Target::X0, Target::V, Target::EdmF { sigma_data: 0.5 }, Target::FlowVelocity, Target::Score];
        for w in [Weighting::MinSnr { gamma: 5.0 }, Weighting::V_MSE, Weighting::edm(0.5).unwrap(), Weighting::Sigmoid { bias: 0.0 }] {
            let mut losses = Vec::new();
            for t in spaces {
                let (p, q) = t.coefficients(m).unwrap();
                let out: Vec<f32> = (0..d).map(|j| (p * x0_hat[j] + q * f64::from(eps_hat[j])) as f32).collect();
                let obj = Objective::new(t, w).unwrap();
                let v = obj.loss(&Batch { levels: &levels, output: &out, targets: Targets::Pair { x0: &x0, eps: &eps }, row_weights: None }).unwrap();
                losses.push(v.loss);
            }
            let reference = losses[0];
            for (t, l) in spaces.iter().zip(&losses) {
                // f32 outputs: relative agreement to the f32 rounding of the
                // error, amplified by the conditioning of each space.
                prop_assert!((l - reference).abs() <= 2e-4 * reference.max(1e-8), "{w:?} on {t:?}: {l} vs {reference}");
            }
        }
    }
}

/// An output off its target by a constant c in every element costs w·c²
/// (mean) or w·D·c² (sum); per-row weights multiply.
#[test]
fn constant_offset_analytic() {
    let levels = vp_levels(&[0.0, 2.0]);
    let d = 6;
    let target = vec![0.25f32; 2 * d];
    let out: Vec<f32> = target.iter().map(|t| t + 0.5).collect();
    let obj = Objective::new(Target::X0, Weighting::Snr).unwrap();
    let snr: Vec<f64> = levels.iter().map(Level::snr).collect();
    let batch = Batch {
        levels: &levels,
        output: &out,
        targets: Targets::Given(&target),
        row_weights: Some(&[1.0, 3.0]),
    };
    let v = obj.loss(&batch).unwrap();
    let want = 0.5 * (snr[0] * 0.25 + 3.0 * snr[1] * 0.25);
    assert!((v.loss - want).abs() < 1e-12);
    assert_eq!(v.row_errors, vec![0.25, 0.25]);
    assert!((v.weights[1] - 3.0 * snr[1]).abs() < 1e-12);
    let sum = obj.with_reduction(Reduction::Sum).loss(&batch).unwrap();
    assert!((sum.loss - d as f64 * want).abs() < 1e-10);
    // The gradient of row i is 2·w_i·ρ·c/B.
    let mut grad = vec![0.0f32; 2 * d];
    obj.loss_and_grad(&batch, &mut grad).unwrap();
    let g1 = 2.0 * 3.0 * snr[1] / d as f64 * 0.5 / 2.0;
    assert!((f64::from(grad[d]) - g1).abs() < 1e-6 * g1);
}

#[test]
fn bad_batches_are_typed_errors() {
    let levels = vp_levels(&[0.0, 1.0]);
    let obj = Objective::new(Target::Epsilon, Weighting::EPSILON_MSE).unwrap();
    let out = vec![0.0f32; 6];
    let t = vec![0.0f32; 6];
    let ok = Batch {
        levels: &levels,
        output: &out,
        targets: Targets::Given(&t),
        row_weights: None,
    };
    assert_eq!(obj.loss(&ok).unwrap().loss, 0.0);
    let short = vec![0.0f32; 5];
    assert!(matches!(
        obj.loss(&Batch {
            output: &short,
            ..ok
        }),
        Err(Error::InvalidShape { .. })
    ));
    assert!(matches!(
        obj.loss(&Batch {
            targets: Targets::Given(&short),
            ..ok
        }),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        obj.loss(&Batch {
            row_weights: Some(&[1.0]),
            ..ok
        }),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        obj.loss(&Batch {
            row_weights: Some(&[1.0, -1.0]),
            ..ok
        }),
        Err(Error::InvalidArgument { .. })
    ));
    let mut nan = out.clone();
    nan[4] = f32::NAN;
    assert!(matches!(
        obj.loss(&Batch { output: &nan, ..ok }),
        Err(Error::NonFinite(_))
    ));
    let mut grad = vec![0.0f32; 4];
    assert!(obj.loss_and_grad(&ok, &mut grad).is_err());
    // A weighting without a value at the level.
    let zero = vec![Level::new(Marginal::new(0.0, 1.0).unwrap()).unwrap(); 2];
    let x0_on_eps = Objective::new(Target::Epsilon, Weighting::X0_MSE).unwrap();
    assert!(matches!(
        x0_on_eps.loss(&Batch {
            levels: &zero,
            ..ok
        }),
        Err(Error::Undefined { .. })
    ));
    assert!(Objective::new(Target::X0, Weighting::MinSnr { gamma: 0.0 }).is_err());
    // An empty batch has zero loss.
    let empty = Batch {
        levels: &[],
        output: &[],
        targets: Targets::Given(&[]),
        row_weights: None,
    };
    assert_eq!(obj.loss(&empty).unwrap().loss, 0.0);
}

/// The forward marginal x = α·x₀ + σ·ε.
#[test]
fn forward_states() {
    let levels = vp_levels(&[0.0]);
    let m = levels[0].marginal;
    let (x0, eps) = (vec![1.0f32, -2.0], vec![0.5f32, 0.25]);
    let mut x = vec![0.0f32; 2];
    diffuse_losses::forward_into(&levels, &x0, &eps, &mut x).unwrap();
    for j in 0..2 {
        let want = m.alpha * f64::from(x0[j]) + m.sigma * f64::from(eps[j]);
        assert!((f64::from(x[j]) - want).abs() < 1e-7);
    }
    assert!(diffuse_losses::forward_into(&levels, &x0, &eps[..1], &mut x).is_err());
}

/// Throughput of the loss and gradient on a 64 × 3·64·64 batch. Timing only:
/// `cargo test -p diffuse-losses --release --test loss -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let (rows, d) = (64usize, 3 * 64 * 64);
    let levels = vp_levels(&(0..rows).map(|i| i as f64 / 8.0 - 4.0).collect::<Vec<_>>());
    let (x0, eps, out) = (
        values(1, rows * d),
        values(2, rows * d),
        values(3, rows * d),
    );
    let obj = Objective::new(Target::V, Weighting::MinSnr { gamma: 5.0 }).unwrap();
    let batch = Batch {
        levels: &levels,
        output: &out,
        targets: Targets::Pair { x0: &x0, eps: &eps },
        row_weights: None,
    };
    let mut grad = vec![0.0f32; rows * d];
    let reps = 20;
    let start = std::time::Instant::now();
    for _ in 0..reps {
        std::hint::black_box(obj.loss_and_grad(&batch, &mut grad).unwrap());
    }
    let per = start.elapsed().as_secs_f64() / reps as f64;
    let bytes = (4 * 4 * rows * d) as f64; // read out, x0, eps; write grad
    println!(
        "loss+grad on {rows}×{d}: {:.2} ms, {:.2} GB/s",
        per * 1e3,
        bytes / per / 1e9
    );
}

//! Multistep DPM-Solver / DPM-Solver++: step orders (warm-up and final
//! steps), exactness on predictions that are polynomials in λ, the
//! library's order-3 coefficient, convergence orders on a Gaussian, the
//! driver against an f64 reference, and typed errors.

mod common;

// Levels at half log-SNR `l` with time 0 (the runs use the VE schedule).
use common::vp_at_half_log_snr as vp;
use common::{
    Gaussian, Sample, clean, linspace_levels, run_f64_states, step_ctx, weighted_integral,
};
use diffuse_solvers::{
    Backend, CpuBackend, DpmAlgorithm, DpmSolverMultistep, Error, Marginal, Method, NoiseLevel,
    Prediction, Result, SamplingGrid, SecondOrder, SolverState, StepContext, ThirdOrder,
    VeSchedule,
};

const ALGORITHMS: [DpmAlgorithm; 2] = [DpmAlgorithm::DataPrediction, DpmAlgorithm::NoisePrediction];
const FORMS: [SecondOrder; 2] = [SecondOrder::Midpoint, SecondOrder::Heun];

/// Levels at the given half log-SNRs.
fn grid(ls: &[f64]) -> Vec<NoiseLevel> {
    ls.iter().map(|&l| vp(l)).collect()
}

/// `n` steps evenly spaced in λ from `l0` to `l1`.
fn uniform(l0: f64, l1: f64, n: usize) -> Vec<NoiseLevel> {
    linspace_levels(l0, l1, n, vp)
}

fn ctx(levels: &[NoiseLevel], i: usize, history: usize) -> StepContext<'_> {
    step_ctx(levels, i, history, &VeSchedule)
}

fn method(
    order: usize,
    algorithm: DpmAlgorithm,
    solver_type: SecondOrder,
    lower_order_final: bool,
) -> DpmSolverMultistep {
    DpmSolverMultistep {
        order,
        algorithm,
        solver_type,
        lower_order_final,
        euler_at_final: false,
        third_order: ThirdOrder::AsLibraries,
    }
}

/// Runs `m` in f64 on a scalar state from `x`, with `predict(x, level)`
/// giving the method's prediction; returns the state after every step.
fn run_f64(
    m: &dyn Method,
    levels: &[NoiseLevel],
    x: f64,
    predict: &dyn Fn(f64, Marginal) -> f64,
) -> Result<Vec<f64>> {
    Ok(run_f64_states(m, levels, &VeSchedule, x, predict)?.0)
}

/// order, lower_order_final, euler_at_final, grid, expected step orders.
type Case<'a> = (usize, bool, bool, &'a [NoiseLevel], [usize; 10]);

#[test]
fn step_orders_follow_the_warm_up_and_final_step_rules() -> Result<()> {
    for algorithm in ALGORITHMS {
        // 10 steps to σ > 0.
        let noisy = uniform(-2.0, 3.0, 10);
        let mut with_clean = noisy.clone();
        with_clean[10] = clean();
        // (order, lower_order_final, euler_at_final, grid, order of each step)
        let cases: [Case<'_>; 7] = [
            (3, true, false, &noisy, [1, 2, 3, 3, 3, 3, 3, 3, 2, 1]),
            (3, false, false, &noisy, [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]),
            (3, false, false, &with_clean, [1, 2, 3, 3, 3, 3, 3, 3, 3, 1]),
            (3, false, true, &noisy, [1, 2, 3, 3, 3, 3, 3, 3, 3, 1]),
            (2, true, false, &noisy, [1, 2, 2, 2, 2, 2, 2, 2, 2, 1]),
            (2, false, false, &noisy, [1, 2, 2, 2, 2, 2, 2, 2, 2, 2]),
            (1, false, false, &noisy, [1; 10]),
        ];
        for (order, lof, eaf, levels, want) in cases {
            let mut m = method(order, algorithm, SecondOrder::Midpoint, lof);
            m.euler_at_final = eaf;
            for (i, &k) in want.iter().enumerate() {
                let c = ctx(levels, i, i.min(m.history()));
                assert_eq!(
                    m.step_order(&c)?,
                    k,
                    "order {order} lof {lof} eaf {eaf} step {i}"
                );
                // The update reads exactly k − 1 past predictions.
                let comb = m.update(&c, 1)?;
                assert_eq!(comb.history.len(), k - 1, "step {i}");
            }
        }
        // 15 steps or more: lower_order_final has no effect.
        let long = uniform(-2.0, 3.0, 15);
        let m = method(3, algorithm, SecondOrder::Heun, true);
        for i in 0..15 {
            let want = (i + 1).min(3);
            assert_eq!(m.step_order(&ctx(&long, i, i.min(2)))?, want, "step {i}");
        }
        // ...but a final σ = 0 still gives a first-order last step.
        let mut long_clean = long.clone();
        long_clean[15] = clean();
        assert_eq!(m.step_order(&ctx(&long_clean, 14, 2))?, 1);
        // Started mid-grid (no history yet), the warm-up starts again.
        assert_eq!(m.step_order(&ctx(&long, 6, 0))?, 1);
        assert_eq!(m.step_order(&ctx(&long, 7, 1))?, 2);
    }
    Ok(())
}

/// `∫_a^b e^{±λ}·(c0 + c1·λ + c2·λ²) dλ` in closed form.
/// Runs `m` with a prediction `p(λ) = c0 + c1·λ + c2·λ²` that ignores the
/// state, and returns, per step, the update minus the exact integral of
/// the step from the same start.
fn step_errors(m: &DpmSolverMultistep, levels: &[NoiseLevel], c: [f64; 3]) -> Result<Vec<f64>> {
    let lam = |mg: Marginal| mg.alpha.ln() - mg.sigma.ln();
    let p = move |_x: f64, mg: Marginal| {
        let l = lam(mg);
        c[0] + c[1] * l + c[2] * l * l
    };
    let states = run_f64(m, levels, 0.7, &p)?;
    Ok((0..levels.len() - 1)
        .map(|i| {
            let (a, b) = (levels[i].marginal, levels[i + 1].marginal);
            let exact = match m.algorithm {
                // x′ = (σ′/σ)·x + σ′·∫ e^λ x̂₀ dλ
                DpmAlgorithm::DataPrediction => {
                    b.sigma / a.sigma * states[i]
                        + b.sigma * weighted_integral(1.0, c, lam(a), lam(b))
                }
                // x′ = (α′/α)·x − α′·∫ e^{−λ} ε̂ dλ
                DpmAlgorithm::NoisePrediction => {
                    b.alpha / a.alpha * states[i]
                        - b.alpha * weighted_integral(-1.0, c, lam(a), lam(b))
                }
            };
            states[i + 1] - exact
        })
        .collect())
}

/// A non-uniform grid in λ.
fn uneven() -> Vec<NoiseLevel> {
    grid(&[-2.5, -1.9, -1.0, -0.6, 0.3, 0.5, 1.4, 2.0, 2.2, 3.1])
}

#[test]
fn first_order_steps_are_exact_for_constant_predictions() -> Result<()> {
    for algorithm in ALGORITHMS {
        for order in 1..=3 {
            let m = method(order, algorithm, SecondOrder::Midpoint, true);
            for (i, e) in step_errors(&m, &uneven(), [0.8, 0.0, 0.0])?
                .iter()
                .enumerate()
            {
                assert!(e.abs() < 1e-12, "{} step {i}: {e}", m.name());
            }
        }
    }
    Ok(())
}

#[test]
fn heun_and_order_three_steps_are_exact_for_linear_predictions() -> Result<()> {
    let levels = uneven();
    let linear = [0.8, -0.45, 0.0];
    for algorithm in ALGORITHMS {
        // Heun form, order 2: every step after the first is exact.
        let m = method(2, algorithm, SecondOrder::Heun, false);
        let errors = step_errors(&m, &levels, linear)?;
        assert!(errors[0].abs() > 1e-4, "the first step is first order");
        for (i, e) in errors.iter().enumerate().skip(1) {
            assert!(e.abs() < 1e-12, "{} step {i}: {e}", m.name());
        }
        // Midpoint form: second order, but not exact for a linear term.
        let m = method(2, algorithm, SecondOrder::Midpoint, false);
        let errors = step_errors(&m, &levels, linear)?;
        for (i, e) in errors.iter().enumerate().skip(1) {
            assert!(e.abs() > 1e-6, "{} step {i}: {e}", m.name());
        }
        // Order 3, either form: exact from the third step on.
        for form in FORMS {
            let m = method(3, algorithm, form, false);
            let errors = step_errors(&m, &levels, linear)?;
            for (i, e) in errors.iter().enumerate().skip(2) {
                assert!(e.abs() < 1e-12, "{} step {i}: {e}", m.name());
            }
        }
    }
    Ok(())
}

/// The order-3 step of diffusers and k-diffusion weights `D₂ = h²·m″/2`
/// with `q₂`, half the exact integral `2·q₂` of the quadratic term: on a
/// quadratic prediction the step is off by exactly `−f·q₂·D₂` (f = −α′,
/// z = −h for DPM-Solver++; f = −σ′, z = h for DPM-Solver).
#[test]
fn order_three_step_keeps_the_libraries_halved_second_difference_term() -> Result<()> {
    let levels = uneven();
    let c2 = 0.3;
    for algorithm in ALGORITHMS {
        let m = method(3, algorithm, SecondOrder::Midpoint, false);
        let errors = step_errors(&m, &levels, [0.8, -0.45, c2])?;
        for (i, e) in errors.iter().enumerate().skip(2) {
            let (a, b) = (levels[i].marginal, levels[i + 1].marginal);
            let h = (b.alpha / b.sigma).ln() - (a.alpha / a.sigma).ln();
            let (f, z) = match algorithm {
                DpmAlgorithm::DataPrediction => (-b.alpha, -h),
                DpmAlgorithm::NoisePrediction => (-b.sigma, h),
            };
            let q2 = (z.exp_m1() - z - 0.5 * z * z) / (z * z);
            let d2 = h * h * c2;
            let want = -f * q2 * d2;
            assert!(
                (e - want).abs() < 1e-10 * (1.0 + want.abs()),
                "{} step {i}: error {e}, expected {want}",
                m.name()
            );
            assert!(
                want.abs() > 1e-6,
                "{} step {i}: the term is visible",
                m.name()
            );
        }
    }
    Ok(())
}

/// The order-3 term `f·q₂(z)·D₂` the libraries leave out (half of the
/// exact quadratic term), from the step's predictions `m₀, m₁, m₂`.
fn missing_d2_term(
    m: &DpmSolverMultistep,
    levels: &[NoiseLevel],
    i: usize,
    preds: [f64; 3],
) -> f64 {
    let lam = |j: usize| {
        let mg = levels[j].marginal;
        mg.alpha.ln() - mg.sigma.ln()
    };
    let (h, h0, h1) = (
        lam(i + 1) - lam(i),
        lam(i) - lam(i - 1),
        lam(i - 1) - lam(i - 2),
    );
    let (r0, r1) = (h0 / h, h1 / h);
    let d2 = ((preds[0] - preds[1]) / r0 - (preds[1] - preds[2]) / r1) / (r0 + r1);
    let to = levels[i + 1].marginal;
    let (f, z) = match m.algorithm {
        DpmAlgorithm::DataPrediction => (-to.alpha, -h),
        DpmAlgorithm::NoisePrediction => (-to.sigma, h),
    };
    f * (z.exp_m1() - z - 0.5 * z * z) / (z * z) * d2
}

/// The error at the end of `steps` uniform steps in λ on `data`, from the
/// exact state; with `exact_start`, two extra levels before the start
/// carry exact predictions, so no warm-up step is taken; with `fix_d2`,
/// the order-3 steps get the full quadratic term.
fn final_error(
    m: &DpmSolverMultistep,
    data: Gaussian,
    steps: usize,
    exact_start: bool,
    fix_d2: bool,
) -> Result<f64> {
    let (l0, l1) = (-2.0, 3.0);
    let dl = (l1 - l0) / steps as f64;
    let start = if exact_start { 2 } else { 0 };
    let levels: Vec<NoiseLevel> = (0..=steps + start)
        .map(|j| vp(l0 + dl * (j as f64 - start as f64)))
        .collect();
    let kind = m.prediction();
    let x_top = 1.9;
    let exact_at = |j: usize| data.exact(x_top, levels[start].marginal, levels[j].marginal);
    let mut history: Vec<f64> = (0..start)
        .rev()
        .map(|j| data.predict(kind, exact_at(j), levels[j].marginal))
        .collect();
    history.truncate(m.history());
    let mut x = x_top;
    for i in start..levels.len() - 1 {
        let p0 = data.predict(kind, x, levels[i].marginal);
        let c = ctx(&levels, i, history.len());
        let comb = m.update(&c, 1)?;
        let mut next = comb.x * x + comb.stages[0] * p0;
        for (k, h) in comb.history.iter().enumerate() {
            next += h * history[k];
        }
        if fix_d2 && m.step_order(&c)? == 3 {
            next += missing_d2_term(m, &levels, i, [p0, history[0], history[1]]);
        }
        x = next;
        history.insert(0, p0);
        history.truncate(m.history());
    }
    Ok((x - exact_at(levels.len() - 1)).abs())
}

/// Observed order between `n` and `2n` steps.
fn observed_order(
    m: &DpmSolverMultistep,
    n: usize,
    exact_start: bool,
    fix_d2: bool,
) -> Result<f64> {
    let data = Gaussian { mu: 0.6, s: 0.4 };
    let e1 = final_error(m, data, n, exact_start, fix_d2)?;
    let e2 = final_error(m, data, 2 * n, exact_start, fix_d2)?;
    assert!(e2 > 1e-12, "{}: error {e2} at the f64 floor", m.name());
    Ok((e1 / e2).log2())
}

#[test]
fn convergence_orders_on_a_gaussian() -> Result<()> {
    for algorithm in ALGORITHMS {
        for form in FORMS {
            // With the usual warm-up; order 3 converges like order 2 (see
            // the next test).
            for (order, want) in [(1, 1.0), (2, 2.0), (3, 2.0)] {
                let m = method(order, algorithm, form, false);
                let p = observed_order(&m, 40, false, false)?;
                assert!((p - want).abs() < 0.3, "{}: observed order {p}", m.name());
            }
        }
    }
    Ok(())
}

/// Even from exact starting values, the libraries' order-3 step converges
/// with order 2; with the full quadratic term it converges with order 3.
#[test]
fn order_three_converges_with_order_two_unless_the_quadratic_term_is_doubled() -> Result<()> {
    for algorithm in ALGORITHMS {
        let m = method(3, algorithm, SecondOrder::Midpoint, false);
        let p = observed_order(&m, 160, true, false)?;
        assert!((p - 2.0).abs() < 0.3, "{}: observed order {p}", m.name());
        let p = observed_order(&m, 640, true, true)?;
        assert!(
            (p - 3.0).abs() < 0.3,
            "{} with 2·q₂: observed order {p}",
            m.name()
        );
    }
    Ok(())
}

/// Data concentrated at one point: `x̂₀` and `ε̂` are constant along the
/// trajectory, so every variant is exact, including a DPM-Solver step to
/// σ = 0 (the finite limit of its first-order coefficient).
#[test]
fn every_variant_is_exact_for_a_point_mass_down_to_sigma_zero() -> Result<()> {
    let data = Gaussian { mu: -1.3, s: 0.0 };
    let mut levels = grid(&[-3.0, -1.7, -0.2, 0.4, 1.9, 2.5]);
    levels.push(clean());
    let x_top = 0.9;
    for algorithm in ALGORITHMS {
        for form in FORMS {
            for order in 1..=3 {
                for lof in [false, true] {
                    let m = method(order, algorithm, form, lof);
                    let kind = m.prediction();
                    let states = run_f64(&m, &levels, x_top, &|x, mg| data.predict(kind, x, mg))?;
                    for (j, x) in states.iter().enumerate() {
                        let want = data.exact(x_top, levels[0].marginal, levels[j].marginal);
                        assert!(
                            (x - want).abs() < 1e-12,
                            "{} level {j}: {x} vs {want}",
                            m.name()
                        );
                    }
                    assert!((states[levels.len() - 1] - data.mu).abs() < 1e-12);
                }
            }
        }
    }
    Ok(())
}

/// Through the driver (f32 state, history ring, fused passes) every
/// variant follows the f64 reference of the same coefficients.
#[test]
fn the_driver_matches_the_f64_reference() -> Result<()> {
    let data = Gaussian { mu: 0.5, s: 0.7 };
    let mut levels = uniform(-2.5, 2.5, 9);
    levels.push(clean());
    let starts = [-1.6f64, 0.2, 2.3];
    let cpu = CpuBackend::new();
    let shared = SamplingGrid::Shared(levels.clone());
    for algorithm in ALGORITHMS {
        for form in FORMS {
            for order in 1..=3 {
                let m = method(order, algorithm, form, true);
                let kind = m.prediction();
                let host: Vec<f32> = starts.iter().map(|&v| v as f32).collect();
                let mut x = cpu.upload(&[3, 1], &host)?;
                let mut state = SolverState::new(&cpu, &m, &VeSchedule, &shared, &x)?;
                while !state.is_done() {
                    let level = state.request()[0].marginal;
                    let xin = cpu.to_host(state.model_input(&x))?;
                    let out: Vec<f32> = xin
                        .iter()
                        .map(|&v| data.x0_hat(v as f64, level) as f32)
                        .collect();
                    let out = cpu.upload(&[3, 1], &out)?;
                    state.advance(&cpu, &Sample, &mut x, &out)?;
                }
                assert_eq!(state.report().nfe, 10);
                let got = cpu.to_host(&x)?;
                for (r, &x0) in starts.iter().enumerate() {
                    let reference = run_f64(&m, &levels, x0, &|x, mg| data.predict(kind, x, mg))?;
                    let want = reference[levels.len() - 1];
                    assert!(
                        (got[r] as f64 - want).abs() < 1e-5 * (1.0 + want.abs()),
                        "{} row {r}: {} vs {want}",
                        m.name(),
                        got[r]
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn names_are_distinct_and_follow_the_options() {
    let mut names = Vec::new();
    for algorithm in ALGORITHMS {
        for form in FORMS {
            for order in 1..=3 {
                names.push(method(order, algorithm, form, true).name().to_string());
            }
        }
    }
    names.sort();
    names.dedup();
    // Order 1 has one name per algorithm: 2 × (1 + 2 + 2).
    assert_eq!(names.len(), 10, "{names:?}");
    let m = DpmSolverMultistep::default();
    assert_eq!((m.name(), m.order(), m.history()), ("dpmpp-2m", 2, 1));
    assert_eq!(m.prediction(), Prediction::Data);
    let m = method(3, DpmAlgorithm::NoisePrediction, SecondOrder::Heun, true);
    assert_eq!((m.name(), m.history()), ("dpm-solver-3m-heun", 2));
    assert_eq!(m.prediction(), Prediction::Noise);
}

#[test]
fn bad_orders_and_contexts_are_typed_errors() {
    for order in [0, 4, 17] {
        let e = DpmSolverMultistep::new(order, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint);
        assert!(
            matches!(e, Err(Error::InvalidArgument { name: "order", .. })),
            "{e:?}"
        );
    }
    assert!(DpmSolverMultistep::new(3, DpmAlgorithm::NoisePrediction, SecondOrder::Heun).is_ok());
    // A struct literal with a bad order fails in the update, not by a panic.
    let levels = uniform(-1.0, 1.0, 4);
    for order in [0, 4] {
        let m = method(
            order,
            DpmAlgorithm::DataPrediction,
            SecondOrder::Heun,
            false,
        );
        let _ = m.history();
        let _ = m.name();
        let e = m.update(&ctx(&levels, 1, 0), 1);
        assert!(
            matches!(e, Err(Error::InvalidArgument { name: "order", .. })),
            "{e:?}"
        );
    }
    // More history than levels before the step.
    let m = method(3, DpmAlgorithm::DataPrediction, SecondOrder::Heun, false);
    let e = m.update(&ctx(&levels, 0, 2), 1);
    assert!(
        matches!(
            e,
            Err(Error::InvalidArgument {
                name: "history",
                ..
            })
        ),
        "{e:?}"
    );
    // A start at σ = 0 gives non-finite coefficients, reported by check().
    let stuck = [clean(), clean()];
    let c = m.update(&ctx(&stuck, 0, 0), 1);
    assert!(c.and_then(|c| c.check(m.name())).is_err());
}

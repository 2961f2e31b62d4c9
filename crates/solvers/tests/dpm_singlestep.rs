//! Singlestep DPM-Solver / DPM-Solver++ and DPM-Solver++(2S): diffusers'
//! order list, exactness where the methods must be exact (a point mass,
//! predictions polynomial in λ), convergence orders on a Gaussian for both
//! stage placements, the grid placement against a direct block-wise
//! implementation, DPM-Solver++(2S) against k-diffusion's formulas, the
//! driver, and typed errors.

mod common;

use common::{
    Gaussian, Sample, VpBySigma, clean, linspace_levels, run_f64_states, step_ctx,
    weighted_integral,
};
use diffuse_core::NoiseSchedule;
use diffuse_solvers::{
    Backend, CpuBackend, DpmAlgorithm, DpmPp2S, DpmSolverSinglestep, Error, Marginal, Method,
    NoiseLevel, Prediction, Result, SamplingGrid, SecondOrder, SinglestepStages, SolverState,
    StepContext,
};

const ALGORITHMS: [DpmAlgorithm; 2] = [DpmAlgorithm::DataPrediction, DpmAlgorithm::NoisePrediction];
const FORMS: [SecondOrder; 2] = [SecondOrder::Midpoint, SecondOrder::Heun];

/// The level with half log-SNR `l = log(α/σ)`.
fn vp(l: f64) -> NoiseLevel {
    let t = (-l).exp();
    NoiseLevel {
        t,
        marginal: Marginal {
            alpha: VpBySigma.alpha(t),
            sigma: VpBySigma.sigma(t),
        },
    }
}

/// `n` steps evenly spaced in `ℓ` from `l0` to `l1`.
fn uniform(l0: f64, l1: f64, n: usize) -> Vec<NoiseLevel> {
    linspace_levels(l0, l1, n, vp)
}

fn ell(m: Marginal) -> f64 {
    m.alpha.ln() - m.sigma.ln()
}

fn ctx(levels: &[NoiseLevel], i: usize, history: usize) -> StepContext<'_> {
    step_ctx(levels, i, history, &VpBySigma)
}

fn singlestep(
    order: usize,
    algorithm: DpmAlgorithm,
    solver_type: SecondOrder,
    stages: SinglestepStages,
) -> DpmSolverSinglestep {
    DpmSolverSinglestep {
        order,
        algorithm,
        solver_type,
        stages,
    }
}

const LAMBDA: SinglestepStages = SinglestepStages::Lambda;
const GRID: SinglestepStages = SinglestepStages::Grid {
    lower_order_final: false,
};
const GRID_LOF: SinglestepStages = SinglestepStages::Grid {
    lower_order_final: true,
};

/// Runs `m` in f64 on a scalar state from `x` with `predict(x, level)`
/// giving the method's prediction (the driver's logic, without tensors);
/// returns the final state and the number of model evaluations.
fn run_f64(
    m: &dyn Method,
    levels: &[NoiseLevel],
    x: f64,
    predict: &dyn Fn(f64, Marginal) -> f64,
) -> Result<(f64, usize)> {
    let (states, nfe) = run_f64_states(m, levels, &VpBySigma, x, predict)?;
    Ok((states[states.len() - 1], nfe))
}

/// diffusers' `get_order_list` with `set_timesteps`' forcing of
/// `lower_order_final` and `final_sigmas_type = "zero"`'s first-order last
/// step, written out as lists.
fn diffusers_orders(order: usize, steps: usize, lof: bool, clean_end: bool) -> Vec<usize> {
    let lof = lof || !steps.is_multiple_of(order) || clean_end;
    let rep = |pattern: &[usize], times: usize| -> Vec<usize> {
        (0..times).flat_map(|_| pattern.to_vec()).collect()
    };
    let mut orders = match (order, lof) {
        (1, _) => vec![1; steps],
        (2, true) if steps.is_multiple_of(2) => [rep(&[1, 2], steps / 2 - 1), vec![1, 1]].concat(),
        (2, true) => [rep(&[1, 2], steps / 2), vec![1]].concat(),
        (3, true) if steps.is_multiple_of(3) => {
            [rep(&[1, 2, 3], steps / 3 - 1), vec![1, 2, 1]].concat()
        }
        (3, true) if steps % 3 == 1 => [rep(&[1, 2, 3], steps / 3), vec![1]].concat(),
        (3, true) => [rep(&[1, 2, 3], steps / 3), vec![1, 2]].concat(),
        (k, _) => rep(&(1..=k).collect::<Vec<_>>(), steps / k),
    };
    if clean_end && let Some(last) = orders.last_mut() {
        *last = 1;
    }
    orders
}

#[test]
fn grid_orders_are_diffusers_order_list() -> Result<()> {
    for order in 1..=3 {
        for steps in 1..=13 {
            for lof in [false, true] {
                for clean_end in [false, true] {
                    let m = singlestep(
                        order,
                        DpmAlgorithm::DataPrediction,
                        SecondOrder::Midpoint,
                        SinglestepStages::Grid {
                            lower_order_final: lof,
                        },
                    );
                    assert_eq!(
                        m.grid_orders(steps, clean_end)?,
                        diffusers_orders(order, steps, lof, clean_end),
                        "order {order} steps {steps} lof {lof} clean {clean_end}"
                    );
                }
            }
        }
    }
    let order2 = singlestep(2, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint, GRID);
    // The conformance case: 10 steps to σ = 0.
    assert_eq!(
        order2.grid_orders(10, true)?,
        [1, 2, 1, 2, 1, 2, 1, 2, 1, 1]
    );
    let order3 = singlestep(3, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint, GRID);
    // 3n − 1 steps to σ = 0: the partial block's order-2 step would reach
    // σ = 0, so it is first order (diffusers issue 9007).
    assert_eq!(order3.grid_orders(5, true)?, [1, 2, 3, 1, 1]);
    assert_eq!(order3.grid_orders(9, false)?, [1, 2, 3, 1, 2, 3, 1, 2, 3]);
    // The papers' placement: full order except a last step to σ = 0.
    let lambda = singlestep(
        3,
        DpmAlgorithm::DataPrediction,
        SecondOrder::Midpoint,
        LAMBDA,
    );
    assert_eq!(lambda.grid_orders(4, true)?, [3, 3, 3, 1]);
    assert_eq!(lambda.grid_orders(4, false)?, [3, 3, 3, 3]);
    Ok(())
}

#[test]
fn the_grid_placement_reads_exactly_the_block_history() -> Result<()> {
    let mut levels = uniform(-2.0, 3.0, 8);
    levels[8] = clean();
    for algorithm in ALGORITHMS {
        let m = singlestep(3, algorithm, SecondOrder::Heun, GRID);
        let orders = m.grid_orders(8, true)?;
        assert_eq!(orders, [1, 2, 3, 1, 2, 3, 1, 1]);
        for (i, &k) in orders.iter().enumerate() {
            let c = m.update(&ctx(&levels, i, i.min(2)), 1)?;
            assert_eq!(c.history.len(), k - 1, "step {i}");
            assert_eq!(c.stages.len(), 1, "step {i}");
            c.check(m.name())?;
        }
        assert!(m.stages(&ctx(&levels, 3, 2))?.is_empty());
    }
    Ok(())
}

/// The grid placement written as diffusers runs it: the block's base state
/// is kept and every step updates from it.
fn grid_direct(m: &DpmSolverSinglestep, levels: &[NoiseLevel], x: f64, g: Gaussian) -> Result<f64> {
    let kind = m.prediction();
    let steps = levels.len() - 1;
    let orders = m.grid_orders(steps, levels[steps].marginal.sigma == 0.0)?;
    let mut x = x;
    let mut base = x;
    let mut preds: Vec<f64> = Vec::new();
    for (i, &k) in orders.iter().enumerate() {
        let p = g.predict(kind, x, levels[i].marginal);
        if k == 1 {
            base = x;
            preds.clear();
        }
        preds.push(p);
        let (b, t) = (levels[i + 1 - k].marginal, levels[i + 1].marginal);
        let h = ell(t) - ell(b);
        let r: Vec<f64> = (0..k)
            .map(|j| (ell(levels[i + 1 - k + j].marginal) - ell(b)) / h)
            .collect();
        // The update in diffusers' own terms (D0, D1, D2), without
        // series or limits: only steps with σ′ > 0 of order ≥ 2 here.
        let (a, c1, c2, c3) = match m.algorithm {
            DpmAlgorithm::DataPrediction => (
                t.sigma / b.sigma,
                -t.alpha * (-h).exp_m1(),
                t.alpha * ((-h).exp_m1() / h + 1.0),
                -t.alpha * (((-h).exp_m1() + h) / (h * h) - 0.5),
            ),
            DpmAlgorithm::NoisePrediction => (
                t.alpha / b.alpha,
                -t.sigma * h.exp_m1(),
                -t.sigma * (h.exp_m1() / h - 1.0),
                -t.sigma * ((h.exp_m1() - h) / (h * h) - 0.5),
            ),
        };
        x = match k {
            1 => {
                let c1 = if t.sigma == 0.0 {
                    match m.algorithm {
                        DpmAlgorithm::DataPrediction => t.alpha,
                        DpmAlgorithm::NoisePrediction => -t.alpha * b.sigma / b.alpha,
                    }
                } else {
                    c1
                };
                a * base + c1 * preds[0]
            }
            2 => {
                let d1 = (preds[1] - preds[0]) / r[1];
                let w = match m.solver_type {
                    SecondOrder::Midpoint => 0.5 * c1,
                    SecondOrder::Heun => c2,
                };
                a * base + c1 * preds[0] + w * d1
            }
            _ => {
                let e1 = (preds[1] - preds[0]) / r[1];
                let e2 = (preds[2] - preds[0]) / r[2];
                match m.solver_type {
                    SecondOrder::Midpoint => a * base + c1 * preds[0] + c2 * e2,
                    SecondOrder::Heun => {
                        let d1 = (r[2] * e1 - r[1] * e2) / (r[2] - r[1]);
                        let d2 = 2.0 * (e2 - e1) / (r[2] - r[1]);
                        a * base + c1 * preds[0] + c2 * d1 + c3 * d2
                    }
                }
            }
        };
    }
    Ok(x)
}

#[test]
fn the_grid_placement_equals_updates_from_the_block_base() -> Result<()> {
    let g = Gaussian { mu: 0.8, s: 0.5 };
    // An uneven grid, ending noisy and clean.
    let ls = [-2.3, -1.1, -0.6, 0.4, 0.9, 1.7, 2.0, 2.8, 3.1, 3.9];
    let noisy: Vec<NoiseLevel> = ls.iter().map(|&l| vp(l)).collect();
    let mut with_clean = noisy.clone();
    with_clean.push(clean());
    for levels in [&noisy, &with_clean] {
        for order in 1..=3 {
            for algorithm in ALGORITHMS {
                for form in FORMS {
                    for stages in [GRID, GRID_LOF] {
                        let m = singlestep(order, algorithm, form, stages);
                        let x0 = 1.3 / levels[0].marginal.alpha;
                        let predict = |x: f64, mg: Marginal| g.predict(m.prediction(), x, mg);
                        let (got, nfe) = run_f64(&m, levels, x0, &predict)?;
                        let want = grid_direct(&m, levels, x0, g)?;
                        assert_eq!(nfe, levels.len() - 1);
                        assert!(
                            (got - want).abs() < 1e-12 * want.abs().max(1.0),
                            "{} on {} levels: {got} vs {want}",
                            m.name(),
                            levels.len()
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_variant_is_exact_for_a_point_mass() -> Result<()> {
    // x̂₀ = μ and ε̂ = (x − α·μ)/σ are constant along the exact trajectory.
    let g = Gaussian { mu: -0.7, s: 0.0 };
    let noisy = uniform(-2.5, 3.0, 6);
    let mut with_clean = noisy.clone();
    with_clean.push(clean());
    for levels in [&noisy, &with_clean] {
        for order in 1..=3 {
            for algorithm in ALGORITHMS {
                for form in FORMS {
                    for stages in [LAMBDA, GRID, GRID_LOF] {
                        let m = singlestep(order, algorithm, form, stages);
                        let (first, last) = (levels[0].marginal, levels[levels.len() - 1].marginal);
                        let x0 = 2.1;
                        let predict = |x: f64, mg: Marginal| g.predict(m.prediction(), x, mg);
                        let (got, _) = run_f64(&m, levels, x0, &predict)?;
                        let want = g.exact(x0, first, last);
                        assert!((got - want).abs() < 1e-12, "{}: {got} vs {want}", m.name());
                    }
                }
            }
        }
    }
    Ok(())
}

/// `∫_a^b e^{±λ}·(c0 + c1·λ + c2·λ²) dλ` in closed form.
/// The error of a whole run of `m` with a prediction `c0 + c1·ℓ + c2·ℓ²`
/// that ignores the state, against the exact integral.
fn polynomial_error(m: &DpmSolverSinglestep, levels: &[NoiseLevel], c: [f64; 3]) -> Result<f64> {
    let p = move |_x: f64, mg: Marginal| {
        let l = ell(mg);
        c[0] + c[1] * l + c[2] * l * l
    };
    let x0 = 0.7;
    let (got, _) = run_f64(m, levels, x0, &p)?;
    let (a, b) = (levels[0].marginal, levels[levels.len() - 1].marginal);
    let want = match m.algorithm {
        // x′ = (σ′/σ)·x + σ′·∫ e^ℓ x̂₀ dℓ
        DpmAlgorithm::DataPrediction => {
            b.sigma / a.sigma * x0 + b.sigma * weighted_integral(1.0, c, ell(a), ell(b))
        }
        // x′ = (α′/α)·x − α′·∫ e^{−ℓ} ε̂ dℓ
        DpmAlgorithm::NoisePrediction => {
            b.alpha / a.alpha * x0 - b.alpha * weighted_integral(-1.0, c, ell(a), ell(b))
        }
    };
    Ok((got - want).abs())
}

#[test]
fn updates_are_exact_for_predictions_polynomial_in_lambda() -> Result<()> {
    // Uneven steps; 6 steps, a multiple of every order.
    let levels: Vec<NoiseLevel> = [-1.5, -0.9, 0.2, 0.5, 1.4, 2.3, 2.6]
        .iter()
        .map(|&l| vp(l))
        .collect();
    let constant = [0.9, 0.0, 0.0];
    let linear = [0.9, -0.6, 0.0];
    let quadratic = [0.9, -0.6, 0.35];
    for algorithm in ALGORITHMS {
        for stages in [LAMBDA, GRID] {
            let exact = |order, form, c| -> Result<f64> {
                polynomial_error(&singlestep(order, algorithm, form, stages), &levels, c)
            };
            for form in FORMS {
                assert!(exact(1, form, constant)? < 1e-12);
                assert!(exact(2, form, constant)? < 1e-12);
                assert!(exact(3, form, linear)? < 1e-12);
            }
            assert!(exact(2, SecondOrder::Heun, linear)? < 1e-12);
            assert!(exact(3, SecondOrder::Heun, quadratic)? < 1e-12);
            // ...and the lower forms are not exact one degree up.
            assert!(exact(1, SecondOrder::Midpoint, linear)? > 1e-4);
            assert!(exact(2, SecondOrder::Midpoint, linear)? > 1e-4);
            assert!(exact(2, SecondOrder::Heun, quadratic)? > 1e-4);
            assert!(exact(3, SecondOrder::Midpoint, quadratic)? > 1e-6);
        }
    }
    Ok(())
}

/// The observed order of convergence of `m` on a Gaussian from `n` and
/// `2n` steps uniform in `ℓ`, against the exact solution.
fn observed_order(m: &DpmSolverSinglestep, g: Gaussian, n: usize) -> Result<(f64, f64)> {
    let (l0, l1) = (-2.5, 2.5);
    let err = |steps| -> Result<f64> {
        let levels = uniform(l0, l1, steps);
        let x0 = 1.7;
        let predict = |x: f64, mg: Marginal| g.predict(m.prediction(), x, mg);
        let (got, _) = run_f64(m, &levels, x0, &predict)?;
        Ok((got - g.exact(x0, levels[0].marginal, levels[steps].marginal)).abs())
    };
    let (e1, e2) = (err(n)?, err(2 * n)?);
    Ok(((e1 / e2).log2(), e2))
}

#[test]
fn both_placements_converge_with_their_order() -> Result<()> {
    let g = Gaussian { mu: 0.6, s: 0.35 };
    for algorithm in ALGORITHMS {
        for form in FORMS {
            for stages in [LAMBDA, GRID] {
                for order in 1..=3 {
                    let m = singlestep(order, algorithm, form, stages);
                    // 24 → 48 steps (48 → 96 grid levels, one evaluation
                    // each): third order is reached from about 24 steps
                    // (observed 2.85 for dpmpp-3s at 24, 2.66 at 12).
                    let n = match stages {
                        SinglestepStages::Lambda => 24,
                        SinglestepStages::Grid { .. } => 48,
                    };
                    let (p, e) = observed_order(&m, g, n)?;
                    assert!(
                        (p - order as f64).abs() < 0.3,
                        "{}: observed order {p:.2} (error {e:.2e})",
                        m.name()
                    );
                }
            }
        }
    }
    Ok(())
}

#[test]
fn dpmpp_2s_is_k_diffusion_2s_at_eta_0() -> Result<()> {
    // k-diffusion's σ grid (α = 1): the stage at √(σ·σ′), x_2 = (σ_s/σ)·x −
    // (e^{−h/2} − 1)·D, x′ = (σ′/σ)·x − (e^{−h} − 1)·D_2; to σ = 0, x′ = D.
    let sigmas = [80.0, 9.7, 1.5, 0.12, 0.0];
    let levels = SamplingGrid::from_sigmas(&diffuse_solvers::VeSchedule, &sigmas)?;
    let levels = levels.row(0);
    let m = DpmPp2S;
    assert_eq!((m.name(), m.order(), m.nfe_per_step()), ("dpmpp-2s", 2, 2));
    assert_eq!(m.prediction(), Prediction::Data);
    for i in 0..sigmas.len() - 1 {
        let c = StepContext {
            i,
            levels,
            history: 0,
            schedule: &diffuse_solvers::VeSchedule,
        };
        let (s, s1) = (sigmas[i], sigmas[i + 1]);
        let stages = m.stages(&c)?;
        if s1 == 0.0 {
            assert!(stages.is_empty());
            let u = m.update(&c, 1)?;
            assert_eq!((u.x, u.stages.as_slice()), (0.0, &[1.0][..]));
            continue;
        }
        let mid = (s * s1).sqrt();
        assert_eq!(stages.len(), 1);
        assert!((stages[0].marginal.sigma - mid).abs() < 1e-13 * mid);
        assert!((stages[0].marginal.alpha - 1.0).abs() < 1e-15);
        let h = s.ln() - s1.ln();
        let si = m.stage_input(&c, 1)?;
        assert!((si.x - mid / s).abs() < 1e-14);
        assert!((si.stages[0] + (-0.5 * h).exp_m1()).abs() < 1e-14);
        let u = m.update(&c, 2)?;
        assert!((u.x - s1 / s).abs() < 1e-14);
        assert!(u.stages[0].abs() < 1e-13, "P_0 enters only the stage");
        assert!((u.stages[1] + (-h).exp_m1()).abs() < 1e-13);
        // The same as the general singlestep method.
        let general = singlestep(
            2,
            DpmAlgorithm::DataPrediction,
            SecondOrder::Midpoint,
            LAMBDA,
        );
        assert_eq!(general.name(), "dpmpp-2s");
        assert_eq!(general.update(&c, 2)?, u);
        assert_eq!(general.stage_input(&c, 1)?, si);
    }
    Ok(())
}

#[test]
fn dpm_solver_to_sigma_zero_is_the_ddim_step() -> Result<()> {
    let levels = [vp(1.2), clean()];
    for stages in [LAMBDA, GRID, GRID_LOF] {
        for order in 1..=3 {
            let m = singlestep(
                order,
                DpmAlgorithm::NoisePrediction,
                SecondOrder::Heun,
                stages,
            );
            let c = ctx(&levels, 0, 0);
            assert!(m.stages(&c)?.is_empty());
            let u = m.update(&c, 1)?;
            // x′ = (α′/α)·x + c·ε̂ with c = −α′·σ/α is α′·x̂₀.
            let from = levels[0].marginal;
            assert!((u.x - 1.0 / from.alpha).abs() < 1e-15);
            assert!((u.stages[0] + from.sigma / from.alpha).abs() < 1e-15);
        }
    }
    Ok(())
}

/// Runs `m` through the driver on the CPU for rows starting at `xs`.
fn run_driver(
    m: &dyn Method,
    levels: &[NoiseLevel],
    xs: &[f64],
    g: Gaussian,
) -> Result<(Vec<f64>, usize)> {
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::Shared(levels.to_vec());
    let host: Vec<f32> = xs.iter().map(|&v| v as f32).collect();
    let mut x = cpu.upload(&[xs.len(), 1], &host)?;
    let mut state = SolverState::new(&cpu, m, &VpBySigma, &grid, &x)?;
    while !state.is_done() {
        let level = state.request()[0].marginal;
        let input = cpu.to_host(state.model_input(&x))?;
        let out: Vec<f32> = input
            .iter()
            .map(|&v| g.x0_hat(f64::from(v), level) as f32)
            .collect();
        let out = cpu.upload(&[xs.len(), 1], &out)?;
        state.advance(&cpu, &Sample, &mut x, &out)?;
    }
    let nfe = state.report().nfe;
    Ok((
        cpu.to_host(&x)?.iter().map(|&v| f64::from(v)).collect(),
        nfe,
    ))
}

#[test]
fn the_driver_runs_both_placements() -> Result<()> {
    let g = Gaussian { mu: 0.4, s: 0.6 };
    let mut levels = uniform(-2.0, 3.0, 7);
    levels.push(clean());
    let xs = [-1.5, 0.3, 2.2];
    for algorithm in ALGORITHMS {
        for (m, nfe) in [
            // 7 steps of 3 evaluations, then one to σ = 0.
            (singlestep(3, algorithm, SecondOrder::Midpoint, LAMBDA), 22),
            (singlestep(2, algorithm, SecondOrder::Heun, LAMBDA), 15),
            // One evaluation per level.
            (singlestep(3, algorithm, SecondOrder::Heun, GRID), 8),
            (singlestep(2, algorithm, SecondOrder::Midpoint, GRID_LOF), 8),
        ] {
            let (got, n) = run_driver(&m, &levels, &xs, g)?;
            assert_eq!(n, nfe, "{}", m.name());
            for (&x0, &v) in xs.iter().zip(&got) {
                let predict = |x: f64, mg: Marginal| g.predict(m.prediction(), x, mg);
                let (want, _) = run_f64(&m, &levels, x0, &predict)?;
                assert!((v - want).abs() < 2e-5, "{}: {v} vs {want}", m.name());
            }
        }
    }
    let (got, n) = run_driver(&DpmPp2S, &levels, &xs, g)?;
    assert_eq!(n, 15);
    let first = levels[0].marginal;
    for (&x0, &v) in xs.iter().zip(&got) {
        let exact = g.exact(x0, first, clean().marginal);
        assert!((v - exact).abs() < 0.05, "{v} vs exact {exact}");
    }
    Ok(())
}

#[test]
fn bad_options_are_typed_errors() -> Result<()> {
    let levels = uniform(-1.0, 2.0, 4);
    for order in [0, 4] {
        assert!(matches!(
            DpmSolverSinglestep::new(
                order,
                DpmAlgorithm::DataPrediction,
                SecondOrder::Midpoint,
                LAMBDA
            ),
            Err(Error::InvalidArgument { name: "order", .. })
        ));
        for stages in [LAMBDA, GRID] {
            let m = singlestep(
                order,
                DpmAlgorithm::NoisePrediction,
                SecondOrder::Heun,
                stages,
            );
            let c = ctx(&levels, 1, 1);
            assert!(matches!(
                m.stages(&c),
                Err(Error::InvalidArgument { name: "order", .. })
            ));
            assert!(matches!(
                m.update(&c, 1),
                Err(Error::InvalidArgument { name: "order", .. })
            ));
            assert!(m.grid_orders(4, false).is_err());
            // The driver reports it before any model call.
            let cpu = CpuBackend::new();
            let grid = SamplingGrid::Shared(levels.clone());
            let x = cpu.upload(&[1, 1], &[0.5])?;
            assert!(SolverState::new(&cpu, &m, &VpBySigma, &grid, &x).is_err());
        }
    }
    // A grid step of order 3 without its block's predictions.
    let m = singlestep(3, DpmAlgorithm::DataPrediction, SecondOrder::Heun, GRID);
    assert!(matches!(
        m.update(&ctx(&levels, 2, 1), 1),
        Err(Error::InvalidArgument {
            name: "history",
            ..
        })
    ));
    // Stages the step does not have, and a stage count that does not fit.
    let m = singlestep(
        2,
        DpmAlgorithm::DataPrediction,
        SecondOrder::Midpoint,
        LAMBDA,
    );
    let c = ctx(&levels, 0, 0);
    assert!(matches!(m.stage_input(&c, 0), Err(Error::Unsupported(_))));
    assert!(matches!(m.stage_input(&c, 2), Err(Error::Unsupported(_))));
    assert!(matches!(
        m.update(&c, 3),
        Err(Error::InvalidArgument { name: "stages", .. })
    ));
    let g = singlestep(2, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint, GRID);
    assert!(matches!(g.stage_input(&c, 1), Err(Error::Unsupported(_))));
    // Two equal levels (h = 0) give non-finite coefficients, not a panic.
    let flat = [vp(0.5), vp(0.5), vp(1.0)];
    let m = singlestep(2, DpmAlgorithm::DataPrediction, SecondOrder::Heun, GRID);
    let u = m.update(&ctx(&flat, 1, 1), 1)?;
    assert!(matches!(u.check(m.name()), Err(Error::NonFinite(_))));
    Ok(())
}

#[test]
fn names_and_shapes() {
    use DpmAlgorithm::{DataPrediction as D, NoisePrediction as N};
    use SecondOrder::{Heun as H, Midpoint as M};
    let cases = [
        (singlestep(3, D, M, LAMBDA), "dpmpp-3s", 3, 0),
        (singlestep(2, N, H, LAMBDA), "dpm-solver-2s-heun", 2, 0),
        (singlestep(1, N, M, LAMBDA), "dpm-solver-1s", 1, 0),
        (singlestep(2, D, M, GRID_LOF), "dpmpp-2s-grid", 1, 1),
        (singlestep(3, N, H, GRID), "dpm-solver-3s-heun-grid", 1, 2),
    ];
    for (m, name, nfe, history) in cases {
        assert_eq!(m.name(), name);
        assert_eq!(m.nfe_per_step(), nfe, "{name}");
        assert_eq!(m.history(), history, "{name}");
    }
    assert_eq!(DpmSolverSinglestep::default().name(), "dpmpp-3s");
}

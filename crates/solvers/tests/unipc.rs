//! UniPC: the first step (DDIM), exactness of the predictor and corrector
//! on polynomial predictions, the composition of corrector and predictor in
//! one update, observed orders of convergence on a Gaussian problem with a
//! closed-form flow, the run through the driver (kept corrected state,
//! per-row grids, NFE), the finite step to σ = 0 (where diffusers' `bh1`
//! gives NaN), and typed errors.

mod common;

use common::{Gaussian, Sample, linspace_levels, step_ctx, vp_level};
use diffuse_solvers::{
    Backend, Combination, CpuBackend, Error, Marginal, Method, NoiseLevel, Prediction, Result,
    SamplingGrid, SolverState, StepContext, UniPc, UniPcVariant, VeSchedule,
};

const VARIANTS: [UniPcVariant; 2] = [UniPcVariant::Bh1, UniPcVariant::Bh2];

/// Data `N(MU, S²)` in every coordinate.
const MU: f64 = 0.7;
const S: f64 = 0.4;

/// The data distribution with its exact denoiser and flow.
const DATA: Gaussian = Gaussian { mu: MU, s: S };

/// The level with half log-SNR `l = log(α/σ)`.
fn at(l: f64) -> NoiseLevel {
    vp_level((-l).exp())
}

/// `steps` steps uniform in `ℓ` from `l0` to `l1`, then a step to σ = 0
/// if `clean`.
fn levels(l0: f64, l1: f64, steps: usize, clean: bool) -> Vec<NoiseLevel> {
    let mut v = linspace_levels(l0, l1, steps, at);
    if clean {
        v.push(vp_level(0.0));
    }
    v
}

/// Starting points at level `first`: quantiles of the marginal there.
fn start(first: Marginal) -> Vec<f64> {
    let sd = (first.alpha * first.alpha * S * S + first.sigma * first.sigma).sqrt();
    [-2.1, -0.6, 0.3, 1.7]
        .iter()
        .map(|z| first.alpha * MU + sd * z)
        .collect()
}

fn unipc(order: usize, variant: UniPcVariant, predict_x0: bool, lof: bool) -> UniPc {
    let mut m = UniPc::new(order, variant).unwrap();
    m.predict_x0 = predict_x0;
    m.lower_order_final = lof;
    m
}

fn ctx(levels: &[NoiseLevel], i: usize) -> StepContext<'_> {
    step_ctx(levels, i, i, &VeSchedule)
}

/// Evaluates `c` on scalars (a NaN `x` or `prev` marks a value that must
/// not be used).
fn apply(c: &Combination, x: f64, prev: f64, p0: f64, hist: &[f64]) -> f64 {
    assert!(c.history.len() <= hist.len(), "{c:?}");
    let term = |c: f64, v: f64| if c == 0.0 { 0.0 } else { c * v };
    term(c.x, x)
        + term(c.x_prev, prev)
        + c.stages.first().copied().unwrap_or(0.0) * p0
        + c.history.iter().zip(hist).map(|(a, b)| a * b).sum::<f64>()
}

/// The prediction the method combines at `m`, from the exact denoiser.
fn prediction(method: &dyn Method, m: Marginal, x: f64) -> f64 {
    let x0 = DATA.x0_hat(x, m);
    match method.prediction() {
        Prediction::Data => x0,
        Prediction::Noise => (x - m.alpha * x0) / m.sigma,
    }
}

/// The method's recipe run in f64 on one scalar, as the driver runs it
/// (update and kept state from the same quantities, history newest
/// first). The first `exact` steps are replaced by the exact flow (state,
/// history and kept state), to measure the order of the main steps
/// without the lower-order warm-up.
fn run_f64(method: &dyn Method, grid: &[NoiseLevel], x0: f64, exact: usize) -> f64 {
    let first = grid[0].marginal;
    let (mut x, mut prev) = (x0, f64::NAN);
    let mut hist: Vec<f64> = Vec::new();
    for i in 0..grid.len() - 1 {
        let p0 = prediction(method, grid[i].marginal, x);
        if i < exact {
            prev = x;
            x = DATA.exact(x0, first, grid[i + 1].marginal);
        } else {
            let ctx = StepContext {
                i,
                levels: grid,
                history: hist.len(),
                schedule: &VeSchedule,
            };
            let c = method.update(&ctx, 1).unwrap();
            let keep = method.keep_state(&ctx, 1).unwrap();
            let next = apply(&c, x, prev, p0, &hist);
            prev = keep.map_or(f64::NAN, |k| apply(&k, x, prev, p0, &hist));
            x = next;
        }
        hist.insert(0, p0);
        hist.truncate(method.history());
    }
    x
}

/// Max |x − exact flow| of the f64 recipe on `grid` over a few quantiles.
fn error_f64(method: &dyn Method, grid: &[NoiseLevel], exact: usize) -> f64 {
    let (first, last) = (grid[0].marginal, grid[grid.len() - 1].marginal);
    start(first)
        .iter()
        .map(|&s| (run_f64(method, grid, s, exact) - DATA.exact(s, first, last)).abs())
        .fold(0.0, |a, e| if e.is_nan() || e > a { e } else { a })
}

/// log₂ of the error ratio from `n` to `2n` uniform steps on ℓ ∈ [−1.5, 3.5].
fn observed_order(method: &UniPc, n: usize, exact: usize) -> f64 {
    let e1 = error_f64(method, &levels(-1.5, 3.5, n, false), exact);
    let e2 = error_f64(method, &levels(-1.5, 3.5, 2 * n, false), exact);
    assert!(e1.is_finite() && e2 > 0.0, "{e1} {e2}");
    (e1 / e2).log2()
}

/// Runs `method` through the driver on the CPU (f32 state) from `x` with
/// the exact denoiser; returns the final rows and the NFE.
fn run(method: &dyn Method, grid: &SamplingGrid, x: &[Vec<f64>]) -> Result<(Vec<Vec<f64>>, usize)> {
    let cpu = CpuBackend::new();
    let d = x[0].len();
    let flat: Vec<f32> = x.iter().flatten().map(|&v| v as f32).collect();
    let mut xt = cpu.upload(&[x.len(), d], &flat)?;
    let mut state = SolverState::new(&cpu, method, &VeSchedule, grid, &xt)?;
    while !state.is_done() {
        let input = cpu.to_host(state.model_input(&xt))?;
        let out: Vec<f32> = input
            .chunks(d)
            .zip(state.request())
            .flat_map(|(row, l)| {
                row.iter()
                    .map(|&v| DATA.x0_hat(v as f64, l.marginal) as f32)
            })
            .collect();
        let out = cpu.upload(&[x.len(), d], &out)?;
        state.advance(&cpu, &Sample, &mut xt, &out)?;
    }
    let nfe = state.report().nfe;
    let host = cpu.to_host(&xt)?;
    Ok((
        host.chunks(d)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect(),
        nfe,
    ))
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn first_step_is_ddim_and_keeps_the_state() {
    let grid = levels(-2.0, 1.0, 4, false);
    let (m, n) = (grid[0].marginal, grid[1].marginal);
    for order in 1..=3 {
        for variant in VARIANTS {
            for px in [true, false] {
                let method = unipc(order, variant, px, true);
                let c = method.update(&ctx(&grid, 0), 1).unwrap();
                let (x, p) = if px {
                    (n.sigma / m.sigma, n.alpha - n.sigma * m.alpha / m.sigma)
                } else {
                    (n.alpha / m.alpha, n.sigma - n.alpha * m.sigma / m.alpha)
                };
                assert!(
                    close(c.x, x, 1e-14) && close(c.stages[0], p, 1e-14),
                    "{c:?}"
                );
                assert!(c.x_prev == 0.0 && c.history.iter().all(|&h| h == 0.0));
                // Step 1 corrects x_1, so step 0 keeps x_1 itself…
                let keep = method.keep_state(&ctx(&grid, 0), 1).unwrap();
                assert_eq!(keep, Some(Combination::new(1.0, &[])));
                // …unless the corrector is disabled there.
                let mut off = method.clone();
                off.disable_corrector = vec![0];
                assert_eq!(off.keep_state(&ctx(&grid, 0), 1).unwrap(), None);
                let c1 = off.update(&ctx(&grid, 1), 1).unwrap();
                assert_eq!(c1.x_prev, 0.0);
                // The last step keeps nothing.
                assert_eq!(method.keep_state(&ctx(&grid, 3), 1).unwrap(), None);
            }
        }
    }
}

/// `x_t` of the ODE with the prediction `P(ℓ)` (a polynomial, coefficients
/// lowest first) from `(ℓ_s, x_s)`: data `x_t/σ_t = x_s/σ_s + ∫ e^ℓ P`,
/// noise `x_t/α_t = x_s/α_s − ∫ e^{−ℓ} P`, integrated by parts.
fn poly_flow(px: bool, p: &[f64], from: Marginal, to: Marginal, x: f64) -> f64 {
    let eval = |q: &[f64], l: f64| q.iter().rev().fold(0.0, |a, c| a * l + c);
    let deriv = |q: &[f64]| -> Vec<f64> {
        q.iter()
            .enumerate()
            .skip(1)
            .map(|(k, c)| k as f64 * c)
            .collect()
    };
    // Σ_k s^k P^(k)(ℓ): s = −1 for ∫ e^ℓ P, s = +1 for ∫ e^{−ℓ} P.
    let series = |l: f64, s: f64| {
        let (mut q, mut sum, mut sign) = (p.to_vec(), 0.0, 1.0);
        while !q.is_empty() {
            sum += sign * eval(&q, l);
            sign *= s;
            q = deriv(&q);
        }
        sum
    };
    let (ls, lt) = ((from.alpha / from.sigma).ln(), (to.alpha / to.sigma).ln());
    if px {
        let integral = lt.exp() * series(lt, -1.0) - ls.exp() * series(ls, -1.0);
        to.sigma * (x / from.sigma + integral)
    } else {
        let integral = -(-lt).exp() * series(lt, 1.0) + (-ls).exp() * series(ls, 1.0);
        to.alpha * (x / from.alpha - integral)
    }
}

#[test]
fn predictor_and_corrector_are_exact_on_polynomial_predictions() {
    // Uneven steps in ℓ, so that the r_k are not trivial.
    let ls = [-1.3, -0.8, -0.5, 0.1, 0.4, 1.2, 1.5];
    let grid: Vec<NoiseLevel> = ls.iter().map(|&l| at(l)).collect();
    let cubic = [0.3, -0.7, 0.45, 0.2];
    let m = |k: usize| grid[k].marginal;
    for variant in VARIANTS {
        for px in [true, false] {
            let pred = |p: &[f64], k: usize| p.iter().rev().fold(0.0, |a, c| a * ls[k] + c);
            // UniP-p (corrector off at that step) is exact for degree p − 1:
            // step 3 of order 3, step 1 of order 1 (first order at step 0
            // is the DDIM step, exact for constants).
            for (order, i, degree) in [(3, 3, 2), (1, 2, 0)] {
                let p = &cubic[..=degree];
                let mut method = unipc(order, variant, px, false);
                method.disable_corrector = vec![i - 1];
                let c = method.update(&ctx(&grid, i), 1).unwrap();
                let hist: Vec<f64> = (1..=i).map(|k| pred(p, i - k)).collect();
                let x = 0.83;
                let got = apply(&c, x, f64::NAN, pred(p, i), &hist);
                let want = poly_flow(px, p, m(i), m(i + 1), x);
                assert!(
                    close(got, want, 1e-12),
                    "UniP-{order} {variant:?} {px}: {got} {want}"
                );
            }
            // UniC-q (kept state at step i, q = the order of step i − 1) is
            // exact for degree q when its weights are solved (q ≥ 2).
            for (order, i, degree) in [(2, 2, 2), (3, 2, 2), (3, 3, 3), (3, 4, 3)] {
                let p = &cubic[..=degree];
                let method = unipc(order, variant, px, false);
                let keep = method.keep_state(&ctx(&grid, i), 1).unwrap().unwrap();
                let hist: Vec<f64> = (1..=i).map(|k| pred(p, i - k)).collect();
                let prev = -0.41;
                let got = apply(&keep, f64::NAN, prev, pred(p, i), &hist);
                let want = poly_flow(px, p, m(i - 1), m(i), prev);
                assert!(
                    close(got, want, 1e-12),
                    "UniC {order} at {i}, {variant:?} {px}: {got} {want}"
                );
            }
        }
    }
}

#[test]
fn the_update_predicts_from_the_corrected_state() {
    // The fused update at step i equals UniP applied to the kept x_i^c.
    let grid = levels(-2.0, 2.0, 7, true);
    let steps = grid.len() - 1;
    let hist = [0.31, -0.52, 0.77];
    let (x, prev, p0) = (0.9, 1.3, 0.12);
    for order in 1..=3 {
        for variant in VARIANTS {
            for px in [true, false] {
                for lof in [true, false] {
                    let method = unipc(order, variant, px, lof);
                    for i in 1..steps - 1 {
                        let c = ctx(&grid, i);
                        let keep = method.keep_state(&c, 1).unwrap().unwrap();
                        let xc = apply(&keep, x, prev, p0, &hist);
                        let mut plain = method.clone();
                        plain.disable_corrector = vec![i - 1];
                        let from_xc = apply(&plain.update(&c, 1).unwrap(), xc, f64::NAN, p0, &hist);
                        let fused = apply(&method.update(&c, 1).unwrap(), x, prev, p0, &hist);
                        assert!(
                            close(fused, from_xc, 1e-13),
                            "{order} {i}: {fused} {from_xc}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn orders_of_convergence() {
    for variant in VARIANTS {
        for px in [true, false] {
            for order in 1..=3 {
                let method = unipc(order, variant, px, false);
                let mut plain = method.clone();
                plain.disable_corrector = (0..1000).collect();
                // Orders 1 and 2 from their own warm-up; order 3 from exact
                // starting values (its lower-order warm-up steps limit the
                // order of a cold start to 3, as for any multistep method).
                let exact = if order < 3 { 0 } else { 3 };
                let with = observed_order(&method, 256, exact);
                let without = observed_order(&plain, 256, exact);
                let tag = format!("order {order} {variant:?} predict_x0 {px}");
                assert!((with - (order + 1) as f64).abs() < 0.3, "{tag}: {with}");
                assert!(
                    (without - order as f64).abs() < 0.3,
                    "{tag}, no corrector: {without}"
                );
                assert_eq!(method.order(), order + 1);
            }
            // With lower_order_final the last step is a first-order
            // prediction: second order overall.
            let method = unipc(3, variant, px, true);
            let observed = observed_order(&method, 128, 3);
            assert!((observed - 2.0).abs() < 0.3, "{variant:?} {px}: {observed}");
            assert_eq!(method.order(), 2);
        }
    }
}

#[test]
fn the_driver_runs_the_recipe() {
    let grids = [levels(-2.7, 1.1, 9, true), levels(-1.0, 3.0, 8, false)];
    for grid in &grids {
        let x0 = start(grid[0].marginal);
        for order in 1..=3 {
            for variant in VARIANTS {
                for px in [true, false] {
                    for (lof, disable) in [(true, vec![]), (false, vec![1, 3, 4])] {
                        let mut method = unipc(order, variant, px, lof);
                        method.disable_corrector = disable;
                        let (x, nfe) = run(
                            &method,
                            &SamplingGrid::Shared(grid.clone()),
                            std::slice::from_ref(&x0),
                        )
                        .unwrap();
                        assert_eq!(nfe, grid.len() - 1);
                        for (got, s) in x[0].iter().zip(&x0) {
                            let want = run_f64(&method, grid, *s, 0);
                            assert!(close(*got, want, 1e-5), "{method:?}: {got} {want}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn per_row_grids_match_separate_runs() {
    let rows = [levels(-2.5, 1.0, 5, true), levels(-1.5, 2.0, 6, false)];
    let x: Vec<Vec<f64>> = rows.iter().map(|g| start(g[0].marginal)).collect();
    let method = unipc(3, UniPcVariant::Bh2, true, false);
    let (both, nfe) = run(&method, &SamplingGrid::PerRow(rows.to_vec()), &x).unwrap();
    assert_eq!(nfe, 6);
    for (r, grid) in rows.iter().enumerate() {
        let (one, _) = run(
            &method,
            &SamplingGrid::Shared(grid.clone()),
            std::slice::from_ref(&x[r]),
        )
        .unwrap();
        for (a, b) in both[r].iter().zip(&one[0]) {
            assert!((a - b).abs() < 1e-6, "row {r}: {a} {b}");
        }
    }
}

#[test]
fn bh1_finishes_at_sigma_zero() {
    // Fifteen steps ending at σ = 0, where diffusers' bh1 returns NaN
    // (B(h) = −∞ times 0 at the last step).
    let grid = levels(-2.7, 4.0, 14, true);
    let x0 = start(grid[0].marginal);
    let (first, clean) = (grid[0].marginal, grid[15].marginal);
    for order in 1..=3 {
        for px in [true, false] {
            for lof in [true, false] {
                let mut out = Vec::new();
                for variant in VARIANTS {
                    let method = unipc(order, variant, px, lof);
                    let (x, nfe) = run(
                        &method,
                        &SamplingGrid::Shared(grid.clone()),
                        std::slice::from_ref(&x0),
                    )
                    .unwrap();
                    assert_eq!(nfe, 15);
                    for (v, s) in x[0].iter().zip(&x0) {
                        let exact = DATA.exact(*s, first, clean);
                        assert!(
                            v.is_finite() && (v - exact).abs() < 0.04,
                            "{method:?}: {v} {exact}"
                        );
                    }
                    out.push(x[0].clone());
                }
                for (a, b) in out[0].iter().zip(&out[1]) {
                    assert!((a - b).abs() < 0.04, "bh1 {a}, bh2 {b}");
                }
            }
        }
    }
    // The last step itself is the first-order limit: x = α·x̂₀ (data) or
    // (α′/α)·(x − σ·ε̂) (noise), for either B(h), any order.
    let last = grid[14].marginal;
    for variant in VARIANTS {
        let mut method = unipc(3, variant, true, false);
        method.disable_corrector = vec![13];
        let c = method.update(&ctx(&grid, 14), 1).unwrap();
        assert_eq!(c, Combination::new(0.0, &[1.0]));
        method.predict_x0 = false;
        let c = method.update(&ctx(&grid, 14), 1).unwrap();
        let r = 1.0 / last.alpha;
        assert!(
            close(c.x, r, 1e-14) && close(c.stages[0], -r * last.sigma, 1e-14),
            "{c:?}"
        );
    }
}

/// A method that combines `x_{i−1}` without keeping it.
struct UsesPrev;

impl Method for UsesPrev {
    fn name(&self) -> &str {
        "uses-prev"
    }
    fn order(&self) -> usize {
        1
    }
    fn nfe_per_step(&self) -> usize {
        1
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn update(&self, _ctx: &StepContext<'_>, _stages: usize) -> Result<Combination> {
        Ok(Combination::new(0.0, &[1.0]).with_prev(1.0))
    }
}

#[test]
fn bad_options_and_recipes_are_typed_errors() {
    for order in [0, 4, 9] {
        assert!(matches!(
            UniPc::new(order, UniPcVariant::Bh1),
            Err(Error::InvalidArgument { name: "order", .. })
        ));
    }
    let grid = SamplingGrid::Shared(levels(-1.0, 1.0, 3, true));
    let x = vec![start(vp_level(1.0).marginal)];
    let bad = UniPc {
        order: 7,
        ..UniPc::default()
    };
    assert!(matches!(
        run(&bad, &grid, &x),
        Err(Error::InvalidArgument { name: "order", .. })
    ));
    assert!(matches!(
        run(&UsesPrev, &grid, &x),
        Err(Error::InvalidArgument { name: "x_prev", .. })
    ));
}

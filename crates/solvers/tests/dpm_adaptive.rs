//! Adaptive DPM-Solver-12/23 on a one-dimensional Gaussian mixture with its
//! exact denoiser: the error against a high-accuracy reference falls with
//! the tolerance and the evaluations grow, order 3 is cheaper than order 2
//! at tight tolerances, the run agrees with a plain transcription of
//! k-diffusion's `dpm_solver_adaptive` (step counts and result), a fixed
//! step reproduces the singlestep DPM-Solver, VP and VE runs take the same
//! steps, the end at σ = 0, determinism, and typed errors.

mod common;

use std::sync::Arc;

use common::{Sample, VpBySigma, max_abs_diff};

use diffuse_core::NoiseStream;
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::{
    AdaptiveReport, Backend, Condition, CpuBackend, Denoiser, DpmAdaptive, DpmAlgorithm,
    DpmSolverSinglestep, Error, ErrorNorm, Marginal, NoiseLevel, Parameterization, Result, Sampler,
    SamplingGrid, SecondOrder, SinglestepStages, Solver, VeSchedule,
};

const SIGMA_MAX: f64 = 80.0;
const SIGMA_MIN: f64 = 0.02;
const ROWS: usize = 32;
/// Steps of the f64 reference solution.
const REF_STEPS: usize = 1000;

fn mixture() -> GaussianMixture {
    GaussianMixture::new(vec![0.3, 0.7], vec![vec![-1.5], vec![1.0]], vec![0.3, 0.5]).unwrap()
}

/// A three-dimensional mixture whose coordinates differ in magnitude (so
/// the per-element and per-row error norms differ).
fn mixture_3d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.4, 0.6],
        vec![vec![-1.5, 0.05, 3.0], vec![1.0, -0.05, 2.0]],
        vec![0.3, 0.5],
    )
    .unwrap()
}

fn model_of(gmm: GaussianMixture) -> GmmDenoiser {
    GmmDenoiser::new(gmm, Arc::new(Sample))
}

fn model() -> GmmDenoiser {
    model_of(mixture())
}

/// Variance-exploding starting states `σ_max·z` of `ROWS` rows of `dim`
/// elements, `z` spread over [−2.5, 2.5].
fn start_of(dim: usize) -> Vec<f64> {
    let n = ROWS * dim;
    (0..n)
        .map(|i| {
            // A fixed permutation of an even spread, so rows differ.
            let j = (i * 7) % n;
            SIGMA_MAX * (-2.5 + 5.0 * j as f64 / (n - 1) as f64)
        })
        .collect()
}

fn start() -> Vec<f64> {
    start_of(1)
}

/// `E[x₀ | x̃]` of the mixture at the variance-exploding level `σ`.
fn denoise(gmm: &GaussianMixture, x: &[f64], sigma: f64) -> Vec<f64> {
    gmm.posterior_mean(x, Marginal::new(1.0, sigma).unwrap())
        .unwrap()
}

/// `ε̂ = (x̃ − x̂₀)/σ` at `ℓ = −ln σ`.
fn eps(gmm: &GaussianMixture, x: &[f64], ell: f64) -> Vec<f64> {
    let sigma = (-ell).exp();
    let x0 = denoise(gmm, x, sigma);
    x.iter().zip(&x0).map(|(v, d)| (v - d) / sigma).collect()
}

/// `Σ_k w_k·v_k` element by element.
fn comb(terms: &[(f64, &[f64])]) -> Vec<f64> {
    let mut out = vec![0.0; terms[0].1.len()];
    for (w, v) in terms {
        for (o, x) in out.iter_mut().zip(v.iter()) {
            *o += w * x;
        }
    }
    out
}

/// DPM-Solver-3 (k-diffusion's `dpm_solver_3_step`, variance-exploding, in
/// f64) from `ℓ = s` to `t`, with `ε̂(x, s)` given.
fn dpm3(gmm: &GaussianMixture, x: &[f64], e0: &[f64], s: f64, t: f64) -> Vec<f64> {
    let sig = |l: f64| (-l).exp();
    let h = t - s;
    let (r1, r2) = (1.0 / 3.0, 2.0 / 3.0);
    let (s1, s2) = (s + r1 * h, s + r2 * h);
    let u1 = comb(&[(1.0, x), (-sig(s1) * (r1 * h).exp_m1(), e0)]);
    let e1 = eps(gmm, &u1, s1);
    let w = sig(s2) * (r2 / r1) * ((r2 * h).exp_m1() / (r2 * h) - 1.0);
    let u2 = comb(&[(1.0, x), (-sig(s2) * (r2 * h).exp_m1() + w, e0), (-w, &e1)]);
    let e2 = eps(gmm, &u2, s2);
    let w = sig(t) / r2 * (h.exp_m1() / h - 1.0);
    comb(&[(1.0, x), (-sig(t) * h.exp_m1() + w, e0), (-w, &e2)])
}

/// The reference solution at `σ_min` of rows of `dim` elements: `steps`
/// DPM-Solver-3 steps uniform in `ℓ`, in f64.
fn reference(gmm: &GaussianMixture, x: &[f64], sigma_min: f64, steps: usize) -> Vec<f64> {
    let (l0, l1) = (-SIGMA_MAX.ln(), -sigma_min.ln());
    x.chunks(gmm.dim())
        .flat_map(|row| {
            let mut x = row.to_vec();
            for k in 0..steps {
                let s = l0 + (l1 - l0) * k as f64 / steps as f64;
                let t = l0 + (l1 - l0) * (k + 1) as f64 / steps as f64;
                let e0 = eps(gmm, &x, s);
                x = dpm3(gmm, &x, &e0, s, t);
            }
            x
        })
        .collect()
}

fn upload(cpu: &CpuBackend, x: &[f64], dim: usize, scale: f64) -> diffuse_core::CpuTensor {
    let data: Vec<f32> = x.iter().map(|&v| (v * scale) as f32).collect();
    cpu.upload(&[x.len() / dim, dim], &data).unwrap()
}

/// Runs `solver` on the VE schedule along `sigmas` from [`start_of`] with
/// the exact denoiser of `gmm`: the final states and the report.
fn run_gmm(
    solver: &DpmAdaptive,
    gmm: &GaussianMixture,
    sigmas: &[f64],
) -> Result<(Vec<f64>, AdaptiveReport)> {
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::from_sigmas(&VeSchedule, sigmas)?;
    let mut x = upload(&cpu, &start_of(gmm.dim()), gmm.dim(), 1.0);
    let report = solver.integrate(&cpu, &model_of(gmm.clone()), &VeSchedule, &grid, &mut x)?;
    let x = cpu.to_host(&x)?.iter().map(|&v| f64::from(v)).collect();
    Ok((x, report))
}

/// [`run_gmm`] on the one-dimensional mixture.
fn run_ve(solver: &DpmAdaptive, sigmas: &[f64]) -> Result<(Vec<f64>, AdaptiveReport)> {
    run_gmm(solver, &mixture(), sigmas)
}

fn with_tol(order: usize, algorithm: DpmAlgorithm, norm: ErrorNorm, tol: f64) -> DpmAdaptive {
    DpmAdaptive {
        order,
        algorithm,
        rtol: tol,
        atol: tol,
        error_norm: norm,
        ..DpmAdaptive::default()
    }
}

const ALGORITHMS: [DpmAlgorithm; 2] = [DpmAlgorithm::NoisePrediction, DpmAlgorithm::DataPrediction];
const NORMS: [ErrorNorm; 2] = [ErrorNorm::PerElement, ErrorNorm::PerRow];

#[test]
fn reference_is_exact_for_one_gaussian() {
    // For data N(μ, s²) the flow is x̃(σ) = μ + (x̃(σ₀) − μ)·√(s² + σ²)/√(s² + σ₀²).
    let (mu, s) = (0.7, 0.4);
    let gmm = GaussianMixture::new(vec![1.0], vec![vec![mu]], vec![s]).unwrap();
    let x = start();
    let got = reference(&gmm, &x, SIGMA_MIN, 400);
    let scale = (s * s + SIGMA_MIN * SIGMA_MIN).sqrt() / (s * s + SIGMA_MAX * SIGMA_MAX).sqrt();
    let exact: Vec<f64> = x.iter().map(|&v| mu + (v - mu) * scale).collect();
    assert!(
        max_abs_diff(&got, &exact) < 2e-7,
        "{}",
        max_abs_diff(&got, &exact)
    );
    // And the mixtures' references have converged, far below the errors
    // the tolerance test measures (above 1e-5).
    for gmm in [mixture(), mixture_3d()] {
        let x = start_of(gmm.dim());
        let (a, b) = (
            reference(&gmm, &x, SIGMA_MIN, REF_STEPS),
            reference(&gmm, &x, SIGMA_MIN, 2 * REF_STEPS),
        );
        assert!(max_abs_diff(&a, &b) < 1e-7, "{}", max_abs_diff(&a, &b));
    }
}

#[test]
fn error_falls_and_evaluations_grow_as_the_tolerance_tightens() {
    // Measured: the final error is 0.5 to 9 times rtol = atol.
    const C: f64 = 12.0;
    let tols = [1e-2, 1e-3, 1e-4];
    for gmm in [mixture(), mixture_3d()] {
        let want = reference(&gmm, &start_of(gmm.dim()), SIGMA_MIN, REF_STEPS);
        for order in [2, 3] {
            for algorithm in ALGORITHMS {
                for norm in NORMS {
                    let mut last: Option<(f64, usize)> = None;
                    for tol in tols {
                        let solver = with_tol(order, algorithm, norm, tol);
                        let (x, report) = run_gmm(&solver, &gmm, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
                        let err = max_abs_diff(&x, &want);
                        let case = format!(
                            "dim {} order {order} {algorithm:?} {norm:?} tol {tol}",
                            gmm.dim()
                        );
                        assert!(err <= C * tol, "{case}: error {err:e}, {report:?}");
                        if let Some((e, nfe)) = last {
                            assert!(err < e, "{case}: error {err:e} after {e:e}");
                            assert!(report.nfe > nfe, "{case}: {} NFE after {nfe}", report.nfe);
                        }
                        last = Some((err, report.nfe));
                    }
                }
            }
        }
    }
}

#[test]
fn the_norms_agree_on_one_element_rows_and_differ_otherwise() {
    let run = |gmm: &GaussianMixture, norm| {
        let solver = with_tol(3, DpmAlgorithm::NoisePrediction, norm, 1e-3);
        run_gmm(&solver, gmm, &[SIGMA_MAX, SIGMA_MIN]).unwrap()
    };
    // One element per row: the row RMS is the element's magnitude.
    let (a, ra) = run(&mixture(), ErrorNorm::PerElement);
    let (b, rb) = run(&mixture(), ErrorNorm::PerRow);
    assert_eq!(ra, rb);
    assert!(max_abs_diff(&a, &b) < 1e-6);
    // Coordinates near 0 next to coordinates near 2: the per-element norm
    // weighs the small ones by atol, the per-row norm by the row's RMS, so
    // it is the looser of the two.
    let (_, ra) = run(&mixture_3d(), ErrorNorm::PerElement);
    let (_, rb) = run(&mixture_3d(), ErrorNorm::PerRow);
    assert!(rb.nfe < ra.nfe, "{ra:?} {rb:?}");
}

#[test]
fn order_three_is_cheaper_at_tight_tolerance() {
    for algorithm in ALGORITHMS {
        let nfe = |order| {
            let solver = with_tol(order, algorithm, ErrorNorm::PerElement, 1e-4);
            run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap().1.nfe
        };
        let (two, three) = (nfe(2), nfe(3));
        assert!(
            3 * three < 2 * two,
            "{algorithm:?}: {three} NFE against {two}"
        );
    }
}

#[test]
fn runs_are_deterministic() {
    for norm in NORMS {
        let solver = with_tol(3, DpmAlgorithm::NoisePrediction, norm, 1e-3);
        let (a, ra) = run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
        let (b, rb) = run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
        assert_eq!(ra, rb);
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}

/// k-diffusion's `PIDStepSizeController` and `dpm_solver_adaptive`
/// (`eta = 0`, variance-exploding, noise prediction), transcribed in f64
/// from σ_max to σ_min: the final states and (accepted, rejected).
fn k_diffusion(gmm: &GaussianMixture, options: &DpmAdaptive) -> (Vec<f64>, usize, usize) {
    let sig = |l: f64| (-l).exp();
    let (t_start, t_end) = (-SIGMA_MAX.ln(), -SIGMA_MIN.ln());
    let order = options.order;
    let k = order as f64;
    let b = [
        (options.pcoeff + options.icoeff + options.dcoeff) / k,
        -(options.pcoeff + 2.0 * options.dcoeff) / k,
        options.dcoeff / k,
    ];
    let mut errs: Vec<f64> = Vec::new();
    let mut h_pid = options.h_init;
    let dim = gmm.dim();
    let mut x = start_of(dim);
    let mut x_prev = x.clone();
    let mut s = t_start;
    let (mut accepted, mut rejected) = (0, 0);
    while s < t_end - 1e-5 {
        let t = t_end.min(s + h_pid);
        let h = t - s;
        let mut low = Vec::with_capacity(x.len());
        let mut high = Vec::with_capacity(x.len());
        for xi in x.chunks(dim) {
            let e0 = eps(gmm, xi, s);
            let first = |r: f64| comb(&[(1.0, xi), (-sig(s + r * h) * (r * h).exp_m1(), &e0)]);
            let dpm2 = |r1: f64, e1: &[f64]| {
                let w = sig(t) / (2.0 * r1) * h.exp_m1();
                comb(&[(1.0, xi), (-sig(t) * h.exp_m1() + w, &e0), (-w, e1)])
            };
            if order == 2 {
                low.extend(first(1.0));
                high.extend(dpm2(0.5, &eps(gmm, &first(0.5), s + 0.5 * h)));
            } else {
                low.extend(dpm2(1.0 / 3.0, &eps(gmm, &first(1.0 / 3.0), s + h / 3.0)));
                high.extend(dpm3(gmm, xi, &e0, s, t));
            }
        }
        let mut sum = 0.0;
        for i in 0..x.len() {
            let delta = options
                .atol
                .max(options.rtol * low[i].abs().max(x_prev[i].abs()));
            sum += ((low[i] - high[i]) / delta).powi(2);
        }
        let error = sum.sqrt() / (x.len() as f64).sqrt();
        let inv = 1.0 / (error + 1e-8);
        if errs.is_empty() {
            errs = vec![inv; 3];
        }
        errs[0] = inv;
        let factor = errs[0].powf(b[0]) * errs[1].powf(b[1]) * errs[2].powf(b[2]);
        let factor = 1.0 + (factor - 1.0).atan();
        let accept = factor >= options.accept_safety;
        if accept {
            errs[2] = errs[1];
            errs[1] = errs[0];
        }
        h_pid *= factor;
        if accept {
            x_prev = low;
            x = high;
            s = t;
            accepted += 1;
        } else {
            rejected += 1;
        }
    }
    (x, accepted, rejected)
}

/// k-diffusion's defaults, and tighter tolerances with all three controller
/// terms; the largest difference allowed between the f32 run and the f64
/// transcription. Noise prediction is ill-conditioned in f32 for large
/// steps: `x_t ≈ x_s − σ_s·ε̂ + …` cancels states of size 200 down to
/// size 1 (leaving about 1e-5 of rounding), and the order-3 term
/// `(σ_t/r₂)·(e^h/h)·(ε̂₂ − ε̂₀)` multiplies the rounding of the stage at
/// `r = 2/3` by up to `e^{2h/3}/h`. Measured: 4e-4 for one step of
/// `h ≈ 8`, 1e-3 at k-diffusion's tolerances (steps up to `h ≈ 6`), the
/// f32 level (1e-6) for steps below 1. Data prediction stays at 1e-6.
fn k_diffusion_cases() -> [(DpmAdaptive, f64); 2] {
    [
        (DpmAdaptive::default(), 3e-3),
        (
            DpmAdaptive {
                rtol: 1e-3,
                atol: 1e-3,
                pcoeff: 0.2,
                icoeff: 0.5,
                dcoeff: 0.1,
                h_init: 0.5,
                ..DpmAdaptive::default()
            },
            1e-4,
        ),
    ]
}

#[test]
fn matches_a_transcription_of_k_diffusion() {
    for gmm in [mixture(), mixture_3d()] {
        for (base, tol) in k_diffusion_cases() {
            for order in [2, 3] {
                let solver = DpmAdaptive { order, ..base };
                let (want, accepted, rejected) = k_diffusion(&gmm, &solver);
                let (got, report) = run_gmm(&solver, &gmm, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
                let case = format!("dim {}, {solver:?}", gmm.dim());
                assert_eq!(
                    (report.accepted, report.rejected),
                    (accepted, rejected),
                    "{case}"
                );
                assert!(rejected > 0, "{case}: no rejection exercised");
                // The model output at a rejected step's start is reused.
                assert_eq!(report.nfe, order * accepted + (order - 1) * rejected);
                let diff = max_abs_diff(&got, &want);
                assert!(diff < tol, "{case}: {diff:e}");
            }
        }
    }
}

#[test]
fn variance_preserving_runs_take_the_same_steps() {
    let cpu = CpuBackend::new();
    let alpha = |s: f64| 1.0 / (1.0 + s * s).sqrt();
    let grid = SamplingGrid::from_sigmas(&VpBySigma, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
    for (base, tol) in k_diffusion_cases() {
        for algorithm in ALGORITHMS {
            let solver = DpmAdaptive { algorithm, ..base };
            let (ve, ve_report) = run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
            let mut x = upload(&cpu, &start(), 1, alpha(SIGMA_MAX));
            let report = solver
                .integrate(&cpu, &model(), &VpBySigma, &grid, &mut x)
                .unwrap();
            assert_eq!(
                (report.accepted, report.rejected),
                (ve_report.accepted, ve_report.rejected)
            );
            let vp: Vec<f64> = cpu
                .to_host(&x)
                .unwrap()
                .iter()
                .map(|&v| f64::from(v) / alpha(SIGMA_MIN))
                .collect();
            // VP and VE round differently: noise prediction within the
            // f32 conditioning above, data prediction to the f32 level.
            let tol = match algorithm {
                DpmAlgorithm::NoisePrediction => tol,
                DpmAlgorithm::DataPrediction => 1e-5,
            };
            let diff = max_abs_diff(&vp, &ve);
            assert!(diff < tol, "{solver:?}: {diff:e}");
        }
    }
}

#[test]
fn a_fixed_step_is_the_singlestep_dpm_solver() {
    // With p = i = d = 0 the controller's factor is 1: every attempt is
    // accepted and h stays h_init, so the run is the singlestep solver with
    // stages inside each step, midpoint form, on the uniform ℓ grid.
    let steps = 12;
    let (l0, l1) = (-SIGMA_MAX.ln(), -SIGMA_MIN.ln());
    let h = (l1 - l0) / steps as f64;
    // The levels the adaptive run visits: ℓ accumulated step by step.
    let mut ell = l0;
    let mut sigmas = vec![SIGMA_MAX];
    for _ in 1..steps {
        ell += h;
        sigmas.push((-ell).exp());
    }
    sigmas.push(SIGMA_MIN);
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::from_sigmas(&VeSchedule, &sigmas).unwrap();
    for order in [2, 3] {
        for algorithm in ALGORITHMS {
            let adaptive = DpmAdaptive {
                order,
                algorithm,
                h_init: h,
                pcoeff: 0.0,
                icoeff: 0.0,
                dcoeff: 0.0,
                ..DpmAdaptive::default()
            };
            let (got, report) = run_ve(&adaptive, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
            assert_eq!((report.accepted, report.rejected), (steps, 0));
            let fixed = DpmSolverSinglestep::new(
                order,
                algorithm,
                SecondOrder::Midpoint,
                SinglestepStages::Lambda,
            )
            .unwrap();
            let mut x = upload(&cpu, &start(), 1, 1.0);
            let fixed_report = Sampler::new(fixed)
                .sample(&cpu, &model(), &VeSchedule, &grid, &mut x, None)
                .unwrap();
            assert_eq!(fixed_report.nfe, report.nfe);
            let want: Vec<f64> = cpu
                .to_host(&x)
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            assert!(
                max_abs_diff(&got, &want) < 1e-5,
                "order {order} {algorithm:?}: {}",
                max_abs_diff(&got, &want)
            );
        }
    }
}

#[test]
fn intermediate_levels_are_ignored_and_zero_ends_with_a_denoising_step() {
    let solver = DpmAdaptive::default();
    let (plain, plain_report) = run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
    let (busy, busy_report) = run_ve(&solver, &[SIGMA_MAX, 10.0, 1.0, SIGMA_MIN]).unwrap();
    assert_eq!(plain_report, busy_report);
    assert!(
        plain
            .iter()
            .zip(&busy)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
    assert!(!plain_report.clean_step);
    // To σ = 0: the same run, then x̂₀ at σ_min.
    let (clean, report) = run_ve(&solver, &[SIGMA_MAX, 1.0, SIGMA_MIN, 0.0]).unwrap();
    assert!(report.clean_step);
    assert_eq!(report.accepted, plain_report.accepted);
    assert_eq!(report.nfe, plain_report.nfe + 1);
    assert_eq!(report.sample_report().steps, report.accepted + 1);
    let gmm = mixture();
    let want: Vec<f64> = plain
        .iter()
        .flat_map(|&x| denoise(&gmm, &[x], SIGMA_MIN))
        .collect();
    assert!(
        max_abs_diff(&clean, &want) < 1e-5,
        "{}",
        max_abs_diff(&clean, &want)
    );
}

#[test]
fn solver_trait_reports_accepted_steps() {
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::from_sigmas(&VeSchedule, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
    let mut solver = DpmAdaptive::new(2, DpmAlgorithm::DataPrediction).unwrap();
    let (_, report) = run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
    let mut x = upload(&cpu, &start(), 1, 1.0);
    let got = Solver::<CpuBackend>::sample(
        &mut solver,
        &cpu,
        &model(),
        &VeSchedule,
        &grid,
        &mut x,
        None,
    )
    .unwrap();
    assert_eq!(got, report.sample_report());
    assert_eq!(Solver::<CpuBackend>::name(&solver), "dpmpp-adaptive-12");
    assert!(!Solver::<CpuBackend>::stochastic(&solver));
    let noise = Some(NoiseStream::new(0, 0));
    let err = Solver::<CpuBackend>::sample(
        &mut solver,
        &cpu,
        &model(),
        &VeSchedule,
        &grid,
        &mut x,
        noise,
    );
    assert!(matches!(
        err,
        Err(Error::InvalidArgument { name: "noise", .. })
    ));
}

fn invalid_name(result: Result<impl std::fmt::Debug>) -> &'static str {
    match result {
        Err(Error::InvalidArgument { name, .. }) => name,
        other => panic!("expected an invalid argument, got {other:?}"),
    }
}

#[test]
fn bad_options_are_typed_errors() {
    let d = DpmAdaptive::default();
    let cases: Vec<(DpmAdaptive, &str)> = vec![
        (DpmAdaptive { order: 1, ..d }, "order"),
        (DpmAdaptive { order: 4, ..d }, "order"),
        (DpmAdaptive { rtol: 0.0, ..d }, "rtol"),
        (DpmAdaptive { rtol: -0.1, ..d }, "rtol"),
        (
            DpmAdaptive {
                rtol: f64::NAN,
                ..d
            },
            "rtol",
        ),
        (DpmAdaptive { atol: 0.0, ..d }, "atol"),
        (
            DpmAdaptive {
                atol: f64::INFINITY,
                ..d
            },
            "atol",
        ),
        (DpmAdaptive { h_init: -0.05, ..d }, "h_init"),
        (
            DpmAdaptive {
                pcoeff: f64::NAN,
                ..d
            },
            "pcoeff",
        ),
        (
            DpmAdaptive {
                icoeff: f64::INFINITY,
                ..d
            },
            "icoeff",
        ),
        (
            DpmAdaptive {
                dcoeff: f64::NEG_INFINITY,
                ..d
            },
            "dcoeff",
        ),
        (
            DpmAdaptive {
                accept_safety: 1.5,
                ..d
            },
            "accept_safety",
        ),
        (
            DpmAdaptive {
                accept_safety: f64::NAN,
                ..d
            },
            "accept_safety",
        ),
        (
            DpmAdaptive {
                max_attempts: 0,
                ..d
            },
            "max_attempts",
        ),
    ];
    for (solver, name) in cases {
        assert_eq!(invalid_name(solver.validate()), name, "{solver:?}");
        assert_eq!(
            invalid_name(run_ve(&solver, &[SIGMA_MAX, SIGMA_MIN])),
            name,
            "{solver:?}"
        );
    }
    assert_eq!(
        invalid_name(DpmAdaptive::new(4, DpmAlgorithm::NoisePrediction)),
        "order"
    );
    // Too few attempts, a grid with no positive σ_min, a per-row grid.
    let tight = DpmAdaptive {
        max_attempts: 3,
        ..d
    };
    assert_eq!(
        invalid_name(run_ve(&tight, &[SIGMA_MAX, SIGMA_MIN])),
        "max_attempts"
    );
    assert_eq!(invalid_name(run_ve(&d, &[SIGMA_MAX, 0.0])), "grid");
    let cpu = CpuBackend::new();
    let SamplingGrid::Shared(levels) =
        SamplingGrid::from_sigmas(&VeSchedule, &[SIGMA_MAX, SIGMA_MIN]).unwrap()
    else {
        unreachable!()
    };
    let per_row = SamplingGrid::PerRow(vec![levels; ROWS]);
    let mut x = upload(&cpu, &start(), 1, 1.0);
    assert_eq!(
        invalid_name(d.integrate(&cpu, &model(), &VeSchedule, &per_row, &mut x)),
        "grid"
    );
}

/// A model whose output turns NaN below σ = 1.
struct Breaks;

impl Denoiser<CpuBackend> for Breaks {
    fn parameterization(&self) -> &dyn Parameterization {
        &Sample
    }
    fn predict(
        &self,
        cpu: &CpuBackend,
        x: &diffuse_core::CpuTensor,
        levels: &[NoiseLevel],
        _condition: Condition<'_, diffuse_core::CpuTensor>,
        out: &mut diffuse_core::CpuTensor,
    ) -> Result<()> {
        let v = if levels[0].marginal.sigma < 1.0 {
            f32::NAN
        } else {
            0.0
        };
        *out = cpu.upload(cpu.shape(x), &vec![v; cpu.to_host(x)?.len()])?;
        Ok(())
    }
}

#[test]
fn a_non_finite_model_output_is_an_error() {
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::from_sigmas(&VeSchedule, &[SIGMA_MAX, SIGMA_MIN]).unwrap();
    for norm in NORMS {
        let solver = DpmAdaptive {
            error_norm: norm,
            ..DpmAdaptive::default()
        };
        let mut x = upload(&cpu, &start(), 1, 1.0);
        let got = solver.integrate(&cpu, &Breaks, &VeSchedule, &grid, &mut x);
        assert!(matches!(got, Err(Error::NonFinite(_))), "{norm:?}: {got:?}");
    }
}

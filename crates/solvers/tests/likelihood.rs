//! Probability-flow log-likelihoods against exact densities.
//!
//! What is compared: for data drawn from a Gaussian mixture
//! `p₀ = Σₖ wₖ N(μₖ, sₖ² I)` and then noised to the start level,
//! `x̃ = x₀ + σ̃min·z`, the likelihood returned for `x̃` is compared with the
//! exact log density of the variance-exploding marginal at `σ̃min`,
//! `ln p_σ̃min(x̃) = ln Σₖ wₖ N(x̃; μₖ, (sₖ² + σ̃min²) I)`
//! (`GaussianMixture::log_density` of the widened mixture). Two sources of
//! error remain: the prior `N(0, σ̃max² I)` stands in for the marginal at
//! `σ̃max` (the mixture widened by `σ̃max`), which costs about
//! `|μ|·|x̃(σ̃max)|/σ̃max²` nats, and the integration error. The tests bound
//! the total, and separately the integrated part alone: the returned
//! change `∫ div` against the exact `ln p_σ̃min(x̃) − ln p_σ̃max(x̃(σ̃max))`
//! with both densities exact.

mod common;

use std::sync::Arc;

use common::{Eps, Sample, mean_and_se, three_bumps_2d};

use diffuse_core::{
    Backend, Condition, CpuBackend, CpuTensor, Denoiser, Error, NoiseLevel, NoiseSchedule,
    NoiseStream, Parameterization, Result, VectorJacobian,
};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::VeSchedule;
use diffuse_solvers::likelihood::{
    DivergenceMethod, LikelihoodOptions, LikelihoodReport, Probe, log_likelihood, probe_value,
};

/// A variance-preserving schedule with log-SNR linear in `t ∈ [0, 1]`
/// from 12 to −12: `α² = sigmoid(λ)`, `σ² = sigmoid(−λ)`.
struct LinearLogSnr;
impl NoiseSchedule for LinearLogSnr {
    fn name(&self) -> &str {
        "vp-linear-logsnr"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        let l = 12.0 - 24.0 * t;
        (1.0 / (1.0 + (-l).exp())).sqrt()
    }
    fn sigma(&self, t: f64) -> f64 {
        let l = 12.0 - 24.0 * t;
        (1.0 / (1.0 + l.exp())).sqrt()
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        let t = (12.0 - lambda) / 24.0;
        self.check_t(t)?;
        Ok(t)
    }
}

fn mixture_1d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.3, 0.5, 0.2],
        vec![vec![-2.0], vec![0.5], vec![2.5]],
        vec![0.3, 0.5, 0.2],
    )
    .unwrap()
}

/// The mixture convolved with `N(0, σ² I)`.
fn widened(gmm: &GaussianMixture, sigma: f64) -> GaussianMixture {
    GaussianMixture::new(
        gmm.weights().to_vec(),
        gmm.means().to_vec(),
        gmm.stds()
            .iter()
            .map(|s| (s * s + sigma * sigma).sqrt())
            .collect(),
    )
    .unwrap()
}

/// `n` draws from `p_σ` (the mixture widened by `σ`): component by a
/// uniform from the rows' own Philox stream, normals from stream 1.
fn samples(gmm: &GaussianMixture, sigma: f64, n: usize, seed: u64) -> Vec<f64> {
    let p = widened(gmm, sigma);
    let d = p.dim();
    let z = NoiseStream::new(seed, 1);
    let mut out = Vec::with_capacity(n * d);
    for r in 0..n {
        // A uniform from the normal of stream 0 through the erf-free
        // logistic approximation is enough to pick a component.
        let u = 1.0 / (1.0 + (-1.702 * f64::from(NoiseStream::new(seed, 0).at(r as u64))).exp());
        let mut k = 0;
        let mut acc = p.weights()[0];
        while u > acc && k + 1 < p.components() {
            k += 1;
            acc += p.weights()[k];
        }
        for j in 0..d {
            out.push(p.means()[k][j] + p.stds()[k] * f64::from(z.at((r * d + j) as u64)));
        }
    }
    out
}

fn run(
    model: &GmmDenoiser,
    schedule: &dyn NoiseSchedule,
    x: &[f64],
    d: usize,
    options: &LikelihoodOptions,
) -> LikelihoodReport {
    let cpu = CpuBackend::new();
    let data: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let t = cpu.upload(&[x.len() / d, d], &data).unwrap();
    log_likelihood(&cpu, model, schedule, &t, options).unwrap()
}

/// Mean absolute differences from the exact values, in bits/dim: of the
/// log-likelihood, and of the integrated change alone (against
/// `ln p_σ̃min(x̃) − ln p_σ̃max(latent)`, both exact).
fn mean_errors_bits(
    gmm: &GaussianMixture,
    options: &LikelihoodOptions,
    x: &[f64],
    r: &LikelihoodReport,
) -> (f64, f64) {
    let d = gmm.dim();
    let start = widened(gmm, options.sigma_min);
    let end = widened(gmm, options.sigma_max);
    let (mut total, mut change) = (0.0, 0.0);
    let bits = d as f64 * std::f64::consts::LN_2;
    for (row, ll) in r.log_likelihood.iter().enumerate() {
        // The density of the f32-rounded point that was passed in.
        let xr: Vec<f64> = x[row * d..(row + 1) * d]
            .iter()
            .map(|&v| f64::from(v as f32))
            .collect();
        let want = start.log_density(&xr).unwrap();
        total += (ll - want).abs() / bits;
        let latent = &r.latent[row * d..(row + 1) * d];
        let want_change = want - end.log_density(latent).unwrap();
        change += (r.delta_log_density[row] - want_change).abs() / bits;
    }
    let n = r.log_likelihood.len() as f64;
    (total / n, change / n)
}

#[test]
fn matches_the_exact_mixture_density_in_1d_and_2d() {
    let options = LikelihoodOptions {
        sigma_min: 0.01,
        sigma_max: 80.0,
        ..Default::default()
    };
    for (gmm, seed) in [(mixture_1d(), 1), (three_bumps_2d(), 2)] {
        let d = gmm.dim();
        let x = samples(&gmm, options.sigma_min, 48, seed);
        let model = GmmDenoiser::new(gmm.clone(), Arc::new(Sample));
        let r = run(&model, &VeSchedule, &x, d, &options);
        let (err, change_err) = mean_errors_bits(&gmm, &options, &x, &r);
        println!(
            "d = {d}: mean |error| {err:.2e} bits/dim (integrated part {change_err:.2e}), \
             {} NFE, {} steps, {} rejected",
            r.nfe, r.steps, r.rejected
        );
        assert!(err < 0.02, "d = {d}: {err} bits/dim");
        // The integration alone is far more accurate than the prior term.
        assert!(change_err < 1e-4, "d = {d}: {change_err} bits/dim");
        for (ll, bpd) in r.log_likelihood.iter().zip(&r.bits_per_dim) {
            assert!((bpd + ll / (d as f64 * std::f64::consts::LN_2)).abs() < 1e-12);
        }
        for row in 0..r.log_likelihood.len() {
            let sum = r.prior_log_density[row] + r.delta_log_density[row];
            assert!((sum - r.log_likelihood[row]).abs() < 1e-12);
        }
    }
}

#[test]
fn one_gaussian_has_the_analytic_flow_and_density() {
    // Data N(μ, s²): x̃(σ̃) = μ + (x̃ − μ)·√((s² + σ̃²)/(s² + σ̃min²)).
    let (mu, s) = (0.7, 0.6);
    let gmm = GaussianMixture::new(vec![1.0], vec![vec![mu]], vec![s]).unwrap();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Sample));
    let options = LikelihoodOptions {
        sigma_min: 0.05,
        sigma_max: 50.0,
        rtol: 1e-7,
        atol: 1e-7,
        ..Default::default()
    };
    let x = [-1.0, 0.7, 2.25];
    let r = run(&model, &VeSchedule, &x, 1, &options);
    let (v0, v1) = (s * s + 0.0025, s * s + 2500.0);
    for (i, &xi) in x.iter().enumerate() {
        let latent = mu + (xi - mu) * (v1 / v0).sqrt();
        assert!(
            (r.latent[i] - latent).abs() < 1e-4 * latent.abs().max(1.0),
            "{} vs {latent}",
            r.latent[i]
        );
        let log_n = |x: f64, m: f64, v: f64| {
            -0.5 * (2.0 * std::f64::consts::PI * v).ln() - (x - m).powi(2) / (2.0 * v)
        };
        // In one dimension the integrated change is
        // ln N(x; μ, v0) − ln N(latent; μ, v1) = ½ ln(v1/v0) for every x.
        let change = 0.5 * (v1 / v0).ln();
        assert!(
            (r.delta_log_density[i] - change).abs() < 1e-5,
            "{} vs {change}",
            r.delta_log_density[i]
        );
        // The prior N(0, σ̃max²) differs from N(μ, v1) by about
        // μ·latent/σ̃max² (0.04 nats for the outer points).
        let exact = log_n(xi, mu, v0);
        let prior_error = (mu * r.latent[i]).abs() / 2500.0 + 1e-3;
        assert!((r.log_likelihood[i] - exact).abs() < prior_error, "{i}");
    }
}

#[test]
fn the_schedule_does_not_change_the_likelihood() {
    // The same ODE in the variance-exploding variables, whatever (α, σ) the
    // model is evaluated at; here also through ε-prediction outputs.
    let gmm = three_bumps_2d();
    let options = LikelihoodOptions {
        sigma_min: 0.01,
        sigma_max: 80.0,
        ..Default::default()
    };
    let x = samples(&gmm, options.sigma_min, 16, 3);
    let ve = run(
        &GmmDenoiser::new(gmm.clone(), Arc::new(Sample)),
        &VeSchedule,
        &x,
        2,
        &options,
    );
    let vp = run(
        &GmmDenoiser::new(gmm.clone(), Arc::new(Eps)),
        &LinearLogSnr,
        &x,
        2,
        &options,
    );
    for (a, b) in ve.log_likelihood.iter().zip(&vp.log_likelihood) {
        assert!((a - b).abs() < 2e-4, "{a} vs {b}");
    }
    let (err, change_err) = mean_errors_bits(&gmm, &options, &x, &vp);
    assert!(err < 0.02 && change_err < 1e-4, "{err}, {change_err}");
}

fn hutchinson(probe: Probe, probes: usize) -> DivergenceMethod {
    DivergenceMethod::Hutchinson {
        probe,
        probes,
        noise: NoiseStream::new(5, 100),
    }
}

#[test]
fn hutchinson_estimates_are_unbiased() {
    // One point in R rows: the trajectory is the same in every row, the
    // probes differ (element indices), so the rows are independent draws
    // of the estimator; their mean must match the exact-divergence value
    // within five standard errors.
    let gmm = three_bumps_2d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Sample));
    let rows = 256;
    let point = [0.1, 0.4];
    let x: Vec<f64> = (0..rows).flat_map(|_| point).collect();
    let base = LikelihoodOptions {
        sigma_min: 0.01,
        sigma_max: 80.0,
        rtol: 1e-4,
        atol: 1e-4,
        ..Default::default()
    };
    let exact = run(&model, &VeSchedule, &point, 2, &base).log_likelihood[0];
    let mut spread = Vec::new();
    for probe in [Probe::Rademacher, Probe::Gaussian] {
        let options = LikelihoodOptions {
            divergence: hutchinson(probe, 1),
            ..base
        };
        let r = run(&model, &VeSchedule, &x, 2, &options);
        let (m, se) = mean_and_se(&r.log_likelihood);
        println!("{probe:?}: mean {m:.5} ± {se:.5}, exact {exact:.5}");
        assert!(se > 0.0);
        assert!(
            (m - exact).abs() < 5.0 * se + 1e-3,
            "{probe:?}: {m} vs {exact} (se {se})"
        );
        spread.push(se);
    }
    // Rademacher probes have the smaller variance (2·Σ_{i≠j} M_ij² against
    // 2·‖M‖_F²).
    assert!(spread[0] < spread[1]);
    // Averaging four probes per row shrinks the spread by about half.
    let options = LikelihoodOptions {
        divergence: hutchinson(Probe::Gaussian, 4),
        ..base
    };
    let r = run(&model, &VeSchedule, &x, 2, &options);
    let (m4, se4) = mean_and_se(&r.log_likelihood);
    assert!(se4 < 0.75 * spread[1], "{se4} vs {}", spread[1]);
    assert!((m4 - exact).abs() < 5.0 * se4 + 1e-3);
}

#[test]
fn rademacher_probes_are_exact_in_one_dimension() {
    // v² = 1, so vᵀJv = J.
    let gmm = mixture_1d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Sample));
    let x = samples(&gmm, 0.01, 8, 4);
    let base = LikelihoodOptions {
        sigma_min: 0.01,
        ..Default::default()
    };
    let exact = run(&model, &VeSchedule, &x, 1, &base);
    let options = LikelihoodOptions {
        divergence: hutchinson(Probe::Rademacher, 1),
        ..base
    };
    let est = run(&model, &VeSchedule, &x, 1, &options);
    for (a, b) in exact.log_likelihood.iter().zip(&est.log_likelihood) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}

#[test]
fn probes_come_from_the_noise_stream() {
    let noise = NoiseStream::new(9, 40);
    let mut plus = 0usize;
    let n = 100_000;
    for i in 0..n as u64 {
        let r = probe_value(Probe::Rademacher, noise, 2, i);
        assert!(r == 1.0 || r == -1.0);
        plus += usize::from(r > 0.0);
        if i < 64 {
            let g = probe_value(Probe::Gaussian, noise, 2, i);
            assert_eq!(g, f64::from(NoiseStream::new(9, 42).at(i)));
        }
    }
    let frac = plus as f64 / n as f64;
    assert!((frac - 0.5).abs() < 5.0 * 0.5 / (n as f64).sqrt());
}

/// A model with products but no closed-form divergence.
struct VjpOnly(GmmDenoiser);
impl Denoiser<CpuBackend> for VjpOnly {
    fn parameterization(&self) -> &dyn Parameterization {
        Denoiser::<CpuBackend>::parameterization(&self.0)
    }
    fn predict(
        &self,
        b: &CpuBackend,
        x: &CpuTensor,
        l: &[NoiseLevel],
        c: Condition<'_, CpuTensor>,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.0.predict(b, x, l, c, out)
    }
}
impl VectorJacobian<CpuBackend> for VjpOnly {
    fn x0_vjp(
        &self,
        b: &CpuBackend,
        x: &CpuTensor,
        l: &[NoiseLevel],
        c: Condition<'_, CpuTensor>,
        v: &CpuTensor,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.0.x0_vjp(b, x, l, c, v, out)
    }
}

#[test]
fn bad_options_and_inputs_are_typed_errors() {
    let cpu = CpuBackend::new();
    let gmm = mixture_1d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Sample));
    let x = cpu.upload(&[2, 1], &[0.0, 1.0]).unwrap();
    let ok = LikelihoodOptions::default();
    let bad = [
        LikelihoodOptions {
            sigma_min: 0.0,
            ..ok
        },
        LikelihoodOptions {
            sigma_max: 0.001,
            ..ok
        },
        LikelihoodOptions {
            sigma_max: f64::INFINITY,
            ..ok
        },
        LikelihoodOptions { rtol: 0.0, ..ok },
        LikelihoodOptions {
            atol: f64::NAN,
            ..ok
        },
        LikelihoodOptions { max_evals: 0, ..ok },
        LikelihoodOptions {
            divergence: hutchinson(Probe::Gaussian, 0),
            ..ok
        },
    ];
    for o in bad {
        assert!(
            matches!(
                log_likelihood(&cpu, &model, &VeSchedule, &x, &o),
                Err(Error::InvalidArgument { .. })
            ),
            "{o:?}"
        );
    }
    // Too few evaluations allowed.
    let few = LikelihoodOptions { max_evals: 5, ..ok };
    assert!(matches!(
        log_likelihood(&cpu, &model, &VeSchedule, &x, &few),
        Err(Error::InvalidArgument {
            name: "max_evals",
            ..
        })
    ));
    // Exact divergence from a model that has none.
    let vjp_only = VjpOnly(model.clone());
    assert!(matches!(
        log_likelihood(&cpu, &vjp_only, &VeSchedule, &x, &ok),
        Err(Error::Unsupported(_))
    ));
    // ... while the estimator works with it.
    let est = LikelihoodOptions {
        divergence: hutchinson(Probe::Rademacher, 1),
        ..ok
    };
    assert!(log_likelihood(&cpu, &vjp_only, &VeSchedule, &x, &est).is_ok());
    // Non-finite data.
    let nan = cpu.upload(&[2, 1], &[0.0, f32::NAN]).unwrap();
    assert!(matches!(
        log_likelihood(&cpu, &model, &VeSchedule, &nan, &ok),
        Err(Error::NonFinite(_))
    ));
    // A level outside the schedule's range (σ̃ = 80 is λ ≈ −8.8 < −12? no:
    // ask for σ̃max beyond the VP schedule's end, λ = −2 ln 1000 < −12).
    let far = LikelihoodOptions {
        sigma_max: 1000.0,
        ..ok
    };
    assert!(log_likelihood(&cpu, &model, &LinearLogSnr, &x, &far).is_err());
    // Rows of the wrong dimension for the mixture.
    let wide = cpu.upload(&[1, 2], &[0.0, 1.0]).unwrap();
    assert!(matches!(
        log_likelihood(&cpu, &model, &VeSchedule, &wide, &ok),
        Err(Error::ShapeMismatch { .. })
    ));
}

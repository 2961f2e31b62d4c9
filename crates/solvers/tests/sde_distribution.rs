//! Every stochastic sampler reproduces a 2-D Gaussian mixture from 20 000
//! samples with the exact denoiser (no model error): each sample is
//! assigned to its most likely component; the component fractions must lie
//! within 4 standard errors of the weights, and the per-component means and
//! standard deviations within a stated tolerance of the truth (with
//! independent draws, and for DPM-Solver++ SDE with the Brownian tree). The initial
//! states are exact draws of the noisy marginal, so only the sampler's
//! discretisation error remains.

mod common;

use std::sync::Arc;

use common::{Sample, VpBySigma, fraction_se, geometric_grid, three_blobs_2d, ve_level, vp_level};

use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::{
    Backend, CpuBackend, Method, NoiseStream, PhiloxNoise, Result, SamplingGrid, VeSchedule,
    by_name, run_with_noise, stochastic_names,
};
use diffuse_solvers::{DpmPpSde, NoiseKind, noise_source};

const N: usize = 20_000;
/// The parameters of [`three_blobs_2d`], the truth the samples are held to.
const WEIGHTS: [f64; 3] = [0.5, 0.3, 0.2];
const MEANS: [[f64; 2]; 3] = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]];
const STDS: [f64; 3] = [0.3, 0.5, 0.4];
const SIGMA_MAX: f64 = 20.0;

/// Levels `σ̃` geometric from `SIGMA_MAX` to 0.005 in `n` steps, then a
/// clean level, for a VP (`vp`) or VE schedule.
fn grid(n: usize, vp: bool) -> SamplingGrid {
    geometric_grid(SIGMA_MAX, 0.005, n, if vp { vp_level } else { ve_level })
}

/// Exact draws of the marginal at `SIGMA_MAX`: component by stratified
/// index (exact weights), `x = α·(μ + s·n₁ + σ̃·n₂)`.
fn start(alpha: f64) -> Vec<f32> {
    let mut z = vec![0.0f32; 4 * N];
    NoiseStream::new(5, 0).fill(0, &mut z);
    let mut x = Vec::with_capacity(2 * N);
    for i in 0..N {
        let u = (i as f64 + 0.5) / N as f64;
        let k = if u < WEIGHTS[0] {
            0
        } else if u < WEIGHTS[0] + WEIGHTS[1] {
            1
        } else {
            2
        };
        for d in 0..2 {
            let v = MEANS[k][d]
                + STDS[k] * f64::from(z[4 * i + d])
                + SIGMA_MAX * f64::from(z[4 * i + 2 + d]);
            x.push((alpha * v) as f32);
        }
    }
    x
}

/// Component fractions, means and standard deviations of the samples,
/// each assigned to its most likely component.
fn moments(x: &[f32]) -> [(f64, [f64; 2], f64); 3] {
    let mut sum = [[0.0f64; 2]; 3];
    let mut sq = [0.0f64; 3];
    let mut count = [0usize; 3];
    for p in x.chunks(2) {
        let (a, b) = (f64::from(p[0]), f64::from(p[1]));
        let score = |k: usize| {
            let d2 = (a - MEANS[k][0]).powi(2) + (b - MEANS[k][1]).powi(2);
            WEIGHTS[k].ln() - 2.0 * STDS[k].ln() - d2 / (2.0 * STDS[k] * STDS[k])
        };
        let k = (0..3)
            .max_by(|&i, &j| score(i).total_cmp(&score(j)))
            .unwrap_or(0);
        count[k] += 1;
        sum[k][0] += a;
        sum[k][1] += b;
        sq[k] += a * a + b * b;
    }
    [0, 1, 2].map(|k| {
        let c = count[k].max(1) as f64;
        let mean = [sum[k][0] / c, sum[k][1] / c];
        // Isotropic: the variance per axis, pooled over both axes.
        let var = sq[k] / c - mean[0] * mean[0] - mean[1] * mean[1];
        (
            count[k] as f64 / N as f64,
            mean,
            (var / 2.0).max(0.0).sqrt(),
        )
    })
}

/// Runs `method` on `N` samples drawing from the `noise` source and
/// checks the moments.
fn check_with(
    method: &dyn Method,
    steps: usize,
    vp: bool,
    (mean_tol, std_tol): (f64, f64),
    noise: NoiseKind,
) -> Result<()> {
    let cpu = CpuBackend::new();
    let g = grid(steps, vp);
    let alpha = g.row(0)[0].marginal.alpha;
    let mut x = cpu.upload(&[N, 2], &start(alpha))?;
    let model = GmmDenoiser::new(three_blobs_2d(), Arc::new(Sample));
    let schedule: &dyn diffuse_core::NoiseSchedule = if vp { &VpBySigma } else { &VeSchedule };
    let source = noise_source(&cpu, noise, &g, &x, NoiseStream::new(5, 1))?;
    run_with_noise(&cpu, method, &model, schedule, &g, &mut x, source, 0)?;
    let got = moments(&cpu.to_host(&x)?);
    let name = format!(
        "{} ({}, {noise:?})",
        method.name(),
        if vp { "VP" } else { "VE" }
    );
    for k in 0..3 {
        let (frac, mean, std) = got[k];
        let se = fraction_se(WEIGHTS[k], N);
        assert!(
            (frac - WEIGHTS[k]).abs() < 4.0 * se,
            "{name}: component {k} fraction {frac} vs {}",
            WEIGHTS[k]
        );
        for d in 0..2 {
            assert!(
                (mean[d] - MEANS[k][d]).abs() < mean_tol,
                "{name}: component {k} mean {mean:?} vs {:?}",
                MEANS[k]
            );
        }
        assert!(
            (std / STDS[k] - 1.0).abs() < std_tol,
            "{name}: component {k} std {std} vs {}",
            STDS[k]
        );
    }
    Ok(())
}

/// Runs `method` on `N` samples with the public stream's independent
/// draws and checks the moments.
fn check(method: &dyn Method, steps: usize, vp: bool, mean_tol: f64, std_tol: f64) -> Result<()> {
    check_with(method, steps, vp, (mean_tol, std_tol), NoiseKind::Philox)
}

/// Every sampler but `pc`, 100 steps on a VP schedule: means within 0.05
/// (the first-order samplers are off by up to 0.04 at 100 steps, the
/// second-order ones by 0.01), standard deviations within 6 %.
///
/// `pc` is checked in 64 dimensions below: its Langevin step size divides
/// by the norm of a row's score, which in two dimensions is often near 0
/// (a sample near a mode), so its corrections explode on short rows.
#[test]
fn every_stochastic_sampler_reproduces_the_mixture() -> Result<()> {
    for name in stochastic_names().into_iter().filter(|&n| n != "pc") {
        check(by_name(name)?.as_ref(), 100, true, 0.05, 0.06)?;
    }
    Ok(())
}

/// Predictor–corrector on `N(μ, s²I)` in 64 dimensions (2 000 samples):
/// the pooled mean and standard deviation of the coordinates.
#[test]
fn pc_reproduces_a_gaussian_in_64_dimensions() -> Result<()> {
    const D: usize = 64;
    const M: usize = 2_000;
    let (mu, s) = (0.5, 0.3);
    let cpu = CpuBackend::new();
    let g = grid(100, true);
    let alpha = g.row(0)[0].marginal.alpha;
    let mut z = vec![0.0f32; 2 * M * D];
    NoiseStream::new(9, 0).fill(0, &mut z);
    let init: Vec<f32> = (0..M * D)
        .map(|i| {
            (alpha * (mu + s * f64::from(z[2 * i]) + SIGMA_MAX * f64::from(z[2 * i + 1]))) as f32
        })
        .collect();
    let x = cpu.upload(&[M, D], &init)?;
    let gmm = GaussianMixture::new(vec![1.0], vec![vec![mu; D]], vec![s]).unwrap();
    let model = GmmDenoiser::new(gmm, Arc::new(Sample));
    for snr in [0.16, 0.05] {
        let mut y = cpu.zeros(&[M, D])?;
        cpu.copy(&x, &mut y)?;
        run_with_noise(
            &cpu,
            &diffuse_solvers::Pc::new(snr, 1)?,
            &model,
            &VpBySigma,
            &g,
            &mut y,
            Box::new(PhiloxNoise::new(NoiseStream::new(9, 1))),
            0,
        )?;
        let v = cpu.to_host(&y)?;
        let n = v.len() as f64;
        let mean = v.iter().map(|&a| f64::from(a)).sum::<f64>() / n;
        let var = v
            .iter()
            .map(|&a| (f64::from(a) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!((mean - mu).abs() < 0.01, "snr {snr}: mean {mean}");
        assert!(
            (var.sqrt() / s - 1.0).abs() < 0.05,
            "snr {snr}: std {}",
            var.sqrt()
        );
    }
    Ok(())
}

/// Some samplers on a VE schedule too (the reverse VE SDE).
#[test]
fn sde_samplers_reproduce_the_mixture_on_a_ve_schedule() -> Result<()> {
    for name in ["euler-maruyama", "edm"] {
        check(by_name(name)?.as_ref(), 100, false, 0.05, 0.06)?;
    }
    Ok(())
}

/// DPM-Solver++ SDE driven by the Brownian tree (its default in a
/// `Sampler`), VP schedule: the same tolerances as with independent draws.
/// (About 2 s in the test profile: each draw is up to 49 fused passes of
/// 40 000 elements.)
#[test]
fn dpmpp_sde_with_the_brownian_tree_reproduces_the_mixture() -> Result<()> {
    check_with(
        &DpmPpSde::default(),
        100,
        true,
        (0.05, 0.06),
        NoiseKind::BrownianTree,
    )
}

/// The same on a VE schedule; slow (2 s), so run on demand:
/// `cargo test -p diffuse-solvers --test sde_distribution -- --ignored`.
#[test]
#[ignore]
fn dpmpp_sde_with_the_brownian_tree_reproduces_the_mixture_on_a_ve_schedule() -> Result<()> {
    check_with(
        &DpmPpSde::default(),
        100,
        false,
        (0.05, 0.06),
        NoiseKind::BrownianTree,
    )
}

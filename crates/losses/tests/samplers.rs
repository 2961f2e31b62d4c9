//! Noise-level samplers: distributions, schemes, determinism, importance
//! sampling.

use diffuse_losses::{
    Error, ImportanceSampler, LevelDistribution, LevelKind, LevelRng, LevelSampler, Scheme,
    scheme_uniforms, uniform_from_words,
};
use std::f64::consts::{PI, SQRT_2};

const N: usize = 4000;

fn phi(x: f64) -> f64 {
    0.5 * libm::erfc(-x / SQRT_2)
}

/// Kolmogorov–Smirnov distance between the sample and the CDF `cdf`.
fn ks(mut xs: Vec<f64>, cdf: impl Fn(f64) -> f64) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = cdf(x);
            (f - i as f64 / n).max((i + 1) as f64 / n - f)
        })
        .fold(0.0, f64::max)
}

/// The 0.1% critical value of the KS distance, 1.95/√n.
fn ks_limit(n: usize) -> f64 {
    1.95 / (n as f64).sqrt()
}

fn draw(dist: LevelDistribution, scheme: Scheme, seed: u64) -> Vec<f64> {
    LevelSampler::new(dist, scheme, LevelRng::new(seed, 3))
        .unwrap()
        .sample(17, N)
        .unwrap()
}

/// Inverse of a decreasing map of [0, 1] by bisection.
fn invert_decreasing(f: impl Fn(f64) -> f64, y: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > y {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// A reference CDF.
type Cdf = Box<dyn Fn(f64) -> f64>;

#[test]
fn distributions_match_their_cdfs() {
    let lognormal = LevelDistribution::EDM;
    let cases: Vec<(&str, LevelDistribution, Cdf)> = vec![
        (
            "uniform t",
            LevelDistribution::UniformTime {
                t_min: 1e-3,
                t_max: 1.0,
            },
            Box::new(|t| (t - 1e-3) / (1.0 - 1e-3)),
        ),
        (
            "log-normal σ",
            lognormal,
            Box::new(|s: f64| phi((s.ln() + 1.2) / 1.2)),
        ),
        (
            "logit-normal t",
            LevelDistribution::LogitNormalTime {
                mean: 0.5,
                std: 0.8,
            },
            Box::new(|t: f64| phi(((t / (1.0 - t)).ln() - 0.5) / 0.8)),
        ),
        (
            "mode t",
            LevelDistribution::ModeTime { scale: 1.29 },
            Box::new(|t| {
                let f = |u: f64| 1.0 - u - 1.29 * ((PI * u / 2.0).cos().powi(2) - 1.0 + u);
                1.0 - invert_decreasing(f, t)
            }),
        ),
        (
            "log-uniform σ",
            LevelDistribution::LogUniformSigma {
                sigma_min: 0.02,
                sigma_max: 100.0,
            },
            Box::new(|s: f64| (s / 0.02).ln() / (100.0f64 / 0.02).ln()),
        ),
        // Unshifted cosine: σ = tan θ, θ uniform on [atan σ_min, atan σ_max].
        (
            "cosine σ",
            LevelDistribution::CosineInterpolatedSigma {
                image_d: 64.0,
                noise_d_low: 64.0,
                noise_d_high: 64.0,
                sigma_data: 1.0,
                sigma_min: 1e-3,
                sigma_max: 1e3,
            },
            Box::new(|s: f64| {
                let (lo, hi) = (1e-3f64.atan(), 1e3f64.atan());
                (s.atan() - lo) / (hi - lo)
            }),
        ),
        // Shifted cosine (d_image = 128 against 64): σ = k·tan θ, k = 2.
        (
            "shifted cosine σ",
            LevelDistribution::CosineInterpolatedSigma {
                image_d: 128.0,
                noise_d_low: 64.0,
                noise_d_high: 64.0,
                sigma_data: 1.0,
                sigma_min: 1e-2,
                sigma_max: 1e2,
            },
            Box::new(|s: f64| {
                let k = 2.0;
                let (lo, hi) = ((1e-2f64 / k).atan(), (1e2f64 / k).atan());
                ((s / k).atan() - lo) / (hi - lo)
            }),
        ),
    ];
    for (name, dist, cdf) in cases {
        // The map u ↦ level is the quantile function (or its mirror for the
        // decreasing maps of mode and cosine sampling), to high precision.
        let decreasing = dist.quantile(0.25).unwrap() > dist.quantile(0.75).unwrap();
        for k in 1..200 {
            let u = k as f64 / 200.0;
            let f = cdf(dist.quantile(u).unwrap());
            let want = if decreasing { 1.0 - u } else { u };
            assert!((f - want).abs() < 1e-9, "{name}: F(q({u})) = {f}");
        }
        for scheme in [Scheme::Independent, Scheme::Antithetic, Scheme::Stratified] {
            let d = ks(draw(dist, scheme, 11), &cdf);
            println!("{name:>18} {scheme:?}: KS distance {d:.5}");
            assert!(d < ks_limit(N), "{name} {scheme:?}: KS distance {d}");
        }
        // Stratification pins the empirical CDF far closer than chance.
        let d = ks(draw(dist, Scheme::Stratified, 12), &cdf);
        assert!(d <= 1.0 / N as f64 + 1e-9, "{name} stratified: {d}");
    }
}

#[test]
fn log_normal_moments() {
    let logs: Vec<f64> = draw(LevelDistribution::EDM, Scheme::Independent, 5)
        .iter()
        .map(|s| s.ln())
        .collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let var = logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    // Standard errors: 1.2/√n for the mean, ≈ 1.2²·√(2/n) for the variance.
    assert!((mean + 1.2).abs() < 4.0 * 1.2 / n.sqrt(), "mean {mean}");
    assert!(
        (var - 1.44).abs() < 4.0 * 1.44 * (2.0 / n).sqrt(),
        "var {var}"
    );
}

#[test]
fn discrete_uniform_index() {
    let n = 10u32;
    let dist = LevelDistribution::UniformIndex { n };
    assert_eq!(dist.kind(), LevelKind::Index);
    let xs = draw(dist, Scheme::Independent, 2);
    let mut counts = [0usize; 10];
    for x in xs {
        assert!(x == x.floor() && (0.0..10.0).contains(&x));
        counts[x as usize] += 1;
    }
    // χ² with 9 degrees of freedom; 27.9 is its 0.1% point.
    let e = N as f64 / 10.0;
    let chi2: f64 = counts.iter().map(|&c| (c as f64 - e).powi(2) / e).sum();
    assert!(chi2 < 27.9, "χ² = {chi2}, counts {counts:?}");
    // Stratified with B = N: exactly one row per stratum, so the counts are exact.
    let strat = draw(dist, Scheme::Stratified, 2);
    for (k, chunk) in strat.chunks(N / 10).enumerate() {
        assert!(chunk.iter().all(|&x| x == k as f64));
    }
}

#[test]
fn antithetic_pairs_sum_correctly() {
    let rng = LevelRng::new(9, 1);
    let mut u = vec![0.0; 101];
    scheme_uniforms(&rng, Scheme::Antithetic, 4, &mut u).unwrap();
    for pair in u.chunks_exact(2) {
        assert_eq!(pair[0] + pair[1], 1.0);
    }
    // The odd last row is a fresh uniform of its own row.
    assert_eq!(u[100], rng.uniforms(4, 100).unwrap()[0]);

    let sample = |dist| {
        LevelSampler::new(dist, Scheme::Antithetic, rng)
            .unwrap()
            .sample(4, 100)
            .unwrap()
    };
    let t = sample(LevelDistribution::UniformTime {
        t_min: 0.25,
        t_max: 2.0,
    });
    for p in t.chunks_exact(2) {
        assert!((p[0] + p[1] - 2.25).abs() < 1e-15);
    }
    // ln σ is symmetric about P_mean exactly, logit-normal about ½.
    let s = sample(LevelDistribution::EDM);
    for p in s.chunks_exact(2) {
        assert!((p[0].ln() + p[1].ln() + 2.4).abs() < 1e-13);
    }
    let l = sample(LevelDistribution::SD3);
    for p in l.chunks_exact(2) {
        assert!((p[0] + p[1] - 1.0).abs() < 1e-15);
    }
}

#[test]
fn stratified_and_low_discrepancy_fill_every_stratum() {
    let rng = LevelRng::new(1, 2);
    for b in [1usize, 2, 7, 64, 1000] {
        let mut u = vec![0.0; b];
        scheme_uniforms(&rng, Scheme::Stratified, 0, &mut u).unwrap();
        for (i, &x) in u.iter().enumerate() {
            assert!(x > 0.0 && x < 1.0);
            assert!(
                i as f64 / b as f64 <= x && x <= (i + 1) as f64 / b as f64,
                "row {i} of {b}"
            );
        }
        scheme_uniforms(&rng, Scheme::LowDiscrepancy, 0, &mut u).unwrap();
        let mut sorted = u.clone();
        sorted.sort_by(f64::total_cmp);
        for (i, &x) in sorted.iter().enumerate() {
            assert!(i as f64 / b as f64 <= x + 1e-15 && x <= (i + 1) as f64 / b as f64 + 1e-15);
        }
    }
}

#[test]
fn draws_are_deterministic_and_value_stable() {
    // Philox4x32-10 known answer (counter 0, key 0): 6627e8d5 e169c58d
    // bc57ac4c 9b00dbd8, so row 0 of step 0 of stream 0 under seed 0 is
    // ((0x6627e8d5·2²⁰ + (0xe169c58d >> 12)) + ½)·2⁻⁵².
    let u = LevelRng::new(0, 0).uniforms(0, 0).unwrap();
    assert_eq!(u[0], 0.399_046_470_848_964_6);
    assert_eq!(u[0], uniform_from_words(0x6627_e8d5, 0xe169_c58d));
    assert_eq!(u[1], uniform_from_words(0xbc57_ac4c, 0x9b00_dbd8));

    let s = LevelSampler::new(
        LevelDistribution::EDM,
        Scheme::Independent,
        LevelRng::new(42, 7),
    )
    .unwrap();
    let a = s.sample(100, 16).unwrap();
    assert_eq!(a, s.sample(100, 16).unwrap());
    // A row's value does not depend on the batch size.
    assert_eq!(&a[..8], &s.sample(100, 8).unwrap()[..]);
    assert_ne!(a, s.sample(101, 16).unwrap());
    let other = LevelSampler {
        rng: LevelRng::new(42, 8),
        ..s
    };
    assert_ne!(a, other.sample(100, 16).unwrap());
    assert!(s.sample(1 << 32, 1).is_err());
}

#[test]
fn cosine_interpolated_spans_sigma_range() {
    let dist = LevelDistribution::CosineInterpolatedSigma {
        image_d: 64.0,
        noise_d_low: 32.0,
        noise_d_high: 64.0,
        sigma_data: 0.5,
        sigma_min: 0.002,
        sigma_max: 700.0,
    };
    assert!((dist.quantile(1e-12).unwrap() - 700.0).abs() < 1e-6);
    assert!((dist.quantile(1.0 - 1e-12).unwrap() - 0.002).abs() < 1e-9);
    let mut prev = f64::INFINITY;
    for k in 1..1000 {
        let s = dist.quantile(k as f64 / 1000.0).unwrap();
        assert!(s < prev, "not decreasing at {k}");
        prev = s;
    }
}

#[test]
fn invalid_distributions_are_typed_errors() {
    let bad = [
        LevelDistribution::UniformTime {
            t_min: 1.0,
            t_max: 1.0,
        },
        LevelDistribution::UniformIndex { n: 0 },
        LevelDistribution::LogNormalSigma {
            p_mean: 0.0,
            p_std: 0.0,
        },
        LevelDistribution::LogitNormalTime {
            mean: f64::NAN,
            std: 1.0,
        },
        LevelDistribution::ModeTime { scale: 2.0 },
        LevelDistribution::LogUniformSigma {
            sigma_min: 1.0,
            sigma_max: 0.5,
        },
        LevelDistribution::CosineInterpolatedSigma {
            image_d: 0.0,
            noise_d_low: 32.0,
            noise_d_high: 64.0,
            sigma_data: 1.0,
            sigma_min: 1e-3,
            sigma_max: 1e3,
        },
    ];
    for d in bad {
        assert!(
            matches!(
                LevelSampler::new(d, Scheme::Independent, LevelRng::new(0, 0)),
                Err(Error::InvalidArgument { .. })
            ),
            "{d:?}"
        );
    }
    assert!(LevelDistribution::EDM.quantile(0.0).is_err());
    assert!(LevelDistribution::EDM.quantile(1.0).is_err());
}

#[test]
fn importance_sampler_follows_nichol_dhariwal() {
    let n = 20;
    let mut s = ImportanceSampler::new(n, LevelRng::new(3, 4)).unwrap();
    // Uniform, with unit weights, until every timestep has 10 losses.
    assert!(!s.warmed_up());
    assert!(s.sample(0, 50).unwrap().iter().all(|d| d.weight == 1.0));
    for round in 0..10 {
        let ts: Vec<usize> = (0..n).collect();
        // Loss of timestep t: (t + 1)·(1 + small variation).
        let ls: Vec<f64> = ts
            .iter()
            .map(|&t| (t as f64 + 1.0) * (1.0 + 0.01 * round as f64))
            .collect();
        assert!(!s.warmed_up());
        s.update(&ts, &ls).unwrap();
    }
    assert!(s.warmed_up());
    let p = s.probabilities();
    assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-14);
    // p_t ∝ √E[L²] ∝ t + 1, mixed with 1/1000 of the uniform distribution.
    let total: f64 = (1..=n).map(|t| t as f64).sum();
    for (t, &q) in p.iter().enumerate() {
        let want = 0.999 * (t as f64 + 1.0) / total + 0.001 / n as f64;
        assert!((q - want).abs() < 1e-12, "p[{t}] = {q}, want {want}");
    }
    // The importance weights average to 1 under p: exactly, and on draws.
    let exact: f64 = p.iter().map(|q| q / (n as f64 * q)).sum();
    assert!((exact - 1.0).abs() < 1e-14);
    let draws = s.sample(1, N).unwrap();
    let mean = draws.iter().map(|d| d.weight).sum::<f64>() / N as f64;
    let var = p
        .iter()
        .map(|q| q * (1.0 / (n as f64 * q) - 1.0).powi(2))
        .sum::<f64>();
    assert!(
        (mean - 1.0).abs() < 4.0 * (var / N as f64).sqrt(),
        "mean weight {mean}"
    );
    // The draws follow p (χ², 19 degrees of freedom; 43.8 is the 0.1% point).
    let mut counts = vec![0usize; n];
    for d in &draws {
        counts[d.timestep] += 1;
        assert_eq!(d.weight, 1.0 / (n as f64 * p[d.timestep]));
    }
    let chi2: f64 = counts
        .iter()
        .zip(&p)
        .map(|(&c, &q)| (c as f64 - N as f64 * q).powi(2) / (N as f64 * q))
        .sum();
    assert!(chi2 < 43.8, "χ² = {chi2}");
}

#[test]
fn importance_history_drops_the_oldest_loss() {
    let mut s = ImportanceSampler::with_options(2, 2, 0.0, LevelRng::new(0, 0)).unwrap();
    s.update(&[0, 0, 1, 1], &[1.0, 1.0, 1.0, 1.0]).unwrap();
    assert_eq!(s.probabilities(), vec![0.5, 0.5]);
    // Timestep 0 now holds [1, 3]: √E[L²] = √5 against 1.
    s.update(&[0], &[3.0]).unwrap();
    let p = s.probabilities();
    let r = 5.0f64.sqrt();
    assert!((p[0] - r / (r + 1.0)).abs() < 1e-15);
    assert!(s.update(&[2], &[1.0]).is_err());
    assert!(s.update(&[0], &[f64::NAN]).is_err());
    assert!(s.update(&[0, 1], &[1.0]).is_err());
    assert!(ImportanceSampler::new(0, LevelRng::new(0, 0)).is_err());
    assert!(ImportanceSampler::with_options(3, 10, 1.5, LevelRng::new(0, 0)).is_err());
}

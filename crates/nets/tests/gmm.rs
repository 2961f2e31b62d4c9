//! The exact Gaussian-mixture denoiser: the posterior mean against
//! independent computations (closed form, quadrature, Tweedie's formula),
//! the conformance mixtures, the output in each parameterisation, and the
//! errors.

use std::path::PathBuf;
use std::sync::Arc;

use diffuse_core::{Affine, Backend, CpuBackend};
use diffuse_nets::{
    Condition, Denoiser, Error, GaussianMixture, GmmDenoiser, Marginal, NoiseLevel,
    Parameterization, Result,
};
use serde_json::Value;

const LN_2PI: f64 = 1.837_877_066_409_345_5;

fn marginal(alpha: f64, sigma: f64) -> Marginal {
    Marginal::new(alpha, sigma).unwrap()
}

/// Two components in one dimension.
fn mixture_1d() -> GaussianMixture {
    GaussianMixture::new(vec![0.3, 0.7], vec![vec![-2.0], vec![1.5]], vec![0.5, 0.8]).unwrap()
}

/// Three components in four dimensions.
fn mixture_4d() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![
            vec![1.0, -0.5, 0.25, 2.0],
            vec![-1.5, 0.75, 1.0, -0.5],
            vec![0.2, 2.0, -1.75, 0.0],
        ],
        vec![0.3, 0.5, 0.8],
    )
    .unwrap()
}

/// Deterministic points in `[-3, 3)`.
fn points(n: usize, d: usize, seed: u64) -> Vec<Vec<f64>> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            (0..d)
                .map(|_| {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    (s >> 11) as f64 / (1u64 << 53) as f64 * 6.0 - 3.0
                })
                .collect()
        })
        .collect()
}

const MARGINALS: [(f64, f64); 6] = [
    (1.0, 0.5),
    (0.6, 0.8),
    (0.2, 1.0),
    (2.0, 0.3),
    (1.0, 3.0),
    (0.05, 0.999),
];

#[test]
fn one_component_is_the_gaussian_posterior_mean() {
    let mu = vec![0.5, -1.0, 2.0];
    let s: f64 = 0.7;
    let gmm = GaussianMixture::new(vec![1.0], vec![mu.clone()], vec![s]).unwrap();
    for (alpha, sigma) in MARGINALS {
        for x in points(5, 3, 1) {
            let got = gmm.posterior_mean(&x, marginal(alpha, sigma)).unwrap();
            let gain = alpha * s * s / (alpha * alpha * s * s + sigma * sigma);
            for i in 0..3 {
                let want = mu[i] + gain * (x[i] - alpha * mu[i]);
                assert!(
                    (got[i] - want).abs() <= 1e-13 * (1.0 + want.abs()),
                    "(α, σ) = ({alpha}, {sigma}): {} vs {want}",
                    got[i]
                );
            }
        }
    }
}

/// `E[x₀ | x]` by Simpson's rule over `x₀ ∈ [−20, 20]` (20001 points).
fn quadrature_mean(gmm: &GaussianMixture, x: f64, alpha: f64, sigma: f64) -> f64 {
    let n = 20_001;
    let (lo, hi) = (-20.0, 20.0);
    let h = (hi - lo) / (n - 1) as f64;
    let log_integrand = |x0: f64| {
        let prior: f64 = (0..gmm.components())
            .map(|k| {
                let (w, m, s) = (gmm.weights()[k], gmm.means()[k][0], gmm.stds()[k]);
                w * (-(x0 - m).powi(2) / (2.0 * s * s)).exp() / s
            })
            .sum();
        prior.ln() - (x - alpha * x0).powi(2) / (2.0 * sigma * sigma)
    };
    let logs: Vec<f64> = (0..n).map(|i| log_integrand(lo + i as f64 * h)).collect();
    let max = logs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let (mut num, mut den) = (0.0, 0.0);
    for (i, l) in logs.iter().enumerate() {
        let c = if i == 0 || i == n - 1 {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let p = c * (l - max).exp();
        num += p * (lo + i as f64 * h);
        den += p;
    }
    num / den
}

#[test]
fn two_components_match_quadrature() {
    let gmm = mixture_1d();
    for (alpha, sigma) in MARGINALS {
        for x in [-3.0, -0.4, 0.0, 0.7, 2.5] {
            let got = gmm.posterior_mean(&[x], marginal(alpha, sigma)).unwrap()[0];
            let want = quadrature_mean(&gmm, x, alpha, sigma);
            assert!(
                (got - want).abs() < 1e-9,
                "x = {x}, (α, σ) = ({alpha}, {sigma}): {got} vs {want}"
            );
        }
    }
}

/// `ln p_t(x)` with `p_t = Σₖ wₖ N(α μₖ, vₖ I)`, written out directly.
fn log_p_t(gmm: &GaussianMixture, x: &[f64], alpha: f64, sigma: f64) -> f64 {
    let d = x.len() as f64;
    let terms: Vec<f64> = (0..gmm.components())
        .map(|k| {
            let v = alpha * alpha * gmm.stds()[k].powi(2) + sigma * sigma;
            let dist2: f64 = x
                .iter()
                .zip(&gmm.means()[k])
                .map(|(xi, mi)| (xi - alpha * mi).powi(2))
                .sum();
            gmm.weights()[k].ln()
                - 0.5 * d * (2.0 * std::f64::consts::PI * v).ln()
                - dist2 / (2.0 * v)
        })
        .collect();
    let max = terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln()
}

#[test]
fn tweedie_formula_holds() {
    let gmm = mixture_4d();
    let h = 1e-5;
    for (alpha, sigma) in MARGINALS {
        for x in points(6, 4, 2) {
            let got = gmm.posterior_mean(&x, marginal(alpha, sigma)).unwrap();
            for i in 0..4 {
                let (mut up, mut down) = (x.clone(), x.clone());
                up[i] += h;
                down[i] -= h;
                let grad = (log_p_t(&gmm, &up, alpha, sigma) - log_p_t(&gmm, &down, alpha, sigma))
                    / (2.0 * h);
                let want = (x[i] + sigma * sigma * grad) / alpha;
                assert!(
                    (got[i] - want).abs() < 1e-6 * (1.0 + want.abs()),
                    "(α, σ) = ({alpha}, {sigma}), element {i}: {} vs {want}",
                    got[i]
                );
            }
        }
    }
}

#[test]
fn special_cases_are_exact() {
    let gmm = mixture_4d();
    let x = [0.3, -1.2, 2.5, 0.0];
    // No noise: x/α.
    let got = gmm.posterior_mean(&x, marginal(0.8, 0.0)).unwrap();
    assert_eq!(got, x.iter().map(|v| v / 0.8).collect::<Vec<_>>());
    // No signal: the prior mean.
    let got = gmm.posterior_mean(&x, marginal(0.0, 1.3)).unwrap();
    let prior: Vec<f64> = (0..4)
        .map(|i| (0..3).map(|k| gmm.weights()[k] * gmm.means()[k][i]).sum())
        .collect();
    for (g, p) in got.iter().zip(&prior) {
        assert!((g - p).abs() < 1e-15);
    }
    assert_eq!(gmm.prior_mean(), got.as_slice());
}

#[test]
fn posterior_is_invariant_under_a_common_scale() {
    let gmm = mixture_4d();
    for (alpha, sigma) in MARGINALS {
        for x in points(3, 4, 3) {
            let base = gmm.posterior_mean(&x, marginal(alpha, sigma)).unwrap();
            for c in [1e-200, 1e-3, 7.0, 1e200] {
                let xs: Vec<f64> = x.iter().map(|v| v * c).collect();
                let got = gmm
                    .posterior_mean(&xs, marginal(alpha * c, sigma * c))
                    .unwrap();
                for (g, b) in got.iter().zip(&base) {
                    assert!(
                        (g - b).abs() < 1e-12 * (1.0 + b.abs()),
                        "c = {c}: {g} vs {b}"
                    );
                }
            }
        }
    }
}

#[test]
fn zero_weight_components_are_ignored() {
    let with_zero = GaussianMixture::new(
        vec![0.0, 1.0],
        vec![vec![5.0, 5.0], vec![1.0, -1.0]],
        vec![0.1, 0.5],
    )
    .unwrap();
    let single = GaussianMixture::new(vec![1.0], vec![vec![1.0, -1.0]], vec![0.5]).unwrap();
    let x = [4.9, 5.1];
    let m = marginal(1.0, 0.2);
    assert_eq!(
        with_zero.posterior_mean(&x, m).unwrap(),
        single.posterior_mean(&x, m).unwrap()
    );
    assert_eq!(
        with_zero.log_density(&x).unwrap(),
        single.log_density(&x).unwrap()
    );
}

#[test]
fn weights_are_normalised() {
    let gmm = GaussianMixture::new(
        vec![0.5, 0.5000004],
        vec![vec![0.0], vec![1.0]],
        vec![1.0, 1.0],
    )
    .unwrap();
    let sum: f64 = gmm.weights().iter().sum();
    assert!((sum - 1.0).abs() < 1e-15);
    assert!((gmm.weights()[0] - 0.5 / 1.0000004).abs() < 1e-16);
}

#[test]
fn log_density_matches_direct_computation() {
    let mu = [0.5, -1.0, 2.0];
    let s: f64 = 0.7;
    let gmm = GaussianMixture::new(vec![1.0], vec![mu.to_vec()], vec![s]).unwrap();
    for x in points(5, 3, 4) {
        let dist2: f64 = x.iter().zip(&mu).map(|(a, b)| (a - b).powi(2)).sum();
        let want = -1.5 * (LN_2PI + 2.0 * s.ln()) - dist2 / (2.0 * s * s);
        let got = gmm.log_density(&x).unwrap();
        assert!(
            (got - want).abs() < 1e-13 * (1.0 + want.abs()),
            "{got} vs {want}"
        );
    }
    // Two components: the log of the plain sum of densities.
    let gmm = mixture_1d();
    for x in [-2.0, 0.0, 1.0, 3.0] {
        let want: f64 = (0..2)
            .map(|k| {
                let (w, m, s) = (gmm.weights()[k], gmm.means()[k][0], gmm.stds()[k]);
                w * (-(x - m).powi(2) / (2.0 * s * s)).exp()
                    / (s * (2.0 * std::f64::consts::PI).sqrt())
            })
            .sum::<f64>()
            .ln();
        assert!((gmm.log_density(&[x]).unwrap() - want).abs() < 1e-13);
    }
}

/// Replaces the Python tokens `NaN`, `Infinity` and `-Infinity` outside
/// strings with `null`, so serde_json reads the conformance files.
fn python_json_to_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut in_string = false;
    while let Some(c) = rest.chars().next() {
        if in_string {
            if c == '\\' {
                let escaped: String = rest.chars().take(2).collect();
                out.push_str(&escaped);
                rest = &rest[escaped.len()..];
                continue;
            }
            if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        } else if let Some(token) = ["-Infinity", "Infinity", "NaN"]
            .into_iter()
            .find(|t| rest.starts_with(t))
        {
            out.push_str("null");
            rest = &rest[token.len()..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[test]
fn every_conformance_mixture_parses() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance");
    let mut cases = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let case: Value = serde_json::from_str(&python_json_to_json(&text))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let gmm = GaussianMixture::from_json_value(&case["gmm"])
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(gmm.dim(), 16, "{}", path.display());
        assert_eq!(gmm.components(), 3);
        assert_eq!(gmm.weights(), &[0.5, 0.3, 0.2]);
        assert_eq!(gmm.stds(), &[0.3, 0.5, 0.8]);
        for (mu, norm) in gmm.means().iter().zip([2.0, 2.5, 3.0]) {
            let n = mu.iter().map(|v| v * v).sum::<f64>().sqrt();
            assert!((n - norm).abs() < 1e-5, "|μ| = {n}, expected {norm}");
        }
        // The same object read as a standalone file's text.
        let standalone = GaussianMixture::from_json_str(&case["gmm"].to_string()).unwrap();
        assert_eq!(standalone, gmm);
        cases += 1;
    }
    assert!(cases >= 20, "only {cases} conformance cases found");
}

#[test]
fn from_path_reads_a_file_and_reports_io_errors() {
    let path = std::env::temp_dir().join(format!("diffuse-nets-gmm-{}.json", std::process::id()));
    std::fs::write(
        &path,
        r#"{"weights": [0.25, 0.75], "means": [[0, 1], [2, 3]], "stds": [1, 2], "note": "x"}"#,
    )
    .unwrap();
    let gmm = GaussianMixture::from_path(&path);
    std::fs::remove_file(&path).unwrap();
    let gmm = gmm.unwrap();
    assert_eq!((gmm.dim(), gmm.components()), (2, 2));
    assert_eq!(gmm.means()[1], vec![2.0, 3.0]);
    match GaussianMixture::from_path(&path) {
        Err(Error::Io(e)) => assert!(e.to_string().contains("diffuse-nets-gmm")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

// --- Parameterisations (local, as this crate does not depend on diffuse-param).

/// ε-prediction.
struct Eps;
impl Parameterization for Eps {
    fn name(&self) -> &str {
        "epsilon"
    }
    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        Ok(Affine {
            a: 1.0 / m.alpha,
            b: -m.sigma / m.alpha,
        })
    }
}

/// v-prediction.
struct V;
impl Parameterization for V {
    fn name(&self) -> &str {
        "v"
    }
    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        let n = m.alpha * m.alpha + m.sigma * m.sigma;
        Ok(Affine {
            a: m.alpha / n,
            b: -m.sigma / n,
        })
    }
}

/// x₀-prediction.
struct X0;
impl Parameterization for X0 {
    fn name(&self) -> &str {
        "x0"
    }
    fn x0_map(&self, _m: Marginal) -> Result<Affine> {
        Ok(Affine { a: 0.0, b: 1.0 })
    }
}

/// EDM preconditioning (σ_d = 0.5), with a non-trivial input scale, which
/// must not affect the result.
struct EdmLike;
impl Parameterization for EdmLike {
    fn name(&self) -> &str {
        "edm"
    }
    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        let s = m.sigma / m.alpha;
        let d2 = 0.25;
        Ok(Affine {
            a: d2 / (s * s + d2) / m.alpha,
            b: s * 0.5 / (s * s + d2).sqrt(),
        })
    }
    fn input_scale(&self, m: Marginal) -> f64 {
        1.0 / (m.sigma * m.sigma + 0.25 * m.alpha * m.alpha).sqrt()
    }
}

fn levels_for(marginals: &[(f64, f64)]) -> Vec<NoiseLevel> {
    marginals
        .iter()
        .enumerate()
        .map(|(i, &(a, s))| NoiseLevel {
            t: i as f64,
            marginal: marginal(a, s),
        })
        .collect()
}

#[test]
fn outputs_map_back_to_the_posterior_mean() {
    let gmm = mixture_4d();
    let cpu = CpuBackend::new();
    let rows = MARGINALS.len();
    let data: Vec<f32> = points(rows, 4, 5)
        .concat()
        .iter()
        .map(|&v| v as f32)
        .collect();
    // Rows of shape [2, 2]: the row length is the product of the other axes.
    let shape = [rows, 2, 2];
    let x = cpu.upload(&shape, &data).unwrap();
    let levels = levels_for(&MARGINALS);
    let params: [Arc<dyn Parameterization>; 4] =
        [Arc::new(Eps), Arc::new(V), Arc::new(X0), Arc::new(EdmLike)];
    for p in params {
        let model = GmmDenoiser::new(gmm.clone(), Arc::clone(&p));
        let dyn_model: &dyn Denoiser<CpuBackend> = &model;
        assert_eq!(dyn_model.parameterization().name(), p.name());
        let mut out = cpu.zeros(&shape).unwrap();
        dyn_model
            .predict(&cpu, &x, &levels, Condition::Unconditional, &mut out)
            .unwrap();
        let out = cpu.to_host(&out).unwrap();
        for (r, level) in levels.iter().enumerate() {
            let xr: Vec<f64> = data[4 * r..4 * r + 4]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            let want = gmm.posterior_mean(&xr, level.marginal).unwrap();
            let map = p.x0_map(level.marginal).unwrap();
            let scale = want.iter().chain(&xr).fold(1.0f64, |m, v| m.max(v.abs()));
            for i in 0..4 {
                let back = map.a * xr[i] + map.b * f64::from(out[4 * r + i]);
                assert!(
                    (back - want[i]).abs() < 1e-6 * scale,
                    "{} row {r}: {back} vs {}",
                    p.name(),
                    want[i]
                );
            }
        }
    }
}

#[test]
fn large_batches_agree_with_the_per_row_computation() {
    let gmm = mixture_4d();
    let cpu = CpuBackend::new();
    let rows = 3000;
    let data: Vec<f32> = points(rows, 4, 6)
        .concat()
        .iter()
        .map(|&v| v as f32)
        .collect();
    let x = cpu.upload(&[rows, 4], &data).unwrap();
    let marginals: Vec<(f64, f64)> = (0..rows).map(|r| MARGINALS[r % MARGINALS.len()]).collect();
    let levels = levels_for(&marginals);
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(X0));
    let mut out = cpu.zeros(&[rows, 4]).unwrap();
    model
        .predict(&cpu, &x, &levels, Condition::Unconditional, &mut out)
        .unwrap();
    let out = cpu.to_host(&out).unwrap();
    for (r, level) in levels.iter().enumerate() {
        let xr: Vec<f64> = data[4 * r..4 * r + 4]
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        let want = gmm.posterior_mean(&xr, level.marginal).unwrap();
        for i in 0..4 {
            assert_eq!(out[4 * r + i], want[i] as f32);
        }
    }
}

#[test]
fn special_marginals_in_the_denoiser() {
    let gmm = mixture_4d();
    let cpu = CpuBackend::new();
    let x = cpu.upload(&[1, 4], &[0.5, 1.0, -1.0, 2.0]).unwrap();
    let mut out = cpu.zeros(&[1, 4]).unwrap();
    // x₀-prediction at α = 0: the prior mean.
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(X0));
    model
        .predict(
            &cpu,
            &x,
            &levels_for(&[(0.0, 1.0)]),
            Condition::Unconditional,
            &mut out,
        )
        .unwrap();
    let want: Vec<f32> = gmm.prior_mean().iter().map(|&v| v as f32).collect();
    assert_eq!(cpu.to_host(&out).unwrap(), want);
    // ε-prediction is undefined at α = 0 (infinite map) and at σ = 0 (b = 0).
    let model = GmmDenoiser::new(gmm, Arc::new(Eps));
    for m in [(0.0, 1.0), (1.0, 0.0)] {
        let err = model
            .predict(
                &cpu,
                &x,
                &levels_for(&[m]),
                Condition::Unconditional,
                &mut out,
            )
            .unwrap_err();
        assert!(matches!(err, Error::Undefined { .. }), "{m:?}: {err}");
    }
}

// --- Errors.

fn json_error(text: &str) -> Error {
    match GaussianMixture::from_json_str(text) {
        Ok(g) => panic!("expected an error for {text}, got {g:?}"),
        Err(e) => e,
    }
}

fn assert_invalid(err: Error, field: &str) {
    match err {
        Error::InvalidArgument { name, .. } => assert_eq!(name, field),
        other => panic!("expected an invalid {field}, got {other}"),
    }
}

#[test]
fn bad_mixtures_are_typed_errors() {
    assert_invalid(json_error("{\"weights\": [1.0"), "Gaussian-mixture JSON");
    assert_invalid(json_error("[1, 2]"), "Gaussian-mixture JSON");
    assert_invalid(json_error(r#"{"means": [[0]], "stds": [1]}"#), "weights");
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[null]], "stds": [1]}"#),
        "means",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [0], "stds": [1]}"#),
        "means",
    );
    assert_invalid(
        json_error(r#"{"weights": [0.5, 0.5], "means": [[0]], "stds": [1, 1]}"#),
        "means",
    );
    assert_invalid(
        json_error(r#"{"weights": [0.5, 0.5], "means": [[0], [1]], "stds": [1]}"#),
        "stds",
    );
    assert_invalid(
        json_error(r#"{"weights": [0.5, 0.5], "means": [[0], [1, 2]], "stds": [1, 1]}"#),
        "means",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[]], "stds": [1]}"#),
        "means",
    );
    assert_invalid(
        json_error(r#"{"weights": [0.5, 0.5], "means": [[0], [1]], "stds": [1, -1]}"#),
        "stds",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[0]], "stds": [0]}"#),
        "stds",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[0]], "stds": [1e-200]}"#),
        "stds",
    );
    assert_invalid(
        json_error(r#"{"weights": [0.5, 0.4], "means": [[0], [1]], "stds": [1, 1]}"#),
        "weights",
    );
    assert_invalid(
        json_error(r#"{"weights": [1.5, -0.5], "means": [[0], [1]], "stds": [1, 1]}"#),
        "weights",
    );
    assert_invalid(
        json_error(r#"{"weights": [], "means": [], "stds": []}"#),
        "weights",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[0]], "stds": [1], "dim": 2}"#),
        "dim",
    );
    assert_invalid(
        json_error(r#"{"weights": [1], "means": [[0]], "stds": [1], "components": 3}"#),
        "components",
    );
    for (w, m, s) in [
        (f64::NAN, 0.0, 1.0),
        (1.0, f64::INFINITY, 1.0),
        (1.0, 0.0, f64::NAN),
    ] {
        let err = GaussianMixture::new(vec![w], vec![vec![m]], vec![s]).unwrap_err();
        assert!(matches!(err, Error::NonFinite(_)), "{err}");
    }
}

#[test]
fn bad_posterior_inputs_are_typed_errors() {
    let gmm = mixture_4d();
    let m = marginal(0.6, 0.8);
    assert!(matches!(
        gmm.posterior_mean(&[0.0; 3], m),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        gmm.posterior_mean_into(&[0.0; 4], m, &mut [0.0; 5]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        gmm.posterior_mean(&[0.0, f64::NAN, 0.0, 0.0], m),
        Err(Error::NonFinite(_))
    ));
    for (alpha, sigma) in [
        (-1.0, 1.0),
        (0.0, 0.0),
        (f64::NAN, 1.0),
        (1.0, f64::INFINITY),
    ] {
        let bad = Marginal { alpha, sigma };
        assert!(matches!(
            gmm.posterior_mean(&[0.0; 4], bad),
            Err(Error::InvalidArgument { .. })
        ));
    }
    // Overflow: x/α beyond f64.
    assert!(matches!(
        gmm.posterior_mean(&[1e300; 4], marginal(1e-10, 0.0)),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(
        gmm.log_density(&[0.0; 2]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        gmm.log_density(&[f64::INFINITY; 4]),
        Err(Error::NonFinite(_))
    ));
}

#[test]
fn bad_denoiser_calls_are_typed_errors() {
    let model = GmmDenoiser::new(mixture_4d(), Arc::new(V));
    let cpu = CpuBackend::new();
    let levels = levels_for(&[(0.6, 0.8), (1.0, 0.5)]);
    let x = cpu.upload(&[2, 4], &[0.0; 8]).unwrap();
    let mut out = cpu.zeros(&[2, 4]).unwrap();
    let predict = |x: &_, levels: &[NoiseLevel], cond, out: &mut _| {
        Denoiser::<CpuBackend>::predict(&model, &cpu, x, levels, cond, out)
    };
    // Row length 3 against dimension 4.
    let x3 = cpu.upload(&[2, 3], &[0.0; 6]).unwrap();
    let mut out3 = cpu.zeros(&[2, 3]).unwrap();
    assert!(matches!(
        predict(&x3, &levels, Condition::Unconditional, &mut out3),
        Err(Error::ShapeMismatch { .. })
    ));
    // A one-axis tensor has rows of length 1.
    let x1 = cpu.upload(&[8], &[0.0; 8]).unwrap();
    let mut out1 = cpu.zeros(&[8]).unwrap();
    assert!(matches!(
        predict(
            &x1,
            &levels_for(&[(0.6, 0.8); 8]),
            Condition::Unconditional,
            &mut out1
        ),
        Err(Error::ShapeMismatch { .. })
    ));
    // Levels count.
    assert!(matches!(
        predict(&x, &levels[..1], Condition::Unconditional, &mut out),
        Err(Error::ShapeMismatch { .. })
    ));
    // out shaped differently from x.
    let mut wrong = cpu.zeros(&[4, 2]).unwrap();
    assert!(matches!(
        predict(&x, &levels, Condition::Unconditional, &mut wrong),
        Err(Error::ShapeMismatch { .. })
    ));
    // Conditions.
    let labels = [Some(1), None];
    let err = predict(&x, &levels, Condition::Class(&labels), &mut out).unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
    assert!(err.to_string().contains("unconditional"));
    let cond = cpu.zeros(&[2, 1]).unwrap();
    assert!(matches!(
        predict(&x, &levels, Condition::Tensor(&cond), &mut out),
        Err(Error::Unsupported(_))
    ));
    // A hand-built invalid marginal.
    let bad = [
        levels[0],
        NoiseLevel {
            t: 0.0,
            marginal: Marginal {
                alpha: -1.0,
                sigma: 1.0,
            },
        },
    ];
    assert!(matches!(
        predict(&x, &bad, Condition::Unconditional, &mut out),
        Err(Error::InvalidArgument { .. })
    ));
    // A non-finite state.
    let xn = cpu
        .upload(&[2, 4], &[0.0, 0.0, 0.0, 0.0, 0.0, f32::NAN, 0.0, 0.0])
        .unwrap();
    assert!(matches!(
        predict(&xn, &levels, Condition::Unconditional, &mut out),
        Err(Error::NonFinite(_))
    ));
    // Nothing above wrote to `out`.
    assert_eq!(cpu.to_host(&out).unwrap(), vec![0.0; 8]);
}

// --- The Jacobian of the posterior mean.

/// Central differences of the posterior mean, `J[i][j] = ∂E[x₀ | x]ᵢ/∂xⱼ`.
fn fd_jacobian(gmm: &GaussianMixture, x: &[f64], m: Marginal) -> Vec<f64> {
    let d = x.len();
    let mut jac = vec![0.0; d * d];
    for j in 0..d {
        let h = 1e-5 * x[j].abs().max(1.0);
        let mut xp = x.to_vec();
        let mut xm = x.to_vec();
        xp[j] += h;
        xm[j] -= h;
        let (fp, fm) = (
            gmm.posterior_mean(&xp, m).unwrap(),
            gmm.posterior_mean(&xm, m).unwrap(),
        );
        for i in 0..d {
            jac[i * d + j] = (fp[i] - fm[i]) / (2.0 * h);
        }
    }
    jac
}

#[test]
fn jacobian_matches_finite_differences_and_is_symmetric() {
    for gmm in [mixture_1d(), mixture_4d()] {
        let d = gmm.dim();
        for (k, x) in points(8, d, 31).into_iter().enumerate() {
            for &(a, s) in &MARGINALS {
                let m = marginal(a, s);
                let jac = gmm.posterior_jacobian(&x, m).unwrap();
                let fd = fd_jacobian(&gmm, &x, m);
                let scale = jac.iter().fold(1.0f64, |acc, v| acc.max(v.abs()));
                for (i, (e, f)) in jac.iter().zip(&fd).enumerate() {
                    assert!(
                        (e - f).abs() < 1e-6 * scale,
                        "d={d} point {k} (α, σ)=({a}, {s}) entry {i}: {e} vs {f}"
                    );
                }
                for i in 0..d {
                    for j in 0..d {
                        assert!((jac[i * d + j] - jac[j * d + i]).abs() <= 1e-12 * scale);
                    }
                }
                // Divergence = trace; VJP = vᵀJ.
                let trace: f64 = (0..d).map(|i| jac[i * d + i]).sum();
                let div = gmm.posterior_divergence(&x, m).unwrap();
                assert!((div - trace).abs() < 1e-12 * scale * d as f64);
                let v: Vec<f64> = (0..d).map(|i| 0.5 - i as f64 * 0.75).collect();
                let mut vjp = vec![0.0; d];
                gmm.posterior_vjp_into(&x, m, &v, &mut vjp).unwrap();
                for j in 0..d {
                    let want: f64 = (0..d).map(|i| v[i] * jac[i * d + j]).sum();
                    assert!((vjp[j] - want).abs() < 1e-12 * scale * d as f64);
                }
            }
        }
    }
}

#[test]
fn jacobian_of_one_gaussian_is_the_posterior_gain() {
    // One component N(μ, s²I): E[x₀|x] = μ + α s²/(α² s² + σ²)·(x − αμ),
    // so J = α s²/(α² s² + σ²)·I.
    let gmm = GaussianMixture::new(vec![1.0], vec![vec![0.5, -1.0, 2.0]], vec![0.7]).unwrap();
    for &(a, s) in &MARGINALS {
        let m = marginal(a, s);
        let g = a * 0.49 / (a * a * 0.49 + s * s);
        let jac = gmm.posterior_jacobian(&[0.3, 1.0, -2.0], m).unwrap();
        for i in 0..3 {
            for j in 0..3 {
                let want = if i == j { g } else { 0.0 };
                assert!((jac[i * 3 + j] - want).abs() < 1e-14);
            }
        }
        let div = gmm.posterior_divergence(&[0.3, 1.0, -2.0], m).unwrap();
        assert!((div - 3.0 * g).abs() < 1e-14);
    }
}

#[test]
fn jacobian_special_cases_are_exact() {
    let gmm = mixture_4d();
    let x = [0.3, -0.2, 1.0, 0.5];
    // σ = 0: x̂₀ = x/α.
    let jac = gmm.posterior_jacobian(&x, marginal(2.0, 0.0)).unwrap();
    for i in 0..4 {
        for j in 0..4 {
            assert_eq!(jac[i * 4 + j], if i == j { 0.5 } else { 0.0 });
        }
    }
    assert_eq!(
        gmm.posterior_divergence(&x, marginal(2.0, 0.0)).unwrap(),
        2.0
    );
    // α = 0: x carries no information.
    assert!(
        gmm.posterior_jacobian(&x, marginal(0.0, 1.0))
            .unwrap()
            .iter()
            .all(|&v| v == 0.0)
    );
    assert_eq!(
        gmm.posterior_divergence(&x, marginal(0.0, 1.0)).unwrap(),
        0.0
    );
    // Invariance under a common scale of (x, α, σ): J scales by 1/c.
    let c = 1e3;
    let m = marginal(0.6, 0.8);
    let m_c = marginal(0.6 * c, 0.8 * c);
    let xc: Vec<f64> = x.iter().map(|v| v * c).collect();
    let (d1, d2) = (
        gmm.posterior_divergence(&x, m).unwrap(),
        gmm.posterior_divergence(&xc, m_c).unwrap(),
    );
    assert!((d1 - c * d2).abs() < 1e-12 * d1.abs().max(1.0));
}

#[test]
fn denoiser_divergence_and_vjp_per_row_and_through_the_backend() {
    use diffuse_core::VectorJacobian;
    let gmm = mixture_4d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Eps));
    let marginals = [(1.0, 0.5), (0.6, 0.8), (0.2, 1.0)];
    let levels = levels_for(&marginals);
    let rows = points(3, 4, 5);
    let x: Vec<f64> = rows.concat();
    let v: Vec<f64> = (0..12).map(|i| ((i * 7) % 5) as f64 - 2.0).collect();
    let div = model.divergence(&levels, &x).unwrap();
    let vjp = model.vjp(&levels, &x, &v).unwrap();
    for (r, row) in rows.iter().enumerate() {
        let m = marginal(marginals[r].0, marginals[r].1);
        assert_eq!(div[r], gmm.posterior_divergence(row, m).unwrap());
        let mut want = vec![0.0; 4];
        gmm.posterior_vjp_into(row, m, &v[4 * r..4 * r + 4], &mut want)
            .unwrap();
        assert_eq!(&vjp[4 * r..4 * r + 4], want.as_slice());
    }
    // The trait, on f32 tensors: the same up to the f32 rounding of x.
    let cpu = CpuBackend::new();
    let x32: Vec<f32> = x.iter().map(|&e| e as f32).collect();
    let v32: Vec<f32> = v.iter().map(|&e| e as f32).collect();
    let xt = cpu.upload(&[3, 4], &x32).unwrap();
    let vt = cpu.upload(&[3, 4], &v32).unwrap();
    let mut out = cpu.zeros(&[3, 4]).unwrap();
    model
        .x0_vjp(&cpu, &xt, &levels, Condition::Unconditional, &vt, &mut out)
        .unwrap();
    let x_round: Vec<f64> = x32.iter().map(|&e| f64::from(e)).collect();
    let v_round: Vec<f64> = v32.iter().map(|&e| f64::from(e)).collect();
    let want = model.vjp(&levels, &x_round, &v_round).unwrap();
    for (a, b) in cpu.to_host(&out).unwrap().iter().zip(&want) {
        assert!((f64::from(*a) - b).abs() <= 1e-6 * b.abs().max(1.0));
    }
    let tdiv = model
        .x0_divergence(&cpu, &xt, &levels, Condition::Unconditional)
        .unwrap()
        .unwrap();
    assert_eq!(tdiv, model.divergence(&levels, &x_round).unwrap());
}

#[test]
fn bad_jacobian_calls_are_typed_errors() {
    use diffuse_core::VectorJacobian;
    let gmm = mixture_4d();
    let m = marginal(1.0, 0.5);
    let mut out = vec![0.0; 4];
    assert!(matches!(
        gmm.posterior_jacobian(&[0.0; 3], m),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        gmm.posterior_vjp_into(&[0.0; 4], m, &[0.0; 3], &mut out),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        gmm.posterior_vjp_into(&[0.0; 4], m, &[f64::NAN, 0.0, 0.0, 0.0], &mut out),
        Err(Error::NonFinite(_))
    ));
    assert!(matches!(
        gmm.posterior_divergence(&[f64::INFINITY, 0.0, 0.0, 0.0], m),
        Err(Error::NonFinite(_))
    ));
    let bad = Marginal {
        alpha: -1.0,
        sigma: 1.0,
    };
    assert!(matches!(
        gmm.posterior_divergence(&[0.0; 4], bad),
        Err(Error::InvalidArgument { .. })
    ));
    let model = GmmDenoiser::new(gmm, Arc::new(Eps));
    let levels = levels_for(&[(1.0, 0.5), (0.6, 0.8)]);
    assert!(matches!(
        model.divergence(&levels, &[0.0; 4]),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        model.vjp(&levels, &[0.0; 8], &[0.0; 7]),
        Err(Error::ShapeMismatch { .. })
    ));
    let cpu = CpuBackend::new();
    let x = cpu.zeros(&[2, 4]).unwrap();
    let v3 = cpu.zeros(&[2, 3]).unwrap();
    let mut out = cpu.zeros(&[2, 4]).unwrap();
    assert!(matches!(
        model.x0_vjp(&cpu, &x, &levels, Condition::Unconditional, &v3, &mut out),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        model.x0_divergence(&cpu, &x, &levels[..1], Condition::Unconditional),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        model.x0_divergence(&cpu, &x, &levels, Condition::Class(&[None, None])),
        Err(Error::Unsupported(_))
    ));
}

/// The 4-D mixture with classes {0: components 0 and 2, 1: component 1}.
fn labelled_4d() -> GaussianMixture {
    mixture_4d().with_labels(vec![0, 1, 0]).unwrap()
}

/// The noisy marginal `p_t = Σ wₖ N(α μₖ, (α² sₖ² + σ²) I)` as a mixture.
fn noisy(gmm: &GaussianMixture, m: Marginal) -> GaussianMixture {
    GaussianMixture::new(
        gmm.weights().to_vec(),
        gmm.means()
            .iter()
            .map(|mu| mu.iter().map(|v| m.alpha * v).collect())
            .collect(),
        gmm.stds()
            .iter()
            .map(|s| (m.alpha * m.alpha * s * s + m.sigma * m.sigma).sqrt())
            .collect(),
    )
    .unwrap()
}

#[test]
fn labels_select_renormalised_class_mixtures() {
    let gmm = labelled_4d();
    assert_eq!(gmm.labels(), Some(&[0, 1, 0][..]));
    assert_eq!(gmm.classes(), vec![0, 1]);
    let c0 = gmm.class_mixture(0).unwrap();
    assert_eq!(c0.components(), 2);
    assert!((c0.weights()[0] - 0.5 / 0.7).abs() < 1e-15);
    assert!((c0.weights()[1] - 0.2 / 0.7).abs() < 1e-15);
    assert_eq!(c0.means()[1], gmm.means()[2]);
    assert!(matches!(
        gmm.class_mixture(7),
        Err(Error::InvalidArgument { name: "class", .. })
    ));
    assert!(matches!(
        mixture_4d().class_mixture(0),
        Err(Error::Unsupported(_))
    ));
    assert!(matches!(
        mixture_4d().with_labels(vec![0, 1]),
        Err(Error::InvalidArgument { name: "labels", .. })
    ));
    // JSON: labels optional, validated.
    let json = r#"{"weights": [0.3, 0.7], "means": [[-2.0], [1.5]], "stds": [0.5, 0.8], "labels": [4, 9]}"#;
    let parsed = GaussianMixture::from_json_str(json).unwrap();
    assert_eq!(parsed.labels(), Some(&[4, 9][..]));
    assert_eq!(parsed.class_mixture(9).unwrap().means(), &[vec![1.5]]);
    for bad in [
        r#""labels": [1]"#,
        r#""labels": [-1, 0]"#,
        r#""labels": [0.5, 1]"#,
        r#""labels": 3"#,
    ] {
        let text = format!(
            r#"{{"weights": [0.3, 0.7], "means": [[-2.0], [1.5]], "stds": [0.5, 0.8], {bad}}}"#
        );
        assert!(
            matches!(
                GaussianMixture::from_json_str(&text),
                Err(Error::InvalidArgument { name: "labels", .. })
            ),
            "{bad}"
        );
    }
    assert_eq!(mixture_1d().labels(), None);
}

#[test]
fn class_conditions_use_the_class_mixture() {
    let cpu = CpuBackend::new();
    let gmm = labelled_4d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Eps));
    let class0 = GmmDenoiser::new(gmm.class_mixture(0).unwrap(), Arc::new(Eps));
    let class1 = GmmDenoiser::new(gmm.class_mixture(1).unwrap(), Arc::new(Eps));
    let pts = points(3, 4, 17);
    let flat: Vec<f32> = pts.iter().flatten().map(|&v| v as f32).collect();
    let x = cpu.upload(&[3, 4], &flat).unwrap();
    let level = NoiseLevel {
        t: 0.4,
        marginal: marginal(0.8, 0.6),
    };
    let levels = [level; 3];
    let predict = |m: &GmmDenoiser, c: Condition<'_, _>| {
        let mut out = cpu.zeros(&[3, 4]).unwrap();
        m.predict(&cpu, &x, &levels, c, &mut out).unwrap();
        cpu.to_host(&out).unwrap()
    };
    let got = predict(&model, Condition::Class(&[Some(0), None, Some(1)]));
    let want0 = predict(&class0, Condition::Unconditional);
    let want_all = predict(&model, Condition::Unconditional);
    let want1 = predict(&class1, Condition::Unconditional);
    assert_eq!(&got[..4], &want0[..4]);
    assert_eq!(&got[4..8], &want_all[4..8]);
    assert_eq!(&got[8..], &want1[8..]);
    assert_ne!(&want0[..4], &want_all[..4]);
    // Errors: an unknown class, a label count that does not match, labels
    // on an unlabelled mixture.
    let mut out = cpu.zeros(&[3, 4]).unwrap();
    let err = model
        .predict(
            &cpu,
            &x,
            &levels,
            Condition::Class(&[Some(5), None, None]),
            &mut out,
        )
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidArgument { name: "class", .. }),
        "{err}"
    );
    let err = model
        .predict(&cpu, &x, &levels, Condition::Class(&[None, None]), &mut out)
        .unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { .. }), "{err}");
    let plain = GmmDenoiser::new(mixture_4d(), Arc::new(Eps));
    let err = plain
        .predict(
            &cpu,
            &x,
            &levels,
            Condition::Class(&[Some(0), None, None]),
            &mut out,
        )
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");
}

#[test]
fn classifier_gradient_matches_finite_differences() {
    let gmm = labelled_4d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Eps));
    for &(alpha, sigma) in &[(1.0, 0.5), (0.6, 0.8), (0.2, 1.0), (1.0, 3.0)] {
        let m = marginal(alpha, sigma);
        let all = noisy(&gmm, m);
        for label in [0u32, 1] {
            let class = noisy(&gmm.class_mixture(label).unwrap(), m);
            // log p(y | x) up to the constant log p(y).
            let log_post = |x: &[f64]| class.log_density(x).unwrap() - all.log_density(x).unwrap();
            for p in points(4, 4, 3 + u64::from(label)) {
                let level = NoiseLevel {
                    t: 0.0,
                    marginal: m,
                };
                let g = model
                    .classifier_gradient(&[level], &p, &[Some(label)])
                    .unwrap();
                let h = 1e-5;
                for i in 0..4 {
                    let (mut a, mut b) = (p.clone(), p.clone());
                    a[i] += h;
                    b[i] -= h;
                    let fd = (log_post(&a) - log_post(&b)) / (2.0 * h);
                    assert!(
                        (g[i] - fd).abs() < 1e-6 * (1.0 + fd.abs()),
                        "(α, σ) = ({alpha}, {sigma}), class {label}, x = {p:?}: {} vs {fd}",
                        g[i]
                    );
                }
            }
        }
    }
    // The null label gets no gradient; σ = 0 is undefined; α = 0 gives 0.
    let p = [0.5, -0.5, 1.0, 0.0];
    let level = |a: f64, s: f64| NoiseLevel {
        t: 0.0,
        marginal: marginal(a, s),
    };
    assert_eq!(
        model
            .classifier_gradient(&[level(0.6, 0.8)], &p, &[None])
            .unwrap(),
        vec![0.0; 4]
    );
    assert_eq!(
        model
            .classifier_gradient(&[level(0.0, 1.0)], &p, &[Some(1)])
            .unwrap(),
        vec![0.0; 4]
    );
    assert!(matches!(
        model.classifier_gradient(&[level(1.0, 0.0)], &p, &[Some(1)]),
        Err(Error::Undefined { .. })
    ));
    assert!(matches!(
        model.classifier_gradient(&[level(0.6, 0.8)], &p, &[Some(3)]),
        Err(Error::InvalidArgument { name: "class", .. })
    ));
    assert!(matches!(
        model.classifier_gradient(&[level(0.6, 0.8)], &p, &[]),
        Err(Error::ShapeMismatch { .. })
    ));
}

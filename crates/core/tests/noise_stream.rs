//! The public noise stream against its specification (docs/noise.md):
//! Philox known answers, the f64 evaluation of the formulas, fixed committed
//! values, and statistical checks.

use diffuse_core::noise::{NoiseStream, box_muller, ln_f32, philox4x32_10, seed_key, sincos_turns};

const TWO_POW_24: f64 = 16_777_216.0;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("data/noise-vectors.json")).unwrap()
}

fn words(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|w| {
            w.as_u64()
                .map(|x| x as u32)
                .unwrap_or_else(|| u32::from_str_radix(w.as_str().unwrap(), 16).unwrap())
        })
        .collect()
}

/// The stream's formulas evaluated in f64 from the same Philox words.
fn reference(seed: u64, stream: u64, index: u64) -> f64 {
    let block = index / 4;
    let w = philox4x32_10(
        [
            block as u32,
            (block >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        seed_key(seed),
    );
    let lane = (index % 4) as usize;
    let (wa, wb) = (w[lane & 2], w[(lane & 2) + 1]);
    let ua = f64::from((wa >> 8) + 1) / TWO_POW_24;
    let ub = f64::from(wb >> 8) / TWO_POW_24;
    let r = (-2.0 * ua.ln()).sqrt();
    let angle = 2.0 * std::f64::consts::PI * ub;
    if lane.is_multiple_of(2) {
        r * angle.cos()
    } else {
        r * angle.sin()
    }
}

#[test]
fn philox_matches_the_known_answer_vectors() {
    let v = vectors();
    for case in v["philox4x32_10"].as_array().unwrap() {
        let c = words(&case["counter"]);
        let k = words(&case["key"]);
        let want = words(&case["words_hex"]);
        let got = philox4x32_10([c[0], c[1], c[2], c[3]], [k[0], k[1]]);
        assert_eq!(got.to_vec(), want, "counter {c:?} key {k:?}");
    }
}

#[test]
fn stream_matches_the_published_f64_values() {
    let v = vectors();
    let cases = v["stream"].as_array().unwrap();
    assert!(cases.len() >= 5);
    for case in cases {
        let seed = case["seed"].as_u64().unwrap();
        let stream = case["stream"].as_u64().unwrap();
        let z = NoiseStream::new(seed, stream);
        let mut got = [0.0f32; 16];
        z.fill(0, &mut got);
        for (i, want) in case["first_16_f64"].as_array().unwrap().iter().enumerate() {
            let want = want.as_f64().unwrap();
            let err = (f64::from(got[i]) - want).abs();
            assert!(
                err < 2e-6,
                "seed {seed} stream {stream} element {i}: {} vs {want}",
                got[i]
            );
            // The published values are the formulas in f64: our reference agrees.
            assert!((reference(seed, stream, i as u64) - want).abs() < 1e-12);
        }
    }
}

/// Bounds the f32 stream against the f64 formulas over every possible input:
/// the radius over all 2²⁴ values of `w_a >> 8`, the angle over all 2²⁴
/// values of `w_b >> 8`, and the final product's rounding.
#[test]
fn f32_stream_is_within_2e6_of_f64_everywhere() {
    let mut r_err = 0.0f64;
    let mut r_max = 0.0f64;
    let mut trig_err = 0.0f64;
    for m in 0..(1u32 << 24) {
        let ua = f64::from(m + 1) / TWO_POW_24;
        let r64 = (-2.0 * ua.ln()).sqrt();
        let r32 = f64::from((-2.0 * ln_f32((m + 1) as f32 / TWO_POW_24 as f32)).sqrt());
        r_err = r_err.max((r32 - r64).abs());
        r_max = r_max.max(r64);
        let (s, c) = sincos_turns(m);
        let angle = 2.0 * std::f64::consts::PI * f64::from(m) / TWO_POW_24;
        trig_err = trig_err.max((f64::from(s) - angle.sin()).abs());
        trig_err = trig_err.max((f64::from(c) - angle.cos()).abs());
    }
    // |r̂ĉ − rc| ≤ |r̂ − r|·|ĉ| + r·|ĉ − c| + ½ulp(r̂ĉ), with |ĉ| ≤ 1 + trig_err.
    let half_ulp = f64::from(f32::EPSILON) * 4.0 / 2.0; // values below 8
    let bound = r_err * (1.0 + trig_err) + r_max * trig_err + half_ulp;
    println!(
        "radius error {r_err:.3e} (max r {r_max:.4}), sin/cos error {trig_err:.3e}, bound {bound:.3e}"
    );
    assert!(bound < 2e-6, "bound {bound}");
    // And directly, on draws from several seeds, streams and far indices.
    let mut worst = 0.0f64;
    for (seed, stream) in [
        (0, 0),
        (1, 0),
        (42, 7),
        (u64::MAX, u64::MAX),
        (1 << 40, 1 << 33),
    ] {
        let z = NoiseStream::new(seed, stream);
        for base in [0u64, 1 << 20, (1 << 41) + 3, u64::MAX - 5000] {
            for i in 0..4096u64 {
                let index = base.wrapping_add(i);
                worst = worst.max((f64::from(z.at(index)) - reference(seed, stream, index)).abs());
            }
        }
    }
    assert!(worst < 2e-6, "worst {worst}");
}

/// Fixed seeds give fixed outputs: an accidental change of the stream (in
/// Philox, the transform, ln or sin/cos) fails here.
#[test]
fn value_stability() {
    let cases: [(u64, u64, u64, [u32; 6]); 3] = [
        (
            0,
            0,
            0,
            [
                0x3f7dbb30, 0xbf6cb6b3, 0xbf1e1ba1, 0xbef6d1a9, 0xbe1d534f, 0x3e392a6b,
            ],
        ),
        (
            20240601,
            3,
            1_000_003,
            [
                0xbcced39b, 0x3ee9d5f7, 0xbfaa5fb7, 0x4017ebd9, 0x3f3003b6, 0x3f9df60a,
            ],
        ),
        (
            u64::MAX,
            1 << 40,
            (1 << 50) + 2,
            [
                0x3e0fa51c, 0x3e07b0f7, 0x3f817130, 0x3f80e209, 0xbf1f3ac5, 0xbf62c46e,
            ],
        ),
    ];
    for (seed, stream, first, want) in cases {
        let mut got = [0.0f32; 6];
        NoiseStream::new(seed, stream).fill(first, &mut got);
        let bits: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits, want,
            "seed {seed} stream {stream} from {first}: {got:?} = {bits:08x?}"
        );
    }
    // Box–Muller at the ends of its input range.
    // u_a = 1: r = sqrt(−2·0) = sqrt(−0) = −0, and the products keep the sign.
    let (c, s) = box_muller(u32::MAX, 0);
    assert_eq!(
        (c.to_bits(), s.to_bits()),
        ((-0.0f32).to_bits(), (-0.0f32).to_bits())
    );
    let (c, s) = box_muller(0, 0);
    assert_eq!(s.to_bits(), 0.0f32.to_bits());
    assert!((f64::from(c) - (2.0 * 24.0 * std::f64::consts::LN_2).sqrt()).abs() < 1e-6);
}

/// The standard normal CDF, Φ(x) = erfc(−x/√2)/2, with the Chebyshev-fitted
/// erfc of Numerical Recipes (fractional error below 1.2e-7).
fn normal_cdf(x: f64) -> f64 {
    let y = -x / std::f64::consts::SQRT_2;
    let z = y.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223
        + t * (1.00002368
            + t * (0.37409196
                + t * (0.09678418
                    + t * (-0.18628806
                        + t * (0.27886807
                            + t * (-1.13520398
                                + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * poly.exp();
    0.5 * if y >= 0.0 { erfc } else { 2.0 - erfc }
}

fn draws(seed: u64, stream: u64, n: usize) -> Vec<f64> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, stream).fill(0, &mut v);
    v.into_iter().map(f64::from).collect()
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[test]
fn moments_and_kolmogorov_smirnov_on_a_million_draws() {
    let n = 1_000_000;
    let mut z = draws(0, 0, n);
    let nf = n as f64;
    let mean = z.iter().sum::<f64>() / nf;
    let var = z.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let skew = z.iter().map(|x| (x - mean).powi(3)).sum::<f64>() / nf;
    let kurt = z.iter().map(|x| (x - mean).powi(4)).sum::<f64>() / nf;
    // Five standard errors: mean 1/√n, variance √(2/n), third moment √(15/n),
    // fourth moment √(96/n).
    assert!(mean.abs() < 5.0 / nf.sqrt(), "mean {mean}");
    assert!(
        (var - 1.0).abs() < 5.0 * (2.0 / nf).sqrt(),
        "variance {var}"
    );
    assert!(skew.abs() < 5.0 * (15.0 / nf).sqrt(), "third moment {skew}");
    assert!(
        (kurt - 3.0).abs() < 5.0 * (96.0 / nf).sqrt(),
        "fourth moment {kurt}"
    );
    z.sort_by(f64::total_cmp);
    let d = z
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let f = normal_cdf(x);
            (f - i as f64 / nf)
                .abs()
                .max((f - (i + 1) as f64 / nf).abs())
        })
        .fold(0.0, f64::max);
    // Critical value of the KS statistic at the 0.1% level: 1.95/√n.
    println!(
        "KS D = {d:.3e} (0.1% critical value {:.3e})",
        1.95 / nf.sqrt()
    );
    assert!(d < 1.95 / nf.sqrt(), "KS statistic {d}");
    // Tails: P(|z| > 3) = 0.0026998.
    let tail = z.iter().filter(|x| x.abs() > 3.0).count() as f64 / nf;
    assert!(
        (tail - 0.0026998).abs() < 5.0 * (0.0027f64 / nf).sqrt(),
        "tail {tail}"
    );
}

#[test]
fn streams_seeds_and_neighbours_are_uncorrelated() {
    let n = 200_000;
    let bound = 5.0 / (n as f64).sqrt();
    let base = draws(0, 0, n);
    for (name, other) in [
        ("stream 1", draws(0, 1, n)),
        ("seed 1", draws(1, 0, n)),
        ("seed 2^32", draws(1 << 32, 0, n)),
        ("stream 2^32", draws(0, 1 << 32, n)),
    ] {
        let r = correlation(&base, &other);
        assert!(r.abs() < bound, "{name}: correlation {r}");
    }
    // Lags 1 to 4 (inside and across Philox blocks and Box–Muller pairs),
    // and the squares of a Box–Muller pair (independent, not just uncorrelated).
    for lag in 1..=4 {
        let r = correlation(&base[..n - lag], &base[lag..]);
        assert!(r.abs() < bound, "lag {lag}: correlation {r}");
    }
    let even: Vec<f64> = base.iter().step_by(2).map(|x| x * x).collect();
    let odd: Vec<f64> = base.iter().skip(1).step_by(2).map(|x| x * x).collect();
    let r = correlation(&even, &odd);
    assert!(
        r.abs() < 5.0 / ((n / 2) as f64).sqrt(),
        "pair squares: correlation {r}"
    );
}

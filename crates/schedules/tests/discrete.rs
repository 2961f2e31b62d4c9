//! The discrete DDPM-family schedules against diffusers' tables and the
//! schedule invariants.

use diffuse_schedules::{BetaSchedule, DiscreteVp, NoiseSchedule};
use proptest::prelude::*;

/// A conformance case. Python's json writes `-Infinity` and `NaN` (e.g.
/// diffusers' `lambda_min_clipped`), which strict JSON lacks: they become
/// null, and no field read here is one of them.
fn case(name: &str) -> serde_json::Value {
    let path = format!("{}/../../conformance/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("read conformance case");
    let text = text
        .replace(": -Infinity", ": null")
        .replace(": Infinity", ": null")
        .replace(": NaN", ": null");
    serde_json::from_str(&text).unwrap()
}

fn schedule_of(case: &serde_json::Value) -> DiscreteVp {
    let c = &case["full_config"];
    let beta = BetaSchedule::from_name(
        c["beta_schedule"].as_str().unwrap(),
        c["beta_start"].as_f64().unwrap(),
        c["beta_end"].as_f64().unwrap(),
    )
    .unwrap();
    let n = c["num_train_timesteps"].as_u64().unwrap() as usize;
    let s = DiscreteVp::from_betas(&beta.betas(n).unwrap()).unwrap();
    if c["rescale_betas_zero_snr"].as_bool() == Some(true) {
        s.rescale_zero_terminal_snr().unwrap()
    } else {
        s
    }
}

fn table(c: &serde_json::Value) -> Vec<f64> {
    c["alphas_cumprod"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

/// Worst relative error of `got` against `want` over entries with `ᾱ ≥ floor`.
fn worst(got: &DiscreteVp, want: &[f64], floor: f64) -> f64 {
    assert_eq!(got.len(), want.len());
    got.alphas_cumprod()
        .iter()
        .zip(want)
        .filter(|(_, w)| **w >= floor)
        .map(|(g, w)| (g - w).abs() / w)
        .fold(0.0, f64::max)
}

/// ᾱ of diffusers' scaled-linear (Stable Diffusion) and linear (DDPM)
/// tables: the same float32 values (the JSON holds them as decimal f64
/// strings, hence the 1e-15 allowance for printing).
#[test]
fn alphas_cumprod_match_diffusers() {
    for name in ["ddim_sd_leading_10.json", "dpmpp2m_vpred_ddpm_10.json"] {
        let c = case(name);
        let e = worst(&schedule_of(&c), &table(&c), 0.0);
        assert!(e < 1e-15, "{name}: worst relative error {e}");
    }
}

/// The cosine betas are computed in floating point (a port that divides
/// integers gets all zeros): check them against the closed form.
#[test]
fn cosine_betas_are_right() {
    let n = 1000;
    let betas = BetaSchedule::SquaredCosCapV2.betas(n).unwrap();
    let abar = |t: f64| {
        ((t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2)
            .cos()
            .powi(2)
    };
    for (i, b) in betas.iter().enumerate() {
        let want = (1.0 - abar((i + 1) as f64 / n as f64) / abar(i as f64 / n as f64)).min(0.999);
        assert!(
            (b - want).abs() <= 1e-7 * want.max(1e-3),
            "β[{i}] = {b}, want {want}"
        );
        assert!(*b > 0.0);
    }
    assert_eq!(betas[n - 1], f64::from(0.999f32));
}

#[test]
fn every_beta_schedule_builds_a_valid_schedule() {
    for beta in [
        BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02,
        },
        BetaSchedule::ScaledLinear {
            beta_start: 0.00085,
            beta_end: 0.012,
        },
        BetaSchedule::SquaredCosCapV2,
        BetaSchedule::Sigmoid {
            beta_start: 1e-4,
            beta_end: 0.02,
        },
        BetaSchedule::Exp,
        BetaSchedule::Laplace,
    ] {
        let betas = beta.betas(1000).unwrap();
        assert!(betas.iter().all(|b| *b > 0.0 && *b < 1.0), "{beta:?}");
        let s = DiscreteVp::from_betas(&betas).unwrap();
        let (lo, hi) = s.t_range();
        assert!(s.log_snr(lo) > s.log_snr(hi), "{beta:?}");
    }
    assert!(BetaSchedule::from_name("cosine", 0.1, 0.2).is_err());
    assert!(
        BetaSchedule::Linear {
            beta_start: 0.02,
            beta_end: 0.01
        }
        .betas(10)
        .is_err()
    );
    assert!(
        BetaSchedule::Linear {
            beta_start: 1e-4,
            beta_end: 0.02
        }
        .betas(1)
        .is_err()
    );
    assert!(DiscreteVp::from_alphas_cumprod(&[0.9, 0.95]).is_err());
    assert!(DiscreteVp::from_alphas_cumprod(&[0.9, 0.0, 0.0]).is_err());
    assert!(DiscreteVp::from_alphas_cumprod(&[0.9, f64::NAN]).is_err());
}

#[test]
fn zero_terminal_snr_keeps_the_first_and_zeroes_the_last() {
    let betas = BetaSchedule::ScaledLinear {
        beta_start: 0.00085,
        beta_end: 0.012,
    }
    .betas(1000)
    .unwrap();
    let s = DiscreteVp::from_betas(&betas).unwrap();
    let z = s.rescale_zero_terminal_snr().unwrap();
    assert!((z.alphas_cumprod()[0] - s.alphas_cumprod()[0]).abs() < 1e-7);
    assert_eq!(*z.alphas_cumprod().last().unwrap(), 0.0);
    assert_eq!(z.alpha(999.0), 0.0);
    assert_eq!(z.sigma(999.0), 1.0);
    assert_eq!(z.log_snr(999.0), f64::NEG_INFINITY);
    // Continuous into the last interval, and invertible there.
    let t = 998.5;
    assert!(z.alpha(t) > 0.0 && z.alpha(t) < z.alpha(998.0));
    assert!((z.t_of_log_snr(z.log_snr(t)).unwrap() - t).abs() < 1e-9);
}

fn schedules() -> Vec<DiscreteVp> {
    let sd = BetaSchedule::ScaledLinear {
        beta_start: 0.00085,
        beta_end: 0.012,
    }
    .betas(1000)
    .unwrap();
    let cos = BetaSchedule::SquaredCosCapV2.betas(1000).unwrap();
    let sd = DiscreteVp::from_betas(&sd).unwrap();
    let zsnr = sd.rescale_zero_terminal_snr().unwrap();
    vec![sd, DiscreteVp::from_betas(&cos).unwrap(), zsnr]
}

proptest! {
    #[test]
    fn vp_invariants(t in 0.0f64..999.0, dt in 1e-3f64..10.0, which in 0usize..3) {
        let s = &schedules()[which];
        let m = s.marginal(t);
        prop_assert!((m.alpha * m.alpha + m.sigma * m.sigma - 1.0).abs() < 1e-12);
        let t2 = (t + dt).min(999.0);
        if t2 > t {
            prop_assert!(s.log_snr(t2) < s.log_snr(t), "λ not decreasing at {} → {}", t, t2);
        }
        let back = s.t_of_log_snr(s.log_snr(t)).unwrap();
        prop_assert!((back - t).abs() <= 1e-9 * t.max(1.0), "t(λ(t)) = {} for t = {}", back, t);
    }
}

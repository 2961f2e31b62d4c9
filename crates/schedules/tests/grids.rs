//! Time grids: monotone, right end points and lengths, the closed forms they
//! come from, and k-diffusion's Karras grid.

use diffuse_schedules::grids::{beta_cdf, beta_ppf, karras_sigmas, linspace};
use diffuse_schedules::{
    BetaSchedule, DiscreteVp, EdmSchedule, Flow, NoiseSchedule, TimeGrid, VpCosine, VpLinear,
};
use proptest::prelude::*;

fn grids() -> Vec<TimeGrid> {
    vec![
        TimeGrid::UniformT,
        TimeGrid::UniformLogSnr,
        TimeGrid::TimeQuadratic,
        TimeGrid::Karras { rho: 7.0 },
        TimeGrid::Exponential,
        TimeGrid::PolyExponential { rho: 2.0 },
        TimeGrid::Beta {
            alpha: 0.6,
            beta: 0.6,
        },
    ]
}

fn schedules() -> Vec<(Box<dyn NoiseSchedule>, f64, f64)> {
    let sd = DiscreteVp::from_betas(
        &BetaSchedule::ScaledLinear {
            beta_start: 0.00085,
            beta_end: 0.012,
        }
        .betas(1000)
        .unwrap(),
    )
    .unwrap();
    vec![
        (Box::new(VpLinear::default()), 1.0, 1e-3),
        (
            Box::new(VpCosine {
                s: 0.008,
                t_max: 0.9946,
            }),
            0.9946,
            1e-3,
        ),
        (Box::new(EdmSchedule::default()), 80.0, 0.002),
        (Box::new(Flow::new(3.0).unwrap()), 0.999, 1e-3),
        (Box::new(sd), 999.0, 0.0),
    ]
}

proptest! {
    #[test]
    fn grids_are_monotone_with_exact_ends(g in 0usize..7, s in 0usize..5, n in 2usize..200) {
        let grid = &grids()[g];
        let (schedule, t0, t1) = &schedules()[s];
        let t = grid.times(schedule.as_ref(), n, *t0, *t1).unwrap();
        prop_assert_eq!(t.len(), n);
        prop_assert_eq!(t[0], *t0);
        prop_assert_eq!(t[n - 1], *t1);
        for w in t.windows(2) {
            prop_assert!(w[1] < w[0], "{:?} on {}: {} then {}", grid, schedule.name(), w[0], w[1]);
        }
    }

    #[test]
    fn sigma_grids_are_monotone(g in 3usize..7, n in 2usize..300, lo in 1e-3f64..1.0, span in 1.01f64..1e4) {
        let s = grids()[g].sigmas(lo * span, lo, n).unwrap();
        prop_assert_eq!(s.len(), n);
        prop_assert!((s[0] - lo * span).abs() <= 1e-12 * lo * span);
        prop_assert!((s[n - 1] - lo).abs() <= 1e-12 * lo);
        for w in s.windows(2) {
            prop_assert!(w[1] < w[0]);
        }
    }

    #[test]
    fn beta_quantile_inverts_the_cdf(p in 0.0f64..1.0, a in 0.2f64..5.0, b in 0.2f64..5.0) {
        // The quantile is exact to one ulp of x: p lies between the CDF at
        // x's neighbours (where the density is huge, one ulp of x spans more
        // than 1e-12 of probability).
        let x = beta_ppf(p, a, b);
        let below = f64::from_bits(x.to_bits().saturating_sub(1));
        let above = if x < 1.0 { f64::from_bits(x.to_bits() + 1) } else { 1.0 };
        prop_assert!(beta_cdf(below, a, b) <= p + 1e-13 && p <= beta_cdf(above, a, b) + 1e-13,
            "x = {} for p = {}: I = {}", x, p, beta_cdf(x, a, b));
    }
}

#[test]
fn exponential_is_uniform_log_snr() {
    for (schedule, t0, t1) in schedules() {
        let a = TimeGrid::Exponential
            .times(schedule.as_ref(), 17, t0, t1)
            .unwrap();
        let b = TimeGrid::UniformLogSnr
            .times(schedule.as_ref(), 17, t0, t1)
            .unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() <= 1e-9 * x.abs().max(1e-3),
                "{}: {x} vs {y}",
                schedule.name()
            );
        }
        // And λ is evenly spaced on it.
        let l: Vec<f64> = b.iter().map(|&t| schedule.log_snr(t)).collect();
        let d = (l[16] - l[0]) / 16.0;
        for w in l.windows(2) {
            assert!(
                ((w[1] - w[0]) - d).abs() < 1e-7 * d.abs(),
                "{}",
                schedule.name()
            );
        }
    }
}

#[test]
fn closed_forms() {
    // Karras with ρ = 1 is linear in σ; polyexponential with ρ = 1 is exponential.
    let k1 = karras_sigmas(10.0, 1.0, 1.0, 10);
    for (i, s) in k1.iter().enumerate() {
        assert!((s - (10.0 - i as f64)).abs() < 1e-12);
    }
    let p = TimeGrid::PolyExponential { rho: 1.0 }
        .sigmas(80.0, 0.002, 9)
        .unwrap();
    let e = TimeGrid::Exponential.sigmas(80.0, 0.002, 9).unwrap();
    for (x, y) in p.iter().zip(&e) {
        assert!((x - y).abs() < 1e-12 * x);
    }
    // Beta(2, 2) has CDF 3x² − 2x³; Beta(1, 1) is uniform; Beta(a, a) has median ½.
    for x in [0.1, 0.3, 0.5, 0.77] {
        assert!((beta_cdf(x, 2.0, 2.0) - (3.0 * x * x - 2.0 * x * x * x)).abs() < 1e-14);
        assert!((beta_ppf(x, 1.0, 1.0) - x).abs() < 1e-14);
    }
    assert!((beta_ppf(0.5, 0.6, 0.6) - 0.5).abs() < 1e-14);
    // The quadratic grid is evenly spaced in √t.
    let q = TimeGrid::TimeQuadratic
        .times(&VpLinear::default(), 5, 1.0, 0.0)
        .unwrap();
    for (i, t) in q.iter().enumerate() {
        assert!((t.sqrt() - (1.0 - i as f64 / 4.0)).abs() < 1e-15);
    }
    // numpy's linspace arithmetic.
    assert_eq!(linspace(0.0, 999.0, 4), vec![0.0, 333.0, 666.0, 999.0]);
    assert_eq!(linspace(2.0, 3.0, 1), vec![2.0]);
}

#[test]
fn karras_grid_matches_k_diffusion() {
    // get_sigmas_karras(10, 0.002, 80, rho=7) from the k-diffusion conformance cases (f64).
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../conformance/kdiff_euler_10.json"
    ))
    .unwrap();
    let text = text
        .replace(": -Infinity", ": null")
        .replace(": NaN", ": null");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let want: Vec<f64> = v["sigmas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let got = karras_sigmas(80.0, 0.002, 7.0, 10);
    assert_eq!(want.len(), 11);
    assert_eq!(want[10], 0.0);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-14 * w, "{g} vs {w}");
    }
}

#[test]
fn bad_grids_are_errors() {
    let vp = VpLinear::default();
    assert!(TimeGrid::UniformT.times(&vp, 0, 1.0, 0.0).is_err());
    assert!(TimeGrid::UniformT.times(&vp, 10, 0.0, 1.0).is_err()); // wrong direction
    assert!(TimeGrid::UniformT.times(&vp, 10, 1.5, 0.0).is_err()); // out of range
    assert!(TimeGrid::UniformLogSnr.times(&vp, 10, 1.0, 0.0).is_err()); // λ(0) = ∞
    assert!(
        TimeGrid::Karras { rho: 0.0 }
            .sigmas(80.0, 0.002, 10)
            .is_err()
    );
    assert!(
        TimeGrid::Karras { rho: 7.0 }
            .sigmas(0.002, 80.0, 10)
            .is_err()
    );
    assert!(
        TimeGrid::CustomTimes(vec![0.5, 0.7])
            .times(&vp, 2, 1.0, 0.0)
            .is_err()
    );
    assert!(
        TimeGrid::CustomSigmas(vec![5.0, 1.0, 0.0])
            .times(&vp, 3, 1.0, 0.01)
            .is_err()
    );
    assert!(TimeGrid::from_name("karras:x").is_err());
    assert!(TimeGrid::from_name("nope").is_err());
    assert_eq!(
        TimeGrid::from_name("karras:5").unwrap(),
        TimeGrid::Karras { rho: 5.0 }
    );
    assert_eq!(
        TimeGrid::from_name("beta:0.5,0.7").unwrap(),
        TimeGrid::Beta {
            alpha: 0.5,
            beta: 0.7
        }
    );
}

#[test]
fn every_grid_runs_on_every_builtin_schedule() {
    for name in diffuse_schedules::BUILTIN_NAMES {
        let b = diffuse_schedules::builtin(name).unwrap();
        let s = b.schedule.as_ref();
        let (l0, l1) = (s.log_snr(b.t_start), s.log_snr(b.t_end));
        assert!(
            l0.is_finite() && l1.is_finite() && l0 < l1,
            "{name}: λ from {l0} to {l1}"
        );
        for grid in grids() {
            let t = grid.times(s, 12, b.t_start, b.t_end).unwrap();
            assert!(t.windows(2).all(|w| w[1] < w[0]), "{name} {grid:?}: {t:?}");
        }
    }
    assert!(diffuse_schedules::builtin("nope").is_err());
}

//! Every parameterisation against the forward marginal: round trips, the
//! identity x = α·x̂₀ + σ·ε̂, agreement between parameterisations, and the
//! places where a map is undefined.

use diffuse_param::{
    Edm, Epsilon, Error, FlowVelocity, Marginal, Parameterization, Preconditioning, Sample, Score,
    Velocity, by_name,
};
use proptest::prelude::*;

fn edm_variants() -> Vec<Edm> {
    let vp = Preconditioning::Vp {
        beta_d: 19.9,
        beta_min: 0.1,
        m: 1000.0,
    };
    [
        vp,
        Preconditioning::Ve,
        Preconditioning::Iddpm,
        Preconditioning::Edm,
    ]
    .into_iter()
    .map(|preconditioning| Edm {
        sigma_data: 0.5,
        preconditioning,
    })
    .collect()
}

/// The network output that is exactly right for `(x₀, ε)` at `m`.
fn target(p: &dyn Parameterization, edm: Option<&Edm>, m: Marginal, x0: f64, eps: f64) -> f64 {
    let (a, s) = (m.alpha, m.sigma);
    match (p.name(), edm) {
        ("epsilon", _) => eps,
        ("sample", _) => x0,
        ("v_prediction", _) => a * eps - s * x0,
        ("score", _) => -eps / s,
        ("flow_prediction", _) => eps - x0,
        ("edm", Some(e)) => {
            let (c_skip, c_out, _) = e.coefficients(s / a);
            (x0 - c_skip * (a * x0 + s * eps) / a) / c_out
        }
        (name, _) => panic!("no target for {name}"),
    }
}

fn apply(map: diffuse_param::Affine, x: f64, out: f64) -> (f64, f64) {
    let value = map.a * x + map.b * out;
    // A bound on the rounding of a·x + b·out in f64.
    let scale = (map.a * x).abs() + (map.b * out).abs() + 1.0;
    (value, scale)
}

fn check_all(m: Marginal, x0: f64, eps: f64) -> Result<(), TestCaseError> {
    let x = m.alpha * x0 + m.sigma * eps;
    let plain: Vec<Box<dyn Parameterization>> = vec![
        Box::new(Epsilon),
        Box::new(Sample),
        Box::new(Velocity),
        Box::new(Score),
        Box::new(FlowVelocity),
    ];
    let edms = edm_variants();
    let all: Vec<(&dyn Parameterization, Option<&Edm>)> = plain
        .iter()
        .map(|p| (p.as_ref(), None))
        .chain(edms.iter().map(|e| (e as &dyn Parameterization, Some(e))))
        .collect();
    for (p, edm) in all {
        let out = target(p, edm, m, x0, eps);
        let (x0_hat, s0) = apply(p.x0_map(m).unwrap(), x, out);
        let (eps_hat, s1) = apply(p.eps_map(m).unwrap(), x, out);
        let tol = 1e-12 * (s0 + s1) / m.alpha.min(m.sigma).min(1.0);
        prop_assert!(
            (x0_hat - x0).abs() <= tol,
            "{}: x̂₀ {} vs {}",
            p.name(),
            x0_hat,
            x0
        );
        prop_assert!(
            (eps_hat - eps).abs() <= tol,
            "{}: ε̂ {} vs {}",
            p.name(),
            eps_hat,
            eps
        );
        // out → (x̂₀, ε̂) → out.
        let back = target(p, edm, m, x0_hat, eps_hat);
        prop_assert!(
            (back - out).abs() <= tol * (1.0 + out.abs()),
            "{}: round trip {} vs {}",
            p.name(),
            back,
            out
        );
        // The estimates are consistent with the state.
        prop_assert!((m.alpha * x0_hat + m.sigma * eps_hat - x).abs() <= tol * (1.0 + x.abs()));
        // x̂₀ from this parameterisation equals x̂₀ from the ε it implies.
        let via_eps = Epsilon.x0_map(m).unwrap();
        prop_assert!(
            (via_eps.a * x + via_eps.b * eps_hat - x0_hat).abs() <= tol / m.alpha.min(1.0)
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn variance_preserving_marginals(theta in 0.01f64..1.56, x0 in -3.0f64..3.0, eps in -3.0f64..3.0) {
        check_all(Marginal::new(theta.cos(), theta.sin()).unwrap(), x0, eps)?;
    }

    #[test]
    fn general_marginals(alpha in 0.05f64..2.0, sigma in 0.05f64..5.0, x0 in -3.0f64..3.0, eps in -3.0f64..3.0) {
        check_all(Marginal::new(alpha, sigma).unwrap(), x0, eps)?;
    }
}

#[test]
fn undefined_maps_are_errors_not_infinities() {
    let snr0 = Marginal::new(0.0, 1.0).unwrap();
    let clean = Marginal::new(1.0, 0.0).unwrap();
    let undefined =
        |r: Result<diffuse_param::Affine, Error>| matches!(r, Err(Error::Undefined { .. }));
    assert!(undefined(Epsilon.x0_map(snr0)));
    assert!(undefined(Score.x0_map(snr0)));
    assert!(undefined(Score.eps_map(clean)));
    assert!(undefined(Sample.eps_map(clean)));
    for e in edm_variants() {
        assert!(undefined(e.x0_map(snr0)));
        assert!(e.noise_conditioning(1.0, snr0).is_err());
    }
    // Defined at both ends: ε-prediction's ε̂, v and flow velocity.
    assert!(Epsilon.eps_map(snr0).is_ok());
    for p in [&Velocity as &dyn Parameterization, &FlowVelocity] {
        for m in [snr0, clean] {
            assert!(p.x0_map(m).is_ok() && p.eps_map(m).is_ok(), "{}", p.name());
        }
    }
    // A hand-built marginal with α = σ = 0 is refused, never NaN.
    let none = Marginal {
        alpha: 0.0,
        sigma: 0.0,
    };
    assert!(Velocity.x0_map(none).is_err());
    assert!(FlowVelocity.eps_map(none).is_err());
}

#[test]
fn edm_conditioning_matches_table_1() {
    let e = Edm::default();
    let m = Marginal::new(1.0, 2.0).unwrap();
    assert!((e.noise_conditioning(0.0, m).unwrap() - 0.25 * 2f64.ln()).abs() < 1e-15);
    // c_in·x has unit variance when x₀ has std σ_d: c_in² (σ_d² + σ²) = 1.
    let c_in = e.input_scale(m);
    assert!((c_in * c_in * (0.25 + 4.0) - 1.0).abs() < 1e-12);
    // The input scale is c_in/α for every row of Table 1, and stays finite
    // at α = 0 where a limit exists.
    for v in edm_variants() {
        for m in [
            Marginal::new(0.7, 0.3).unwrap(),
            Marginal::new(2.0, 5.0).unwrap(),
        ] {
            let (_, _, c_in) = v.coefficients(m.sigma / m.alpha);
            assert!((v.input_scale(m) - c_in / m.alpha).abs() < 1e-12 * v.input_scale(m));
        }
    }
    assert!((e.input_scale(Marginal::new(0.0, 2.0).unwrap()) - 0.5).abs() < 1e-15);
    // VP: c_noise = (M − 1)·t for σ(t) = √(exp(½β_d t² + β_min t) − 1).
    let vp = edm_variants()[0];
    let t = 0.5f64;
    let s = ((0.5 * 19.9 * t * t + 0.1 * t).exp() - 1.0).sqrt();
    let c = vp
        .noise_conditioning(0.0, Marginal::new(1.0, s).unwrap())
        .unwrap();
    assert!((c - 999.0 * t).abs() < 1e-9, "{c}");
    // VE: ln(σ/2).
    let ve = edm_variants()[1];
    assert!((ve.noise_conditioning(0.0, m).unwrap() - 1f64.ln()).abs() < 1e-15);
    assert!(Edm::new(0.0).is_err());
}

#[test]
fn diffusers_prediction_types_by_name() {
    for (name, want) in [
        ("epsilon", "epsilon"),
        ("sample", "sample"),
        ("v_prediction", "v_prediction"),
        ("flow_prediction", "flow_prediction"),
        ("score", "score"),
        ("edm", "edm"),
    ] {
        assert_eq!(by_name(name).unwrap().name(), want);
    }
    assert!(by_name("velocityy").is_err());
}

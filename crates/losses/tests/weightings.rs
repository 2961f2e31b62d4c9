//! Identities between the loss weightings and the output spaces.

use diffuse_core::{Affine, Error, Marginal, Parameterization};
use diffuse_losses::{Level, Target, Weighting};
use proptest::prelude::*;

const SIGMA_DATA: f64 = 0.5;

fn targets() -> [Target; 6] {
    [
        Target::Epsilon,
        Target::X0,
        Target::V,
        Target::EdmF {
            sigma_data: SIGMA_DATA,
        },
        Target::FlowVelocity,
        Target::Score,
    ]
}

fn weightings() -> Vec<Weighting> {
    let mut w: Vec<Weighting> = targets().into_iter().map(Weighting::Unit).collect();
    w.extend([
        Weighting::Snr,
        Weighting::TruncatedSnr,
        Weighting::MinSnr { gamma: 5.0 },
        Weighting::SoftMinSnr { gamma: 2.0 },
        Weighting::P2 { k: 1.0, gamma: 0.5 },
        Weighting::P2 { k: 1.0, gamma: 1.0 },
        Weighting::Edm {
            sigma_data: SIGMA_DATA,
        },
        Weighting::Sigmoid { bias: -1.0 },
        Weighting::Sigmoid { bias: 3.0 },
        Weighting::Elbo,
        Weighting::Likelihood,
    ]);
    w
}

/// The diffuse-param parameterisation of each output space.
fn parameterization(t: Target) -> Box<dyn Parameterization> {
    match t {
        Target::Epsilon => Box::new(diffuse_param::Epsilon),
        Target::X0 => Box::new(diffuse_param::Sample),
        Target::V => Box::new(diffuse_param::Velocity),
        Target::EdmF { sigma_data } => Box::new(diffuse_param::Edm::new(sigma_data).unwrap()),
        Target::FlowVelocity => Box::new(diffuse_param::FlowVelocity),
        Target::Score => Box::new(diffuse_param::Score),
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

/// A VP level at log-SNR `lambda`, with an arbitrary `dλ/dt < 0`.
fn vp(lambda: f64) -> Level {
    let a = (1.0 / (1.0 + (-lambda).exp())).sqrt();
    let s = (1.0 / (1.0 + lambda.exp())).sqrt();
    Level::new(Marginal::new(a, s).unwrap())
        .unwrap()
        .with_dlog_snr_dt(-3.0)
        .unwrap()
}

/// A general (scaled) level: VP at `lambda`, both scales multiplied by `k`.
fn scaled(lambda: f64, k: f64) -> Level {
    let m = vp(lambda).marginal;
    Level::new(Marginal::new(k * m.alpha, k * m.sigma).unwrap())
        .unwrap()
        .with_dlog_snr_dt(-3.0)
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// c_T² = 1/b² for the map x̂₀ = a·x + b·out of the matching
    /// diffuse-param parameterisation, and the target p·x₀ + q·ε is what
    /// that map inverts: a·α + b·p = 1 and a·σ + b·q = 0.
    #[test]
    fn targets_agree_with_the_parameterizations(lambda in -10.0f64..10.0, k in 0.2f64..5.0) {
        let m = scaled(lambda, k).marginal;
        for t in targets() {
            let Affine { a, b } = parameterization(t).x0_map(m).unwrap();
            prop_assert!(close(t.x0_factor(m), 1.0 / (b * b), 1e-12), "{t:?}");
            let (p, q) = t.coefficients(m).unwrap();
            prop_assert!((a * m.alpha + b * p - 1.0).abs() < 1e-12, "{t:?}");
            let scale = (a * m.sigma).abs().max((b * q).abs()).max(1.0);
            prop_assert!((a * m.sigma + b * q).abs() < 1e-12 * scale, "{t:?}");
        }
    }

    /// ε-MSE is the SNR-weighted x₀-MSE: ‖ε − ε̂‖² = SNR·‖x₀ − x̂₀‖².
    #[test]
    fn eps_mse_is_snr_weighted_x0_mse(lambda in -12.0f64..12.0, k in 0.2f64..5.0) {
        let l = scaled(lambda, k);
        let snr = l.snr();
        prop_assert!(close(Weighting::EPSILON_MSE.x0_weight(&l).unwrap(), snr, 1e-13));
        prop_assert_eq!(Weighting::Snr.weight(Target::Epsilon, &l).unwrap(), 1.0);
        prop_assert!(close(Weighting::X0_MSE.weight(Target::Epsilon, &l).unwrap(), 1.0 / snr, 1e-13));
    }

    /// v-MSE: x₀-weight SNR + 1 and ε-weight (SNR + 1)/SNR when VP; in
    /// general (α² + σ²)²/σ² and (α² + σ²)²/α².
    #[test]
    fn v_mse_is_snr_plus_one(lambda in -12.0f64..12.0, k in 0.2f64..5.0) {
        let l = vp(lambda);
        let snr = l.snr();
        prop_assert!(close(Weighting::V_MSE.x0_weight(&l).unwrap(), snr + 1.0, 1e-12));
        prop_assert!(close(Weighting::V_MSE.weight(Target::Epsilon, &l).unwrap(), (snr + 1.0) / snr, 1e-12));
        let g = scaled(lambda, k);
        let Marginal { alpha: a, sigma: s } = g.marginal;
        let n2 = (a * a + s * s).powi(2);
        prop_assert!(close(Weighting::V_MSE.x0_weight(&g).unwrap(), n2 / (s * s), 1e-12));
        prop_assert!(close(Weighting::V_MSE.weight(Target::Epsilon, &g).unwrap(), n2 / (a * a), 1e-12));
    }

    /// A weighting is one loss whatever the output space:
    /// weight(T₁)·c_T₁² = weight(T₂)·c_T₂² = w₀.
    #[test]
    fn weightings_are_space_independent(lambda in -10.0f64..10.0, k in 0.2f64..5.0) {
        let l = scaled(lambda, k);
        let m = l.marginal;
        for w in weightings() {
            let w0 = w.x0_weight(&l).unwrap();
            for t in targets() {
                let wt = w.weight(t, &l).unwrap();
                prop_assert!(close(wt * t.x0_factor(m), w0, 1e-12), "{w:?} on {t:?}: {wt}");
            }
        }
    }

    /// Min-SNR-γ with γ above every SNR (or γ = ∞) is the plain ε-loss, and
    /// its ε/x₀/v forms are Hang et al.'s min(SNR,γ)/SNR, min(SNR,γ),
    /// min(SNR,γ)/(SNR+1).
    #[test]
    fn min_snr_forms_and_limit(lambda in -12.0f64..12.0, gamma in 0.01f64..50.0) {
        let l = vp(lambda);
        let snr = l.snr();
        for big in [f64::INFINITY, 1e300, 2.0 * snr] {
            let w = Weighting::min_snr(big).unwrap();
            for t in targets() {
                prop_assert_eq!(w.weight(t, &l).unwrap(), Weighting::Snr.weight(t, &l).unwrap());
            }
        }
        let w = Weighting::MinSnr { gamma };
        let capped = snr.min(gamma);
        prop_assert!(close(w.weight(Target::Epsilon, &l).unwrap(), capped / snr, 1e-12));
        prop_assert!(close(w.weight(Target::X0, &l).unwrap(), capped, 1e-12));
        prop_assert!(close(w.weight(Target::V, &l).unwrap(), capped / (snr + 1.0), 1e-12));
    }

    /// Truncated SNR is max(SNR, 1) on the x₀-error.
    #[test]
    fn truncated_snr_is_max_snr_one(lambda in -12.0f64..12.0, k in 0.2f64..5.0) {
        let l = scaled(lambda, k);
        prop_assert!(close(Weighting::TruncatedSnr.x0_weight(&l).unwrap(), l.snr().max(1.0), 1e-13));
    }

    /// EDM: λ(σ) = (σ_e² + σ_d²)/(σ_e·σ_d)² on the x₀-error is unit weight
    /// on F (λ·c_out² = 1), and F's target is (x₀ − c_skip·x/α)/c_out.
    #[test]
    fn edm_weighting_is_unit_on_f(lambda in -12.0f64..12.0, k in 0.2f64..5.0, x0 in -3.0f64..3.0, eps in -3.0f64..3.0) {
        let l = scaled(lambda, k);
        let m = l.marginal;
        let w = Weighting::edm(SIGMA_DATA).unwrap();
        let f = Target::EdmF { sigma_data: SIGMA_DATA };
        prop_assert!((w.weight(f, &l).unwrap() - 1.0).abs() < 1e-13);
        let se = m.ve_sigma();
        let d2 = SIGMA_DATA * SIGMA_DATA;
        prop_assert!(close(w.x0_weight(&l).unwrap(), (se * se + d2) / (se * se * d2), 1e-12));
        let edm = diffuse_param::Edm::new(SIGMA_DATA).unwrap();
        let (c_skip, c_out, _) = edm.coefficients(se);
        let x = m.alpha * x0 + m.sigma * eps;
        let (p, q) = f.coefficients(m).unwrap();
        let want = (x0 - c_skip * x / m.alpha) / c_out;
        prop_assert!((p * x0 + q * eps - want).abs() < 1e-10 * want.abs().max(1.0));
    }

    /// Soft-min-SNR: SNR·γ/(SNR + γ); k-diffusion's F-space
    /// (σσ_d)²/(σ² + σ_d²)² equals γ = 1 against SNR_d = σ_d²·SNR, over σ_d².
    #[test]
    fn soft_min_snr_matches_k_diffusion(sigma in 0.002f64..80.0) {
        let l = Level::edm(sigma).unwrap();
        let snr = l.snr();
        let w = Weighting::SoftMinSnr { gamma: 2.0 };
        prop_assert!(close(w.x0_weight(&l).unwrap(), snr * 2.0 / (snr + 2.0), 1e-13));
        let d = SIGMA_DATA;
        let k_diffusion_f = (sigma * d).powi(2) / (sigma * sigma + d * d).powi(2);
        let f = Target::EdmF { sigma_data: d };
        let x0_weight = k_diffusion_f * f.x0_factor(l.marginal);
        // SNR against σ_d: the level σ/σ_d.
        let ld = Level::edm(sigma / d).unwrap();
        let ours = Weighting::SoftMinSnr { gamma: 1.0 }.x0_weight(&ld).unwrap() / (d * d);
        prop_assert!(close(x0_weight, ours, 1e-12));
    }

    /// P2 is 1/(k + SNR)^γ on the ε-error (γ = 0: L_simple); sigmoid is
    /// sigmoid(b − λ) on it.
    #[test]
    fn p2_and_sigmoid_eps_forms(lambda in -12.0f64..12.0, k in 0.0f64..3.0, gamma in 0.0f64..2.0, bias in -5.0f64..5.0) {
        let l = vp(lambda);
        let snr = l.snr();
        let p2 = Weighting::P2 { k, gamma };
        prop_assert!(close(p2.weight(Target::Epsilon, &l).unwrap(), (k + snr).powf(-gamma), 1e-12));
        prop_assert_eq!(Weighting::P2 { k, gamma: 0.0 }.weight(Target::Epsilon, &l).unwrap(), 1.0);
        let s = Weighting::Sigmoid { bias };
        let want = 1.0 / (1.0 + (lambda - bias).exp());
        prop_assert!(close(s.weight(Target::Epsilon, &l).unwrap(), want, 1e-12));
    }

    /// ELBO: −½·dλ/dt on the ε-error; likelihood weighting is twice that in
    /// every space.
    #[test]
    fn elbo_and_likelihood(lambda in -12.0f64..12.0, rate in -50.0f64..0.0) {
        let l = Level::new(vp(lambda).marginal).unwrap().with_dlog_snr_dt(rate).unwrap();
        prop_assert!(close(Weighting::Elbo.weight(Target::Epsilon, &l).unwrap(), -0.5 * rate, 1e-13));
        for t in targets() {
            let e = Weighting::Elbo.weight(t, &l).unwrap();
            let g = Weighting::Likelihood.weight(t, &l).unwrap();
            prop_assert!(close(g, 2.0 * e, 1e-13));
        }
    }
}

/// On the VP SDE with linear β (Song et al. 2021), likelihood weighting on
/// the score error is g(t)² = β(t), and dλ/dt = −β(t)/σ(t)².
#[test]
fn likelihood_weight_is_g_squared_on_vp_linear() {
    let s = diffuse_schedules::VpLinear::default();
    let mut worst = 0.0f64;
    for i in 0..=50 {
        let t = 1e-3 + (1.0 - 1e-3) * f64::from(i) / 50.0;
        let beta = s.beta_min + t * (s.beta_max - s.beta_min);
        let level = Level::on_schedule(&s, t).unwrap();
        let sigma = level.marginal.sigma;
        let rate = level.dlog_snr_dt.unwrap();
        let exact = -beta / (sigma * sigma);
        worst = worst.max((rate - exact).abs() / exact.abs());
        assert!(close(rate, exact, 1e-8), "t = {t}: {rate}");
        let g2 = Weighting::Likelihood.weight(Target::Score, &level).unwrap();
        assert!(close(g2, beta, 1e-8), "t = {t}: {g2} vs β = {beta}");
    }
    println!("worst relative error of dλ/dt on VP-linear: {worst:.2e}");
    // At the ends the one-sided stencils take over.
    for t in [0.0, 1.0] {
        let level = Level::on_schedule(&s, t).unwrap();
        let beta = s.beta_min + t * (s.beta_max - s.beta_min);
        if t > 0.0 {
            let sigma = level.marginal.sigma;
            assert!(close(
                level.dlog_snr_dt.unwrap(),
                -beta / (sigma * sigma),
                1e-7
            ));
        } else {
            // λ(0) = +∞: no derivative.
            assert!(level.dlog_snr_dt.is_none());
        }
    }
}

/// The straight path's exact dλ/dt matches the finite difference on the
/// flow schedule.
#[test]
fn flow_level_rate_matches_schedule() {
    let s = diffuse_schedules::Flow::new(1.0).unwrap();
    for t in [0.05, 0.3, 0.5, 0.9] {
        let exact = Level::flow(t).unwrap();
        let fd = Level::on_schedule(&s, t).unwrap();
        assert!(close(exact.marginal.alpha, fd.marginal.alpha, 1e-14));
        assert!(close(
            exact.dlog_snr_dt.unwrap(),
            fd.dlog_snr_dt.unwrap(),
            1e-8
        ));
    }
}

#[test]
fn limits_at_zero_and_infinite_snr() {
    let zero = Level::new(Marginal::new(0.0, 1.0).unwrap()).unwrap();
    let inf = Level::new(Marginal::new(1.0, 0.0).unwrap()).unwrap();
    // Unit weight in its own space, everywhere.
    for t in targets() {
        for l in [zero, inf] {
            if let Ok(w) = Weighting::Unit(t).weight(t, &l) {
                assert_eq!(w, 1.0, "{t:?}");
            }
        }
    }
    assert_eq!(
        Weighting::EPSILON_MSE
            .weight(Target::Epsilon, &zero)
            .unwrap(),
        1.0
    );
    assert_eq!(Weighting::V_MSE.weight(Target::V, &zero).unwrap(), 1.0);
    // min(SNR, γ)/SNR → 1 at SNR = 0 (the division diffusers' code makes is 0/0).
    let ms = Weighting::MinSnr { gamma: 5.0 };
    assert_eq!(ms.weight(Target::Epsilon, &zero).unwrap(), 1.0);
    assert_eq!(ms.weight(Target::V, &zero).unwrap(), 0.0);
    assert_eq!(ms.weight(Target::X0, &inf).unwrap(), 5.0);
    assert_eq!(ms.weight(Target::Epsilon, &inf).unwrap(), 0.0);
    // SNR·sigmoid(b − λ) → e^b as SNR → ∞.
    let sg = Weighting::Sigmoid { bias: 1.5 };
    assert!(close(
        sg.weight(Target::X0, &inf).unwrap(),
        1.5f64.exp(),
        1e-15
    ));
    assert_eq!(sg.weight(Target::Epsilon, &zero).unwrap(), 1.0);
    // No finite weight: the x₀-MSE of an ε-predictor at SNR = 0, the ε-MSE
    // seen on x₀ at SNR = ∞.
    assert!(matches!(
        Weighting::X0_MSE.weight(Target::Epsilon, &zero),
        Err(Error::Undefined { .. })
    ));
    assert!(matches!(
        Weighting::EPSILON_MSE.weight(Target::X0, &inf),
        Err(Error::Undefined { .. })
    ));
    assert!(Target::Score.coefficients(inf.marginal).is_err());
}

#[test]
fn invalid_parameters_are_typed_errors() {
    let l = vp(0.3);
    let bad = [
        Weighting::MinSnr { gamma: 0.0 },
        Weighting::MinSnr { gamma: -1.0 },
        Weighting::MinSnr { gamma: f64::NAN },
        Weighting::SoftMinSnr { gamma: 0.0 },
        Weighting::SoftMinSnr {
            gamma: f64::INFINITY,
        },
        Weighting::P2 {
            k: -1.0,
            gamma: 1.0,
        },
        Weighting::P2 {
            k: 1.0,
            gamma: f64::NAN,
        },
        Weighting::Edm { sigma_data: 0.0 },
        Weighting::Edm {
            sigma_data: f64::NAN,
        },
        Weighting::Sigmoid {
            bias: f64::INFINITY,
        },
        Weighting::Unit(Target::EdmF { sigma_data: -0.5 }),
    ];
    for w in bad {
        assert!(
            matches!(w.validate(), Err(Error::InvalidArgument { .. })),
            "{w:?}"
        );
        assert!(
            matches!(w.x0_weight(&l), Err(Error::InvalidArgument { .. })),
            "{w:?}"
        );
    }
    assert!(Weighting::min_snr(0.0).is_err() && Weighting::edm(-1.0).is_err());
    assert!(
        Weighting::Snr
            .weight(Target::EdmF { sigma_data: 0.0 }, &l)
            .is_err()
    );
    // The ELBO needs dλ/dt, and a decreasing log-SNR.
    let no_rate = Level::new(l.marginal).unwrap();
    assert!(matches!(
        Weighting::Elbo.x0_weight(&no_rate),
        Err(Error::InvalidArgument { .. })
    ));
    let rising = no_rate.with_dlog_snr_dt(1.0).unwrap();
    assert!(Weighting::Likelihood.x0_weight(&rising).is_err());
    assert!(no_rate.with_dlog_snr_dt(f64::NAN).is_err());
    // Levels: invalid marginals, even when built by hand.
    let hand = Level {
        marginal: Marginal {
            alpha: f64::NAN,
            sigma: 1.0,
        },
        dlog_snr_dt: None,
    };
    assert!(Weighting::Snr.x0_weight(&hand).is_err());
    assert!(Level::edm(0.0).is_err() && Level::flow(1.0).is_err() && Level::flow(0.0).is_err());
}

//! Invariants of the continuous schedules: marginals, monotone log-SNR,
//! the inverse t(λ), and end points.

use diffuse_schedules::{
    ChenSigmoid, EdmSchedule, Flow, InterpolatedCosine, NoiseSchedule, ShiftedCosine, SubVp,
    TimeShift, VeGeometric, VpCosine, VpLinear,
};
use proptest::prelude::*;

fn all() -> Vec<Box<dyn NoiseSchedule>> {
    vec![
        Box::new(VpLinear::default()),
        Box::new(VpCosine::default()),
        Box::new(SubVp::default()),
        Box::new(VeGeometric::default()),
        Box::new(EdmSchedule::default()),
        Box::new(Flow::default()),
        Box::new(Flow::new(3.0).unwrap()),
        Box::new(ChenSigmoid::default()),
        Box::new(ChenSigmoid::new(0.0, 3.0, 0.7).unwrap()),
        Box::new(ShiftedCosine::new(256.0, 64.0).unwrap()),
        Box::new(InterpolatedCosine::default()),
        Box::new(Flow::with_shift(TimeShift::Exponential { mu: 1.15 }, 1.0).unwrap()),
        Box::new(Flow::with_shift(TimeShift::Linear { mu: 2.0 }, 1.5).unwrap()),
    ]
}

proptest! {
    #[test]
    fn log_snr_decreases_and_inverts(which in 0usize..13, u in 0.001f64..0.999, du in 1e-4f64..0.1) {
        let s = &all()[which];
        let (t0, t1) = s.t_range();
        let t = t0 + u * (t1 - t0);
        let t2 = (t + du * (t1 - t0)).min(t1);
        let m = s.marginal(t);
        prop_assert!(m.alpha > 0.0 && m.sigma > 0.0, "{}: {:?}", s.name(), m);
        prop_assert!(s.log_snr(t2) < s.log_snr(t), "{}: λ not decreasing at {}", s.name(), t);
        let back = s.t_of_log_snr(s.log_snr(t)).unwrap();
        prop_assert!((back - t).abs() <= 1e-9 * t.abs().max(1e-3), "{}: t(λ(t)) = {} for t = {}", s.name(), back, t);
    }

    #[test]
    fn variance_preserving_schedules_keep_unit_variance(u in 0.0f64..1.0) {
        for s in [
            &VpLinear::default() as &dyn NoiseSchedule,
            &VpCosine::default(),
            &ChenSigmoid::default(),
            &ShiftedCosine::new(128.0, 64.0).unwrap(),
            &InterpolatedCosine::default(),
        ] {
            let m = s.marginal(u);
            prop_assert!((m.alpha * m.alpha + m.sigma * m.sigma - 1.0).abs() < 1e-12, "{}", s.name());
        }
        let sub = SubVp::default();
        let m = sub.marginal(u);
        prop_assert!((m.sigma - (1.0 - m.alpha * m.alpha)).abs() < 1e-12);
        prop_assert!(m.sigma <= VpLinear::default().sigma(u) + 1e-15);
        let f = Flow::new(3.0).unwrap().marginal(u);
        prop_assert!((f.alpha + f.sigma - 1.0).abs() < 1e-15);
    }
}

#[test]
fn end_points() {
    let ve = VeGeometric::default();
    assert!((ve.sigma(0.0) - 0.01).abs() < 1e-15 && (ve.sigma(1.0) - 50.0).abs() < 1e-12);
    let edm = EdmSchedule::default();
    assert_eq!(edm.sigma(3.5), 3.5);
    assert_eq!(edm.t_range(), (0.002, 80.0));
    let vp = VpLinear::default();
    assert_eq!(vp.alpha(0.0), 1.0);
    assert_eq!(vp.sigma(0.0), 0.0);
    // α(1) = exp(−¼·19.9 − ½·0.1).
    assert!((vp.alpha(1.0) - (-0.25 * 19.9 - 0.05f64).exp()).abs() < 1e-15);
    let cos = VpCosine::default();
    assert!(cos.alpha(1.0) < 1e-15);
    let f = Flow::new(3.0).unwrap();
    assert_eq!((f.sigma(0.0), f.sigma(1.0)), (0.0, 1.0));
    assert!((f.sigma(0.5) - 0.75).abs() < 1e-15); // 3·½/(1 + 2·½)
    assert!(Flow::new(0.0).is_err());
    // Out-of-range log-SNR is an error.
    assert!(ve.t_of_log_snr(100.0).is_err());
    assert!(edm.t_of_log_snr(f64::NAN).is_err());
}

#[test]
fn new_schedules_against_their_defining_formulas() {
    // Chen: ᾱ(t) = (σ(3) − σ(6t − 3)) / (σ(3) − σ(−3)) with the logistic σ.
    let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
    let chen = ChenSigmoid::default();
    for t in [0.1, 0.37, 0.5, 0.9] {
        let want = (sig(3.0) - sig(6.0 * t - 3.0)) / (sig(3.0) - sig(-3.0));
        assert!((chen.alpha(t).powi(2) - want).abs() < 1e-14, "t = {t}");
    }
    assert_eq!(chen.sigma(0.0), 0.0);
    assert_eq!(chen.alpha(1.0), 0.0);
    // Simple diffusion: shifting from 64 to 256 lowers λ by 2·log 4 everywhere.
    let (base, shifted) = (
        ShiftedCosine::default(),
        ShiftedCosine::new(256.0, 64.0).unwrap(),
    );
    for t in [0.2, 0.5, 0.8] {
        let d = base.log_snr(t) - shifted.log_snr(t);
        assert!((d - 2.0 * 4f64.ln()).abs() < 1e-12);
    }
    // Symmetric clipping keeps the middle at θ = π/4, i.e. λ = 0.
    assert!(base.log_snr(0.5).abs() < 1e-12);
    assert!((base.log_snr(0.0) - 15.0).abs() < 1e-12 && (base.log_snr(1.0) + 15.0).abs() < 1e-12);
    // Interpolated: the end points are those of the low and high shifts.
    let lo = ShiftedCosine::new(64.0, 32.0).unwrap();
    let hi = ShiftedCosine::new(64.0, 256.0).unwrap();
    let i = InterpolatedCosine::default();
    assert_eq!(i.log_snr(0.0), lo.log_snr(0.0));
    assert_eq!(i.log_snr(1.0), hi.log_snr(1.0));
    assert!(InterpolatedCosine::new(64.0, 1.0, 1e6).is_err());
    // Dynamic flow shift: exponential with μ = ln 3 is SD3's static shift 3.
    let dynamic = Flow::with_shift(TimeShift::Exponential { mu: 3f64.ln() }, 1.0).unwrap();
    let sd3 = Flow::new(3.0).unwrap();
    for t in [0.1, 0.5, 0.9] {
        assert!((dynamic.sigma(t) - sd3.sigma(t)).abs() < 1e-15);
        assert!((dynamic.alpha(t) - sd3.alpha(t)).abs() < 1e-15);
    }
    // Flux's μ at the base and max sequence lengths.
    let mu = |n| TimeShift::mu_for_seq_len(n, 256.0, 4096.0, 0.5, 1.15).unwrap();
    assert!((mu(256.0) - 0.5).abs() < 1e-15 && (mu(4096.0) - 1.15).abs() < 1e-12);
    assert!(TimeShift::mu_for_seq_len(1.0, 256.0, 256.0, 0.5, 1.15).is_err());
    assert!(Flow::with_shift(TimeShift::Linear { mu: -1.0 }, 1.0).is_err());
    assert!(ChenSigmoid::new(3.0, -3.0, 1.0).is_err());
}

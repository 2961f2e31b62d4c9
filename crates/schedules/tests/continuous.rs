//! Invariants of the continuous schedules: marginals, monotone log-SNR,
//! the inverse t(λ), and end points.

use diffuse_schedules::{EdmSchedule, Flow, NoiseSchedule, SubVp, VeGeometric, VpCosine, VpLinear};
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
    ]
}

proptest! {
    #[test]
    fn log_snr_decreases_and_inverts(which in 0usize..7, u in 0.001f64..0.999, du in 1e-4f64..0.1) {
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
        for s in [&VpLinear::default() as &dyn NoiseSchedule, &VpCosine::default()] {
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

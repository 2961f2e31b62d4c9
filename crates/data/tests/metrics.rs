//! Metrics: identities, analytic values, symmetry, floors and errors.

use diffuse_core::noise::NoiseStream;
use diffuse_data::{
    Dataset, Error, SlicedWasserstein, Split, energy_distance, floor, floor_with_seed, scores,
    sliced_wasserstein, wasserstein2_squared_1d,
};
use ndarray::{Array1, Array2, Axis, concatenate};
use proptest::prelude::*;

/// `n` points of N(μ, I) in `μ.len()` dimensions from the Philox stream.
fn gaussian(n: usize, mu: &[f32], seed: u64) -> Array2<f32> {
    let d = mu.len();
    let mut z = vec![0.0f32; n * d];
    NoiseStream::new(seed, 99).fill(0, &mut z);
    let mut x = Array2::from_shape_vec((n, d), z).unwrap();
    x += &Array1::from(mu.to_vec());
    x
}

#[test]
fn sliced_wasserstein_of_a_set_with_itself_is_zero() {
    let x = Dataset::Pinwheel.sample(700, 1).unwrap();
    assert_eq!(sliced_wasserstein(x.view(), x.view()).unwrap(), 0.0);
    // The same empirical measure at a different size (every point twice):
    // quantile matching pairs equal values, so still exactly zero.
    let xx = concatenate(Axis(0), &[x.view(), x.view()]).unwrap();
    assert_eq!(sliced_wasserstein(x.view(), xx.view()).unwrap(), 0.0);
}

#[test]
fn sliced_wasserstein_is_symmetric_and_deterministic() {
    let x = Dataset::Moons.sample(500, 1).unwrap();
    let y = Dataset::Circles.sample(333, 1).unwrap();
    let a = sliced_wasserstein(x.view(), y.view()).unwrap();
    let b = sliced_wasserstein(y.view(), x.view()).unwrap();
    assert_eq!(a, b);
    assert!(a > 0.1);
    // Independent of the thread count.
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let c = single.install(|| sliced_wasserstein(x.view(), y.view()).unwrap());
    assert_eq!(a.to_bits(), c.to_bits());
}

#[test]
fn directions_are_unit_vectors() {
    let sw = SlicedWasserstein::default();
    for d in [1, 2, 3, 7] {
        let dirs = sw.directions(d).unwrap();
        assert_eq!(dirs.len(), 256 * d);
        for u in dirs.chunks_exact(d) {
            let n: f64 = u.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-12);
        }
    }
}

/// For a pure translation y = x + μ every projection moves by ⟨u, μ⟩, so
/// SW₂² = mean_k ⟨u_k, μ⟩², whose expectation over uniform directions is
/// ‖μ‖²/d.
#[test]
fn sliced_wasserstein_of_a_translation() {
    for (mu, k) in [
        (vec![1.5f32, -0.5], 256),
        (vec![1.5f32, -0.5], 4096),
        (vec![0.3f32, 0.0, -1.0, 2.0, 0.5], 4096),
    ] {
        let d = mu.len();
        let x = gaussian(500, &vec![0.0; d], 4);
        let y = &x + &Array1::from(mu.clone());
        let sw = SlicedWasserstein::new(k, 17).unwrap();
        let got = sw.distance_squared(x.view(), y.view()).unwrap();
        let mu64: Vec<f64> = mu.iter().map(|&v| f64::from(v)).collect();
        let dirs = sw.directions(d).unwrap();
        let exact: f64 = dirs
            .chunks_exact(d)
            .map(|u| u.iter().zip(&mu64).map(|(a, b)| a * b).sum::<f64>().powi(2))
            .sum::<f64>()
            / k as f64;
        // Only f32 rounding of x + μ separates the two.
        assert!((got - exact).abs() < 1e-5 * exact, "{got} vs {exact}");
        // Monte Carlo over K directions: (u·μ)² has relative standard
        // deviation ≤ √2 (d = 2: 0.71), so the mean's is ≤ 0.09 at K = 256
        // and ≤ 0.022 at K = 4096; allow ~4 standard errors.
        let analytic = mu64.iter().map(|v| v * v).sum::<f64>() / d as f64;
        let tol = if k == 256 { 0.3 } else { 0.09 };
        assert!(
            (got / analytic - 1.0).abs() < tol,
            "d={d} K={k}: {got} vs {analytic}"
        );
    }
}

/// Independent samples of N(0, I) and N(μ, I): SW₂² ≈ ‖μ‖²/d plus the
/// (small, positive) finite-sample term.
#[test]
fn sliced_wasserstein_between_shifted_gaussians() {
    let mu = [2.0f32, 1.0];
    let x = gaussian(2000, &[0.0, 0.0], 1);
    let y = gaussian(1500, &mu, 2);
    // K = 1024: Monte Carlo relative error ≈ 0.71/32 ≈ 0.022.
    let sw = SlicedWasserstein::new(1024, 3).unwrap();
    let got = sw.distance_squared(x.view(), y.view()).unwrap();
    let analytic = 5.0 / 2.0;
    assert!((got / analytic - 1.0).abs() < 0.1, "{got} vs {analytic}");
    assert!(
        got > sw
            .distance_squared(x.view(), gaussian(1500, &[0.0, 0.0], 2).view())
            .unwrap()
    );
}

#[test]
fn one_dimensional_w2_known_values() {
    assert_eq!(wasserstein2_squared_1d(&[0.0], &[1.0]).unwrap(), 1.0);
    assert_eq!(wasserstein2_squared_1d(&[0.0, 2.0], &[1.0]).unwrap(), 1.0);
    // Unsorted input; the point masses at 0 and 3 against a uniform pair.
    assert_eq!(
        wasserstein2_squared_1d(&[3.0, 0.0], &[0.0, 3.0]).unwrap(),
        0.0
    );
    // {0, 1, 2} against {0, 3}: segments [0,⅓) 0², [⅓,½) 1², [½,⅔) 2², [⅔,1) 1².
    let got = wasserstein2_squared_1d(&[0.0, 1.0, 2.0], &[0.0, 3.0]).unwrap();
    let want = 1.0 / 6.0 + 4.0 / 6.0 + 1.0 / 3.0;
    assert!((got - want).abs() < 1e-15);
    assert!(matches!(
        wasserstein2_squared_1d(&[], &[1.0]),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        wasserstein2_squared_1d(&[f64::NAN], &[1.0]),
        Err(Error::NonFinite(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// W₂ on the line is symmetric, shifts give the squared shift, and
    /// replicating points does not change the measure.
    #[test]
    fn one_dimensional_w2_identities(
        a in prop::collection::vec(-10.0f64..10.0, 1..40),
        b in prop::collection::vec(-10.0f64..10.0, 1..40),
        c in -5.0f64..5.0,
        ra in 1usize..4,
        rb in 1usize..4,
    ) {
        let ab = wasserstein2_squared_1d(&a, &b).unwrap();
        prop_assert_eq!(ab, wasserstein2_squared_1d(&b, &a).unwrap());
        prop_assert!(ab >= 0.0);
        let shifted: Vec<f64> = a.iter().map(|v| v + c).collect();
        let s = wasserstein2_squared_1d(&a, &shifted).unwrap();
        prop_assert!((s - c * c).abs() < 1e-9, "{} vs {}", s, c * c);
        let rep = |v: &[f64], r: usize| -> Vec<f64> { v.iter().flat_map(|&t| vec![t; r]).collect() };
        let rr = wasserstein2_squared_1d(&rep(&a, ra), &rep(&b, rb)).unwrap();
        prop_assert!((rr - ab).abs() <= 1e-9 * (1.0 + ab), "{} vs {}", rr, ab);
    }

    /// Both metrics are symmetric and vanish on identical sets for any
    /// point cloud.
    #[test]
    fn metrics_symmetric_and_zero_on_identical_sets(
        xs in prop::collection::vec(-5.0f32..5.0, 2..60),
        ys in prop::collection::vec(-5.0f32..5.0, 2..60),
    ) {
        let x = Array2::from_shape_vec((xs.len() / 2, 2), xs[..xs.len() / 2 * 2].to_vec()).unwrap();
        let y = Array2::from_shape_vec((ys.len() / 2, 2), ys[..ys.len() / 2 * 2].to_vec()).unwrap();
        prop_assert_eq!(sliced_wasserstein(x.view(), x.view()).unwrap(), 0.0);
        prop_assert_eq!(energy_distance(x.view(), x.view()).unwrap(), 0.0);
        let e_xy = energy_distance(x.view(), y.view()).unwrap();
        let e_yx = energy_distance(y.view(), x.view()).unwrap();
        prop_assert!((e_xy - e_yx).abs() <= 1e-12 * (1.0 + e_xy));
        prop_assert!(e_xy >= 0.0);
        prop_assert_eq!(
            sliced_wasserstein(x.view(), y.view()).unwrap(),
            sliced_wasserstein(y.view(), x.view()).unwrap()
        );
    }
}

#[test]
fn energy_distance_known_values() {
    let a = Array2::from_shape_vec((1, 1), vec![0.0f32]).unwrap();
    let b = Array2::from_shape_vec((1, 1), vec![1.0f32]).unwrap();
    // 2·E|X−Y| − E|X−X′| − E|Y−Y′| = 2·1 − 0 − 0.
    assert_eq!(energy_distance(a.view(), b.view()).unwrap(), 2.0);
    // {0, 1} against {0}: 2·½ − ½·… : E|X−Y| = ½, E|X−X′| = ½, E|Y−Y′| = 0.
    let ab = Array2::from_shape_vec((2, 1), vec![0.0f32, 1.0]).unwrap();
    assert_eq!(energy_distance(ab.view(), a.view()).unwrap(), 0.5);
    // 2-D: (0,0) against (3,4): 2·5.
    let p = Array2::from_shape_vec((1, 2), vec![0.0f32, 0.0]).unwrap();
    let q = Array2::from_shape_vec((1, 2), vec![3.0f32, 4.0]).unwrap();
    assert_eq!(energy_distance(p.view(), q.view()).unwrap(), 10.0);
}

#[test]
fn energy_distance_is_zero_for_identical_and_positive_for_different_sets() {
    let x = Dataset::Checkerboard.sample(600, 1).unwrap();
    assert_eq!(energy_distance(x.view(), x.view()).unwrap(), 0.0);
    // The same measure at twice the size: zero up to rounding.
    let xx = concatenate(Axis(0), &[x.view(), x.view()]).unwrap();
    assert!(energy_distance(x.view(), xx.view()).unwrap() < 1e-12);
    let y = Dataset::Checkerboard.held_out(600, 1).unwrap();
    let same_law = energy_distance(x.view(), y.view()).unwrap();
    let other = Dataset::EightGaussians.sample(600, 1).unwrap();
    let different = energy_distance(x.view(), other.view()).unwrap();
    // Measured: 0.0047 against 0.026.
    assert!(
        same_law > 0.0 && different > 3.0 * same_law,
        "{same_law} {different}"
    );
    // Scaling both sets by c scales ℰ by c.
    let (x3, o3) = (&x * 3.0f32, &other * 3.0f32);
    let scaled = energy_distance(x3.view(), o3.view()).unwrap();
    assert!((scaled - 3.0 * different).abs() < 1e-9 * scaled);
    // Independent of the thread count.
    let single = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let again = single.install(|| energy_distance(x.view(), other.view()).unwrap());
    assert_eq!(again.to_bits(), different.to_bits());
}

#[test]
fn energy_distance_between_shifted_gaussians() {
    // 1-D N(0,1) vs N(μ,1): ℰ = 2·E|Z√2 + μ| − 2·E|Z√2| with Z ~ N(0,1);
    // E|N(μ, 2)| = 2√2·φ(μ/√2) + μ·(2Φ(μ/√2) − 1); for μ = 1 this gives
    // ℰ = 2·(1.3976… − 1.1284…) ≈ 0.538.
    let mu = 1.0f64;
    let s = 2f64.sqrt();
    let phi = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
    // Φ(t) = ½ + ∫₀ᵗ φ, by Simpson's rule.
    let big_phi = |t: f64| {
        let m = 2000;
        let h = t / m as f64;
        let mut acc = phi(0.0) + phi(t);
        for i in 1..m {
            acc += phi(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        0.5 + acc * h / 3.0
    };
    let e_abs = |m: f64| 2.0 * s * phi(m / s) + m * (2.0 * big_phi(m / s) - 1.0);
    let analytic = 2.0 * e_abs(mu) - 2.0 * e_abs(0.0);
    let x = gaussian(3000, &[0.0], 5);
    let y = gaussian(3000, &[mu as f32], 6);
    let got = energy_distance(x.view(), y.view()).unwrap();
    // V-statistic bias is O(1/n) (E|X−X′|/n ≈ 4e-4) and the noise ~0.02.
    assert!((got - analytic).abs() < 0.06, "{got} vs {analytic}");
}

#[test]
fn floor_is_small_and_decreases_with_n() {
    // One floor varies by tens of percent between seeds (class counts
    // fluctuate between the two draws), so compare means over 4 seeds.
    let mean_floor = |d: Dataset, n: usize| {
        let f: Vec<_> = (0..4).map(|s| floor_with_seed(d, n, s).unwrap()).collect();
        (
            f.iter().map(|s| s.sliced_wasserstein).sum::<f64>() / 4.0,
            f.iter().map(|s| s.energy_distance).sum::<f64>() / 4.0,
        )
    };
    for d in [Dataset::Moons, Dataset::EightGaussians] {
        let (sw_small, e_small) = mean_floor(d, 200);
        let (sw_large, e_large) = mean_floor(d, 1600);
        // Measured: SW₂ 0.149 → 0.070 (moons), 0.162 → 0.071 (8gaussians);
        // ℰ 0.0177 → 0.0040, 0.0222 → 0.0040. Scaled by 1.3: SW₂ 0.32,
        // ℰ 0.069 and 0.092.
        assert!(sw_large < 0.7 * sw_small, "{d}: {sw_small} {sw_large}");
        assert!(e_large < 0.4 * e_small, "{d}: {e_small} {e_large}");
        assert!(
            sw_large < 0.1 && e_large < 6e-3,
            "{d}: {sw_large} {e_large}"
        );
        // A model off by 30% in scale is well above the floor.
        let x = d.held_out(1600, 0).unwrap();
        let y = d.sample_split(1600, 0, Split::Reference).unwrap() * 1.3f32;
        let s = scores(x.view(), y.view()).unwrap();
        assert!(s.sliced_wasserstein > 3.0 * sw_large, "{d}: {s:?}");
        assert!(s.energy_distance > 10.0 * e_large, "{d}: {s:?}");
    }
    // The single-seed helper is the seed-0 case.
    assert_eq!(
        floor(Dataset::Rings, 300).unwrap(),
        floor_with_seed(Dataset::Rings, 300, 0).unwrap()
    );
}

#[test]
fn bad_inputs_are_typed_errors() {
    let x = Array2::<f32>::zeros((5, 2));
    let y3 = Array2::<f32>::zeros((5, 3));
    let empty = Array2::<f32>::zeros((0, 2));
    let no_cols = Array2::<f32>::zeros((5, 0));
    let mut nan = Array2::<f32>::zeros((5, 2));
    nan[[3, 1]] = f32::NAN;
    for f in [sliced_wasserstein, energy_distance] {
        assert!(matches!(
            f(x.view(), y3.view()),
            Err(Error::ShapeMismatch { .. })
        ));
        assert!(matches!(
            f(x.view(), empty.view()),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(
            f(no_cols.view(), no_cols.view()),
            Err(Error::InvalidArgument { .. })
        ));
        assert!(matches!(f(nan.view(), x.view()), Err(Error::NonFinite(_))));
        assert!(matches!(f(x.view(), nan.view()), Err(Error::NonFinite(_))));
    }
    assert!(matches!(
        SlicedWasserstein::new(0, 0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        SlicedWasserstein::new(usize::MAX, 0),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        floor(Dataset::Moons, 0),
        Err(Error::InvalidArgument { .. })
    ));
}

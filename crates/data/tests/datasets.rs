//! Data sets: shapes, determinism, moments and the geometry of each
//! construction.

use std::f64::consts::{PI, TAU};

use diffuse_data::{Dataset, Error, MAX_SAMPLES, Split};
use ndarray::Array2;

/// Rows of a sample in literature units, with their labels.
fn literature(data: Dataset, n: usize, seed: u64) -> (Vec<[f64; 2]>, Vec<u32>) {
    let (x, labels) = data.sample_labelled(n, seed, Split::Train).unwrap();
    let norm = data.normalisation();
    let points = x
        .rows()
        .into_iter()
        .map(|r| norm.to_literature([f64::from(r[0]), f64::from(r[1])]))
        .collect();
    (points, labels)
}

fn norm2(p: [f64; 2]) -> f64 {
    p[0].hypot(p[1])
}

/// The angle difference wrapped to (−π, π].
fn wrap(a: f64) -> f64 {
    let r = a.rem_euclid(TAU);
    if r > PI { r - TAU } else { r }
}

#[test]
fn names_round_trip_and_default_is_moons() {
    assert_eq!(Dataset::default(), Dataset::Moons);
    assert_eq!(Dataset::all().len(), 8);
    for (i, &d) in Dataset::all().iter().enumerate() {
        assert_eq!(d.index(), i);
        assert_eq!(Dataset::from_name(d.name()).unwrap(), d);
        assert_eq!(d.name().parse::<Dataset>().unwrap(), d);
        assert_eq!(d.to_string(), Dataset::NAMES[i]);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(json, format!("\"{}\"", d.name()));
        assert_eq!(serde_json::from_str::<Dataset>(&json).unwrap(), d);
        assert!(!d.description().is_empty());
    }
}

#[test]
fn unknown_name_lists_the_valid_ones() {
    match Dataset::from_name("2spirals") {
        Err(Error::InvalidArgument { name, reason }) => {
            assert_eq!(name, "dataset");
            assert!(reason.contains("2spirals"));
            for n in Dataset::NAMES {
                assert!(reason.contains(n), "{reason} lacks {n}");
            }
        }
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn bad_counts_are_typed_errors() {
    for n in [0, MAX_SAMPLES + 1, usize::MAX] {
        match Dataset::Moons.sample(n, 0) {
            Err(Error::InvalidArgument { name: "n", .. }) => {}
            other => panic!("n = {n}: expected InvalidArgument, got {other:?}"),
        }
    }
    assert!(Dataset::Rings.held_out(1, 0).is_ok());
}

#[test]
fn shapes_are_finite_and_labels_in_range() {
    for &d in Dataset::all() {
        for n in [1, 3, 4097] {
            let (x, labels) = d.sample_labelled(n, 11, Split::Train).unwrap();
            assert_eq!(x.dim(), (n, 2), "{d}");
            assert_eq!(labels.len(), n);
            assert!(x.iter().all(|v| v.is_finite()), "{d}");
            assert!(labels.iter().all(|&l| l < d.classes()), "{d}");
        }
    }
}

#[test]
fn deterministic_per_seed_and_different_across_seeds_and_splits() {
    for &d in Dataset::all() {
        let a = d.sample(500, 3).unwrap();
        assert_eq!(a, d.sample(500, 3).unwrap(), "{d}");
        // A prefix of a larger draw (chunking does not change values).
        let big = d.sample(10_000, 3).unwrap();
        assert_eq!(a, big.slice(ndarray::s![..500, ..]), "{d}");
        // Pointwise access agrees with the batch.
        let (p, _) = d.point(3, Split::Train, 9_999);
        assert_eq!(p, [big[[9_999, 0]], big[[9_999, 1]]]);
        let differ = |b: &Array2<f32>| a.iter().zip(b.iter()).filter(|(s, t)| s != t).count();
        assert!(differ(&d.sample(500, 4).unwrap()) > 900, "{d} seed");
        assert!(differ(&d.held_out(500, 3).unwrap()) > 900, "{d} held-out");
        assert!(
            differ(&d.sample_split(500, 3, Split::Reference).unwrap()) > 900,
            "{d} ref"
        );
    }
    // Streams are distinct across data sets and splits, and tagged.
    let mut streams: Vec<u64> = Dataset::all()
        .iter()
        .flat_map(|d| [Split::Train, Split::HeldOut, Split::Reference].map(|s| d.stream(s)))
        .collect();
    assert!(streams.iter().all(|s| s >> 32 == 0x6461_7461));
    streams.sort_unstable();
    streams.dedup();
    assert_eq!(streams.len(), 24);
}

#[test]
fn value_stability() {
    // Point 0 of the training split under seed 0 and point 123456 of the
    // held-out split under seed 42, from an independent Python
    // implementation of the documented constructions
    // (tests/reference/datasets.py, f64 Box–Muller: hence the 2e-6).
    type Row = (&'static str, [f64; 2], u32, [f64; 2], u32);
    let expected: [Row; 8] = [
        (
            "moons",
            [-1.117087497185173, 0.900410097048146],
            0,
            [-0.6836930121428063, 0.06717379299860285],
            1,
        ),
        (
            "swiss-roll",
            [1.531203642689491, 0.008472010988055667],
            0,
            [0.022619652011848804, 1.0626164753987364],
            0,
        ),
        (
            "8gaussians",
            [0.9421260084492055, -1.2866792912317946],
            7,
            [-1.5314482208733418, 0.04425230897627503],
            4,
        ),
        (
            "25gaussians",
            [1.4193194629552432, 0.006848059887626965],
            22,
            [-1.4240933332349432, 1.418826152002275],
            4,
        ),
        (
            "checkerboard",
            [1.3748360914182733, -0.3436601542517663],
            6,
            [-0.3019169684408059, -0.12411361582112117],
            2,
        ),
        (
            "pinwheel",
            [0.8825066410371137, -0.4455421734101737],
            0,
            [0.5194900436091924, -2.1284486518503027],
            0,
        ),
        (
            "circles",
            [-1.002787092160894, -1.882878166696326],
            0,
            [-0.3064852497044564, -0.6533624444439529],
            1,
        ),
        (
            "rings",
            [0.05970769301700155, -2.025977262475387],
            0,
            [0.07794682716247699, 0.5436282677731693],
            3,
        ),
    ];
    for (name, p_want, l_want, q_want, m_want) in expected {
        let d = Dataset::from_name(name).unwrap();
        let (p, l) = d.point(0, Split::Train, 0);
        let (q, m) = d.point(42, Split::HeldOut, 123_456);
        assert_eq!((l, m), (l_want, m_want), "{name}");
        for (got, want) in [(p, p_want), (q, q_want)] {
            for c in 0..2 {
                assert!(
                    (f64::from(got[c]) - want[c]).abs() < 2e-6,
                    "{name}: {got:?} vs {want:?}"
                );
            }
        }
    }
}

#[test]
fn normalised_moments() {
    // Mean zero, total variance 2 (per-coordinate variances for the
    // symmetric sets ≈ 1), from 200k points.
    let n = 200_000;
    for &d in Dataset::all() {
        let x = d.sample(n, 1).unwrap();
        let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
        let var = x.var_axis(ndarray::Axis(0), 0.0);
        let (m0, m1) = (f64::from(mean[0]), f64::from(mean[1]));
        let (v0, v1) = (f64::from(var[0]), f64::from(var[1]));
        assert!(m0.abs() < 0.015 && m1.abs() < 0.015, "{d}: mean {m0} {m1}");
        assert!((v0 + v1 - 2.0).abs() < 0.03, "{d}: variances {v0} {v1}");
        let symmetric = !matches!(d, Dataset::Moons | Dataset::SwissRoll);
        if symmetric {
            assert!(
                (v0 - 1.0).abs() < 0.03 && (v1 - 1.0).abs() < 0.03,
                "{d}: {v0} {v1}"
            );
        }
    }
    // Moons: analytic per-coordinate variances 3.04 and 1.0168 (lit. units).
    let norm = Dataset::Moons.normalisation();
    let s2 = norm.scale * norm.scale;
    assert!((3.04 / s2 - 1.4987).abs() < 1e-3);
}

#[test]
fn classes_are_balanced() {
    for &d in Dataset::all() {
        let (_, labels) = d.sample_labelled(40_000, 2, Split::HeldOut).unwrap();
        let k = d.classes() as usize;
        let mut counts = vec![0usize; k];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        let expect = 40_000.0 / k as f64;
        // Checkerboard cells all have area 1, so they are balanced too.
        for (c, &count) in counts.iter().enumerate() {
            let z = (count as f64 - expect) / expect.sqrt();
            assert!(z.abs() < 5.0, "{d} class {c}: {count} vs {expect}");
        }
    }
}

#[test]
fn eight_gaussians_sit_at_the_eighth_turns() {
    let (p, labels) = literature(Dataset::EightGaussians, 8000, 5);
    let radius = 4.0 / 1.414;
    let mut sums = [[0.0f64; 3]; 8];
    let mut nearest_ok = 0;
    for (q, &l) in p.iter().zip(&labels) {
        let s = &mut sums[l as usize];
        s[0] += q[0];
        s[1] += q[1];
        s[2] += 1.0;
        // The nearest centre by angle is the label's.
        let k = (q[1].atan2(q[0]) / (TAU / 8.0)).round().rem_euclid(8.0) as u32;
        nearest_ok += usize::from(k == l);
    }
    for (k, s) in sums.iter().enumerate() {
        let (mx, my) = (s[0] / s[2], s[1] / s[2]);
        let a = TAU * k as f64 / 8.0;
        // Std 0.354 per coordinate, ~1000 points: 0.05 is > 4 standard errors.
        assert!((mx - radius * a.cos()).abs() < 0.05, "cluster {k}: {mx}");
        assert!((my - radius * a.sin()).abs() < 0.05, "cluster {k}: {my}");
        assert!(wrap(my.atan2(mx) - a).abs() < 0.02, "angle {k}");
    }
    assert!(nearest_ok as f64 > 0.99 * 8000.0, "{nearest_ok}");
}

#[test]
fn twenty_five_gaussians_sit_on_the_grid() {
    let (p, labels) = literature(Dataset::TwentyFiveGaussians, 5000, 6);
    for (q, &l) in p.iter().zip(&labels) {
        let cx = 2.0 * (f64::from(l / 5) - 2.0) / 2.828;
        let cy = 2.0 * (f64::from(l % 5) - 2.0) / 2.828;
        // Std 0.05/2.828 per coordinate: 0.1 is > 5.6 standard deviations.
        assert!(norm2([q[0] - cx, q[1] - cy]) < 0.1, "{q:?} label {l}");
    }
}

#[test]
fn checkerboard_points_lie_in_alternating_cells() {
    let (p, labels) = literature(Dataset::Checkerboard, 20_000, 7);
    let mut checked = 0;
    for (q, &l) in p.iter().zip(&labels) {
        let (a, b) = (q[0] / 2.0, q[1] / 2.0);
        assert!((-2.0 - 1e-5..2.0 + 1e-5).contains(&a), "{a}");
        assert!((-2.0 - 1e-5..2.0 + 1e-5).contains(&b), "{b}");
        // Skip points within rounding distance of a grid line.
        let near_line = |v: f64| (v - v.round()).abs() < 1e-5;
        if near_line(a) || near_line(b) {
            continue;
        }
        let (fa, fb) = (a.floor(), b.floor());
        assert_eq!((fa + fb).rem_euclid(2.0), 0.0, "{q:?} in a white cell");
        // The label names the cell: column, then lower/upper of the two.
        let column = (fa + 2.0) as u32;
        let upper = u32::from(fb >= (fa.rem_euclid(2.0)) - 1.0 + 0.5);
        assert_eq!(l, 2 * column + upper, "{q:?}");
        checked += 1;
    }
    assert!(checked > 19_900);
}

#[test]
fn circles_have_radii_one_and_a_half() {
    let (p, labels) = literature(Dataset::Circles, 8000, 8);
    let mut sum = [0.0f64; 2];
    let mut count = [0.0f64; 2];
    for (q, &l) in p.iter().zip(&labels) {
        let r = norm2(*q) / 3.0;
        let want = [1.0, 0.5][l as usize];
        // Noise 0.08 per coordinate: 0.45 is > 5.6 standard deviations.
        assert!((r - want).abs() < 0.45, "{r} on circle {l}");
        sum[l as usize] += r;
        count[l as usize] += 1.0;
    }
    // E‖R·e + 0.08·n‖ ≈ R + 0.08²/(2R).
    for (l, want) in [1.0032, 0.5064].into_iter().enumerate() {
        let mean = sum[l] / count[l];
        assert!(
            (mean - want).abs() < 0.005,
            "circle {l}: mean radius {mean}"
        );
    }
}

#[test]
fn rings_have_four_radii() {
    let (p, labels) = literature(Dataset::Rings, 8000, 9);
    let mut sum = [0.0f64; 4];
    let mut count = [0.0f64; 4];
    for (q, &l) in p.iter().zip(&labels) {
        let want = 3.0 * (1.0 - 0.25 * f64::from(l));
        let r = norm2(*q);
        // Noise 0.08 on radii 3 … 0.75 apart: rings do not overlap.
        assert!((r - want).abs() < 0.375, "{r} on ring {l}");
        sum[l as usize] += r;
        count[l as usize] += 1.0;
    }
    for l in 0..4 {
        let want = 3.0 * (1.0 - 0.25 * l as f64);
        assert!((sum[l] / count[l] - want).abs() < 0.01, "ring {l}");
    }
}

#[test]
fn moons_are_two_arcs() {
    let (p, labels) = literature(Dataset::Moons, 8000, 10);
    // Distance from a point to an arc, by dense sampling of the arc.
    let arc = |k: u32| -> Vec<[f64; 2]> {
        (0..=2000)
            .map(|i| {
                let t = PI * f64::from(i) / 2000.0;
                let (x, y) = if k == 0 {
                    (t.cos(), t.sin())
                } else {
                    (1.0 - t.cos(), 0.5 - t.sin())
                };
                [2.0 * x - 1.0, 2.0 * y - 0.2]
            })
            .collect()
    };
    let arcs = [arc(0), arc(1)];
    let dist = |q: [f64; 2], k: usize| {
        arcs[k]
            .iter()
            .map(|a| norm2([q[0] - a[0], q[1] - a[1]]))
            .fold(f64::INFINITY, f64::min)
    };
    let mut closer_to_own = 0;
    for (q, &l) in p.iter().zip(&labels).step_by(4) {
        let own = dist(*q, l as usize);
        // Noise 0.2 per coordinate in these units: 1.1 is > 5.5 sd.
        assert!(own < 1.1, "{q:?} far from arc {l}");
        closer_to_own += usize::from(own <= dist(*q, 1 - l as usize));
    }
    assert!(closer_to_own as f64 > 0.95 * 2000.0, "{closer_to_own}");
    // The outer arc lies above the inner one on average.
    let mean_y = |k: u32| {
        let ys: Vec<f64> = p
            .iter()
            .zip(&labels)
            .filter(|&(_, &l)| l == k)
            .map(|(q, _)| q[1])
            .collect();
        ys.iter().sum::<f64>() / ys.len() as f64
    };
    assert!(
        mean_y(0) > 0.8 && mean_y(1) < -0.2,
        "{} {}",
        mean_y(0),
        mean_y(1)
    );
}

#[test]
fn swiss_roll_follows_the_spiral() {
    let (p, _) = literature(Dataset::SwissRoll, 4000, 12);
    let mut near = 0;
    for q in &p {
        let (x, z) = (5.0 * q[0], 5.0 * q[1]);
        let (r, theta) = (x.hypot(z), z.atan2(x).rem_euclid(TAU));
        // Candidate parameters t ≡ θ (mod 2π) in [1.5π, 4.5π]; on the
        // spiral r = t. Arms are 2π apart, the noise is 1 per coordinate.
        let best = (0..3)
            .map(|k| theta + TAU * f64::from(k))
            .filter(|t| (1.5 * PI - 1.0..=4.5 * PI + 1.0).contains(t))
            .map(|t| (r - t).abs())
            .fold(f64::INFINITY, f64::min);
        near += usize::from(best < 2.5);
        assert!(r < 4.5 * PI + 6.0, "{r}");
    }
    assert!(near as f64 > 0.95 * 4000.0, "{near}");
}

#[test]
fn pinwheel_arms_curve_as_constructed() {
    let (p, labels) = literature(Dataset::Pinwheel, 5000, 13);
    let mut ok = 0;
    for (q, &l) in p.iter().zip(&labels) {
        // q/2 is (r, s) rotated by −a with a = 2πk/5 + 0.25·eʳ, so
        // angle(q) + a = atan2(s, r), small; r ≈ ‖q/2‖ for small s.
        let rho = norm2(*q) / 2.0;
        let a = TAU * f64::from(l) / 5.0 + 0.25 * rho.exp();
        let residual = wrap(q[1].atan2(q[0]) + a);
        ok += usize::from(residual.abs() < 0.5);
    }
    assert!(ok as f64 > 0.99 * 5000.0, "{ok}");
}

//! The Brownian tree: the construction by hand, variance and covariance of
//! increments, independence over disjoint intervals, additivity to f32
//! precision, determinism across thread counts and shards, query-order
//! independence, the backend path against the host path, the tolerance, and
//! typed errors. Statistical checks use fixed seeds and bounds of five
//! standard errors.

use diffuse_core::brownian::{BROWNIAN_STREAM_BIT, BrownianTree};
use diffuse_core::{Backend, CpuBackend, NoiseStream};

const N: usize = 100_000;

fn increments(tree: &BrownianTree, s: f64, t: f64, n: usize) -> Vec<f64> {
    let mut out = vec![0.0f32; n];
    tree.increment_host(s, t, 0, &mut out).unwrap();
    out.into_iter().map(f64::from).collect()
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

fn var(v: &[f64]) -> f64 {
    let m = mean(v);
    v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (v.len() - 1) as f64
}

fn corr(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let na: f64 = a.iter().map(|x| (x - ma) * (x - ma)).sum();
    let nb: f64 = b.iter().map(|y| (y - mb) * (y - mb)).sum();
    cov / (na * nb).sqrt()
}

#[test]
fn end_point_and_first_midpoint_follow_the_bridge_by_hand() {
    let tree = BrownianTree::new(11, 2.0, 6.0)
        .unwrap()
        .with_depth(3)
        .unwrap();
    let z = |node: u64, i: u64| f64::from(tree.node_stream(node).at(i));
    assert_eq!(
        tree.node_stream(5),
        NoiseStream::new(11, BROWNIAN_STREAM_BIT | 5)
    );
    let mut end = [0.0f32; 6];
    let mut mid = [0.0f32; 6];
    let mut quarter = [0.0f32; 6];
    tree.value_host(6.0, 0, &mut end).unwrap();
    tree.value_host(4.0, 0, &mut mid).unwrap();
    tree.value_host(3.0, 0, &mut quarter).unwrap();
    for i in 0..6 {
        // W(t₁) = √T·z₀, T = 4.
        let w1 = 2.0 * z(0, i as u64);
        assert!((f64::from(end[i]) - w1).abs() < 1e-6);
        // W(m) = (W(t₀) + W(t₁))/2 + √T/2·z₁.
        let wm = 0.5 * w1 + 1.0 * z(1, i as u64);
        assert!((f64::from(mid[i]) - wm).abs() < 1e-6);
        // Left half [2, 4] is interval 2: W(3) = (0 + W(4))/2 + √2/2·z₂.
        let wq = 0.5 * wm + 0.5 * 2f64.sqrt() * z(2, i as u64);
        assert!((f64::from(quarter[i]) - wq).abs() < 1e-6);
    }
    // W(t₀) = 0 exactly.
    let mut start = [1.0f32; 6];
    tree.value_host(2.0, 0, &mut start).unwrap();
    assert!(start.iter().all(|&v| v == 0.0));
}

#[test]
fn increments_have_variance_t_minus_s_and_mean_zero() {
    let tree = BrownianTree::new(3, 0.03, 14.6).unwrap();
    // Off-grid intervals of very different lengths, one crossing the midpoint.
    for (s, t) in [
        (0.03, 14.6),
        (0.5, 0.51),
        (3.3, 9.7),
        (7.0, 7.0004),
        (14.0, 0.1),
    ] {
        let v = increments(&tree, s, t, N);
        let len = (t - s).abs();
        let se_var = len * (2.0 / N as f64).sqrt();
        assert!(
            (var(&v) - len).abs() < 5.0 * se_var,
            "[{s}, {t}]: variance {} vs {len}",
            var(&v)
        );
        assert!(mean(&v).abs() < 5.0 * (len / N as f64).sqrt());
    }
}

#[test]
fn normalized_increments_are_standard_normal() {
    let tree = BrownianTree::new(5, 0.0, 1.0).unwrap();
    for (s, t) in [(0.9, 0.2), (0.123, 0.124)] {
        let mut z = vec![0.0f32; N];
        tree.normalized_increment_host(s, t, 0, &mut z).unwrap();
        let z: Vec<f64> = z.into_iter().map(f64::from).collect();
        assert!((var(&z) - 1.0).abs() < 5.0 * (2.0 / N as f64).sqrt());
        assert!(mean(&z).abs() < 5.0 / (N as f64).sqrt());
        // Fourth moment of a normal: 3.
        let m4 = z.iter().map(|x| x.powi(4)).sum::<f64>() / N as f64;
        assert!((m4 - 3.0).abs() < 5.0 * (96.0 / N as f64).sqrt());
    }
}

#[test]
fn disjoint_increments_are_independent_and_values_have_brownian_covariance() {
    let tree = BrownianTree::new(9, 0.0, 10.0).unwrap();
    let bound = 5.0 / (N as f64).sqrt();
    // Adjacent, separated, and nested-in-one-half intervals.
    for ((a, b), (c, d)) in [
        ((1.0, 3.7), (3.7, 8.2)),
        ((0.2, 0.3), (9.1, 9.9)),
        ((5.01, 5.02), (5.02, 5.03)),
    ] {
        let x = increments(&tree, a, b, N);
        let y = increments(&tree, c, d, N);
        let r = corr(&x, &y);
        assert!(r.abs() < bound, "corr of [{a},{b}] and [{c},{d}] = {r}");
        // Squares too (independence, not just zero correlation).
        let x2: Vec<f64> = x.iter().map(|v| v * v).collect();
        let y2: Vec<f64> = y.iter().map(|v| v * v).collect();
        assert!(corr(&x2, &y2).abs() < bound);
    }
    // Cov(W(s), W(t)) = min(s, t) − t₀.
    let mut ws = vec![0.0f32; N];
    let mut wt = vec![0.0f32; N];
    tree.value_host(2.5, 0, &mut ws).unwrap();
    tree.value_host(6.1, 0, &mut wt).unwrap();
    let cov = ws
        .iter()
        .zip(&wt)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum::<f64>()
        / N as f64;
    // Var of the product estimator: s·t + s² = 2.5·6.1 + 6.25.
    let se = ((2.5 * 6.1 + 6.25) / N as f64).sqrt();
    assert!((cov - 2.5).abs() < 5.0 * se, "cov {cov}");
}

#[test]
fn increments_add_up_to_f32_precision_whatever_the_steps() {
    let tree = BrownianTree::new(21, 0.002, 80.0).unwrap();
    let n = 4096;
    // One coarse increment against 1, 7 and 50 finer steps (Karras-like grid).
    let karras = |k: usize| -> Vec<f64> {
        let (lo, hi) = (0.002f64.powf(1.0 / 7.0), 80f64.powf(1.0 / 7.0));
        (0..=k)
            .map(|i| {
                (hi + (lo - hi) * i as f64 / k as f64)
                    .powi(7)
                    .clamp(0.002, 80.0)
            })
            .collect()
    };
    let whole = increments(&tree, 80.0, 0.002, n);
    for k in [1, 7, 50] {
        let g = karras(k);
        let mut sum = vec![0.0f64; n];
        for w in g.windows(2) {
            for (s, v) in sum.iter_mut().zip(increments(&tree, w[0], w[1], n)) {
                *s += v;
            }
        }
        for (a, b) in sum.iter().zip(&whole) {
            // Each of k + 1 values is rounded once to f32 (|W| ≲ 40).
            let tol = (k as f64 + 1.0) * 4.0 * f64::from(f32::EPSILON) * b.abs().max(1.0);
            assert!((a - b).abs() <= tol, "{k} steps: {a} vs {b}");
        }
    }
    // W(a, c) = W(a, b) + W(b, c) for arbitrary points.
    let (a, b, c) = (0.37, 12.9, 3.3);
    let ab = increments(&tree, a, b, n);
    let bc = increments(&tree, b, c, n);
    let ac = increments(&tree, a, c, n);
    for i in 0..n {
        let tol = 4.0 * f64::from(f32::EPSILON) * (ab[i].abs() + bc[i].abs()).max(1.0);
        assert!((ab[i] + bc[i] - ac[i]).abs() <= tol);
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn results_do_not_depend_on_threads_shards_or_query_order() {
    let tree = BrownianTree::new(77, -1.0, 1.0).unwrap();
    let n = 3 * 4096 + 123;
    let compute = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut out = vec![0.0f32; n];
            tree.increment_host(-0.3, 0.71, 0, &mut out).unwrap();
            out
        })
    };
    let one = compute(1);
    assert_eq!(bits(&one), bits(&compute(2)));
    assert_eq!(bits(&one), bits(&compute(3)));
    // Shards: rows 0..k and k..n with an offset give the same elements.
    let k = 5000;
    let mut head = vec![0.0f32; k];
    let mut tail = vec![0.0f32; n - k];
    tree.increment_host(-0.3, 0.71, 0, &mut head).unwrap();
    tree.increment_host(-0.3, 0.71, k as u64, &mut tail)
        .unwrap();
    head.extend_from_slice(&tail);
    assert_eq!(bits(&one), bits(&head));
    // Same tree rebuilt: same numbers.
    let again = BrownianTree::new(77, -1.0, 1.0).unwrap();
    let mut out = vec![0.0f32; n];
    again.increment_host(-0.3, 0.71, 0, &mut out).unwrap();
    assert_eq!(bits(&one), bits(&out));
    // Reversed increment is the exact negation.
    tree.increment_host(0.71, -0.3, 0, &mut out).unwrap();
    let neg: Vec<f32> = one.iter().map(|v| -v).collect();
    assert_eq!(bits(&neg), bits(&out));

    // Values queried in two different orders (and interleaved with other
    // queries) are bit-identical.
    let times = [0.9, -0.99, 0.1, 0.100001, -0.5, 0.0, 1.0, -1.0, 0.33];
    let eval = |order: &[usize]| {
        let mut got = vec![Vec::new(); times.len()];
        for &j in order {
            let mut v = vec![0.0f32; 64];
            tree.value_host(times[j], 0, &mut v).unwrap();
            got[j] = bits(&v);
        }
        got
    };
    let forward: Vec<usize> = (0..times.len()).collect();
    let backward: Vec<usize> = (0..times.len()).rev().collect();
    assert_eq!(eval(&forward), eval(&backward));
    assert_eq!(eval(&forward), eval(&[4, 0, 8, 2, 6, 1, 7, 3, 5]));
}

#[test]
fn seeds_and_trees_give_independent_paths() {
    let base = BrownianTree::new(1, 0.0, 1.0).unwrap();
    let other_seed = BrownianTree::new(2, 0.0, 1.0).unwrap();
    let other_tree = base.with_tree(1).unwrap();
    let a = increments(&base, 0.2, 0.8, N);
    let b = increments(&other_seed, 0.2, 0.8, N);
    let c = increments(&other_tree, 0.2, 0.8, N);
    let bound = 5.0 / (N as f64).sqrt();
    assert!(corr(&a, &b).abs() < bound);
    assert!(corr(&a, &c).abs() < bound);
    // Tree noise does not reuse the ordinary draws of the seed.
    let mut plain = vec![0.0f32; N];
    NoiseStream::new(1, 0).fill(0, &mut plain);
    let plain: Vec<f64> = plain.into_iter().map(f64::from).collect();
    assert!(corr(&a, &plain).abs() < bound);
}

#[test]
fn backend_path_matches_host_path() {
    let cpu = CpuBackend::new();
    let tree = BrownianTree::new(4, 0.0, 3.0).unwrap();
    let shape = [5, 7, 3];
    let n = 105;
    for (s, t) in [(0.1, 2.9), (2.5, 0.7), (1.5, 1.5), (0.0, 3.0)] {
        let mut host = vec![0.0f32; n];
        tree.increment_host(s, t, 40, &mut host).unwrap();
        let mut dev = cpu.upload(&shape, &[f32::NAN; 105]).unwrap();
        tree.increment(&cpu, s, t, 40, &mut dev).unwrap();
        let dev = cpu.to_host(&dev).unwrap();
        for (a, b) in host.iter().zip(&dev) {
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
        }
        if s != t {
            let mut zh = vec![0.0f32; n];
            tree.normalized_increment_host(s, t, 40, &mut zh).unwrap();
            let mut zd = cpu.zeros(&shape).unwrap();
            tree.normalized_increment(&cpu, s, t, 40, &mut zd).unwrap();
            for (a, b) in zh.iter().zip(&cpu.to_host(&zd).unwrap()) {
                assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0));
            }
        }
    }
}

#[test]
fn depth_sets_the_leaf_width_and_grid_points_are_exact() {
    let tree = BrownianTree::new(0, 0.0, 8.0).unwrap();
    assert_eq!(tree.depth(), BrownianTree::DEFAULT_DEPTH);
    assert_eq!(tree.leaf_width(), 8.0 / 2f64.powi(24));
    let t = tree.with_tolerance(1e-3).unwrap();
    // 8/2^13 < 1e-3 ≤ 8/2^12.
    assert_eq!(t.depth(), 13);
    assert!(t.leaf_width() <= 1e-3 && 2.0 * t.leaf_width() > 1e-3);
    // A shallow tree: on a leaf, the path is linear (the value inside the
    // leaf is the interpolation of its ends); at grid points it agrees with
    // every deeper tree.
    let shallow = tree.with_depth(2).unwrap();
    let deep = tree.with_depth(30).unwrap();
    let value = |tr: &BrownianTree, t: f64| {
        let mut v = [0.0f32; 16];
        tr.value_host(t, 0, &mut v).unwrap();
        v
    };
    let (a, b, m) = (
        value(&shallow, 2.0),
        value(&shallow, 4.0),
        value(&shallow, 2.5),
    );
    for i in 0..16 {
        let lin = 0.75 * a[i] + 0.25 * b[i];
        assert!((m[i] - lin).abs() < 1e-6);
    }
    for t in [0.0, 2.0, 4.0, 6.0, 8.0] {
        let (x, y) = (value(&shallow, t), value(&deep, t));
        for i in 0..16 {
            assert!((x[i] - y[i]).abs() < 1e-5, "t = {t}");
        }
    }
    // The interpolation loses variance inside a leaf: at depth 2 the
    // increment over [2.0, 2.5] (a quarter of a leaf of width 2) has
    // variance 0.5²/2 = 0.125 instead of 0.5.
    let v = increments(&shallow, 2.0, 2.5, N);
    assert!((var(&v) - 0.125).abs() < 5.0 * 0.125 * (2.0 / N as f64).sqrt());
}

#[test]
fn bad_input_is_a_typed_error() {
    assert!(BrownianTree::new(0, 1.0, 1.0).is_err());
    assert!(BrownianTree::new(0, 2.0, 1.0).is_err());
    assert!(BrownianTree::new(0, f64::NAN, 1.0).is_err());
    assert!(BrownianTree::new(0, 0.0, f64::INFINITY).is_err());
    assert!(BrownianTree::new(0, -f64::MAX, f64::MAX).is_err());
    let tree = BrownianTree::new(0, 0.0, 1.0).unwrap();
    assert!(tree.with_depth(0).is_err());
    assert!(tree.with_depth(BrownianTree::MAX_DEPTH + 1).is_err());
    assert!(tree.with_tolerance(0.0).is_err());
    assert!(tree.with_tolerance(f64::NAN).is_err());
    assert!(tree.with_tolerance(1e-300).is_err());
    assert!(tree.with_tree(BrownianTree::MAX_TREE + 1).is_err());
    let mut out = [0.0f32; 4];
    assert!(tree.increment_host(-0.1, 0.5, 0, &mut out).is_err());
    assert!(tree.increment_host(0.5, 1.5, 0, &mut out).is_err());
    assert!(tree.value_host(f64::NAN, 0, &mut out).is_err());
    assert!(
        tree.normalized_increment_host(0.5, 0.5, 0, &mut out)
            .is_err()
    );
    let cpu = CpuBackend::new();
    let mut x = cpu.zeros(&[4]).unwrap();
    assert!(
        tree.normalized_increment(&cpu, 0.3, 0.3, 0, &mut x)
            .is_err()
    );
    // A zero-length increment is zero.
    tree.increment(&cpu, 0.3, 0.3, 0, &mut x).unwrap();
    assert!(cpu.to_host(&x).unwrap().iter().all(|&v| v == 0.0));
}

/// Throughput of one increment over 2²⁰ elements at the default depth, host
/// and backend paths (prints figures; run with
/// `cargo test -p diffuse-core --test brownian -- --ignored --nocapture`).
#[test]
#[ignore]
fn throughput() {
    let tree = BrownianTree::new(1, 0.002, 80.0).unwrap();
    let n = 1 << 20;
    let terms = tree.increment_terms(14.3, 9.1).unwrap().len();
    let mut host = vec![0.0f32; n];
    let cpu = CpuBackend::new();
    let mut dev = cpu.zeros(&[n]).unwrap();
    tree.increment_host(14.3, 9.1, 0, &mut host).unwrap();
    let reps = 5;
    let start = std::time::Instant::now();
    for _ in 0..reps {
        tree.increment_host(14.3, 9.1, 0, &mut host).unwrap();
    }
    let t_host = start.elapsed().as_secs_f64() / reps as f64;
    let start = std::time::Instant::now();
    for _ in 0..reps {
        tree.increment(&cpu, 14.3, 9.1, 0, &mut dev).unwrap();
    }
    let t_dev = start.elapsed().as_secs_f64() / reps as f64;
    println!(
        "{terms} terms, {n} elements: host {:.1} ms ({:.2} ns/element), backend {:.1} ms ({:.2} ns/element)",
        t_host * 1e3,
        t_host * 1e9 / n as f64,
        t_dev * 1e3,
        t_dev * 1e9 / n as f64
    );
}

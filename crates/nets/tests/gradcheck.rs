//! Gradient checks: every layer and whole networks against central finite
//! differences.
//!
//! Each check takes a scalar loss, compares the analytic gradient with
//! `(L(θ + h·v) − L(θ − h·v))/(2h)` along a random direction `v` over all
//! parameters (and inputs), and along single coordinates. The layers run in
//! f32, so `h` is moderate (4e-3 on unit-scale values) and the tolerances
//! allow for f32 rounding in the loss. LayerNorm runs on at least 3
//! features: over 2 it is `±1` up to ε, nearly a step function, where finite
//! differences say nothing.

use diffuse_core::NoiseStream;
use diffuse_nets::{
    DenoiserNet, Layer, LayerNorm, Linear, NetConfig, ParamBuilder, ResidualBlock, Sequential,
    Silu, TimeEmbeddingConfig,
};
use ndarray::{Array2, ArrayView2};
use proptest::prelude::*;

fn normals(seed: u64, stream: u64, n: usize, scale: f32) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, stream).fill(0, &mut v);
    v.iter_mut().for_each(|x| *x *= scale);
    v
}

/// `L = Σ y ⊙ R` for a fixed random `R`, in f64.
fn layer_loss(layer: &dyn Layer, params: &[f32], x: &Array2<f32>, r: &[f32]) -> f64 {
    let rows = x.nrows();
    let mut y = Array2::<f32>::zeros((rows, layer.out_features()));
    let mut scratch = vec![0.0f32; rows * layer.scratch_per_row()];
    layer
        .forward(params, x.view(), y.view_mut(), &mut scratch)
        .unwrap();
    y.iter()
        .zip(r)
        .map(|(a, b)| f64::from(*a) * f64::from(*b))
        .sum()
}

/// The derivative at 0 of `f` by central differences with Richardson
/// extrapolation, `(4·D(h/2) − D(h))/3` with `D(h) = (f(h) − f(−h))/(2h)`,
/// which cancels the `h²` term of the truncation error.
fn derivative(mut f: impl FnMut(f32) -> f64, h: f32) -> f64 {
    let mut d = |h: f32| (f(h) - f(-h)) / (2.0 * f64::from(h));
    let (d1, d2) = (d(h), d(h / 2.0));
    (4.0 * d2 - d1) / 3.0
}

fn close(num: f64, ana: f64, scale: f64, what: &str) {
    let tol = 2e-3 * scale.max(1.0) + 1e-2 * ana.abs();
    assert!(
        (num - ana).abs() <= tol,
        "{what}: finite difference {num} vs analytic {ana} (tol {tol})"
    );
}

/// Checks parameter and input gradients of a layer at random values.
fn check_layer(layer: &dyn Layer, n_params: usize, rows: usize, seed: u64) {
    let (din, dout) = (layer.in_features(), layer.out_features());
    let params = normals(seed, 1, n_params, 0.5);
    let x = Array2::from_shape_vec((rows, din), normals(seed, 2, rows * din, 1.0)).unwrap();
    let r = normals(seed, 3, rows * dout, 1.0);
    // Analytic gradients.
    let mut y = Array2::<f32>::zeros((rows, dout));
    let mut scratch = vec![0.0f32; rows * layer.scratch_per_row()];
    layer
        .forward(&params, x.view(), y.view_mut(), &mut scratch)
        .unwrap();
    let dy = ArrayView2::from_shape((rows, dout), &r[..]).unwrap();
    let mut grads = vec![0.0f32; n_params];
    let mut dx = Array2::<f32>::zeros((rows, din));
    layer
        .backward(
            &params,
            x.view(),
            dy,
            Some(dx.view_mut()),
            &mut grads,
            &mut scratch,
        )
        .unwrap();
    let h = 4e-3f32;
    // Directional derivative over parameters and input together.
    let vp = normals(seed, 4, n_params, 1.0);
    let vx = normals(seed, 5, rows * din, 1.0);
    let shifted = |s: f32| {
        let p: Vec<f32> = params.iter().zip(&vp).map(|(a, b)| a + s * b).collect();
        let xs =
            &x + &Array2::from_shape_vec((rows, din), vx.iter().map(|v| s * v).collect()).unwrap();
        layer_loss(layer, &p, &xs, &r)
    };
    let num = derivative(shifted, h);
    let ana: f64 = grads
        .iter()
        .zip(&vp)
        .map(|(g, v)| f64::from(*g) * f64::from(*v))
        .sum::<f64>()
        + dx.iter()
            .zip(&vx)
            .map(|(g, v)| f64::from(*g) * f64::from(*v))
            .sum::<f64>();
    let scale = (grads
        .iter()
        .chain(dx.iter())
        .map(|g| f64::from(*g).powi(2))
        .sum::<f64>())
    .sqrt();
    close(num, ana, scale, "directional derivative");
    // A few single coordinates of each.
    for k in (0..n_params).step_by((n_params / 7).max(1)) {
        let num = derivative(
            |s| {
                let mut p = params.clone();
                p[k] += s;
                layer_loss(layer, &p, &x, &r)
            },
            h,
        );
        close(num, f64::from(grads[k]), 1.0, &format!("∂L/∂θ[{k}]"));
    }
    for k in (0..rows * din).step_by((rows * din / 7).max(1)) {
        let num = derivative(
            |s| {
                let mut xs = x.clone();
                xs.as_slice_mut().unwrap()[k] += s;
                layer_loss(layer, &params, &xs, &r)
            },
            h,
        );
        close(
            num,
            f64::from(dx.as_slice().unwrap()[k]),
            1.0,
            &format!("∂L/∂x[{k}]"),
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn linear_gradients(seed in any::<u64>(), rows in 1usize..6, din in 1usize..7, dout in 1usize..7, bias in any::<bool>()) {
        let mut b = ParamBuilder::new(seed);
        let layer = Linear::new(&mut b, "l", din, dout, bias).unwrap();
        let n = b.finish().len();
        check_layer(&layer, n, rows, seed);
    }

    #[test]
    fn silu_gradients(seed in any::<u64>(), rows in 1usize..6, d in 1usize..9) {
        check_layer(&Silu::new(d), 0, rows, seed);
    }

    #[test]
    fn layer_norm_gradients(seed in any::<u64>(), rows in 1usize..6, d in 3usize..9) {
        let mut b = ParamBuilder::new(seed);
        let layer = LayerNorm::new(&mut b, "n", d, 1e-5).unwrap();
        let n = b.finish().len();
        check_layer(&layer, n, rows, seed);
    }

    #[test]
    fn residual_block_gradients(seed in any::<u64>(), rows in 1usize..5, d in 3usize..6, h in 1usize..7) {
        let mut b = ParamBuilder::new(seed);
        let layer = ResidualBlock::new(&mut b, "r", d, h).unwrap();
        let n = b.finish().len();
        check_layer(&layer, n, rows, seed);
    }

    #[test]
    fn sequential_gradients(seed in any::<u64>(), rows in 1usize..5, d in 1usize..5, h in 4usize..7) {
        let mut b = ParamBuilder::new(seed);
        let layers: Vec<Box<dyn Layer>> = vec![
            Box::new(Linear::new(&mut b, "a", d, h, true).unwrap()),
            Box::new(Silu::new(h)),
            Box::new(ResidualBlock::new(&mut b, "b", h, 3).unwrap()),
            Box::new(LayerNorm::new(&mut b, "c", h, 1e-5).unwrap()),
            Box::new(Linear::new(&mut b, "d", h, d, false).unwrap()),
        ];
        let seq = Sequential::new(layers).unwrap();
        let n = b.finish().len();
        check_layer(&seq, n, rows, seed);
    }
}

/// Checks `loss_and_grad` of a whole network along a random direction and
/// on single coordinates.
fn check_net(config: NetConfig, rows: usize, seed: u64) {
    let mut net = DenoiserNet::new(config).unwrap();
    let n = net.params().len();
    let d = net.data_dim();
    // Moderate random parameters so that every path carries gradient.
    let p0 = normals(seed, 10, n, 0.3);
    net.params_mut().values_mut().copy_from_slice(&p0);
    let x = Array2::from_shape_vec((rows, d), normals(seed, 11, rows * d, 1.0)).unwrap();
    let y = Array2::from_shape_vec((rows, d), normals(seed, 12, rows * d, 1.0)).unwrap();
    let times: Vec<f64> = (0..rows).map(|r| (r as f64 + 0.5) / rows as f64).collect();
    let labels: Option<Vec<usize>> = net
        .class_embedding()
        .map(|c| (0..rows).map(|r| r % (c.classes() + 1)).collect());
    let mut ws = net.train_workspace(rows);
    net.loss_and_grad(&mut ws, x.view(), &times, labels.as_deref(), y.view(), None)
        .unwrap();
    let grads = ws.grads().to_vec();
    let mut loss_at = |net: &mut DenoiserNet, p: &[f32]| {
        net.params_mut().values_mut().copy_from_slice(p);
        net.loss_and_grad(&mut ws, x.view(), &times, labels.as_deref(), y.view(), None)
            .unwrap()
    };
    let h = 5e-3f32;
    let v = normals(seed, 13, n, 1.0);
    let num = derivative(
        |s| {
            let p: Vec<f32> = p0.iter().zip(&v).map(|(a, b)| a + s * b).collect();
            loss_at(&mut net, &p)
        },
        h,
    );
    let ana: f64 = grads
        .iter()
        .zip(&v)
        .map(|(g, v)| f64::from(*g) * f64::from(*v))
        .sum();
    let scale = grads
        .iter()
        .map(|g| f64::from(*g).powi(2))
        .sum::<f64>()
        .sqrt();
    let tol = 2e-3 * scale.max(1e-2) + 2e-2 * ana.abs();
    assert!(
        (num - ana).abs() <= tol,
        "directional: {num} vs {ana} (tol {tol})"
    );
    // Coordinates: one per tensor (the largest-gradient entry).
    for spec in net.layout().clone().specs() {
        let r = spec.range();
        let k = r.start
            + grads[r.clone()]
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(i, _)| i)
                .unwrap();
        let num = derivative(
            |s| {
                let mut p = p0.clone();
                p[k] += s;
                loss_at(&mut net, &p)
            },
            1e-2,
        );
        let ana = f64::from(grads[k]);
        let tol = 1e-3 + 3e-2 * ana.abs();
        assert!(
            (num - ana).abs() <= tol,
            "{}[{}]: {num} vs {ana}",
            spec.name,
            k - r.start
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn mlp_gradients(seed in any::<u64>(), rows in 1usize..9, classes in prop::option::of(1usize..4)) {
        let mut c = NetConfig::mlp(2, 8, &[12, 10], seed);
        if let Some(k) = classes {
            c = c.with_classes(k, 3, 0.0);
        }
        check_net(c, rows, seed);
    }

    #[test]
    fn residual_mlp_gradients(seed in any::<u64>(), rows in 1usize..9, classes in prop::option::of(1usize..4)) {
        let mut c = NetConfig::residual_mlp(3, 6, 8, 2, 10, seed);
        c.time_embedding = TimeEmbeddingConfig::Fourier { dim: 6, scale: 1.0, time_scale: 1.0, seed, stream: 7 };
        if let Some(k) = classes {
            c = c.with_classes(k, 4, 0.0);
        }
        check_net(c, rows, seed);
    }
}

/// Batches larger than a shard give the same loss and gradient as the sum
/// of their parts (shards are summed in a fixed order).
#[test]
fn sharded_gradient_equals_the_sum_of_halves() {
    let net =
        DenoiserNet::new(NetConfig::mlp(2, 16, &[32, 32], 3).with_classes(3, 4, 0.0)).unwrap();
    let rows = 2 * diffuse_nets::SHARD_ROWS + 37;
    let x = Array2::from_shape_vec((rows, 2), normals(1, 0, rows * 2, 1.0)).unwrap();
    let y = Array2::from_shape_vec((rows, 2), normals(1, 1, rows * 2, 1.0)).unwrap();
    let t: Vec<f64> = (0..rows).map(|r| r as f64 / rows as f64).collect();
    let l: Vec<usize> = (0..rows).map(|r| r % 4).collect();
    let mut ws = net.train_workspace(rows);
    let full = net
        .loss_and_grad(&mut ws, x.view(), &t, Some(&l), y.view(), None)
        .unwrap();
    let g_full = ws.grads().to_vec();
    let cut = 700;
    let mut parts = 0.0;
    let mut g_sum = vec![0.0f64; g_full.len()];
    for (a, b) in [(0, cut), (cut, rows)] {
        let mut ws = net.train_workspace(b - a);
        let w = (b - a) as f64 / rows as f64;
        parts += w * net
            .loss_and_grad(
                &mut ws,
                x.slice(ndarray::s![a..b, ..]),
                &t[a..b],
                Some(&l[a..b]),
                y.slice(ndarray::s![a..b, ..]),
                None,
            )
            .unwrap();
        g_sum
            .iter_mut()
            .zip(ws.grads())
            .for_each(|(s, g)| *s += w * f64::from(*g));
    }
    assert!((full - parts).abs() < 1e-5 * full.abs());
    let err = g_full
        .iter()
        .zip(&g_sum)
        .map(|(a, b)| (f64::from(*a) - b).abs())
        .fold(0.0, f64::max);
    let scale = g_sum.iter().fold(0.0f64, |m, g| m.max(g.abs()));
    assert!(err < 1e-4 * scale, "max difference {err} (scale {scale})");
}

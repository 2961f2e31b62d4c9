//! Optimisers, EMA, embeddings, the trainer and checkpoints.

use diffuse_core::{NoiseSchedule, NoiseStream, Result};
use diffuse_nets::checkpoint::{Checkpoint, CheckpointError, CheckpointWriter};
use diffuse_nets::embedding::drop_label;
use diffuse_nets::{
    Adam, AdamConfig, DenoiserNet, Ema, EmaKind, EpsTrainer, LrSchedule, NetConfig,
    SinusoidalEmbedding, TimeEmbedding, TimeEmbeddingConfig, TrainConfig, clip_grad_norm,
    gamma_from_sigma_rel, global_norm, load_net, load_trainer, save_trainer, sigma_rel_from_gamma,
};
use ndarray::Array2;
use proptest::prelude::*;

/// `α = cos(πt/2)`, `σ = sin(πt/2)` on `[1e-3, 1 − 1e-3]`.
struct Cosine;

impl NoiseSchedule for Cosine {
    fn name(&self) -> &str {
        "cosine"
    }
    fn t_range(&self) -> (f64, f64) {
        (1e-3, 1.0 - 1e-3)
    }
    fn alpha(&self, t: f64) -> f64 {
        (std::f64::consts::FRAC_PI_2 * t).cos()
    }
    fn sigma(&self, t: f64) -> f64 {
        (std::f64::consts::FRAC_PI_2 * t).sin()
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        Ok((-lambda / 2.0).exp().atan() / std::f64::consts::FRAC_PI_2)
    }
}

fn normals(seed: u64, stream: u64, n: usize) -> Vec<f32> {
    let mut v = vec![0.0f32; n];
    NoiseStream::new(seed, stream).fill(0, &mut v);
    v
}

/// Two-cluster 2-D data at (±2, ±1) with spread 0.1, and its labels.
fn clusters(rows: usize, seed: u64) -> (Array2<f32>, Vec<u32>) {
    let z = normals(seed, 99, rows * 2);
    let labels: Vec<u32> = (0..rows as u32).map(|r| r % 2).collect();
    let x = Array2::from_shape_fn((rows, 2), |(r, j)| {
        let s = if labels[r] == 0 { -1.0 } else { 1.0 };
        let c = if j == 0 { 2.0 * s } else { s };
        c + 0.1 * z[r * 2 + j]
    });
    (x, labels)
}

#[test]
fn adam_first_step_moves_by_the_learning_rate_times_the_sign() {
    // m̂ = g, v̂ = g², so the first step is −η·g/(|g| + ε).
    let mut p = vec![1.0f32, -2.0, 0.5];
    let g = [0.3f32, -4.0, 1e-3];
    let mut adam = Adam::new(AdamConfig::default(), 3).unwrap();
    adam.update(&mut p, &g, 0.1).unwrap();
    for (got, want) in p.iter().zip([0.9f32, -1.9, 0.4]) {
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }
    // AdamW shrinks the weights by (1 − η·λ) first; Adam adds λ·θ to g.
    let mut p = vec![1.0f32];
    let mut adamw = Adam::new(AdamConfig::adamw(0.5), 1).unwrap();
    adamw.update(&mut p, &[2.0], 0.1).unwrap();
    assert!((p[0] - (0.95 - 0.1)).abs() < 1e-6);
    let mut p = vec![1.0f32];
    let cfg = AdamConfig {
        weight_decay: 3.0,
        ..AdamConfig::default()
    };
    let mut adam_l2 = Adam::new(cfg, 1).unwrap();
    adam_l2.update(&mut p, &[-2.0], 0.1).unwrap(); // g' = −2 + 3 = 1 > 0
    assert!((p[0] - 0.9).abs() < 1e-6);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Adam and AdamW against an f64 transcription of Kingma & Ba's
    /// Algorithm 1 (with Loshchilov & Hutter's decoupled decay).
    #[test]
    fn adam_matches_the_algorithm(seed in any::<u64>(), wd in 0.0f64..0.1, decoupled in any::<bool>(), n in 1usize..20) {
        let cfg = AdamConfig { weight_decay: wd, decoupled, ..AdamConfig::default() };
        let mut adam = Adam::new(cfg, n).unwrap();
        let mut p: Vec<f32> = normals(seed, 0, n);
        let mut rp: Vec<f64> = p.iter().map(|&x| f64::from(x)).collect();
        let (mut m, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
        for t in 1..=5 {
            let g = normals(seed, t, n);
            let lr = 1e-2 * t as f64;
            adam.update(&mut p, &g, lr).unwrap();
            for i in 0..n {
                let mut gi = f64::from(g[i]);
                if !decoupled { gi += wd * rp[i]; }
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let mh = m[i] / (1.0 - 0.9f64.powi(t as i32));
                let vh = v[i] / (1.0 - 0.999f64.powi(t as i32));
                if decoupled { rp[i] -= lr * wd * rp[i]; }
                rp[i] -= lr * mh / (vh.sqrt() + 1e-8);
            }
        }
        for (a, b) in p.iter().zip(&rp) {
            prop_assert!((f64::from(*a) - b).abs() < 1e-5, "{} vs {}", a, b);
        }
        prop_assert_eq!(adam.step(), 5);
    }

    #[test]
    fn clipping_caps_the_global_norm(seed in any::<u64>(), n in 1usize..50, max in 0.01f64..10.0) {
        let mut g = normals(seed, 0, n);
        let before = global_norm(&g);
        let reported = clip_grad_norm(&mut g, max).unwrap();
        prop_assert!((reported - before).abs() < 1e-12);
        let after = global_norm(&g);
        prop_assert!(after <= max * (1.0 + 1e-6) + 1e-12);
        if before <= max {
            prop_assert!((after - before).abs() < 1e-12);
        } else {
            prop_assert!((after - max).abs() < 1e-5 * max + 1e-6);
        }
    }
}

#[test]
fn adam_minimises_a_quadratic_and_rejects_bad_input() {
    // f(θ) = ½ Σ cᵢ (θᵢ − 1)², with very different curvatures.
    let c = [100.0f32, 1.0, 0.01];
    let mut p = vec![0.0f32; 3];
    let mut adam = Adam::new(AdamConfig::default(), 3).unwrap();
    let sched = LrSchedule::warmup_cosine(0.1, 10, 2000, 1e-4);
    for s in 0..2000 {
        let g: Vec<f32> = p.iter().zip(&c).map(|(x, c)| c * (x - 1.0)).collect();
        adam.update(&mut p, &g, sched.at(s)).unwrap();
    }
    assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-2), "{p:?}");
    assert!(adam.update(&mut p, &[0.0; 2], 0.1).is_err());
    assert!(adam.update(&mut p, &[0.0; 3], f64::NAN).is_err());
    assert!(
        Adam::new(
            AdamConfig {
                beta1: 1.0,
                ..AdamConfig::default()
            },
            1
        )
        .is_err()
    );
    assert!(clip_grad_norm(&mut [f32::NAN], 1.0).is_err());
}

#[test]
fn learning_rate_warms_up_then_follows_the_cosine() {
    let s = LrSchedule::warmup_cosine(1.0, 10, 110, 0.1);
    s.validate().unwrap();
    assert!((s.at(0) - 0.1).abs() < 1e-15 && (s.at(9) - 1.0).abs() < 1e-15);
    assert!((s.at(10) - 1.0).abs() < 1e-15);
    assert!((s.at(60) - 0.55).abs() < 1e-12); // halfway: (η₀ + η_min)/2
    assert!((s.at(110) - 0.1).abs() < 1e-12 && (s.at(10_000) - 0.1).abs() < 1e-12);
    assert!((10..110).all(|k| s.at(k + 1) <= s.at(k)));
    assert_eq!(LrSchedule::constant(0.3).at(12345), 0.3);
    assert!(
        LrSchedule::warmup_cosine(1.0, 10, 5, 0.0)
            .validate()
            .is_err()
    );
    assert!(
        LrSchedule::warmup_cosine(1.0, 0, 5, 2.0)
            .validate()
            .is_err()
    );
}

#[test]
fn classic_ema_warms_up() {
    let kind = EmaKind::Classic {
        decay: 0.999,
        warmup: true,
    };
    let mut e = Ema::new(kind, &[0.0]).unwrap();
    // β_s = min(0.999, (1 + s)/(10 + s)): 0.1, 2/11, 3/12, …
    let mut want = 0.0f64;
    for s in 0..200u64 {
        let beta = e.update(&[1.0]).unwrap();
        let b = (0.999f64).min((1.0 + s as f64) / (10.0 + s as f64));
        assert!((beta - b).abs() < 1e-15);
        want = b * want + (1.0 - b);
        assert!((f64::from(e.values()[0]) - want).abs() < 1e-5);
    }
    let mut plain = Ema::new(
        EmaKind::Classic {
            decay: 0.9,
            warmup: false,
        },
        &[0.0],
    )
    .unwrap();
    assert_eq!(plain.update(&[1.0]).unwrap(), 0.9);
    assert!(plain.update(&[1.0, 2.0]).is_err());
}

#[test]
fn power_ema_profile_and_sigma_rel() {
    // Values of Karras et al. 2024 (EDM2): σ_rel 0.05 ↔ γ 16.97, 0.10 ↔ 6.94.
    let g05 = gamma_from_sigma_rel(0.05).unwrap();
    let g10 = gamma_from_sigma_rel(0.10).unwrap();
    assert!(
        (g05 - 16.97).abs() < 0.01 && (g10 - 6.94).abs() < 0.01,
        "{g05} {g10}"
    );
    for s in [0.01, 0.05, 0.1, 0.2, 0.28] {
        let g = gamma_from_sigma_rel(s).unwrap();
        assert!((sigma_rel_from_gamma(g).unwrap() - s).abs() < 1e-12);
    }
    assert!(gamma_from_sigma_rel(0.3).is_err() && gamma_from_sigma_rel(0.0).is_err());
    // The average of θ_t = t over T steps is ≈ T·(γ+1)/(γ+2) (weights ∝ t^γ).
    let mut e = Ema::new(EmaKind::Power { gamma: g10 }, &[0.0]).unwrap();
    assert_eq!(e.update(&[1.0]).unwrap(), 0.0); // the first update copies
    let t_max = 20_000;
    for t in 2..=t_max {
        e.update(&[t as f32]).unwrap();
    }
    let want = t_max as f64 * (g10 + 1.0) / (g10 + 2.0);
    let got = f64::from(e.values()[0]);
    assert!((got - want).abs() < 1e-3 * want, "{got} vs {want}");
}

#[test]
fn sinusoidal_embedding_values() {
    let e = SinusoidalEmbedding::new(8, 10_000.0, 1.0, 1000.0).unwrap();
    // ω_k = 10000^(−k/3): 1, 10^(−4/3), 10^(−8/3), 10^(−4).
    assert!((e.freqs()[0] - 1.0).abs() < 1e-15 && (e.freqs()[3] - 1e-4).abs() < 1e-18);
    let emb = TimeEmbedding::Sinusoidal(e.clone());
    let times = [0.0, 0.25, 0.999];
    let mut out = vec![0.0f32; 3 * 8];
    emb.embed(&times, &mut out, 8).unwrap();
    for (r, &t) in times.iter().enumerate() {
        for k in 0..4 {
            let a = 1000.0 * t * e.freqs()[k];
            assert!((f64::from(out[r * 8 + k]) - a.sin()).abs() < 1e-7);
            assert!((f64::from(out[r * 8 + 4 + k]) - a.cos()).abs() < 1e-7);
        }
    }
    assert!(emb.embed(&[f64::NAN], &mut out, 8).is_err());
    assert!(emb.embed(&times, &mut out[..20], 8).is_err());
    assert!(SinusoidalEmbedding::new(7, 10_000.0, 1.0, 1.0).is_err());
    assert!(SinusoidalEmbedding::new(2, 10_000.0, 1.0, 1.0).is_err()); // h − shift = 0
}

#[test]
fn fourier_embedding_draws_its_frequencies_from_the_noise_stream() {
    let cfg = TimeEmbeddingConfig::Fourier {
        dim: 6,
        scale: 16.0,
        time_scale: 1.0,
        seed: 5,
        stream: 9,
    };
    let TimeEmbedding::Fourier(f) = cfg.build().unwrap() else {
        panic!("not Fourier")
    };
    let z = normals(5, 9, 3);
    for (w, z) in f.weights().iter().zip(&z) {
        assert_eq!(*w, (f64::from(*z) * 16.0) as f32);
    }
    let mut out = vec![0.0f32; 6];
    TimeEmbedding::Fourier(f.clone())
        .embed(&[0.3], &mut out, 6)
        .unwrap();
    for k in 0..3 {
        let a = std::f64::consts::TAU * f64::from(f.weights()[k]) * 0.3;
        assert!((f64::from(out[k]) - a.sin()).abs() < 1e-6);
        assert!((f64::from(out[3 + k]) - a.cos()).abs() < 1e-6);
    }
}

#[test]
fn label_dropout_rate_and_null_label() {
    let hits = (0..20_000u64).filter(|&r| drop_label(1, 2, r, 0.1)).count();
    assert!((hits as f64 / 20_000.0 - 0.1).abs() < 0.01, "{hits}");
    assert!(!(0..1000u64).any(|r| drop_label(1, 2, r, 0.0)));
    let net = DenoiserNet::new(NetConfig::mlp(2, 4, &[8], 0).with_classes(3, 2, 0.5)).unwrap();
    let c = net.class_embedding().unwrap();
    assert_eq!(
        (
            c.null_label(),
            c.index(None).unwrap(),
            c.index(Some(2)).unwrap()
        ),
        (3, 3, 2)
    );
    assert!(c.index(Some(4)).is_err());
    let x = Array2::<f32>::zeros((2, 2));
    let mut out = Array2::<f32>::zeros((2, 2));
    assert!(
        net.forward(
            x.view(),
            &[0.1, 0.2],
            Some(&[Some(9), None]),
            out.view_mut()
        )
        .is_err()
    );
    // The null label and "no labels" agree.
    net.forward(x.view(), &[0.1, 0.2], Some(&[None, None]), out.view_mut())
        .unwrap();
    let mut out2 = Array2::<f32>::zeros((2, 2));
    net.forward(x.view(), &[0.1, 0.2], None, out2.view_mut())
        .unwrap();
    assert_eq!(out, out2);
}

#[test]
fn forward_is_row_wise_and_checks_its_input() {
    let net = DenoiserNet::new(NetConfig::residual_mlp(3, 8, 16, 2, 24, 4)).unwrap();
    let rows = diffuse_nets::SHARD_ROWS + 5;
    let x = Array2::from_shape_vec((rows, 3), normals(0, 0, rows * 3)).unwrap();
    let t: Vec<f64> = (0..rows).map(|r| r as f64 / rows as f64).collect();
    let mut out = Array2::<f32>::zeros((rows, 3));
    net.forward(x.view(), &t, None, out.view_mut()).unwrap();
    for r in [0, 17, rows - 1] {
        let mut one = Array2::<f32>::zeros((1, 3));
        net.forward(
            x.slice(ndarray::s![r..r + 1, ..]),
            &t[r..r + 1],
            None,
            one.view_mut(),
        )
        .unwrap();
        // Equal up to the GEMM's blocking, which depends on the row count.
        for (a, b) in one.row(0).iter().zip(out.row(r)) {
            assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
    assert!(
        net.forward(x.view(), &t[1..], None, out.view_mut())
            .is_err()
    );
    let mut bad = x.clone();
    bad[[3, 1]] = f32::NAN;
    assert!(net.forward(bad.view(), &t, None, out.view_mut()).is_err());
    assert!(DenoiserNet::new(NetConfig::mlp(2, 8, &[], 0)).is_err());
    assert!(DenoiserNet::new(NetConfig::mlp(0, 8, &[4], 0)).is_err());
    assert_eq!(
        DenoiserNet::new(NetConfig::reference(0))
            .unwrap()
            .forward_flops_per_row(),
        2.0 * (130.0 * 256.0 + 2.0 * 256.0 * 256.0 + 256.0 * 2.0)
    );
}

fn small_trainer(seed: u64, classes: bool) -> EpsTrainer {
    let mut net = NetConfig::mlp(2, 16, &[64, 64], seed);
    if classes {
        net = net.with_classes(2, 8, 0.2);
    }
    let train = TrainConfig {
        batch_size: 600,
        adam: AdamConfig::adamw(1e-4),
        lr: LrSchedule::warmup_cosine(3e-3, 5, 150, 1e-4),
        clip_grad_norm: Some(1.0),
        ema: Some(EmaKind::Classic {
            decay: 0.99,
            warmup: true,
        }),
        seed,
    };
    EpsTrainer::new(DenoiserNet::new(net).unwrap(), train).unwrap()
}

#[test]
fn training_reduces_the_loss_and_is_thread_count_independent() {
    let (x, labels) = clusters(600, 1);
    let run = |threads: usize, steps: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut tr = small_trainer(7, true);
            let losses: Vec<f64> = (0..steps)
                .map(|_| tr.step(x.view(), Some(&labels), &Cosine).unwrap().loss)
                .collect();
            (tr, losses)
        })
    };
    let (tr1, l1) = run(1, 4);
    let (tr2, l2) = run(2, 4);
    assert_eq!(l1, l2);
    assert_eq!(tr1.net().params().values(), tr2.net().params().values());
    let (tr, losses) = run(2, 150);
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[140..].iter().sum::<f64>() / 10.0;
    assert!(last < 0.7 * first, "loss {first} → {last}");
    assert_eq!(tr.steps(), 150);
    assert_eq!(tr.ema().unwrap().updates(), 150);
    let mut bad = x.clone();
    bad[[0, 0]] = f32::INFINITY;
    let mut tr3 = small_trainer(7, true);
    assert!(tr3.step(bad.view(), Some(&labels), &Cosine).is_err());
    assert!(tr3.step(x.view(), None, &Cosine).is_err());
    assert!(
        tr3.step(x.slice(ndarray::s![..10, ..]), Some(&labels[..10]), &Cosine)
            .is_err()
    );
}

#[test]
fn checkpoint_round_trip_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let (x, labels) = clusters(600, 2);
    let mut tr = small_trainer(3, true);
    for _ in 0..3 {
        tr.step(x.view(), Some(&labels), &Cosine).unwrap();
    }
    let run_config = serde_json::json!({"data": "clusters", "steps": 3});
    save_trainer(&tr, &path, Some(&run_config), false).unwrap();
    let ck = Checkpoint::read(&path).unwrap();
    assert_eq!(ck.config_value().unwrap(), run_config);
    assert_eq!(ck.metadata()["format"], "pt");
    let names = ck.tensor_names();
    for n in [
        "model.net.0.weight",
        "model.net.0.bias",
        "model.net.4.weight",
        "model.class_embed.weight",
        "ema.net.2.weight",
        "optim.m.net.0.weight",
        "optim.v.class_embed.weight",
        "optim.step",
    ] {
        assert!(names.contains(&n), "{n} missing from {names:?}");
    }
    let mut back = load_trainer(&ck).unwrap();
    assert_eq!(back.steps(), 3);
    assert_eq!(back.net().params(), tr.net().params());
    assert_eq!(back.adam(), tr.adam());
    assert_eq!(back.ema(), tr.ema());
    assert_eq!(back.config(), tr.config());
    // The resumed run continues bit for bit.
    let a = tr.step(x.view(), Some(&labels), &Cosine).unwrap();
    let b = back.step(x.view(), Some(&labels), &Cosine).unwrap();
    assert_eq!(a, b);
    assert_eq!(back.net().params(), tr.net().params());
    // The EMA weights load as a network.
    let ema_net = load_net(&ck, true).unwrap();
    let ema_values = ck.ema(ema_net.layout()).unwrap().unwrap().0;
    assert_eq!(ema_net.params().values(), &ema_values[..]);
}

#[test]
fn checkpoints_never_overwrite_unless_asked_and_report_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.safetensors");
    let net = DenoiserNet::new(NetConfig::mlp(2, 4, &[8], 0)).unwrap();
    let w = CheckpointWriter::new(net.layout(), net.params().values())
        .unwrap()
        .config_str(r#"{"k": 1}"#)
        .unwrap();
    w.write(&path, false).unwrap();
    let before = std::fs::read(&path).unwrap();
    assert!(matches!(
        w.write(&path, false),
        Err(CheckpointError::Exists { .. })
    ));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    w.write(&path, true).unwrap();
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    assert!(
        CheckpointWriter::new(net.layout(), net.params().values())
            .unwrap()
            .config_str("not json")
            .is_err()
    );
    // A network of another shape does not load.
    let other = DenoiserNet::new(NetConfig::mlp(2, 4, &[9], 0)).unwrap();
    let ck = Checkpoint::read(&path).unwrap();
    assert_eq!(ck.config_str(), Some(r#"{"k": 1}"#));
    assert!(matches!(
        ck.model(other.layout()),
        Err(CheckpointError::Mismatch { .. })
    ));
    let more = DenoiserNet::new(NetConfig::mlp(2, 4, &[8], 0).with_classes(2, 2, 0.0)).unwrap();
    assert!(matches!(
        ck.model(more.layout()),
        Err(CheckpointError::Missing { .. })
    ));
    assert_eq!(ck.model(net.layout()).unwrap(), net.params().values());
    assert!(ck.optim(net.layout()).unwrap().is_none() && ck.ema(net.layout()).unwrap().is_none());
    // Not a trainer checkpoint: no network configuration.
    assert!(matches!(
        load_net(&ck, false),
        Err(CheckpointError::Metadata { .. })
    ));
    let garbage = dir.path().join("g.safetensors");
    std::fs::write(&garbage, b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}").unwrap();
    assert!(matches!(
        Checkpoint::read(&garbage),
        Err(CheckpointError::Format { .. })
    ));
    assert!(matches!(
        Checkpoint::read(&dir.path().join("missing.safetensors")),
        Err(CheckpointError::Io { .. })
    ));
}

/// ε-prediction: x̂₀ = (x − σ·out)/α.
struct Epsilon;

impl diffuse_core::Parameterization for Epsilon {
    fn name(&self) -> &str {
        "epsilon"
    }
    fn x0_map(&self, m: diffuse_core::Marginal) -> Result<diffuse_core::Affine> {
        Ok(diffuse_core::Affine {
            a: 1.0 / m.alpha,
            b: -m.sigma / m.alpha,
        })
    }
}

#[test]
fn the_network_serves_as_a_denoiser() {
    use diffuse_core::{Backend, Condition, CpuBackend, Denoiser, Marginal, NoiseLevel};
    use std::sync::Arc;
    let net =
        Arc::new(DenoiserNet::new(NetConfig::mlp(2, 8, &[16], 1).with_classes(2, 4, 0.1)).unwrap());
    let den = diffuse_nets::NetDenoiser::new(net.clone(), Arc::new(Epsilon));
    let cpu = CpuBackend::new();
    let xs = normals(3, 0, 6);
    let x = cpu.upload(&[3, 2], &xs).unwrap();
    let mut out = cpu.zeros(&[3, 2]).unwrap();
    let levels: Vec<NoiseLevel> = [0.2, 0.5, 0.9]
        .iter()
        .map(|&t: &f64| NoiseLevel {
            t,
            marginal: Marginal::new(
                (std::f64::consts::FRAC_PI_2 * t).cos(),
                (std::f64::consts::FRAC_PI_2 * t).sin(),
            )
            .unwrap(),
        })
        .collect();
    let labels = [Some(0), None, Some(1)];
    den.predict(&cpu, &x, &levels, Condition::Class(&labels), &mut out)
        .unwrap();
    let mut want = Array2::<f32>::zeros((3, 2));
    let xa = Array2::from_shape_vec((3, 2), xs).unwrap();
    net.forward(xa.view(), &[0.2, 0.5, 0.9], Some(&labels), want.view_mut())
        .unwrap();
    assert_eq!(cpu.to_host(&out).unwrap(), want.into_raw_vec_and_offset().0);
    assert!(
        den.predict(&cpu, &x, &levels, Condition::Tensor(&x), &mut out)
            .is_err()
    );
    assert!(
        den.predict(&cpu, &x, &levels[..2], Condition::Unconditional, &mut out)
            .is_err()
    );
}

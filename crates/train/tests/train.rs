//! Training-loop tests: reproducibility, resume, the loss against the
//! losses crate, typed errors, and (ignored) the quality sweep.

use diffuse_train::{
    RunConfig, SampleSpec, TrainError, TrainedModel, Trainer, score, steps_for_nfe,
};

fn tiny() -> RunConfig {
    RunConfig {
        steps: 100,
        batch_size: 64,
        hidden: vec![16, 16],
        time_dim: 8,
        warmup_steps: 10,
        ..RunConfig::default()
    }
}

#[test]
fn resume_is_bit_identical() -> Result<(), TrainError> {
    let dir = tempfile::tempdir().map_err(diffuse_core::Error::Io)?;
    let path = dir.path().join("half.safetensors");
    let mut whole = Trainer::new(tiny())?;
    whole.run(100, 1000, |_| {})?;

    let mut first = Trainer::new(tiny())?;
    first.run(50, 1000, |_| {})?;
    first.save(&path, false)?;
    drop(first);
    let mut second = Trainer::resume(&path)?;
    assert_eq!(second.steps(), 50);
    second.run(100, 1000, |_| {})?;
    assert_eq!(second.steps(), 100);
    assert_eq!(
        second.net().params().values(),
        whole.net().params().values()
    );
    assert_eq!(
        second.ema().map(|e| e.values().to_vec()),
        whole.ema().map(|e| e.values().to_vec())
    );
    // Saving again over the file needs overwrite.
    assert!(matches!(
        second.save(&path, false),
        Err(TrainError::Checkpoint(_))
    ));
    second.save(&path, true)?;
    Ok(())
}

#[test]
fn same_seed_same_run_other_seed_differs() -> diffuse_core::Result<()> {
    let run = |seed| -> diffuse_core::Result<Vec<f32>> {
        let mut t = Trainer::new(RunConfig { seed, ..tiny() })?;
        t.run(5, 1, |_| {})?;
        Ok(t.net().params().values().to_vec())
    };
    assert_eq!(run(3)?, run(3)?);
    assert_ne!(run(3)?, run(4)?);
    Ok(())
}

#[test]
fn loss_decreases_for_every_target() -> diffuse_core::Result<()> {
    for (pred, loss, schedule) in [
        ("eps", "mse", "vp-linear"),
        ("x0", "snr", "cosine"),
        ("v", "min-snr:5", "cosine"),
        ("flow", "mse", "flow"),
        ("eps", "p2", "ddpm-linear"),
        ("v", "sigmoid:2", "cosine"),
    ] {
        let config = RunConfig {
            prediction: pred.into(),
            loss: loss.into(),
            schedule: schedule.into(),
            steps: 300,
            batch_size: 128,
            ..tiny()
        };
        let mut t = Trainer::new(config)?;
        let mut means = Vec::new();
        t.run(300, 50, |p| means.push(p.mean_loss))?;
        let (first, last) = (means[0], means[means.len() - 1]);
        assert!(last < first, "{pred}/{loss}/{schedule}: {means:?}");
    }
    Ok(())
}

#[test]
fn bad_names_are_typed_errors() {
    for config in [
        RunConfig {
            loss: "huber".into(),
            ..tiny()
        },
        RunConfig {
            loss: "min-snr:x".into(),
            ..tiny()
        },
        RunConfig {
            loss: "min-snr:-1".into(),
            ..tiny()
        },
        RunConfig {
            schedule: "linear-ish".into(),
            ..tiny()
        },
        RunConfig {
            data: "spirals".into(),
            ..tiny()
        },
        RunConfig {
            prediction: "noise".into(),
            ..tiny()
        },
        RunConfig {
            level_sampler: "gamma".into(),
            ..tiny()
        },
        RunConfig {
            batch_size: 0,
            ..tiny()
        },
        RunConfig {
            hidden: vec![],
            ..tiny()
        },
    ] {
        let err = Trainer::new(config.clone()).unwrap_err();
        assert!(
            matches!(err, diffuse_core::Error::InvalidArgument { .. }),
            "{config:?}: {err}"
        );
    }
    let e = Trainer::new(RunConfig {
        loss: "huber".into(),
        ..tiny()
    })
    .unwrap_err();
    assert!(e.to_string().contains("min-snr"), "{e}");
}

#[test]
fn sampling_is_reproducible_and_counts_nfe() -> diffuse_core::Result<()> {
    let mut t = Trainer::new(tiny())?;
    t.run(20, 100, |_| {})?;
    let model = TrainedModel::from_trainer(&t)?;
    for solver in [
        "euler",
        "heun",
        "dpmpp-2m",
        "unipc",
        "dpmpp-3m",
        "euler-ancestral",
    ] {
        let m = diffuse_train::method(solver, None)?;
        let spec = SampleSpec {
            solver: solver.into(),
            steps: steps_for_nfe(&*m, 10),
            n: 50,
            seed: 9,
            grid: None,
            eta: None,
            noise: None,
        };
        let (a, report) = model.sample(&spec)?;
        let (b, _) = model.sample(&spec)?;
        assert_eq!(a, b, "{solver}");
        assert!(
            report.nfe <= 10 && report.nfe >= 5,
            "{solver}: {}",
            report.nfe
        );
        assert!(score(t.parts().dataset, &a)?.is_finite());
    }
    let bad = SampleSpec {
        solver: "euler".into(),
        steps: 3,
        n: 5,
        seed: 0,
        grid: None,
        eta: Some(0.5),
        noise: None,
    };
    assert!(model.sample(&bad).is_err());
    Ok(())
}

/// The demo's configuration at full length, with the SW per solver and NFE.
/// Slow (about a minute): `cargo test -p diffuse-train --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn quality_sweep() -> diffuse_core::Result<()> {
    let config = RunConfig::default();
    let steps = config.steps;
    let mut t = Trainer::new(config)?;
    let start = std::time::Instant::now();
    t.run(steps, 500, |p| {
        eprintln!(
            "step {} loss {:.4} {:.1} steps/s",
            p.step, p.mean_loss, p.steps_per_s
        )
    })?;
    eprintln!("trained in {:.1} s", start.elapsed().as_secs_f64());
    let n = 5000;
    let floor = diffuse_data::floor(t.parts().dataset, n)?.sliced_wasserstein;
    eprintln!("floor {floor:.4}");
    let model = TrainedModel::from_trainer(&t)?;
    for solver in ["euler", "heun", "dpmpp-2m", "unipc", "dpmpp-3m"] {
        for nfe in [5, 10, 20, 50] {
            let m = diffuse_train::method(solver, None)?;
            let spec = SampleSpec {
                solver: solver.into(),
                steps: steps_for_nfe(&*m, nfe),
                n,
                seed: 1,
                grid: None,
                eta: None,
                noise: None,
            };
            let (x, r) = model.sample(&spec)?;
            eprintln!(
                "{solver:10} nfe {:3} sw {:.4}",
                r.nfe,
                score(t.parts().dataset, &x)?
            );
        }
    }
    Ok(())
}

/// The network's fused weighted MSE is the losses crate's objective: same
/// value, for every target and a non-trivial weighting.
#[test]
fn fused_loss_matches_the_objective() -> diffuse_core::Result<()> {
    use diffuse_losses::{Batch, Level, Objective, Targets};
    use diffuse_nets::{DenoiserNet, NetConfig};
    use ndarray::{Array2, ArrayView2};
    let (b, d) = (37, 2);
    let schedule = diffuse_train::schedule_by_name("cosine")?;
    let net = DenoiserNet::new(NetConfig::mlp(2, 8, &[16], 1))?;
    let x0: Vec<f32> = (0..b * d)
        .map(|i| ((i * 7) % 11) as f32 / 5.0 - 1.0)
        .collect();
    let eps: Vec<f32> = (0..b * d)
        .map(|i| ((i * 5) % 13) as f32 / 6.0 - 1.0)
        .collect();
    let times: Vec<f64> = (0..b).map(|r| 0.01 + 0.95 * r as f64 / b as f64).collect();
    let levels = times
        .iter()
        .map(|&t| Level::on_schedule(&*schedule.schedule, t))
        .collect::<diffuse_core::Result<Vec<_>>>()?;
    let mut x = vec![0.0f32; b * d];
    diffuse_losses::forward_into(&levels, &x0, &eps, &mut x)?;
    let xv = ArrayView2::from_shape((b, d), &x[..]).map_err(|e| {
        diffuse_core::Error::InvalidArgument {
            name: "x",
            reason: e.to_string(),
        }
    })?;
    let mut out = Array2::<f32>::zeros((b, d));
    net.forward(xv, &times, None, out.view_mut())?;
    for pred in diffuse_train::PREDICTIONS {
        let (target, _) = diffuse_train::prediction_by_name(pred)?;
        let objective = Objective::new(
            target,
            diffuse_train::weighting_by_name("min-snr:5", target)?,
        )?;
        let mut y = vec![0.0f32; b * d];
        objective.targets_into(&levels, &x0, &eps, &mut y)?;
        let weights = levels
            .iter()
            .map(|l| objective.row_weight(l))
            .collect::<diffuse_core::Result<Vec<_>>>()?;
        let mut ws = net.train_workspace(b);
        let yv = ArrayView2::from_shape((b, d), &y[..]).map_err(|e| {
            diffuse_core::Error::InvalidArgument {
                name: "y",
                reason: e.to_string(),
            }
        })?;
        let fused = net.loss_and_grad(&mut ws, xv, &times, None, yv, Some(&weights))?;
        let output = out
            .as_slice()
            .ok_or(diffuse_core::Error::NonFinite("layout".into()))?;
        let reference = objective.loss(&Batch {
            levels: &levels,
            output,
            targets: Targets::Pair { x0: &x0, eps: &eps },
            row_weights: None,
        })?;
        assert!(
            (fused - reference.loss).abs() <= 1e-5 * reference.loss.abs().max(1e-12),
            "{pred}: {fused} vs {}",
            reference.loss
        );
    }
    Ok(())
}

//! `diffuse train` (a training run with a progress bar, saved as
//! safetensors) and `diffuse bench train` (the reference training step).

use std::io::Write;
use std::time::{Duration, Instant};

use diffuse_data::Dataset;
use diffuse_nets::{DenoiserNet, EpsTrainer, NetConfig, reference_train_step};
use diffuse_train::{RunConfig, Trainer};
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::Array2;
use serde::Serialize;

use crate::cli::{BenchTrainArgs, TrainArgs};
use crate::error::{CliError, CliResult};
use crate::output::print_result;

/// The run configuration the flags describe (defaults from
/// [`RunConfig::default`], with the cosine schedule).
fn config(args: &TrainArgs) -> RunConfig {
    let mut c = RunConfig::default();
    let set = |dst: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            dst.clone_from(v);
        }
    };
    set(&mut c.data, &args.data);
    set(&mut c.schedule, &args.schedule);
    set(&mut c.prediction, &args.pred);
    set(&mut c.loss, &args.loss);
    set(&mut c.level_sampler, &args.levels);
    if let Some(s) = args.steps {
        c.steps = s;
        c.warmup_steps = c.warmup_steps.min(s / 10);
    }
    if let Some(b) = args.batch {
        c.batch_size = b as usize;
    }
    if let Some(lr) = args.lr {
        c.lr = lr;
        c.min_lr = c.min_lr.min(lr);
    }
    if let Some(h) = &args.hidden {
        c.hidden.clone_from(&h.0);
    }
    if let Some(s) = args.seed {
        c.seed = s;
    }
    c
}

/// A progress bar showing step, loss and steps/s (hidden when `quiet`).
pub fn progress_bar(total: u64, done: u64, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps  loss {msg}  [{elapsed_precise} < {eta_precise}]",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done);
    bar
}

pub fn run(args: &TrainArgs) -> CliResult<()> {
    if !args.force && args.out.exists() {
        return Err(CliError::Exists(args.out.clone()));
    }
    let mut trainer = match &args.resume {
        Some(path) => {
            let mut t = Trainer::resume(path)?;
            if let Some(steps) = args.steps {
                t.set_total_steps(steps)?;
            }
            t
        }
        None => Trainer::new(config(args))?,
    };
    let total = trainer.config().steps;
    let bar = progress_bar(total, trainer.steps(), args.quiet);
    let every = (total / 200).max(1);
    trainer.run(total, every, |p| {
        bar.set_position(p.step);
        bar.set_message(format!("{:.4}  {:.0} steps/s", p.mean_loss, p.steps_per_s));
    })?;
    bar.finish();
    trainer.save(&args.out, args.force)?;
    if !args.quiet {
        eprintln!(
            "saved {} ({} steps of {})",
            args.out.display(),
            trainer.steps(),
            total
        );
    }
    Ok(())
}

#[derive(Serialize)]
struct BenchReport {
    steps_per_s: f64,
    forward_ms: f64,
    forward_points: usize,
    batch: usize,
    threads: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        0.5 * (v[m - 1] + v[m])
    }
}

/// Untimed runs before timing.
const WARMUP: usize = 3;
/// Points of the timed forward pass.
const FORWARD_POINTS: usize = 65_536;

pub fn bench(args: &BenchTrainArgs) -> CliResult<()> {
    let schedule = diffuse_train::schedule_by_name("vp-linear")?;
    let mut trainer = EpsTrainer::reference(0)?;
    let batch = trainer.config().batch_size;
    let data = Dataset::from_name("moons")?.sample(batch, 0)?;
    let mut times = Vec::with_capacity(args.repeats as usize);
    for i in 0..WARMUP + args.repeats as usize {
        let start = Instant::now();
        reference_train_step(&mut trainer, data.view(), &*schedule.schedule)?;
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    let step_s = median(times);
    let net = DenoiserNet::new(NetConfig::reference(0))?;
    let x = Dataset::from_name("moons")?.sample(FORWARD_POINTS, 1)?;
    let t: Vec<f64> = (0..FORWARD_POINTS)
        .map(|i| (i as f64 + 0.5) / FORWARD_POINTS as f64)
        .collect();
    let mut out = Array2::<f32>::zeros((FORWARD_POINTS, 2));
    let mut fwd = Vec::new();
    for i in 0..WARMUP + args.repeats as usize {
        let start = Instant::now();
        net.forward(x.view(), &t, None, out.view_mut())?;
        if i >= WARMUP {
            fwd.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    let report = BenchReport {
        steps_per_s: 1.0 / step_s.max(Duration::from_nanos(1).as_secs_f64()),
        forward_ms: median(fwd),
        forward_points: FORWARD_POINTS,
        batch,
        threads: rayon::current_num_threads(),
    };
    print_result(args.format, &report, |w: &mut dyn Write| {
        writeln!(
            w,
            "reference training step (batch {}, 3×256 SiLU, {} threads): {:.2} steps/s ({:.1} ms/step)",
            report.batch,
            report.threads,
            report.steps_per_s,
            1e3 / report.steps_per_s
        )?;
        writeln!(
            w,
            "forward pass on {} points: {:.2} ms",
            report.forward_points, report.forward_ms
        )
    })
}

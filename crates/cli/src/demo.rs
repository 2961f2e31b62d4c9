//! `diffuse demo` (and `diffuse` with no arguments): train on moons, sample
//! with several solvers at several NFE, score against held-out data.
//!
//! The run: [`demo_config`] (v-prediction on the cosine schedule, min-SNR-5
//! weighting, stratified uniform times, AdamW with warm-up and cosine decay,
//! EMA), then for each solver of [`SOLVERS`] and each NFE of [`NFES`] as
//! many steps as fit in that NFE (`NFE / evaluations per step`), `n`
//! samples from the EMA weights, scored by the sliced Wasserstein distance
//! to `n` held-out points; the floor is the same distance between two
//! independent held-out draws ([`diffuse_data::floor`]).
//!
//! The PNG grid (data, then each solver at NFE 20) goes to `--plot`
//! (`demo.png`). An existing file is never replaced: the first free name
//! `demo-1.png`, `demo-2.png`, … next to it is used instead, and the path
//! written is printed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use diffuse_data::floor;
use diffuse_train::{RunConfig, SampleSpec, TrainedModel, Trainer, method, score, steps_for_nfe};
use serde::Serialize;

use crate::cli::{DemoArgs, Format};
use crate::error::{CliError, CliResult};
use crate::output::print_result;
use crate::plot::{Panel, ScatterGrid};
use crate::sample::{points, write_png};

/// The solvers compared.
pub const SOLVERS: [&str; 5] = ["euler", "heun", "dpmpp-2m", "unipc", "dpmpp-3m"];
/// The NFE budgets.
pub const NFES: [usize; 4] = [5, 10, 20, 50];
/// The NFE of the plotted samples.
pub const PLOT_NFE: usize = 20;

/// The demo's training run (`quick`: a few hundred steps of a small net).
pub fn demo_config(quick: bool) -> RunConfig {
    if quick {
        RunConfig {
            steps: 300,
            batch_size: 256,
            hidden: vec![32, 32],
            time_dim: 16,
            warmup_steps: 30,
            ..RunConfig::default()
        }
    } else {
        RunConfig {
            steps: 12_000,
            batch_size: 1024,
            warmup_steps: 200,
            ..RunConfig::default()
        }
    }
}

#[derive(Serialize)]
struct Row {
    solver: String,
    nfe: usize,
    steps: usize,
    sw: f64,
}

#[derive(Serialize)]
struct Report {
    dataset: String,
    n: usize,
    floor: f64,
    train_steps: u64,
    train_seconds: f64,
    results: Vec<Row>,
    plot: String,
}

/// `path`, or the first of `stem-1.ext`, `stem-2.ext`, … that does not
/// exist.
fn free_path(path: &Path, attempt: usize) -> PathBuf {
    if attempt == 0 {
        return path.to_path_buf();
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "demo".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{attempt}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{attempt}"),
    };
    path.with_file_name(name)
}

/// Writes `png` at `path` or the first free numbered name next to it.
fn write_fresh(path: &Path, png: &[u8]) -> CliResult<PathBuf> {
    for attempt in 0..10_000 {
        let p = free_path(path, attempt);
        if p.exists() {
            continue;
        }
        match write_png(&p, false, png) {
            Ok(()) => return Ok(p),
            Err(CliError::Exists(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(CliError::Usage(format!(
        "no free file name next to {}",
        path.display()
    )))
}

pub fn run(args: &DemoArgs) -> CliResult<()> {
    let plot_path = if args.plot.as_os_str().is_empty() {
        PathBuf::from("demo.png")
    } else {
        args.plot.clone()
    };
    let config = demo_config(args.quick);
    let n = if args.quick { 1000 } else { 5000 };
    let text = args.format == Format::Text;
    let total = config.steps;
    let mut trainer = Trainer::new(config)?;
    let dataset = trainer.parts().dataset;
    if text {
        eprintln!(
            "training on {} ({} steps, batch {}, MLP {:?}, {} / {} / {})",
            dataset.name(),
            total,
            trainer.config().batch_size,
            trainer.config().hidden,
            trainer.config().schedule,
            trainer.config().prediction,
            trainer.config().loss,
        );
    }
    let bar = crate::train::progress_bar(total, 0, !text);
    let start = Instant::now();
    trainer.run(total, (total / 200).max(1), |p| {
        bar.set_position(p.step);
        bar.set_message(format!("{:.4}  {:.0} steps/s", p.mean_loss, p.steps_per_s));
    })?;
    bar.finish_and_clear();
    let train_seconds = start.elapsed().as_secs_f64();
    let model = TrainedModel::from_trainer(&trainer)?;
    let floor = floor(dataset, n)?.sliced_wasserstein;
    let mut results = Vec::new();
    let mut panels = vec![Panel::new(
        format!("{} (held-out data)", dataset.name()),
        points(&dataset.held_out(n, diffuse_data::FLOOR_SEED)?),
    )];
    for solver in SOLVERS {
        let m = method(solver, None)?;
        for nfe in NFES {
            let spec = SampleSpec {
                solver: solver.into(),
                steps: steps_for_nfe(&*m, nfe),
                n,
                seed: 1,
                grid: None,
                eta: None,
                noise: None,
            };
            let (x, report) = model.sample(&spec)?;
            let sw = score(dataset, &x)?;
            if nfe == PLOT_NFE {
                panels.push(Panel::new(
                    format!("{solver} · NFE {} · SW {sw:.3}", report.nfe),
                    points(&x),
                ));
            }
            results.push(Row {
                solver: solver.into(),
                nfe: report.nfe,
                steps: report.steps,
                sw,
            });
        }
    }
    let mut grid = ScatterGrid::new(panels, 3);
    grid.title = format!(
        "{}: {} training steps, samples at NFE {PLOT_NFE} (floor SW {floor:.3})",
        dataset.name(),
        total
    );
    let plot = write_fresh(&plot_path, &grid.render_png()?)?;
    let report = Report {
        dataset: dataset.name().into(),
        n,
        floor,
        train_steps: trainer.steps(),
        train_seconds,
        results,
        plot: plot.display().to_string(),
    };
    print_result(args.format, &report, |w: &mut dyn Write| {
        writeln!(
            w,
            "{}: trained {} steps in {:.1} s; {} samples per run",
            report.dataset, report.train_steps, report.train_seconds, report.n
        )?;
        writeln!(
            w,
            "sliced Wasserstein to held-out data (floor, data vs data: {:.4})",
            report.floor
        )?;
        write!(w, "{:<10}", "solver")?;
        for nfe in NFES {
            write!(w, " {:>17}", format!("NFE≤{nfe}"))?;
        }
        writeln!(w)?;
        for chunk in report.results.chunks(NFES.len()) {
            write!(w, "{:<10}", chunk[0].solver)?;
            for r in chunk {
                write!(
                    w,
                    " {:>17}",
                    format!("{:.4} ({:.1}×)", r.sw, r.sw / report.floor)
                )?;
            }
            writeln!(w)?;
        }
        writeln!(w, "plot: {}", report.plot)
    })
}

//! `diffuse schedule`: the inference grid of a diffusers scheduler config or
//! of a built-in schedule, as a table or JSON, and a plot of log-SNR against
//! time for every built-in schedule.

use std::io::Write;

use diffuse_core::NoiseSchedule;
use diffuse_diffusers::SchedulerConfig;
use diffuse_diffusers::timesteps::TimestepOptions;
use diffuse_schedules::{BUILTIN_NAMES, TimeGrid, builtin};
use serde::Serialize;

use crate::cli::ScheduleArgs;
use crate::error::{CliError, CliResult};
use crate::output::{print_result, write_file};
use crate::plot::LinePlot;

/// The grid as printed: diffusers' `timesteps` and `sigmas`, and at every
/// noise level the sampler visits, its time on the schedule, `α`, `σ`, `λ`.
/// Non-finite values (the log-SNR of a clean final state) print as `null`.
#[derive(Debug, Serialize)]
struct Report {
    /// What the grid was built from.
    source: String,
    timesteps: Vec<f64>,
    sigmas: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sigmas_interpol: Option<Vec<Option<f64>>>,
    t: Vec<Option<f64>>,
    alpha: Vec<f64>,
    sigma: Vec<f64>,
    #[serde(serialize_with = "finite_or_null")]
    log_snr: Vec<f64>,
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// JSON has no infinities: ±∞ (the log-SNR of a clean or a pure-noise
/// state) is written as `null`.
fn finite_or_null<S: serde::Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|&x| finite(x)))
}

pub fn run(args: &ScheduleArgs) -> CliResult<()> {
    if args.config.is_none() && args.builtin.is_none() && args.plot.is_none() {
        return Err(CliError::Usage(
            "give --config FILE, --builtin NAME or --plot FILE.png".into(),
        ));
    }
    if let Some(path) = &args.plot {
        let png = plot_builtins()?;
        write_file(path, args.force, |w| {
            w.write_all(&png).map_err(|source| CliError::Io {
                path: path.clone(),
                source,
            })
        })?;
        if args.config.is_none() && args.builtin.is_none() {
            eprintln!("wrote {}", path.display());
            return Ok(());
        }
    }
    let report = match (&args.config, &args.builtin) {
        (Some(path), None) => from_config(path, args)?,
        (None, Some(name)) => from_builtin(name, args)?,
        (Some(_), Some(_)) => {
            return Err(CliError::Usage(
                "--config and --builtin exclude each other".into(),
            ));
        }
        (None, None) => unreachable!("checked above"),
    };
    print_result(args.format, &report, |out| print_table(out, &report))
}

fn from_config(path: &std::path::Path, args: &ScheduleArgs) -> CliResult<Report> {
    if args.grid.is_some() {
        return Err(CliError::Usage(
            "--grid applies to --builtin; a diffusers config sets its own spacing".into(),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|source| CliError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let parsed = SchedulerConfig::from_json_str_with_class(&text, args.class.as_deref())
        .map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    for w in &parsed.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    let config = parsed.config;
    let options = TimestepOptions { mu: args.mu };
    let grid = config.set_timesteps(args.steps as usize, &options)?;
    let schedule = config.noise_schedule(&options)?;
    let levels = match &grid.sigmas {
        Some(s) => s.len(),
        None => grid.timesteps.len(),
    };
    let mut report = Report {
        source: config.class.class_name().to_string(),
        timesteps: grid.timesteps.clone(),
        sigmas: grid.sigmas.clone(),
        sigmas_interpol: grid
            .sigmas_interpol
            .as_ref()
            .map(|v| v.iter().map(|&x| finite(x)).collect()),
        t: Vec::with_capacity(levels),
        alpha: Vec::with_capacity(levels),
        sigma: Vec::with_capacity(levels),
        log_snr: Vec::with_capacity(levels),
    };
    for i in 0..levels {
        let m = config.marginal_at(&grid, i)?;
        let lambda = m.log_snr();
        let t = match &grid.sigmas {
            // DDIM and PNDM: the timestep is the time.
            None => Some(grid.timesteps[i]),
            Some(_) => lambda_time(schedule.as_ref(), lambda),
        };
        push_level(&mut report, t, m.alpha, m.sigma, lambda);
    }
    if grid.sigmas.is_none() {
        // DDIM and PNDM end at the "final" ᾱ: 1 with set_alpha_to_one, else ᾱ₀.
        let acp = config.alphas_cumprod()?;
        let (a, t) = if config.solver.set_alpha_to_one {
            (1.0, None)
        } else {
            (acp[0], Some(0.0))
        };
        push_level(
            &mut report,
            t,
            a.sqrt(),
            (1.0 - a).sqrt(),
            (a / (1.0 - a)).ln(),
        );
    }
    Ok(report)
}

/// The time with log-SNR `lambda`, if the schedule reaches it (within the
/// float32 rounding of diffusers' σ).
fn lambda_time(schedule: &dyn NoiseSchedule, lambda: f64) -> Option<f64> {
    if lambda.is_nan() {
        return None;
    }
    diffuse_core::time_of_log_snr(schedule, lambda)
        .ok()
        .and_then(finite)
}

fn push_level(r: &mut Report, t: Option<f64>, alpha: f64, sigma: f64, lambda: f64) {
    r.t.push(t);
    r.alpha.push(alpha);
    r.sigma.push(sigma);
    r.log_snr.push(lambda);
}

fn from_builtin(name: &str, args: &ScheduleArgs) -> CliResult<Report> {
    if args.mu.is_some() {
        return Err(CliError::Usage(
            "--mu applies to flow-matching configs (use_dynamic_shifting)".into(),
        ));
    }
    let b = builtin(name)?;
    let grid = match &args.grid {
        Some(g) => TimeGrid::from_name(g)?,
        None => TimeGrid::UniformT,
    };
    let steps = args.steps as usize;
    let times = grid.times(b.schedule.as_ref(), steps + 1, b.t_start, b.t_end)?;
    let s = b.schedule.as_ref();
    let sigmas: Vec<f64> = times
        .iter()
        .map(|&t| {
            let m = s.marginal(t);
            m.sigma / m.alpha
        })
        .collect();
    let mut report = Report {
        source: format!("{} ({}), grid {grid:?}", b.name, b.description),
        timesteps: times[..steps].to_vec(),
        sigmas: Some(sigmas),
        sigmas_interpol: None,
        t: Vec::new(),
        alpha: Vec::new(),
        sigma: Vec::new(),
        log_snr: Vec::new(),
    };
    for &t in &times {
        let m = s.marginal(t);
        push_level(&mut report, Some(t), m.alpha, m.sigma, s.log_snr(t));
    }
    Ok(report)
}

fn print_table(out: &mut dyn Write, r: &Report) -> std::io::Result<()> {
    writeln!(out, "# {}", r.source)?;
    writeln!(
        out,
        "{:>4}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
        "i", "timestep", "sigma_ve", "t", "alpha", "sigma", "log_snr", "snr"
    )?;
    let opt = |x: Option<f64>| x.map_or_else(|| "-".to_string(), |v| format!("{v:.6}"));
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.6}")
        } else {
            format!("{x}")
        }
    };
    for i in 0..r.alpha.len() {
        let ts = r.timesteps.get(i).map_or("-".to_string(), |&x| num(x));
        let sv = r
            .sigmas
            .as_ref()
            .and_then(|s| s.get(i))
            .map_or("-".to_string(), |&x| num(x));
        let snr = format!("{:.6e}", r.log_snr[i].exp());
        writeln!(
            out,
            "{:>4}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}  {:>12}",
            i,
            ts,
            sv,
            opt(r.t[i]),
            num(r.alpha[i]),
            num(r.sigma[i]),
            num(r.log_snr[i]),
            snr
        )?;
    }
    Ok(())
}

/// Samples per curve in the plot.
const PLOT_POINTS: usize = 400;

/// log-SNR against normalised time `(t − t_end)/(t_start − t_end)` for every
/// built-in schedule (each over its own sampling range), λ clipped to ±20.
fn plot_builtins() -> CliResult<Vec<u8>> {
    let mut plot = LinePlot::new(
        "Noise schedules: log-SNR over the sampling range",
        "normalised time (0 = clean end, 1 = noisy end)",
        "log-SNR  λ = 2 log(α/σ)",
    );
    plot.y_range = Some((-20.0, 20.0));
    for name in BUILTIN_NAMES {
        let b = builtin(name)?;
        let s = b.schedule.as_ref();
        let points = (0..=PLOT_POINTS)
            .map(|i| {
                let u = i as f64 / PLOT_POINTS as f64;
                let t = b.t_end + u * (b.t_start - b.t_end);
                (u, s.log_snr(t))
            })
            .collect();
        plot.push(name, points);
    }
    Ok(plot.render_png()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Format;

    #[test]
    fn builtin_reports_are_consistent() {
        for name in BUILTIN_NAMES {
            let args = ScheduleArgs {
                config: None,
                class: None,
                builtin: Some(name.to_string()),
                steps: 8,
                grid: Some("karras".into()),
                mu: None,
                format: Format::Json,
                plot: None,
                force: false,
            };
            let r = from_builtin(name, &args).unwrap();
            assert_eq!(r.timesteps.len(), 8);
            assert_eq!(r.t.len(), 9);
            let s = r.sigmas.as_ref().unwrap();
            for ((sigma, alpha), ve) in r.sigma.iter().zip(&r.alpha).zip(s) {
                assert!((sigma / alpha - ve).abs() <= 1e-12 * ve, "{name}");
            }
        }
    }
}

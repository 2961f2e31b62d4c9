//! `diffuse likelihood`: the log-likelihood of data points under the exact
//! denoiser of a Gaussian mixture, by the probability-flow ODE
//! (Song et al. 2021, "Score-based generative modeling through stochastic
//! differential equations", §4.3; `diffuse_solvers::likelihood`).
//!
//! What is reported, per data point `x` of dimension `d`: `ln p_σ̃min(x)`,
//! the density of the data convolved with `N(0, σ̃min²·I)` (the noise level
//! where the flow starts), in nats, and
//!
//! ```text
//! bits/dim = −ln p_σ̃min(x) / (d·ln 2)
//! ```
//!
//! with no dequantisation offset (the data are continuous). The JSON
//! summary holds the mean bits/dim (`bpd`), the mean negative
//! log-likelihood per point in nats (`nats` = `bpd·d·ln 2`), and the
//! bits/dim of every point (`per_sample`) in the file's row order.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use diffuse_core::{Backend, CpuBackend, Error, LOG_SNR_SLACK, NoiseSchedule, NoiseStream};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::likelihood::{DivergenceMethod, LikelihoodOptions, Probe, log_likelihood};
use diffuse_train::schedule_by_name;
use indicatif::{ProgressBar, ProgressStyle};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyError, ReadNpyExt};
use serde::Serialize;

use crate::cli::Format;
use crate::error::{CliError, CliResult};
use crate::output::print_result;

/// How the divergence of the probability-flow drift is obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Divergence {
    /// The closed-form trace of the mixture denoiser's Jacobian.
    Exact,
    /// The Hutchinson–Skilling trace estimator (unbiased; --probes
    /// probes per point, drawn from --seed).
    Hutchinson,
}

/// The distribution of the Hutchinson probes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProbeKind {
    /// ±1 with probability ½ each (the lower variance).
    Rademacher,
    /// Standard normal.
    Gaussian,
}

#[derive(Debug, Args)]
pub struct LikelihoodArgs {
    /// The exact denoiser of a Gaussian mixture: gmm:FILE.json.
    #[arg(long, value_name = "gmm:FILE")]
    pub denoiser: String,
    /// The data points: .npy, float32 or float64, shape [n, d] with d the
    /// mixture's dimension.
    #[arg(long, value_name = "FILE.npy")]
    pub data: PathBuf,
    /// Schedule the denoiser is evaluated on (default cosine); the
    /// likelihood of the exact denoiser does not depend on it, only the
    /// default σ̃ range does.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Noise level σ̃ = σ/α where the flow starts: the reported density
    /// is that of the data convolved with N(0, σ̃min²). Default: the
    /// schedule's clean end (0.0064 for cosine).
    #[arg(long)]
    pub sigma_min: Option<f64>,
    /// Noise level σ̃ = σ/α where the Gaussian prior N(0, σ̃max²) is
    /// applied. Default: the schedule's noisy end (118.8 for cosine).
    #[arg(long)]
    pub sigma_max: Option<f64>,
    /// Relative tolerance of the ODE integration (adaptive
    /// Dormand–Prince 5(4) in u = ln σ̃, as k-diffusion's dopri5).
    #[arg(long, default_value_t = 1e-5)]
    pub rtol: f64,
    /// Absolute tolerance of the ODE integration.
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,
    /// The most model evaluations per batch before giving up.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub max_evals: u64,
    /// Divergence of the drift: exact (closed form) or hutchinson.
    #[arg(long, value_enum, default_value = "exact")]
    pub divergence: Divergence,
    /// Hutchinson probes per point, averaged at every evaluation
    /// (default 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub probes: Option<u64>,
    /// Hutchinson probe distribution (default rademacher).
    #[arg(long, value_enum)]
    pub probe: Option<ProbeKind>,
    /// Seed of the Hutchinson probes (default 0). Batch b uses the draws
    /// b·probes … (b+1)·probes − 1 of the noise stream.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Points integrated together (each batch has its own step-size
    /// control; a progress bar counts batches).
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub batch: u64,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Output format: text, or one JSON object {"bpd", "nats",
    /// "per_sample", "dim", "n", …}.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// The JSON summary.
#[derive(Serialize)]
struct Summary {
    /// Mean bits/dim, `−ln p/(d·ln 2)` averaged over the points.
    bpd: f64,
    /// Mean negative log-likelihood per point, nats.
    nats: f64,
    /// Bits/dim of every point, in row order.
    per_sample: Vec<f64>,
    /// Negative log-likelihood of every point, nats.
    per_sample_nats: Vec<f64>,
    dim: usize,
    n: usize,
    schedule: String,
    sigma_min: f64,
    sigma_max: f64,
    divergence: &'static str,
    probes: Option<usize>,
    rtol: f64,
    atol: f64,
    /// Model evaluations summed over the batches.
    nfe: usize,
    /// Accepted and rejected steps summed over the batches.
    steps: usize,
    rejected: usize,
}

fn invalid(name: &'static str, reason: String) -> CliError {
    CliError::Core(Error::InvalidArgument { name, reason })
}

/// Data points read from a .npy file: `n` rows of `d` values, row-major.
#[derive(Debug)]
pub struct Points {
    /// The values, converted to f32.
    pub values: Vec<f32>,
    /// Rows.
    pub n: usize,
}

/// Reads `[n, d]` float32 or float64 points from `path`, checking that
/// `d == dim`, `n > 0` and every value is finite (float64 values beyond
/// the float32 range count as non-finite).
pub fn read_points(path: &Path, dim: usize) -> CliResult<Points> {
    let bytes = std::fs::read(path).map_err(|source| CliError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let shown = path.display();
    let bad_npy = |e: ReadNpyError| invalid("data", format!("{shown}: not a readable .npy: {e}"));
    let (shape, values): (Vec<usize>, Vec<f32>) = match ArrayD::<f32>::read_npy(&bytes[..]) {
        Ok(a) => (a.shape().to_vec(), a.iter().copied().collect()),
        Err(ReadNpyError::WrongDescriptor(_)) => match ArrayD::<f64>::read_npy(&bytes[..]) {
            Ok(a) => (a.shape().to_vec(), a.iter().map(|&v| v as f32).collect()),
            Err(ReadNpyError::WrongDescriptor(descr)) => {
                return Err(invalid(
                    "data",
                    format!("{shown}: dtype {descr}; expected float32 or float64"),
                ));
            }
            Err(e) => return Err(bad_npy(e)),
        },
        Err(e) => return Err(bad_npy(e)),
    };
    let [n, d] = shape[..] else {
        return Err(invalid(
            "data",
            format!("{shown}: shape {shape:?}; expected [n, d] (one point per row, d = {dim})"),
        ));
    };
    if d != dim {
        return Err(invalid(
            "data",
            format!("{shown}: points of dimension {d}, but the mixture has dimension {dim}"),
        ));
    }
    if n == 0 {
        return Err(invalid(
            "data",
            format!("{shown}: no points (shape [0, {d}])"),
        ));
    }
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(
            "data",
            format!(
                "{shown}: row {} has a non-finite value (column {})",
                i / d,
                i % d
            ),
        ));
    }
    Ok(Points { values, n })
}

/// The variance-exploding noise level `σ̃ = σ(t)/α(t)` of `schedule` at `t`.
fn ve_sigma(schedule: &dyn NoiseSchedule, t: f64) -> f64 {
    schedule.sigma(t) / schedule.alpha(t)
}

/// The default `σ̃` range: the schedule's conventional sampling range
/// (`σ̃` at its clean and noisy ends), falling back to EDM's 0.002 and 80
/// (Karras et al. 2022) where an end has `σ̃ = 0` or `∞`.
fn default_range(schedule: &dyn NoiseSchedule, t_clean: f64, t_noisy: f64) -> (f64, f64) {
    let lo = ve_sigma(schedule, t_clean);
    let hi = ve_sigma(schedule, t_noisy);
    let lo = if lo.is_finite() && lo > 0.0 {
        lo
    } else {
        0.002
    };
    let hi = if hi.is_finite() && hi > lo { hi } else { 80.0 };
    (lo, hi)
}

/// A noise level for messages: four decimals, or four significant digits
/// in scientific notation below 0.01.
fn level(s: f64) -> String {
    if s == 0.0 || s >= 0.01 {
        format!("{s:.4}")
    } else {
        format!("{s:.3e}")
    }
}

/// Checks that the noise levels `σ̃` of `--sigma-min` and `--sigma-max` lie
/// on `schedule` (log-SNR `λ = −2·ln σ̃` within its range), so that a level
/// beyond its end is named by its flag.
fn check_on_schedule(
    schedule: &dyn NoiseSchedule,
    name: &str,
    levels: [(f64, &str); 2],
) -> CliResult<()> {
    let (t0, t1) = schedule.t_range();
    let (hi, lo) = (schedule.log_snr(t0), schedule.log_snr(t1));
    let (s_lo, s_hi) = ((-0.5 * hi).exp(), (-0.5 * lo).exp());
    for (sigma, flag) in levels {
        // Non-positive or non-finite levels are the likelihood options'
        // own errors.
        if !(sigma.is_finite() && sigma > 0.0) {
            continue;
        }
        let lambda = -2.0 * sigma.ln();
        if lambda > hi + LOG_SNR_SLACK || lambda < lo - LOG_SNR_SLACK {
            return Err(CliError::Usage(format!(
                "{flag} {sigma}: outside the noise levels of schedule {name}, \
                 σ̃ = σ/α ∈ [{}, {}]",
                level(s_lo),
                level(s_hi)
            )));
        }
    }
    Ok(())
}

pub fn run(args: &LikelihoodArgs) -> CliResult<()> {
    let file = args.denoiser.strip_prefix("gmm:").ok_or_else(|| {
        CliError::Usage(format!(
            "--denoiser '{}': expected gmm:FILE.json",
            args.denoiser
        ))
    })?;
    if args.divergence == Divergence::Exact {
        for (given, flag) in [
            (args.probes.is_some(), "--probes"),
            (args.probe.is_some(), "--probe"),
            (args.seed.is_some(), "--seed"),
        ] {
            if given {
                return Err(CliError::Usage(format!(
                    "{flag} applies to --divergence hutchinson only"
                )));
            }
        }
    }
    let mixture = GaussianMixture::from_path(file)?;
    let dim = mixture.dim();
    let points = read_points(&args.data, dim)?;
    let schedule_name = args.schedule.as_deref().unwrap_or("cosine");
    let builtin = schedule_by_name(schedule_name)?;
    let schedule = &*builtin.schedule;
    let (lo, hi) = default_range(schedule, builtin.t_end, builtin.t_start);
    let sigma_min = args.sigma_min.unwrap_or(lo);
    let sigma_max = args.sigma_max.unwrap_or(hi);
    check_on_schedule(
        schedule,
        builtin.name,
        [(sigma_min, "--sigma-min"), (sigma_max, "--sigma-max")],
    )?;
    let probes = args.probes.unwrap_or(1) as usize;
    let seed = args.seed.unwrap_or(0);
    let probe = match args.probe.unwrap_or(ProbeKind::Rademacher) {
        ProbeKind::Rademacher => Probe::Rademacher,
        ProbeKind::Gaussian => Probe::Gaussian,
    };
    let param: Arc<dyn diffuse_core::Parameterization> = Arc::from(diffuse_param::by_name("x0")?);
    let model = GmmDenoiser::new(mixture, param);
    let cpu = CpuBackend::new();

    let batch = args.batch as usize;
    let batches = points.n.div_ceil(batch);
    let bar = if args.quiet || batches < 2 {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(points.n as u64);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} points  [{elapsed_precise} < {eta_precise}]",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    };
    let mut log_p = Vec::with_capacity(points.n);
    let (mut nfe, mut steps, mut rejected) = (0, 0, 0);
    for (b, rows) in points.values.chunks(batch * dim).enumerate() {
        let divergence = match args.divergence {
            Divergence::Exact => DivergenceMethod::Exact,
            Divergence::Hutchinson => DivergenceMethod::Hutchinson {
                probe,
                probes,
                noise: NoiseStream::new(seed, (b * probes) as u64),
            },
        };
        let options = LikelihoodOptions {
            sigma_min,
            sigma_max,
            rtol: args.rtol,
            atol: args.atol,
            max_evals: args.max_evals as usize,
            divergence,
        };
        let x = cpu.upload(&[rows.len() / dim, dim], rows)?;
        let report = log_likelihood(&cpu, &model, schedule, &x, &options)?;
        log_p.extend_from_slice(&report.log_likelihood);
        nfe += report.nfe;
        steps += report.steps;
        rejected += report.rejected;
        bar.inc((rows.len() / dim) as u64);
    }
    bar.finish_and_clear();

    let n = points.n;
    let per_dim = dim as f64 * std::f64::consts::LN_2;
    let per_sample_nats: Vec<f64> = log_p.iter().map(|l| -l).collect();
    let per_sample: Vec<f64> = per_sample_nats.iter().map(|v| v / per_dim).collect();
    let nats = per_sample_nats.iter().sum::<f64>() / n as f64;
    let summary = Summary {
        bpd: nats / per_dim,
        nats,
        per_sample,
        per_sample_nats,
        dim,
        n,
        schedule: builtin.name.to_string(),
        sigma_min,
        sigma_max,
        divergence: match args.divergence {
            Divergence::Exact => "exact",
            Divergence::Hutchinson => "hutchinson",
        },
        probes: (args.divergence == Divergence::Hutchinson).then_some(probes),
        rtol: args.rtol,
        atol: args.atol,
        nfe,
        steps,
        rejected,
    };
    print_result(args.format, &summary, |w: &mut dyn Write| {
        writeln!(
            w,
            "{:.4} bits/dim ({:.4} nats per point) over {} points of dimension {}",
            summary.bpd, summary.nats, summary.n, summary.dim
        )?;
        writeln!(
            w,
            "σ̃ {:.4} → {:.4} on {}, {} divergence{}, NFE {} ({} steps, {} rejected)",
            summary.sigma_min,
            summary.sigma_max,
            summary.schedule,
            summary.divergence,
            match summary.probes {
                Some(p) => format!(" ({p} probe{})", if p == 1 { "" } else { "s" }),
                None => String::new(),
            },
            summary.nfe,
            summary.steps,
            summary.rejected
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cosine_range_is_its_sampling_range() {
        let b = schedule_by_name("cosine").unwrap();
        let (lo, hi) = default_range(&*b.schedule, b.t_end, b.t_start);
        assert!((lo - 0.006425).abs() < 1e-6, "{lo}");
        assert!((hi - 118.8).abs() < 0.1, "{hi}");
        let b = schedule_by_name("edm").unwrap();
        let (lo, hi) = default_range(&*b.schedule, b.t_end, b.t_start);
        assert!((lo - 0.002).abs() < 1e-12 && (hi - 80.0).abs() < 1e-9);
    }
}

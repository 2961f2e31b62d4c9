//! Argument definitions and dispatch.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::error::CliResult;

/// diffuse: diffusion-model components, factor by factor.
#[derive(Debug, Parser)]
#[command(name = "diffuse", version)]
pub struct Cli {
    /// With no subcommand, runs `demo`.
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write draws of the public noise stream (Philox4x32-10 + Box–Muller,
    /// docs/noise.md) as float32 .npy or JSON.
    Noise(NoiseArgs),
    /// Measure performance on this machine.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the inference grid (timestep, σ, t, α, σ, λ, SNR) of a
    /// diffusers scheduler_config.json or of a built-in schedule; --plot
    /// draws log-SNR against time for every built-in schedule.
    Schedule(ScheduleArgs),
    /// Reproduce one run of diffusers or k-diffusion from its case file
    /// (conformance format: config or sampler, σ grid, z, mixture) with
    /// diffuse's solver and the exact mixture denoiser.
    Replay(ReplayArgs),
    /// Measure the convergence order of every deterministic solver on a
    /// Gaussian-mixture problem with the exact denoiser.
    Orders(OrdersArgs),
    /// List every solver and sampler with its order, model evaluations per
    /// step and whether it draws noise.
    Solvers(SolversArgs),
    /// Train a denoiser on a 2-D data set and save it as safetensors
    /// (weights, EMA, optimiser state and the full run configuration).
    Train(TrainArgs),
    /// Sample from a trained model (--model) or from the exact denoiser of
    /// a Gaussian mixture (--denoiser gmm:FILE.json) and write float32 .npy.
    Sample(SampleArgs),
    /// Log-likelihood of data points (.npy [n, d]) under the exact
    /// denoiser of a Gaussian mixture (--denoiser gmm:FILE.json), by the
    /// probability-flow ODE: mean bits/dim, and per point with --format json.
    Likelihood(crate::likelihood::LikelihoodArgs),
    /// Train on moons (about a minute), sample with several solvers at
    /// NFE 5, 10, 20, 50, print the sliced Wasserstein distance to held-out
    /// data next to the data-vs-data floor, and draw the samples (PNG).
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Data set: moons, swiss-roll, 8gaussians, 25gaussians, checkerboard,
    /// pinwheel, circles, rings (default moons).
    #[arg(long, conflicts_with = "resume")]
    pub data: Option<String>,
    /// Schedule: cosine (= vp-cosine) or a built-in name (see `diffuse
    /// schedule --builtin`); default cosine.
    #[arg(long, conflicts_with = "resume")]
    pub schedule: Option<String>,
    /// Prediction target: eps, x0, v, flow (default v).
    #[arg(long, conflicts_with = "resume")]
    pub pred: Option<String>,
    /// Loss weighting: mse, eps-mse, x0-mse, v-mse, snr, truncated-snr,
    /// min-snr:G, soft-min-snr:G, p2[:K,G], edm[:SD], sigmoid:B, elbo,
    /// likelihood (default min-snr:5).
    #[arg(long, conflicts_with = "resume")]
    pub loss: Option<String>,
    /// Noise-level sampler: uniform, stratified, logit-normal[:M,S],
    /// edm[:PMEAN,PSTD] (default stratified).
    #[arg(long, conflicts_with = "resume")]
    pub levels: Option<String>,
    /// Total optimiser steps (with --resume: the new total).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub steps: Option<u64>,
    /// Rows per batch (default 512).
    #[arg(long, conflicts_with = "resume", value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub batch: Option<u64>,
    /// Peak learning rate (default 2e-3).
    #[arg(long, conflicts_with = "resume")]
    pub lr: Option<f64>,
    /// Hidden widths of the MLP, comma-separated (default 128,128,128).
    #[arg(long, conflicts_with = "resume", value_parser = parse_shape)]
    pub hidden: Option<Shape>,
    /// Seed of weights, data stream, levels and noise (default 0).
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
    /// Continue the run saved in this checkpoint (its configuration is
    /// used; only --steps may change).
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,
    /// Output checkpoint (.safetensors).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// `--noise`: where a stochastic sampler's noise comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NoiseArg {
    /// Independent draws of the public noise stream.
    Philox,
    /// Increments of one Brownian path (a Brownian tree).
    Brownian,
}

#[derive(Debug, Args)]
pub struct SampleArgs {
    /// A checkpoint written by `diffuse train` (EMA weights when present).
    #[arg(
        long,
        value_name = "FILE",
        required_unless_present = "denoiser",
        conflicts_with = "denoiser"
    )]
    pub model: Option<PathBuf>,
    /// The exact denoiser of a Gaussian mixture: gmm:FILE.json.
    #[arg(long, value_name = "gmm:FILE")]
    pub denoiser: Option<String>,
    /// Solver or sampler name (deterministic or stochastic).
    #[arg(long, default_value = "dpmpp-2m")]
    pub solver: String,
    /// Schedule for --denoiser (default cosine); a model uses its own.
    #[arg(long, conflicts_with = "model")]
    pub schedule: Option<String>,
    /// Solver steps.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub steps: u64,
    /// Time grid: uniform, logsnr, quadratic, karras[:RHO], … (default logsnr).
    #[arg(long)]
    pub grid: Option<String>,
    /// η of ddim-eta.
    #[arg(long)]
    pub eta: Option<f64>,
    /// Noise of a stochastic sampler: independent draws of the public stream
    /// (philox) or increments of one Brownian path (brownian: the same path
    /// at any step count). Default: the sampler's own (brownian for
    /// dpmpp-sde, philox otherwise).
    #[arg(long, value_enum)]
    pub noise: Option<NoiseArg>,
    /// Number of samples.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=16_777_216))]
    pub n: u64,
    /// Seed of the initial noise and of a stochastic sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output .npy (float32, [n, 2]).
    #[arg(long, value_name = "FILE.npy")]
    pub out: PathBuf,
    /// Also draw the samples (PNG).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Replace --out / --plot if they exist.
    #[arg(long)]
    pub force: bool,
    /// Device to run on: cpu, cuda or cuda:N (cuda: --denoiser gmm:… only;
    /// trained networks run on the CPU for now).
    #[arg(long, default_value = "cpu")]
    pub device: crate::device::Device,
    /// Sample class C of a labelled mixture (its JSON "labels"); --guidance
    /// then guides toward it.
    #[arg(long, conflicts_with = "model", value_name = "C")]
    pub class: Option<u32>,
    /// Classifier-free guidance scale s: out = uncond + s·(cond − uncond),
    /// so 1 is plain conditional sampling (default) and 0 unconditional.
    #[arg(long, requires = "class", value_name = "S")]
    pub guidance: Option<f64>,
    /// Guide only where σ/α lies in (LO, HI] (guidance interval); plain
    /// conditional prediction elsewhere.
    #[arg(long, requires = "guidance", value_name = "LO,HI")]
    pub guidance_interval: Option<String>,
    /// Guidance rescale φ in [0, 1] (0 = off).
    #[arg(long, requires = "guidance", value_name = "PHI")]
    pub guidance_rescale: Option<f64>,
    /// Dynamic thresholding of the data estimate x̂₀: the P-quantile of
    /// |x̂₀| per sample, clamped to [1, MAX] (default MAX 1), bounds and
    /// divides x̂₀.
    #[arg(long, conflicts_with_all = ["model", "clip"], value_name = "P[,MAX]")]
    pub threshold: Option<String>,
    /// Clip the data estimate x̂₀ to [−C, C].
    #[arg(long, conflicts_with = "model", value_name = "C")]
    pub clip: Option<f64>,
    /// Output format of the summary.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args, Default)]
pub struct DemoArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// The PNG grid; if it exists, the first free demo-N.png next to it is
    /// used instead (never replaced).
    #[arg(long, value_name = "FILE.png", default_value = "demo.png")]
    pub plot: PathBuf,
    /// A short run for tests (a few hundred steps, fewer samples).
    #[arg(long, hide = true)]
    pub quick: bool,
}

#[derive(Debug, Args)]
pub struct BenchTrainArgs {
    /// Timed steps (after warm-up).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub repeats: u32,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The case file (JSON; Python's NaN/Infinity tokens are accepted).
    pub case: PathBuf,
    /// Write {"timesteps", "sigmas", "x", "nfe"} here instead of printing
    /// the error against the case's x_final.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct OrdersArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct SolversArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// A diffusers scheduler_config.json (its `_class_name` names the scheduler).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Read --config as this scheduler class instead of its `_class_name`
    /// (as `Class.from_config(config)` does when swapping schedulers in a
    /// pipeline; keys the class does not take become warnings).
    #[arg(long = "class", value_name = "CLASS_NAME", requires = "config")]
    pub class: Option<String>,
    /// A built-in schedule: ddpm-linear, sd-scaled-linear, ddpm-cosine,
    /// vp-linear, vp-cosine, sub-vp, ve, edm, sigmoid, shifted-cosine-256,
    /// interpolated-cosine, flow, flow-sd3, flow-flux-4096.
    #[arg(long, value_name = "NAME")]
    pub builtin: Option<String>,
    /// Number of inference steps.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub steps: u32,
    /// Time grid for --builtin: uniform, logsnr, quadratic, karras[:RHO],
    /// exponential, polyexponential[:RHO], beta[:A,B] (default uniform).
    #[arg(long, value_name = "GRID")]
    pub grid: Option<String>,
    /// The resolution-dependent shift μ of a flow-matching config with
    /// use_dynamic_shifting.
    #[arg(long, allow_negative_numbers = true)]
    pub mu: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Also draw log-SNR against time for every built-in schedule (PNG).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Replace --plot if it exists.
    #[arg(long)]
    pub force: bool,
}

/// Output format of a command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable text.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// Output format of `noise`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NoiseFormat {
    /// float32 .npy (needs --out).
    Npy,
    /// `{"shape": [...], "data": [...]}`, data flat and row-major.
    Json,
}

#[derive(Debug, Args)]
pub struct NoiseArgs {
    /// Seed (the Philox key).
    #[arg(long, allow_negative_numbers = true)]
    pub seed: u64,
    /// Draw number within the seed.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub stream: u64,
    /// Tensor shape, comma-separated, batch first (e.g. 3,7).
    #[arg(long, value_parser = parse_shape)]
    pub shape: Shape,
    /// Index of the first element in the stream (to draw a shard of a
    /// larger tensor: first row × row length).
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub offset: u64,
    /// Output format: npy writes --out; json prints (or writes --out).
    #[arg(long, value_enum)]
    pub format: Option<NoiseFormat>,
    /// Output file.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Replace --out if it exists.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The fused step (lincomb) on the CPU backend: GB/s counting
    /// 4·n·(K+M) bytes, median of repeated runs after warm-up.
    Step(StepArgs),
    /// The reference training step (2-D data, 128-feature sinusoidal
    /// embedding, 3 × 256 SiLU MLP, batch 4096, Adam, ε on moons): steps/s
    /// (median after warm-up) and the forward pass on 65 536 points.
    Train(BenchTrainArgs),
}

#[derive(Debug, Args)]
pub struct StepArgs {
    /// Elements per tensor (at most 2²⁸; the step allocates K+M tensors).
    #[arg(long, default_value_t = 1 << 24, value_parser = clap::value_parser!(u64).range(1..=(1u64 << 28)))]
    pub elements: u64,
    /// Input tensors K (1 to 8).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=8))]
    pub inputs: u8,
    /// Output tensors M (1 to 4).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    pub outputs: u8,
    /// Add a noise term from the public noise stream.
    #[arg(long)]
    pub noise: bool,
    /// Timed runs (after warm-up).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub repeats: u32,
    /// Also time the STREAM triad a = b + s·c and report the ratio.
    #[arg(long)]
    pub triad: bool,
    /// Device to run on: cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: crate::device::Device,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// A tensor shape given as `3,7`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape(pub Vec<usize>);

/// Parses `3,7` into `[3, 7]`.
fn parse_shape(s: &str) -> Result<Shape, String> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|d| {
            let d = d.trim();
            match d.parse::<usize>() {
                Ok(0) => Err("axes must have positive length".to_string()),
                Ok(v) => Ok(v),
                Err(_) => Err(format!("'{d}' is not a positive integer")),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Shape(dims))
}

pub fn run(cli: Cli) -> CliResult<()> {
    let Some(command) = cli.command else {
        return crate::demo::run(&DemoArgs::default());
    };
    match command {
        Command::Noise(args) => crate::noise::run(args),
        Command::Bench(BenchCommand::Train(args)) => crate::train::bench(&args),
        Command::Train(args) => crate::train::run(&args),
        Command::Sample(args) => crate::sample::run(&args),
        Command::Likelihood(args) => crate::likelihood::run(&args),
        Command::Demo(args) => crate::demo::run(&args),
        Command::Bench(BenchCommand::Step(args)) => crate::bench::step(args),
        Command::Schedule(args) => crate::schedule::run(&args),
        Command::Replay(args) => crate::replay::run(&args),
        Command::Orders(args) => crate::orders::run(&args),
        Command::Solvers(args) => crate::solvers::run(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse() {
        assert_eq!(parse_shape("3,7"), Ok(Shape(vec![3, 7])));
        assert_eq!(parse_shape(" 5 "), Ok(Shape(vec![5])));
        assert!(parse_shape("3,0").is_err());
        assert!(parse_shape("3,,7").is_err());
        assert!(parse_shape("-1").is_err());
        assert!(parse_shape("").is_err());
    }
}

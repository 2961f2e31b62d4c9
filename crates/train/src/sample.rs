//! Sampling from a trained model (or any denoiser) with any registry
//! solver, and scoring the samples against held-out data.
//!
//! A run of `steps` steps uses `steps + 1` times from the schedule's
//! sampling range (`t_start`, noisy, to `t_end`, clean) on a
//! [`TimeGrid`] (uniform in log-SNR by default), starts from
//! `x_T = σ(t_start)·z` with `z` from `NoiseStream(seed, 0)`, and gives a
//! stochastic solver the base stream `(seed, 1)` through the sampler's
//! default noise source (independent draws, or the Brownian tree for
//! `dpmpp-sde`).

use std::path::Path;
use std::sync::Arc;

use diffuse_core::{
    Backend, CpuBackend, Denoiser, NoiseSchedule, NoiseStream, Result, SampleReport, SamplingGrid,
};
use diffuse_data::{Dataset, FLOOR_SEED, sliced_wasserstein};
use diffuse_nets::checkpoint::Checkpoint;
use diffuse_nets::{DenoiserNet, NetDenoiser, load_net};
use diffuse_schedules::Builtin;
use diffuse_schedules::TimeGrid;
use diffuse_solvers::{DdimEta, Method, NoiseKind, by_name, noise_source, run, run_with_noise};
use ndarray::Array2;

use crate::TrainError;
use crate::config::{RunConfig, invalid};
use crate::trainer::{Trainer, run_config};

/// How to sample.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleSpec {
    /// Solver name ([`diffuse_solvers::by_name`]).
    pub solver: String,
    /// Solver steps (not NFE; see [`steps_for_nfe`]).
    pub steps: usize,
    /// Number of samples.
    pub n: usize,
    /// Seed of the initial noise and of a stochastic solver's noise.
    pub seed: u64,
    /// Time grid name ([`TimeGrid::from_name`]); `None` is `logsnr`.
    pub grid: Option<String>,
    /// `η` of `ddim-eta` (only that solver takes it).
    pub eta: Option<f64>,
    /// The noise source of a stochastic sampler; `None` is the sampler's
    /// own default ([`Method::default_noise`]: the Brownian tree for
    /// `dpmpp-sde`, independent draws otherwise). A deterministic solver
    /// draws no noise and refuses one.
    pub noise: Option<NoiseKind>,
}

/// The solver `name` with its default options, or `ddim-eta` with `eta`.
pub fn method(name: &str, eta: Option<f64>) -> Result<Box<dyn Method>> {
    match (name, eta) {
        ("ddim-eta", Some(eta)) => {
            if !(eta.is_finite() && eta >= 0.0) {
                return Err(invalid("eta", format!("{eta} must be finite and ≥ 0")));
            }
            Ok(Box::new(DdimEta { eta }))
        }
        (_, Some(_)) => Err(invalid(
            "eta",
            format!("only ddim-eta takes --eta, not {name}"),
        )),
        (_, None) => by_name(name),
    }
}

/// The most steps of `method` that fit in `nfe` model evaluations (at least
/// one step).
pub fn steps_for_nfe(method: &dyn Method, nfe: usize) -> usize {
    (nfe / method.nfe_per_step().max(1)).max(1)
}

/// Samples `spec.n` points with `model` under `schedule` on the CPU backend
/// ([`sample_on`] with [`CpuBackend`]).
pub fn sample_with(
    model: &dyn Denoiser<CpuBackend>,
    schedule: &Builtin,
    spec: &SampleSpec,
) -> Result<(Array2<f32>, SampleReport)> {
    sample_on(&CpuBackend::new(), model, schedule, spec)
}

/// Samples `spec.n` points with `model` under `schedule` on any backend.
///
/// The solver loop is the generic one of `diffuse-solvers`: on a GPU
/// backend every step stays on the device. The host is involved only
/// before the loop (the initial noise `x_T = σ(t_start)·z` is scaled in f32
/// on the host, as on the CPU, so both backends start from the same bits)
/// and after it (the samples are downloaded and checked).
pub fn sample_on<B: Backend>(
    backend: &B,
    model: &dyn Denoiser<B>,
    schedule: &Builtin,
    spec: &SampleSpec,
) -> Result<(Array2<f32>, SampleReport)> {
    if spec.n == 0 {
        return Err(invalid("n", "must be positive"));
    }
    if spec.steps == 0 {
        return Err(invalid("steps", "must be positive"));
    }
    let method = method(&spec.solver, spec.eta)?;
    if spec.noise.is_some() && !method.stochastic() {
        return Err(invalid(
            "noise",
            format!("{} is deterministic and draws no noise", spec.solver),
        ));
    }
    let grid_kind = TimeGrid::from_name(spec.grid.as_deref().unwrap_or("logsnr"))?;
    let sched: &dyn NoiseSchedule = &*schedule.schedule;
    let times = grid_kind.times(sched, spec.steps + 1, schedule.t_start, schedule.t_end)?;
    let grid = SamplingGrid::from_times(sched, &times)?;
    let d = 2;
    let mut x = backend.zeros(&[spec.n, d])?;
    backend.fill_noise(
        NoiseStream {
            seed: spec.seed,
            stream: 0,
        },
        0,
        &mut x,
    )?;
    let scale = sched.sigma(schedule.t_start) as f32;
    let start: Vec<f32> = backend.to_host(&x)?.iter().map(|v| v * scale).collect();
    let mut x = backend.upload(&[spec.n, d], &start)?;
    let report = if method.stochastic() {
        let base = NoiseStream {
            seed: spec.seed,
            stream: 1,
        };
        let kind = spec.noise.unwrap_or_else(|| method.default_noise());
        let noise = noise_source(backend, kind, &grid, &x, base)?;
        run_with_noise(backend, &*method, model, sched, &grid, &mut x, noise, 0)?
    } else {
        run(backend, &*method, model, sched, &grid, &mut x)?
    };
    let host = backend.to_host(&x)?;
    if host.iter().any(|v| !v.is_finite()) {
        return Err(diffuse_core::Error::NonFinite("samples".into()));
    }
    let out =
        Array2::from_shape_vec((spec.n, d), host).map_err(|e| invalid("samples", e.to_string()))?;
    Ok((out, report))
}

/// A trained network with the configuration it was trained under.
#[derive(Clone, Debug)]
pub struct TrainedModel {
    /// The run's configuration.
    pub config: RunConfig,
    /// The network and how its output is read.
    pub denoiser: NetDenoiser,
}

impl TrainedModel {
    /// The model of a checkpoint written by [`Trainer::save`], with its EMA
    /// weights when stored.
    pub fn load(path: &Path) -> std::result::Result<Self, TrainError> {
        let ckpt = Checkpoint::read(path)?;
        let config = run_config(&ckpt)?;
        let has_ema = ckpt.ema(load_net(&ckpt, false)?.layout())?.is_some();
        let net = load_net(&ckpt, has_ema)?;
        Ok(Self::from_net(config, net)?)
    }

    /// The model of a trainer (its EMA weights when it keeps an EMA).
    pub fn from_trainer(trainer: &Trainer) -> Result<Self> {
        Self::from_net(trainer.config().clone(), trainer.sampling_net()?)
    }

    fn from_net(config: RunConfig, net: DenoiserNet) -> Result<Self> {
        let parts = config.resolve()?;
        Ok(Self {
            denoiser: NetDenoiser::new(Arc::new(net), parts.parameterization),
            config,
        })
    }

    /// Samples under the training schedule.
    pub fn sample(&self, spec: &SampleSpec) -> Result<(Array2<f32>, SampleReport)> {
        let parts = self.config.resolve()?;
        sample_with(&self.denoiser, &parts.schedule, spec)
    }
}

/// The sliced Wasserstein distance between `samples` and as many held-out
/// points of `dataset` (the held-out draw that [`diffuse_data::floor`]
/// compares against).
pub fn score(dataset: Dataset, samples: &Array2<f32>) -> Result<f64> {
    let held_out = dataset.held_out(samples.nrows(), FLOOR_SEED)?;
    sliced_wasserstein(samples.view(), held_out.view())
}

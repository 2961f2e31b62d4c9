//! The training loop.
//!
//! One step `s` on a batch of `B` rows (survey §2.2, Chang et al. 2023):
//!
//! ```text
//! x₀_r  = point (s·B + r) of the data set's training split     (Philox, per index)
//! u_r   ~ level sampler(step s, row r)                          (LevelRng, stream LEVEL_STREAM)
//! t_r   = map(u_r) onto the schedule's sampling range
//! ε_r   ~ N(0, I)                                               (NoiseStream(seed, EPS_STREAM + s))
//! x_r   = α(t_r)·x₀_r + σ(t_r)·ε_r                              (forward marginal, f64 coefficients)
//! out_r = f_θ(c_in(t_r)·x_r, c_noise(t_r))                      (as NetDenoiser evaluates it)
//! L     = 1/(B·d) Σ_r w_T(t_r)·‖out_r − (p_r·x₀_r + q_r·ε_r)‖²   (diffuse_losses::Objective, mean)
//! θ     ← AdamW(θ, clip(∇L), η(s)),   θ̄ ← EMA(θ̄, θ)
//! ```
//!
//! with the target coefficients `(p, q)` of [`diffuse_losses::Target`] and the
//! weight `w_T = w₀/c_T²` of [`diffuse_losses::Weighting`] in the output
//! space. The network's fused [`DenoiserNet::loss_and_grad`] computes this
//! same loss and its gradient `∂L/∂out = 2·w_r·(out − y)/(B·d)` (the
//! gradient of [`diffuse_losses::Objective::loss_and_grad`]) and
//! back-propagates it without allocating; a test checks the two agree.
//!
//! Every random draw is a pure function of `(seed, step, row)`, so a run
//! resumed from a checkpoint reproduces the uninterrupted run bit for bit.

use std::path::Path;
use std::time::Instant;

use diffuse_core::{Error, NoiseStream, Result};
use diffuse_data::Split;
use diffuse_losses::{Level, LevelRng, LevelSampler, Objective};
use diffuse_nets::checkpoint::{Checkpoint, CheckpointWriter, NET_KEY};
use diffuse_nets::{
    Adam, AdamConfig, DenoiserNet, Ema, EmaKind, LrSchedule, ParamStore, TrainWorkspace,
    clip_grad_norm, load_net,
};
use ndarray::ArrayView2;
use serde_json::json;

use crate::TrainError;
use crate::config::{Resolved, RunConfig, invalid};

/// The Philox stream of the noise-level draws (counter `step·2³² + row`).
pub const LEVEL_STREAM: u64 = 0x6c65_7665_6c00_0000;
/// Step `s` draws its ε from stream `EPS_STREAM + s`.
pub const EPS_STREAM: u64 = 0x6570_7300_0000_0000;

/// What the progress callback receives.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Steps done in total.
    pub step: u64,
    /// The run's total steps.
    pub total: u64,
    /// The loss of the last step.
    pub loss: f64,
    /// Mean loss since the previous report.
    pub mean_loss: f64,
    /// Steps per second in this call of [`Trainer::run`].
    pub steps_per_s: f64,
    /// The learning rate of the last step.
    pub lr: f64,
}

/// A training run in progress: network, optimiser, EMA, buffers.
pub struct Trainer {
    config: RunConfig,
    parts: Resolved,
    objective: Objective,
    sampler: LevelSampler,
    lr: LrSchedule,
    net: DenoiserNet,
    adam: Adam,
    ema: Option<Ema>,
    ws: TrainWorkspace,
    x0: Vec<f32>,
    eps: Vec<f32>,
    input: Vec<f32>,
    target: Vec<f32>,
    u: Vec<f64>,
    cond: Vec<f64>,
    weights: Vec<f64>,
    levels: Vec<Level>,
    step: u64,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("config", &self.config)
            .field("step", &self.step)
            .finish()
    }
}

impl Trainer {
    /// A fresh run of `config`.
    pub fn new(config: RunConfig) -> Result<Self> {
        let net = DenoiserNet::new(config.net_config())?;
        let adam = Adam::new(adam_config(&config), net.params().len())?;
        let ema = ema_kind(&config)
            .map(|k| Ema::new(k, net.params().values()))
            .transpose()?;
        Self::from_parts(config, net, adam, ema)
    }

    fn from_parts(
        config: RunConfig,
        net: DenoiserNet,
        adam: Adam,
        ema: Option<Ema>,
    ) -> Result<Self> {
        let parts = config.resolve()?;
        let objective = Objective::new(parts.target, parts.weighting)?;
        let sampler = LevelSampler::new(
            parts.levels.distribution,
            parts.levels.scheme,
            LevelRng::new(config.seed, LEVEL_STREAM),
        )?;
        let lr = LrSchedule::warmup_cosine(
            config.lr,
            config.warmup_steps.min(config.steps),
            config.steps,
            config.min_lr.min(config.lr),
        );
        lr.validate()?;
        let (b, d) = (config.batch_size, net.data_dim());
        let step = adam.step();
        Ok(Self {
            ws: net.train_workspace(b),
            x0: vec![0.0; b * d],
            eps: vec![0.0; b * d],
            input: vec![0.0; b * d],
            target: vec![0.0; b * d],
            u: vec![0.0; b],
            cond: vec![0.0; b],
            weights: vec![0.0; b],
            levels: Vec::with_capacity(b),
            config,
            parts,
            objective,
            sampler,
            lr,
            net,
            adam,
            ema,
            step,
        })
    }

    /// Resumes the run saved in `path` by [`Trainer::save`].
    pub fn resume(path: &Path) -> std::result::Result<Self, TrainError> {
        let ckpt = Checkpoint::read(path)?;
        let config = run_config(&ckpt)?;
        let net = load_net(&ckpt, false)?;
        let layout = net.layout().clone();
        let optim = ckpt
            .optim(&layout)?
            .ok_or_else(|| TrainError::Incomplete("optimiser state (optim.*)".into()))?;
        let adam = Adam::from_state(adam_config(&config), optim.m, optim.v, optim.step)?;
        let ema = match (ema_kind(&config), ckpt.ema(&layout)?) {
            (Some(kind), Some((values, updates))) => Some(Ema::from_state(kind, values, updates)?),
            (Some(_), None) => return Err(TrainError::Incomplete("EMA weights (ema.*)".into())),
            (None, _) => None,
        };
        Ok(Self::from_parts(config, net, adam, ema)?)
    }

    /// Sets a new total step count (the end of the cosine decay moves with
    /// it); it must not be below the steps already done.
    pub fn set_total_steps(&mut self, steps: u64) -> Result<()> {
        if steps < self.step || steps == 0 {
            return Err(invalid(
                "steps",
                format!("{steps} is below the {} steps already done", self.step),
            ));
        }
        let mut config = self.config.clone();
        config.steps = steps;
        let net = std::mem::replace(&mut self.net, DenoiserNet::new(self.config.net_config())?);
        let adam = self.adam.clone();
        let ema = self.ema.take();
        *self = Self::from_parts(config, net, adam, ema)?;
        Ok(())
    }

    /// The configuration.
    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The resolved parts (data set, schedule, target, weighting).
    pub fn parts(&self) -> &Resolved {
        &self.parts
    }

    /// Steps done.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// The network (raw weights).
    pub fn net(&self) -> &DenoiserNet {
        &self.net
    }

    /// The EMA, if any.
    pub fn ema(&self) -> Option<&Ema> {
        self.ema.as_ref()
    }

    /// The network to sample from: a copy with the EMA weights when the run
    /// keeps an EMA, else with the raw weights.
    pub fn sampling_net(&self) -> Result<DenoiserNet> {
        let mut net = DenoiserNet::new(self.net.config().clone())?;
        let values = self.ema.as_ref().map_or_else(
            || self.net.params().values().to_vec(),
            |e| e.values().to_vec(),
        );
        *net.params_mut() = ParamStore::from_values(self.net.layout().clone(), values)?;
        Ok(net)
    }

    /// One optimiser step; returns the loss before the update.
    pub fn step(&mut self) -> Result<f64> {
        let (b, d) = (self.config.batch_size, self.net.data_dim());
        let (seed, s) = (self.config.seed, self.step);
        let first = s
            .checked_mul(b as u64)
            .ok_or_else(|| invalid("step", "data index overflows"))?;
        for (r, row) in self.x0.chunks_exact_mut(d).enumerate() {
            let (p, _) = self
                .parts
                .dataset
                .point(seed, Split::Train, first + r as u64);
            row.copy_from_slice(&p);
        }
        self.sampler.sample_into(s, &mut self.u)?;
        NoiseStream::new(seed, EPS_STREAM.wrapping_add(s)).fill(0, &mut self.eps);
        let schedule = &*self.parts.schedule.schedule;
        let param = &*self.parts.parameterization;
        self.levels.clear();
        for (r, &u) in self.u.iter().enumerate() {
            let t = self.parts.levels.time(&self.parts.schedule, u)?;
            let level = Level::on_schedule(schedule, t)?;
            let m = level.marginal;
            self.cond[r] = param.noise_conditioning(t, m)?;
            let c_in = param.input_scale(m);
            let rows = r * d..(r + 1) * d;
            for ((o, &x), &e) in self.input[rows.clone()]
                .iter_mut()
                .zip(&self.x0[rows.clone()])
                .zip(&self.eps[rows])
            {
                // c_in·(α·x₀ + σ·ε), in f64.
                *o = (c_in * (m.alpha * f64::from(x) + m.sigma * f64::from(e))) as f32;
            }
            self.weights[r] = self.objective.row_weight(&level)?;
            self.levels.push(level);
        }
        self.objective
            .targets_into(&self.levels, &self.x0, &self.eps, &mut self.target)?;
        let loss = self.net.loss_and_grad(
            &mut self.ws,
            view((b, d), &self.input)?,
            &self.cond,
            None,
            view((b, d), &self.target)?,
            Some(&self.weights),
        )?;
        if let Some(max) = self.config.clip_grad_norm {
            clip_grad_norm(self.ws.grads_mut(), max)?;
        }
        let lr = self.lr.at(s);
        self.adam
            .update(self.net.params_mut().values_mut(), self.ws.grads(), lr)?;
        if let Some(e) = &mut self.ema {
            e.update(self.net.params().values())?;
        }
        self.step += 1;
        Ok(loss)
    }

    /// Runs steps until `until` (at most the configured total), calling
    /// `progress` every `every` steps and after the last one.
    pub fn run(
        &mut self,
        until: u64,
        every: u64,
        mut progress: impl FnMut(&Progress),
    ) -> Result<()> {
        let until = until.min(self.config.steps);
        let start = Instant::now();
        let first = self.step;
        let (mut sum, mut count, mut last) = (0.0, 0u64, f64::NAN);
        while self.step < until {
            last = self.step()?;
            sum += last;
            count += 1;
            if self.step.is_multiple_of(every.max(1)) || self.step == until {
                let secs = start.elapsed().as_secs_f64();
                progress(&Progress {
                    step: self.step,
                    total: self.config.steps,
                    loss: last,
                    mean_loss: sum / count as f64,
                    steps_per_s: (self.step - first) as f64 / secs.max(1e-9),
                    lr: self.lr.at(self.step - 1),
                });
                (sum, count) = (0.0, 0);
            }
        }
        if !(last.is_finite() || self.step == first) {
            return Err(Error::NonFinite("training loss".into()));
        }
        Ok(())
    }

    /// Saves weights, EMA, optimiser state and the full [`RunConfig`]
    /// (metadata `diffuse.config` = `{"run": …, "steps_done": …}`, plus
    /// `diffuse.net`), atomically; refuses to replace `path` unless
    /// `overwrite`.
    pub fn save(&self, path: &Path, overwrite: bool) -> std::result::Result<(), TrainError> {
        let net = &self.net;
        let mut w = CheckpointWriter::new(net.layout(), net.params().values())?;
        for (name, shape, data) in net.buffers() {
            w = w.buffer(&name, &shape, &data)?;
        }
        if let Some(e) = &self.ema {
            w = w.ema(e.values(), e.updates())?;
        }
        w = w.optim(self.adam.m(), self.adam.v(), self.adam.step())?;
        let net_json = serde_json::to_string(net.config())?;
        w.config_value(&json!({ "run": self.config, "steps_done": self.step }))
            .metadata_entry(NET_KEY, net_json)
            .write(path, overwrite)?;
        Ok(())
    }
}

/// The [`RunConfig`] stored in a checkpoint.
pub fn run_config(ckpt: &Checkpoint) -> std::result::Result<RunConfig, TrainError> {
    let value = ckpt.config_value()?;
    let run = value.get("run").ok_or_else(|| {
        TrainError::Incomplete("the run configuration (diffuse.config.run)".into())
    })?;
    Ok(serde_json::from_value(run.clone())?)
}

fn adam_config(c: &RunConfig) -> AdamConfig {
    if c.weight_decay > 0.0 {
        AdamConfig::adamw(c.weight_decay)
    } else {
        AdamConfig::default()
    }
}

fn ema_kind(c: &RunConfig) -> Option<EmaKind> {
    c.ema_decay.map(|decay| EmaKind::Classic {
        decay,
        warmup: true,
    })
}

fn view(shape: (usize, usize), v: &[f32]) -> Result<ArrayView2<'_, f32>> {
    ArrayView2::from_shape(shape, v).map_err(|e| invalid("batch", e.to_string()))
}

//! Training with ε-prediction (Ho et al. 2020): the reference training step.
//!
//! One step on clean data `x₀` (a batch of `B` rows):
//!
//! ```text
//! t_r ~ U(t_min, t_max)                   (the schedule's range)
//! ε_r ~ N(0, I)
//! x_r = α(t_r)·x₀_r + σ(t_r)·ε_r          (forward marginal, coefficients in f64)
//! L   = 1/(B·d) Σ_r ‖f_θ(x_r, t_r, c_r) − ε_r‖²      (L_simple, Ho et al. 2020 Eq. 14)
//! θ   ← Adam(θ, clip(∇L), η(step)),   θ̄ ← EMA(θ̄, θ)
//! ```
//!
//! Randomness is drawn from the public noise stream under the trainer's
//! seed: step `s` uses stream `3s` for the times (uniform from Philox block
//! `r`), `3s + 1` for `ε` (element order of the batch) and `3s + 2` for
//! label dropout, so a run reproduces for any thread count.
//!
//! ```
//! use diffuse_core::{NoiseSchedule, Result};
//! use diffuse_nets::{DenoiserNet, EpsTrainer, NetConfig, TrainConfig, save_trainer};
//! use diffuse_nets::checkpoint::{Checkpoint, load_trainer};
//!
//! /// α = cos(πt/2), σ = sin(πt/2).
//! struct Cosine;
//! impl NoiseSchedule for Cosine {
//!     fn name(&self) -> &str { "cosine" }
//!     fn t_range(&self) -> (f64, f64) { (1e-3, 0.999) }
//!     fn alpha(&self, t: f64) -> f64 { (std::f64::consts::FRAC_PI_2 * t).cos() }
//!     fn sigma(&self, t: f64) -> f64 { (std::f64::consts::FRAC_PI_2 * t).sin() }
//!     fn t_of_log_snr(&self, l: f64) -> Result<f64> {
//!         Ok((-l / 2.0).exp().atan() / std::f64::consts::FRAC_PI_2)
//!     }
//! }
//!
//! let net = DenoiserNet::new(NetConfig::mlp(2, 16, &[32, 32], 0))?;
//! let mut config = TrainConfig::reference(0);
//! config.batch_size = 64;
//! let mut trainer = EpsTrainer::new(net, config)?;
//! let x0 = ndarray::Array2::from_shape_fn((64, 2), |(i, j)| if (i + j) % 2 == 0 { 1.0 } else { -1.0 });
//! let stats = trainer.step(x0.view(), None, &Cosine)?;
//! assert!(stats.loss.is_finite() && trainer.steps() == 1);
//!
//! // Checkpoint and resume.
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("run.safetensors");
//! save_trainer(&trainer, &path, None, false)?;
//! let resumed = load_trainer(&Checkpoint::read(&path)?)?;
//! assert_eq!(resumed.net().params(), trainer.net().params());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use diffuse_core::noise::{philox4x32_10, seed_key};
use diffuse_core::{Error, NoiseSchedule, NoiseStream, Result};
use ndarray::ArrayView2;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ema::{Ema, EmaKind};
use crate::mlp::{DenoiserNet, NetConfig, TrainWorkspace};
use crate::optim::{Adam, AdamConfig, LrSchedule, clip_grad_norm};

/// Rows per parallel task when drawing the times and the noise of a step.
const NOISE_ROWS: usize = 1024;

/// Hyperparameters of an [`EpsTrainer`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Rows per batch.
    pub batch_size: usize,
    /// Adam / AdamW.
    pub adam: AdamConfig,
    /// Learning rate by step.
    pub lr: LrSchedule,
    /// Clip the gradient to this global norm.
    pub clip_grad_norm: Option<f64>,
    /// EMA of the weights.
    pub ema: Option<EmaKind>,
    /// Seed of the training noise (times, ε, label dropout).
    pub seed: u64,
}

impl TrainConfig {
    /// The reference step's settings: batch 4096, Adam (β = 0.9, 0.999,
    /// ε = 1e-8) at a constant 1e-3, no clipping, no EMA.
    pub fn reference(seed: u64) -> Self {
        Self {
            batch_size: 4096,
            adam: AdamConfig::default(),
            lr: LrSchedule::constant(1e-3),
            clip_grad_norm: None,
            ema: None,
            seed,
        }
    }
}

/// What one training step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The step's index (0 for the first).
    pub step: u64,
    /// The loss before the update.
    pub loss: f64,
    /// The gradient's global norm before clipping (when clipping is on).
    pub grad_norm: Option<f64>,
    /// The learning rate used.
    pub lr: f64,
}

/// A network, its optimiser and EMA, and preallocated buffers for training
/// with ε-prediction on batches of a fixed size.
#[derive(Debug)]
pub struct EpsTrainer {
    net: DenoiserNet,
    config: TrainConfig,
    adam: Adam,
    ema: Option<Ema>,
    ws: TrainWorkspace,
    xt: Vec<f32>,
    eps: Vec<f32>,
    times: Vec<f64>,
    labels: Vec<usize>,
    step: u64,
}

fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// A uniform in `(0, 1)` with 53 random bits from Philox block `row` of
/// `(seed, stream)`: `((w₀·2³² + w₁) >> 11 + ½)·2⁻⁵³`.
fn uniform(key: [u32; 2], stream: u64, row: u64) -> f64 {
    let w = philox4x32_10(
        [
            row as u32,
            (row >> 32) as u32,
            stream as u32,
            (stream >> 32) as u32,
        ],
        key,
    );
    let bits = ((u64::from(w[0]) << 32) | u64::from(w[1])) >> 11;
    (bits as f64 + 0.5) * (1.0 / 9_007_199_254_740_992.0)
}

impl EpsTrainer {
    /// A trainer for `net` (fresh optimiser state and EMA).
    pub fn new(net: DenoiserNet, config: TrainConfig) -> Result<Self> {
        let adam = Adam::new(config.adam, net.params().len())?;
        let ema = config
            .ema
            .map(|k| Ema::new(k, net.params().values()))
            .transpose()?;
        Self::from_parts(net, config, adam, ema, 0)
    }

    /// A trainer resumed from saved parts (see [`crate::checkpoint`]).
    pub fn from_parts(
        net: DenoiserNet,
        config: TrainConfig,
        adam: Adam,
        ema: Option<Ema>,
        step: u64,
    ) -> Result<Self> {
        let b = config.batch_size;
        if b == 0 {
            return Err(invalid("batch_size", "must be positive"));
        }
        config.lr.validate()?;
        let n = net.params().len();
        if adam.m().len() != n || ema.as_ref().is_some_and(|e| e.values().len() != n) {
            return Err(Error::ShapeMismatch {
                op: "EpsTrainer::from_parts",
                expected: vec![n],
                found: vec![adam.m().len(), ema.as_ref().map_or(n, |e| e.values().len())],
            });
        }
        let d = net.data_dim();
        Ok(Self {
            ws: net.train_workspace(b),
            xt: vec![0.0; b * d],
            eps: vec![0.0; b * d],
            times: vec![0.0; b],
            labels: vec![0; b],
            net,
            config,
            adam,
            ema,
            step,
        })
    }

    /// The reference trainer: [`NetConfig::reference`] and
    /// [`TrainConfig::reference`].
    pub fn reference(seed: u64) -> Result<Self> {
        Self::new(
            DenoiserNet::new(NetConfig::reference(seed))?,
            TrainConfig::reference(seed),
        )
    }

    /// The network.
    pub fn net(&self) -> &DenoiserNet {
        &self.net
    }

    /// The configuration.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// The optimiser state.
    pub fn adam(&self) -> &Adam {
        &self.adam
    }

    /// The EMA, if any.
    pub fn ema(&self) -> Option<&Ema> {
        self.ema.as_ref()
    }

    /// Steps done.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Gives the network back.
    pub fn into_net(self) -> DenoiserNet {
        self.net
    }

    /// One training step on clean data `x0` (`batch_size × data_dim`,
    /// row-major) with optional labels (required iff the network has a
    /// class embedding), under `schedule`. Allocates nothing.
    pub fn step(
        &mut self,
        x0: ArrayView2<'_, f32>,
        labels: Option<&[u32]>,
        schedule: &dyn NoiseSchedule,
    ) -> Result<StepStats> {
        let (b, d) = (self.config.batch_size, self.net.data_dim());
        if x0.dim() != (b, d) {
            return Err(Error::ShapeMismatch {
                op: "EpsTrainer::step",
                expected: vec![b, d],
                found: x0.shape().to_vec(),
            });
        }
        let xs = x0
            .as_slice()
            .ok_or_else(|| invalid("x0", "must be contiguous and row-major"))?;
        let (seed, s) = (self.config.seed, self.step);
        let key = seed_key(seed);
        let (t0, t1) = schedule.t_range();
        let noise = NoiseStream::new(seed, 3 * s + 1);
        // Times, ε and x_t in parallel over blocks of rows: each value is a
        // pure function of its row (and element) index, so the result does
        // not depend on the blocking or the thread count.
        self.times
            .par_chunks_mut(NOISE_ROWS)
            .zip(self.eps.par_chunks_mut(NOISE_ROWS * d))
            .zip(self.xt.par_chunks_mut(NOISE_ROWS * d))
            .zip(xs.par_chunks(NOISE_ROWS * d))
            .enumerate()
            .try_for_each(|(c, (((ts, es), xts), x0s))| -> Result<()> {
                let r0 = c * NOISE_ROWS;
                noise.fill((r0 * d) as u64, es);
                for (i, ((t, xt), (x, e))) in ts
                    .iter_mut()
                    .zip(xts.chunks_exact_mut(d))
                    .zip(x0s.chunks_exact(d).zip(es.chunks_exact(d)))
                    .enumerate()
                {
                    *t = t0 + uniform(key, 3 * s, (r0 + i) as u64) * (t1 - t0);
                    let m = schedule.marginal(*t);
                    if !(m.alpha.is_finite() && m.sigma.is_finite()) {
                        return Err(Error::NonFinite(format!("marginal at t = {t}")));
                    }
                    for ((o, &x), &e) in xt.iter_mut().zip(x).zip(e) {
                        *o = (m.alpha * f64::from(x) + m.sigma * f64::from(e)) as f32;
                    }
                }
                Ok(())
            })?;
        let labels = match (self.net.class_embedding(), labels) {
            (Some(c), Some(l)) => {
                if l.len() != b {
                    return Err(Error::ShapeMismatch {
                        op: "labels",
                        expected: vec![b],
                        found: vec![l.len()],
                    });
                }
                for (dst, &src) in self.labels.iter_mut().zip(l) {
                    *dst = c.index(Some(src))?;
                }
                self.net.drop_labels(&mut self.labels, seed, 3 * s + 2);
                Some(&self.labels[..])
            }
            (None, None) => None,
            _ => {
                return Err(invalid(
                    "labels",
                    "given iff the network has a class embedding",
                ));
            }
        };
        let xt = ArrayView2::from_shape((b, d), &self.xt[..])
            .map_err(|e| invalid("x_t", e.to_string()))?;
        let eps = ArrayView2::from_shape((b, d), &self.eps[..])
            .map_err(|e| invalid("ε", e.to_string()))?;
        let loss = self
            .net
            .loss_and_grad(&mut self.ws, xt, &self.times, labels, eps, None)?;
        let grad_norm = match self.config.clip_grad_norm {
            Some(max) => Some(clip_grad_norm(self.ws.grads_mut(), max)?),
            None => None,
        };
        let lr = self.config.lr.at(s);
        self.adam
            .update(self.net.params_mut().values_mut(), self.ws.grads(), lr)?;
        if let Some(e) = &mut self.ema {
            e.update(self.net.params().values())?;
        }
        self.step += 1;
        Ok(StepStats {
            step: s,
            loss,
            grad_norm,
            lr,
        })
    }
}

/// One reference training step (2-D data, 128-feature sinusoidal time
/// embedding, 3 × 256 SiLU MLP, ε-prediction MSE, Adam) on `data`
/// (`4096 × 2`) under `schedule`, with a trainer from
/// [`EpsTrainer::reference`]. `diffuse bench train` times this.
pub fn reference_train_step(
    trainer: &mut EpsTrainer,
    data: ArrayView2<'_, f32>,
    schedule: &dyn NoiseSchedule,
) -> Result<StepStats> {
    trainer.step(data, None, schedule)
}

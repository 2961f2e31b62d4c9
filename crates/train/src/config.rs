//! The run configuration and the parsers of its names (schedule,
//! prediction target, loss weighting, noise-level sampler).

use std::sync::Arc;

use diffuse_core::{Error, Parameterization, Result};
use diffuse_data::Dataset;
use diffuse_losses::{LevelDistribution, Scheme, Target, Weighting};
use diffuse_nets::NetConfig;
use diffuse_schedules::{BUILTIN_NAMES, Builtin, builtin};
use serde::{Deserialize, Serialize};

pub(crate) fn invalid(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

/// Everything that defines a training run; stored in full in every
/// checkpoint (metadata `diffuse.config`), so a run can be resumed and a
/// model sampled from its file alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Data set name ([`Dataset::from_name`]).
    pub data: String,
    /// Schedule name ([`schedule_by_name`]).
    pub schedule: String,
    /// Prediction target ([`prediction_by_name`]).
    pub prediction: String,
    /// Loss weighting ([`weighting_by_name`]).
    pub loss: String,
    /// Noise-level sampler ([`LevelSpec::from_name`]).
    pub level_sampler: String,
    /// Total optimiser steps (also the end of the cosine learning-rate decay).
    pub steps: u64,
    /// Rows per batch.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Linear warm-up steps.
    pub warmup_steps: u64,
    /// Learning rate at the end of the cosine decay.
    pub min_lr: f64,
    /// AdamW's decoupled weight decay (0 for Adam).
    pub weight_decay: f64,
    /// Clip the gradient to this global norm.
    pub clip_grad_norm: Option<f64>,
    /// Decay of the classic EMA with warm-up (`None`: no EMA).
    pub ema_decay: Option<f64>,
    /// Features of the sinusoidal time embedding.
    pub time_dim: usize,
    /// Hidden widths of the SiLU MLP.
    pub hidden: Vec<usize>,
    /// Seed of the weights, the data stream, the levels and the noise.
    pub seed: u64,
}

impl Default for RunConfig {
    /// Moons, vp-cosine, v-prediction, min-SNR-5, 4000 steps of 512 rows,
    /// AdamW 2e-3 with 100 warm-up steps and cosine decay, EMA 0.999, a
    /// 3 × 128 MLP with a 32-feature embedding.
    fn default() -> Self {
        Self {
            data: "moons".into(),
            schedule: "vp-cosine".into(),
            prediction: "v".into(),
            loss: "min-snr:5".into(),
            level_sampler: "stratified".into(),
            steps: 4000,
            batch_size: 512,
            lr: 2e-3,
            warmup_steps: 100,
            min_lr: 1e-5,
            weight_decay: 0.0,
            clip_grad_norm: Some(1.0),
            ema_decay: Some(0.999),
            time_dim: 32,
            hidden: vec![128, 128, 128],
            seed: 0,
        }
    }
}

impl RunConfig {
    /// Checks every name and number; returns the resolved parts.
    pub fn resolve(&self) -> Result<Resolved> {
        let dataset = Dataset::from_name(&self.data)?;
        let schedule = schedule_by_name(&self.schedule)?;
        let (target, parameterization) = prediction_by_name(&self.prediction)?;
        let weighting = weighting_by_name(&self.loss, target)?;
        let levels = LevelSpec::from_name(&self.level_sampler)?;
        if self.steps == 0 {
            return Err(invalid("steps", "must be positive"));
        }
        if self.batch_size == 0 {
            return Err(invalid("batch size", "must be positive"));
        }
        if self.hidden.is_empty() || self.hidden.contains(&0) {
            return Err(invalid("hidden", "need at least one positive width"));
        }
        if self.time_dim == 0 || !self.time_dim.is_multiple_of(2) {
            return Err(invalid("time_dim", "must be positive and even"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(invalid("lr", format!("{} must be positive", self.lr)));
        }
        if let Some(d) = self.ema_decay
            && !(0.0..1.0).contains(&d)
        {
            return Err(invalid("ema decay", format!("{d} must be in [0, 1)")));
        }
        Ok(Resolved {
            dataset,
            schedule,
            target,
            parameterization,
            weighting,
            levels,
        })
    }

    /// The network this run trains.
    pub fn net_config(&self) -> NetConfig {
        NetConfig::mlp(2, self.time_dim, &self.hidden, self.seed)
    }
}

/// The parts a [`RunConfig`] names.
pub struct Resolved {
    /// The data set.
    pub dataset: Dataset,
    /// The schedule with its sampling range.
    pub schedule: Builtin,
    /// The regression target of the loss.
    pub target: Target,
    /// How samplers read the network output (matches `target`).
    pub parameterization: Arc<dyn Parameterization>,
    /// The loss weighting.
    pub weighting: Weighting,
    /// The noise-level sampler.
    pub levels: LevelSpec,
}

/// A built-in schedule by name ([`BUILTIN_NAMES`]), plus the alias `cosine`
/// for `vp-cosine`.
pub fn schedule_by_name(name: &str) -> Result<Builtin> {
    let canonical = match name {
        "cosine" => "vp-cosine",
        other => other,
    };
    builtin(canonical).map_err(|_| {
        invalid(
            "schedule",
            format!(
                "unknown schedule '{name}'; expected cosine or one of {}",
                BUILTIN_NAMES.join(", ")
            ),
        )
    })
}

/// The prediction targets [`prediction_by_name`] knows.
pub const PREDICTIONS: [&str; 4] = ["eps", "x0", "v", "flow"];

/// A prediction target by name: `eps` (ε, Ho et al. 2020), `x0` (the clean
/// data), `v` (`v = α·ε − σ·x₀`, Salimans & Ho 2022), `flow` (`u = ε − x₀`,
/// Lipman et al. 2023); the loss target and the matching parameterisation.
pub fn prediction_by_name(name: &str) -> Result<(Target, Arc<dyn Parameterization>)> {
    let target = match name {
        "eps" | "epsilon" => Target::Epsilon,
        "x0" | "sample" => Target::X0,
        "v" | "v_prediction" | "velocity" => Target::V,
        "flow" | "flow_prediction" | "flow_velocity" => Target::FlowVelocity,
        other => {
            return Err(invalid(
                "prediction",
                format!(
                    "unknown prediction '{other}'; expected one of {}",
                    PREDICTIONS.join(", ")
                ),
            ));
        }
    };
    let param: Arc<dyn Parameterization> = Arc::from(diffuse_param::by_name(name)?);
    Ok((target, param))
}

/// The loss weightings [`weighting_by_name`] knows.
pub const LOSSES: [&str; 11] = [
    "mse",
    "eps-mse",
    "x0-mse",
    "v-mse",
    "snr",
    "truncated-snr",
    "min-snr:GAMMA",
    "soft-min-snr:GAMMA",
    "p2[:K,GAMMA]",
    "edm[:SIGMA_DATA]",
    "sigmoid:BIAS",
];

/// A loss weighting by name (see [`Weighting`] for the equations): `mse` is
/// unit weight on the squared error of `target` itself; `min-snr:γ`
/// (γ = 5 by default), `soft-min-snr:γ`, `p2:k,γ` (1, 1), `edm:σ_d` (0.5),
/// `sigmoid:b` (0), `elbo` and `likelihood` take their parameters after a
/// colon.
pub fn weighting_by_name(name: &str, target: Target) -> Result<Weighting> {
    let (head, arg) = match name.split_once(':') {
        Some((h, a)) => (h, Some(a)),
        None => (name, None),
    };
    let number = |s: &str| -> Result<f64> {
        s.trim()
            .parse::<f64>()
            .map_err(|_| invalid("loss", format!("'{s}' in '{name}' is not a number")))
    };
    let one = |default: f64| -> Result<f64> { arg.map_or(Ok(default), number) };
    let w = match (head, arg) {
        ("mse", None) => Weighting::Unit(target),
        ("eps-mse" | "epsilon-mse", None) => Weighting::EPSILON_MSE,
        ("x0-mse", None) => Weighting::X0_MSE,
        ("v-mse", None) => Weighting::V_MSE,
        ("snr", None) => Weighting::Snr,
        ("truncated-snr", None) => Weighting::TruncatedSnr,
        ("min-snr", _) => Weighting::MinSnr { gamma: one(5.0)? },
        ("soft-min-snr", _) => Weighting::SoftMinSnr { gamma: one(5.0)? },
        ("p2", None) => Weighting::P2 { k: 1.0, gamma: 1.0 },
        ("p2", Some(a)) => {
            let (k, g) = a
                .split_once(',')
                .ok_or_else(|| invalid("loss", format!("'{name}': expected p2:K,GAMMA")))?;
            Weighting::P2 {
                k: number(k)?,
                gamma: number(g)?,
            }
        }
        ("edm", _) => Weighting::Edm {
            sigma_data: one(0.5)?,
        },
        ("sigmoid", _) => Weighting::Sigmoid { bias: one(0.0)? },
        ("elbo", None) => Weighting::Elbo,
        ("likelihood", None) => Weighting::Likelihood,
        _ => {
            return Err(invalid(
                "loss",
                format!(
                    "unknown loss weighting '{name}'; expected one of {}, elbo, likelihood",
                    LOSSES.join(", ")
                ),
            ));
        }
    };
    w.validate()?;
    Ok(w)
}

/// How training noise levels are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LevelSpec {
    /// The distribution, of times in `(0, 1)` mapped onto the schedule's
    /// sampling range ([`LevelSpec::time`]) or of VE noise levels σ.
    pub distribution: LevelDistribution,
    /// Variance reduction across the batch.
    pub scheme: Scheme,
}

impl LevelSpec {
    /// `uniform` (t uniform on the sampling range, independent rows),
    /// `stratified` (the same, one draw per stratum), `logit-normal[:m,s]`
    /// (Esser et al. 2024, `u = sigmoid(m + s·z)` mapped onto the range),
    /// `edm[:P_mean,P_std]` (log-normal σ_VE, Karras et al. 2022, mapped to
    /// `t` by the schedule's `t(λ)` with `λ = −2·ln σ`, clamped to the
    /// range).
    pub fn from_name(name: &str) -> Result<Self> {
        let (head, arg) = match name.split_once(':') {
            Some((h, a)) => (h, Some(a)),
            None => (name, None),
        };
        let pair = |default: (f64, f64)| -> Result<(f64, f64)> {
            match arg {
                None => Ok(default),
                Some(a) => {
                    let parse = |s: &str| {
                        s.trim().parse::<f64>().map_err(|_| {
                            invalid(
                                "level sampler",
                                format!("'{s}' in '{name}' is not a number"),
                            )
                        })
                    };
                    let (x, y) = a.split_once(',').ok_or_else(|| {
                        invalid(
                            "level sampler",
                            format!("'{name}': expected two numbers A,B"),
                        )
                    })?;
                    Ok((parse(x)?, parse(y)?))
                }
            }
        };
        let unit = LevelDistribution::UniformTime {
            t_min: 0.0,
            t_max: 1.0,
        };
        let spec = match (head, arg) {
            ("uniform", None) => Self {
                distribution: unit,
                scheme: Scheme::Independent,
            },
            ("stratified", None) => Self {
                distribution: unit,
                scheme: Scheme::Stratified,
            },
            ("logit-normal", _) => {
                let (mean, std) = pair((0.0, 1.0))?;
                Self {
                    distribution: LevelDistribution::LogitNormalTime { mean, std },
                    scheme: Scheme::Stratified,
                }
            }
            ("edm", _) => {
                let (p_mean, p_std) = pair((-1.2, 1.2))?;
                Self {
                    distribution: LevelDistribution::LogNormalSigma { p_mean, p_std },
                    scheme: Scheme::Stratified,
                }
            }
            _ => {
                return Err(invalid(
                    "level sampler",
                    format!(
                        "unknown level sampler '{name}'; expected uniform, stratified, \
                         logit-normal[:M,S] or edm[:P_MEAN,P_STD]"
                    ),
                ));
            }
        };
        spec.distribution.validate()?;
        Ok(spec)
    }

    /// The schedule time of a drawn value `u`: for time distributions
    /// `t = t_end + u·(t_start − t_end)` on the sampling range; for σ
    /// distributions `t = t(λ)`, `λ = −2·ln σ`, clamped to the range.
    pub fn time(&self, schedule: &Builtin, u: f64) -> Result<f64> {
        let (lo, hi) = (schedule.t_end, schedule.t_start);
        match self.distribution {
            LevelDistribution::LogNormalSigma { .. } => {
                let t = schedule.schedule.t_of_log_snr(-2.0 * u.ln())?;
                Ok(t.clamp(lo, hi))
            }
            _ => Ok(lo + u * (hi - lo)),
        }
    }
}

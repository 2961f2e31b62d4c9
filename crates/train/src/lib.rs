//! # diffuse-train — training and sampling loops
//!
//! Wires the components into a training run (survey §2.2, Chang et al.
//! 2023): a [`diffuse_nets::DenoiserNet`], a named schedule
//! (`diffuse-schedules`), a prediction target and loss weighting
//! (`diffuse-losses`, with the matching parameterisation of
//! `diffuse-param`), a noise-level sampler, AdamW with warm-up and cosine
//! decay, an EMA, and a 2-D data set (`diffuse-data`); and samples from the
//! result with any solver of `diffuse-solvers`, scored against held-out data
//! with the sliced Wasserstein distance.
//!
//! - [`RunConfig`]: the whole run by name, serialised into every checkpoint.
//! - [`Trainer`]: the loop ([`trainer`] gives the equations), deterministic
//!   from the seed; [`Trainer::save`] / [`Trainer::resume`] continue a run
//!   bit for bit.
//! - [`TrainedModel`], [`SampleSpec`], [`sample_with`] ([`sample_on`] for
//!   any backend), [`score`]: sampling.
//!
//! ```
//! use diffuse_train::{RunConfig, SampleSpec, Trainer, TrainedModel, score};
//!
//! let config = RunConfig {
//!     steps: 20,
//!     batch_size: 64,
//!     hidden: vec![16, 16],
//!     time_dim: 8,
//!     ..RunConfig::default()
//! };
//! let mut trainer = Trainer::new(config)?;
//! let mut last = None;
//! trainer.run(20, 10, |p| last = Some(p.loss))?;
//! assert!(last.is_some_and(f64::is_finite) && trainer.steps() == 20);
//!
//! let model = TrainedModel::from_trainer(&trainer)?;
//! let spec = SampleSpec {
//!     solver: "dpmpp-2m".into(),
//!     steps: 5,
//!     n: 100,
//!     seed: 1,
//!     grid: None,
//!     eta: None,
//!     noise: None,
//! };
//! let (x, report) = model.sample(&spec)?;
//! assert_eq!((x.dim(), report.nfe), ((100, 2), 5));
//! assert!(score(trainer.parts().dataset, &x)?.is_finite());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

pub mod config;
pub mod sample;
pub mod trainer;

pub use config::{
    LOSSES, LevelSpec, PREDICTIONS, Resolved, RunConfig, prediction_by_name, schedule_by_name,
    weighting_by_name,
};
pub use sample::{SampleSpec, TrainedModel, method, sample_on, sample_with, score, steps_for_nfe};
pub use trainer::{EPS_STREAM, LEVEL_STREAM, Progress, Trainer, run_config};

/// What can go wrong in a run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Invalid input or a numerical failure.
    #[error(transparent)]
    Core(#[from] diffuse_core::Error),
    /// Reading or writing a checkpoint.
    #[error(transparent)]
    Checkpoint(#[from] diffuse_nets::CheckpointError),
    /// A stored configuration does not parse.
    #[error("run configuration: {0}")]
    Json(#[from] serde_json::Error),
    /// A checkpoint lacks what resuming needs.
    #[error("the checkpoint has no {0}; it was not written by a training run")]
    Incomplete(String),
}

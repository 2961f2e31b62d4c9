//! # diffuse-nets — reverse process: the network
//!
//! Reference denoisers (MLP and residual MLP with time and class embeddings,
//! the exact Gaussian-mixture denoiser), optimisers, EMA and checkpoints
//! (survey §2.2). Every model implements [`Denoiser`] from `diffuse-core`,
//! the only crate of ours this one depends on.
//!
//! - [`GaussianMixture`] and [`GmmDenoiser`]: the exact posterior-mean
//!   denoiser `E[x₀ | x]` of an isotropic Gaussian mixture (the analytic
//!   problem of the conformance data), reporting its output in any
//!   [`Parameterization`]; the reference model of tests and of the command
//!   line.
//!
//! This crate is being filled in. Denoisers receive one [`NoiseLevel`] per
//! batch row:
//!
//! ```
//! use diffuse_nets::{Marginal, NoiseLevel};
//! let level = NoiseLevel { t: 0.5, marginal: Marginal::new(0.6, 0.8)? };
//! assert!((level.marginal.log_snr() - 2.0 * (0.75f64).ln()).abs() < 1e-12);
//! # Ok::<(), diffuse_nets::Error>(())
//! ```

pub mod checkpoint;
mod denoiser;
pub mod ema;
pub mod embedding;
mod gmm;
mod kernels;
pub mod layers;
pub mod mlp;
pub mod optim;
pub mod params;
pub mod train;

pub use checkpoint::{
    Checkpoint, CheckpointError, CheckpointWriter, load_net, load_trainer, save_trainer,
};
pub use denoiser::NetDenoiser;
pub use diffuse_core::{
    Condition, Denoiser, Error, Marginal, NoiseLevel, Parameterization, Result,
};
pub use ema::{Ema, EmaKind, gamma_from_sigma_rel, sigma_rel_from_gamma};
pub use embedding::{
    ClassEmbedding, FourierEmbedding, SinusoidalEmbedding, TimeEmbedding, TimeEmbeddingConfig,
};
pub use gmm::{GaussianMixture, GmmDenoiser, WEIGHT_SUM_TOLERANCE};
pub use layers::{Layer, LayerNorm, Linear, ResidualBlock, Sequential, Silu};
pub use mlp::{Architecture, ClassConfig, DenoiserNet, NetConfig, SHARD_ROWS, TrainWorkspace};
pub use optim::{Adam, AdamConfig, CosineDecay, LrSchedule, clip_grad_norm, global_norm};
pub use params::{Init, ParamBuilder, ParamLayout, ParamRef, ParamSpec, ParamStore};
pub use train::{EpsTrainer, StepStats, TrainConfig, reference_train_step};

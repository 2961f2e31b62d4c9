//! # diffuse-losses — reverse process: the training objective
//!
//! Survey §2.2.4–2.2.5 (Chang et al. 2023): a diffusion model is trained by
//! `E_{t, x₀, ε}[ w(t)·‖target − out‖² ]`. This crate provides the three
//! pieces and keeps their relation explicit:
//!
//! - [`Target`]: what the network outputs (ε, x₀, v, EDM's F, flow velocity,
//!   score), the regression target in that space, and the factor `c_T²`
//!   with `‖target − out‖² = c_T²·‖x₀ − x̂₀‖²` (`SNR` for ε, `SNR + 1` for
//!   v on VP schedules, EDM's `λ(σ)` for F, …).
//! - [`Weighting`]: ε-MSE (`L_simple`), x₀-MSE, v-MSE, SNR, truncated SNR,
//!   min-SNR-γ, soft-min-SNR, P2, EDM, sigmoid, the VDM ELBO and Song et
//!   al.'s likelihood weighting. Each is defined once by its weight `w₀` on
//!   the x₀-error; in output space `T` it is `w₀/c_T²`.
//! - [`Objective`]: the batch loss and its gradient with respect to the
//!   output, from per-row [`Level`]s, the output, the targets (or `(x₀, ε)`)
//!   and optional per-row weights, accumulated in f64.
//! - Noise-level samplers: [`LevelSampler`] over a [`LevelDistribution`]
//!   (uniform t, discrete uniform, EDM log-normal σ, SD3 logit-normal and
//!   mode, log-uniform σ, simple diffusion's interpolated cosine) with
//!   independent, stratified, low-discrepancy or antithetic [`Scheme`]s, and
//!   iDDPM's loss-aware [`ImportanceSampler`]. All draws come from the
//!   Philox generator of `diffuse-core` ([`LevelRng`]): the same
//!   `(seed, stream, step)` gives the same levels on every platform.
//!
//! One EDM training step (Karras et al. 2022): log-normal σ, the EDM
//! weighting, which is unit weight on the preconditioned output F:
//!
//! ```
//! use diffuse_losses::{
//!     Batch, Level, LevelDistribution, LevelRng, LevelSampler, NoiseStream, Objective, Scheme,
//!     Target, Targets, Weighting, forward_into,
//! };
//! let (b, d) = (4, 8);
//! let sampler = LevelSampler::new(LevelDistribution::EDM, Scheme::Stratified, LevelRng::new(7, 1))?;
//! let sigmas = sampler.sample(0, b)?; // training step 0
//! let levels = sigmas.iter().map(|&s| Level::edm(s)).collect::<Result<Vec<_>, _>>()?;
//!
//! let x0 = vec![0.5f32; b * d];
//! let mut eps = vec![0.0f32; b * d];
//! NoiseStream::new(7, 2).fill(0, &mut eps); // ε from another stream
//! let mut x = vec![0.0f32; b * d];
//! forward_into(&levels, &x0, &eps, &mut x)?; // the network's input
//!
//! let edm = Objective::new(Target::EdmF { sigma_data: 0.5 }, Weighting::edm(0.5)?)?;
//! for level in &levels {
//!     assert!((edm.row_weight(level)? - 1.0).abs() < 1e-12);
//! }
//! let output = vec![0.0f32; b * d]; // stands in for F(c_in·x; c_noise)
//! let mut grad = vec![0.0f32; b * d];
//! let batch = Batch {
//!     levels: &levels,
//!     output: &output,
//!     targets: Targets::Pair { x0: &x0, eps: &eps },
//!     row_weights: None,
//! };
//! let value = edm.loss_and_grad(&batch, &mut grad)?;
//! assert!(value.loss > 0.0 && grad.iter().all(|g| g.is_finite()));
//!
//! // Min-SNR-5 is one weighting, seen from three output spaces (VP level).
//! let level = Level::new(diffuse_losses::Marginal::new(0.6, 0.8)?)?;
//! let snr = level.snr();
//! let w = Weighting::min_snr(5.0)?;
//! assert!((w.weight(Target::Epsilon, &level)? - snr.min(5.0) / snr).abs() < 1e-12);
//! assert!((w.weight(Target::X0, &level)? - snr.min(5.0)).abs() < 1e-12);
//! assert!((w.weight(Target::V, &level)? - snr.min(5.0) / (snr + 1.0)).abs() < 1e-12);
//! # Ok::<(), diffuse_losses::Error>(())
//! ```

mod importance;
mod objective;
pub mod rng;
mod sampler;
mod target;
mod weighting;

pub use diffuse_core::{Error, Marginal, NoiseSchedule, NoiseStream, Result};
pub use importance::{ImportanceDraw, ImportanceSampler};
pub use objective::{Batch, LossValue, Objective, Reduction, Targets, forward_into};
pub use rng::{LevelRng, normal_quantile, uniform_from_words};
pub use sampler::{LevelDistribution, LevelKind, LevelSampler, Scheme, scheme_uniforms};
pub use target::{Level, Target};
pub use weighting::Weighting;

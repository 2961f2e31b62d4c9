//! # diffuse-losses — reverse process: the training objective
//!
//! Loss weightings (ε-MSE, x₀-MSE, v-MSE, SNR, min-SNR-γ, P2, EDM, sigmoid,
//! likelihood weighting, …) and noise-level samplers for training (survey
//! §2.2). Weightings are functions of the forward [`Marginal`] from
//! `diffuse-core`, the only crate of ours this one depends on.
//!
//! This crate is being filled in. The identity its weightings build on,
//! x₀-MSE = SNR · ε-MSE for ε̂ = (x − α·x̂₀)/σ:
//!
//! ```
//! use diffuse_losses::Marginal;
//! let m = Marginal::new(0.6, 0.8)?;
//! let x0_err = 0.3; // |x̂₀ − x₀|
//! let eps_err = m.alpha / m.sigma * x0_err; // |ε̂ − ε|
//! assert!((x0_err * x0_err * m.snr() - eps_err * eps_err).abs() < 1e-12);
//! # Ok::<(), diffuse_losses::Error>(())
//! ```

pub use diffuse_core::{Error, Marginal, Result};

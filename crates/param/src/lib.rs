//! # diffuse-param — reverse process: what the network predicts
//!
//! Parameterisations of the network output (survey §2.2): ε, x₀, v
//! (Salimans & Ho 2022), score, flow velocity and EDM preconditioning
//! (Karras et al. 2022), each as the linear maps `x̂₀ = a·x + b·out` and
//! `ε̂ = a′·x + b′·out` of [`Parameterization`] from `diffuse-core`, the only
//! crate of ours this one depends on.
//!
//! This crate is being filled in; the trait it implements is re-exported:
//!
//! ```
//! use diffuse_param::{Affine, Marginal, Parameterization, Result};
//! struct Sample; // x₀-prediction: x̂₀ = out
//! impl Parameterization for Sample {
//!     fn name(&self) -> &str { "sample" }
//!     fn x0_map(&self, _m: Marginal) -> Result<Affine> { Ok(Affine { a: 0.0, b: 1.0 }) }
//! }
//! let eps = Sample.eps_map(Marginal::new(0.6, 0.8)?)?;
//! assert!((eps.a - 1.25).abs() < 1e-12 && (eps.b + 0.75).abs() < 1e-12);
//! # Ok::<(), diffuse_param::Error>(())
//! ```

pub use diffuse_core::{Affine, Error, Marginal, Parameterization, Result};

//! # diffuse-data — toy data and sample quality
//!
//! Embedded 2-D data sets, generated in code and reproducible from a seed,
//! and the metrics that score a model's samples against held-out data
//! (survey §2.3.5, Chang et al. 2023: sample quality against the number of
//! model evaluations).
//!
//! - [`Dataset`]: `moons` (the default), `swiss-roll`, `8gaussians`,
//!   `25gaussians`, `checkerboard`, `pinwheel`, `circles`, `rings`, at the
//!   scales of the flow and diffusion literature's toy benchmarks, then
//!   normalised to mean zero and roughly unit variance per coordinate
//!   ([`datasets`] documents each construction). Training data
//!   ([`Dataset::sample`]) and held-out data ([`Dataset::held_out`]) are
//!   independent Philox draws, so metrics compare against data a model never
//!   saw.
//! - Metrics in f64: [`sliced_wasserstein`] (exact 1-D W₂ on 256 fixed random
//!   projections, any sample sizes) and [`energy_distance`] (Székely &
//!   Rizzo); [`floor`] gives their value between two independent held-out
//!   draws, the best a model can score at that sample size.
//!
//! Randomness comes only from `diffuse-core`'s Philox4x32-10 stream, so
//! every point set is a pure function of `(seed, data set, split, index)`.
//!
//! ```
//! use diffuse_data::{Dataset, energy_distance, floor, sliced_wasserstein};
//!
//! let data = Dataset::from_name("8gaussians")?;
//! let train = data.sample(1000, 7)?;
//! let test = data.held_out(1000, 7)?;
//! assert_eq!(train.dim(), (1000, 2));
//! assert_eq!(train, data.sample(1000, 7)?); // reproducible
//!
//! // Training data scores close to the data-vs-data floor …
//! let sw = sliced_wasserstein(train.view(), test.view())?;
//! let base = floor(data, 1000)?;
//! assert!(sw < 3.0 * base.sliced_wasserstein);
//! // … a shifted copy does not.
//! let shifted = &test + 1.0f32;
//! assert!(sliced_wasserstein(train.view(), shifted.view())? > 0.5);
//! assert!(energy_distance(train.view(), shifted.view())? > 10.0 * base.energy_distance);
//!
//! // Unknown names list the valid ones.
//! let err = Dataset::from_name("spirals").unwrap_err().to_string();
//! assert!(err.contains("moons, swiss-roll"));
//! # Ok::<(), diffuse_data::Error>(())
//! ```

#![deny(missing_docs)]

pub mod datasets;
pub mod metrics;

pub use datasets::{DATA_STREAM_TAG, Dataset, MAX_SAMPLES, Normalisation, Split};
pub use diffuse_core::{Error, Result};
pub use metrics::{
    DEFAULT_PROJECTIONS, FLOOR_SEED, Scores, SlicedWasserstein, energy_distance, floor,
    floor_with_seed, scores, sliced_wasserstein, wasserstein2_squared_1d,
};

//! # diffuse-schedules — forward process
//!
//! Noise schedules and time grids (survey §2.1, Chang et al. 2023): the
//! discrete-time DDPM family (linear, scaled-linear, cosine, …), continuous
//! VP / VE / sub-VP, EDM and flow-matching schedules, and the sampling time
//! discretisations. Every schedule implements [`NoiseSchedule`] from
//! `diffuse-core`, the only crate of ours this one depends on.
//!
//! This crate is being filled in; the trait it implements is re-exported so
//! code written against it today keeps compiling:
//!
//! ```
//! use diffuse_schedules::{Marginal, NoiseSchedule};
//! fn snr_at(s: &dyn NoiseSchedule, t: f64) -> f64 { s.marginal(t).snr() }
//! let m = Marginal::new(0.6, 0.8)?;
//! assert!((m.snr() - 0.5625).abs() < 1e-12);
//! # let _ = snr_at;
//! # Ok::<(), diffuse_schedules::Error>(())
//! ```

pub use diffuse_core::{Error, Marginal, NoiseSchedule, Result};

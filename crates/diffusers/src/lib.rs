//! # diffuse-diffusers — diffusers scheduler configs
//!
//! Reads a diffusers `scheduler_config.json` into the pieces diffuse keeps
//! apart: the noise schedule (forward process), the inference time grid, the
//! parameterisation of the network output, and the solver's settings.
//! [`timesteps`] reproduces diffusers' `scheduler.timesteps` and
//! `scheduler.sigmas` for every supported class.

mod config;
mod parse;
pub mod timesteps;

pub use config::*;
pub use parse::*;

//! # diffuse-diffusers — diffusers scheduler configs
//!
//! Reads a diffusers `scheduler_config.json` into the pieces diffuse keeps
//! apart (survey §2, Chang et al. 2023): the noise schedule of the forward
//! process ([`SchedulerConfig::noise_schedule`]), the inference time grid
//! ([`SchedulerConfig::set_timesteps`], which reproduces diffusers'
//! `scheduler.timesteps` and `scheduler.sigmas`), the parameterisation of
//! the network output ([`SchedulerConfig::parameterization`]) and the
//! solver's settings ([`SolverSettings`]). Unknown keys become warnings;
//! invalid or contradictory values are errors that name the key.
//!
//! Supported classes: DDIM, PNDM, EulerDiscrete, HeunDiscrete, LMSDiscrete,
//! KDPM2Discrete, DPMSolverMultistep, DPMSolverSinglestep, UniPCMultistep,
//! DEISMultistep, FlowMatchEulerDiscrete, EDMEuler, EDMDPMSolverMultistep.
//!
//! ```
//! use diffuse_diffusers::{SchedulerConfig, timesteps::TimestepOptions};
//! // Stable Diffusion's scheduler with Karras σ, as a pipeline would load it.
//! let text = r#"{
//!     "_class_name": "DPMSolverMultistepScheduler",
//!     "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
//!     "use_karras_sigmas": true, "lambda_min_clipped": -Infinity,
//!     "skip_prk_steps": true
//! }"#;
//! let parsed = SchedulerConfig::from_json_str(text)?;
//! // `skip_prk_steps` belongs to PNDM: a warning, not an error.
//! assert_eq!(parsed.warnings.len(), 1);
//! let grid = parsed.config.set_timesteps(10, &TimestepOptions::default())?;
//! assert_eq!(grid.timesteps[..3], [999.0, 916.0, 815.0]);
//! let sigmas = grid.sigmas.unwrap();
//! assert_eq!(sigmas.len(), 11);
//! assert_eq!(sigmas[10], 0.0); // final_sigmas_type = "zero"
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod parse;
mod parts;
pub mod replay;
pub mod timesteps;

pub use config::*;
pub use parse::*;

//! The deterministic solvers by canonical name (the names the command line
//! takes).

use diffuse_core::{Error, Result};

use crate::method::Method;
use crate::ode::{Ddim, Dpm2, DpmPp2M, Euler, Heun, Lms};

/// Canonical names of the deterministic solvers, in display order.
pub fn deterministic_names() -> Vec<&'static str> {
    vec!["ddim", "euler", "heun", "dpm2", "lms", "dpmpp-2m"]
}

/// The deterministic solver called `name`, with its default options.
pub fn by_name(name: &str) -> Result<Box<dyn Method>> {
    Ok(match name {
        "ddim" => Box::new(Ddim),
        "euler" => Box::new(Euler),
        "heun" => Box::new(Heun),
        "dpm2" => Box::new(Dpm2),
        "lms" => Box::new(Lms::default()),
        "dpmpp-2m" => Box::new(DpmPp2M::default()),
        other => {
            return Err(Error::InvalidArgument {
                name: "solver",
                reason: format!(
                    "'{other}'; available: {}",
                    deterministic_names().join(", ")
                ),
            });
        }
    })
}

//! The solvers and samplers by canonical name (the names the command line
//! takes), each with its default options.

use diffuse_core::{Error, Result};

use crate::method::Method;
use crate::ode::{
    Ddim, Deis, Dpm2, DpmAlgorithm, DpmPp2S, DpmSolverMultistep, DpmSolverSinglestep, Euler,
    FlowEuler, FlowHeun, Heun, IPndm, Lms, Pndm, SecondOrder, UniPc,
};
use crate::sde::{
    DdimEta, Ddpm, Dpm2Ancestral, DpmPp2MSde, DpmPp2SAncestral, DpmPp3MSde, DpmPpSde, Edm,
    EulerAncestral, EulerMaruyama, Pc,
};

/// Canonical names of the deterministic solvers, in display order.
pub fn deterministic_names() -> Vec<&'static str> {
    vec![
        "ddim",
        "euler",
        "heun",
        "dpm2",
        "lms",
        "pndm",
        "ipndm",
        "deis",
        "dpm-solver-2m",
        "dpm-solver-3m",
        "dpm-solver-2s",
        "dpm-solver-3s",
        "dpmpp-2s",
        "dpmpp-2m",
        "dpmpp-3m",
        "unipc",
        "flow-euler",
        "flow-heun",
    ]
}

/// Canonical names of the stochastic samplers, in display order.
pub fn stochastic_names() -> Vec<&'static str> {
    vec![
        "ddpm",
        "ddim-eta",
        "euler-ancestral",
        "dpm2-ancestral",
        "dpmpp-2s-ancestral",
        "dpmpp-sde",
        "dpmpp-2m-sde",
        "dpmpp-3m-sde",
        "edm",
        "euler-maruyama",
        "pc",
    ]
}

/// The solver or sampler called `name` (deterministic or stochastic), with
/// its default options.
pub fn by_name(name: &str) -> Result<Box<dyn Method>> {
    let multistep = |order, algorithm| -> Result<Box<dyn Method>> {
        Ok(Box::new(DpmSolverMultistep::new(
            order,
            algorithm,
            SecondOrder::Midpoint,
        )?))
    };
    let singlestep = |order| -> Result<Box<dyn Method>> {
        Ok(Box::new(DpmSolverSinglestep {
            order,
            algorithm: DpmAlgorithm::NoisePrediction,
            ..DpmSolverSinglestep::default()
        }))
    };
    Ok(match name {
        "ddim" => Box::new(Ddim),
        "euler" => Box::new(Euler),
        "heun" => Box::new(Heun),
        "dpm2" => Box::new(Dpm2),
        "lms" => Box::new(Lms::default()),
        "pndm" => Box::new(Pndm::default()),
        "ipndm" => Box::new(IPndm::default()),
        "deis" => Box::new(Deis::default()),
        "dpm-solver-2m" => multistep(2, DpmAlgorithm::NoisePrediction)?,
        "dpm-solver-3m" => multistep(3, DpmAlgorithm::NoisePrediction)?,
        "dpm-solver-2s" => singlestep(2)?,
        "dpm-solver-3s" => singlestep(3)?,
        "dpmpp-2s" => Box::new(DpmPp2S),
        "dpmpp-2m" => multistep(2, DpmAlgorithm::DataPrediction)?,
        "dpmpp-3m" => multistep(3, DpmAlgorithm::DataPrediction)?,
        "unipc" => Box::new(UniPc::default()),
        "flow-euler" => Box::new(FlowEuler),
        "flow-heun" => Box::new(FlowHeun),
        "ddpm" => Box::new(Ddpm::default()),
        "ddim-eta" => Box::new(DdimEta::default()),
        "euler-ancestral" => Box::new(EulerAncestral::default()),
        "dpm2-ancestral" => Box::new(Dpm2Ancestral::default()),
        "dpmpp-2s-ancestral" => Box::new(DpmPp2SAncestral::default()),
        "dpmpp-sde" => Box::new(DpmPpSde::default()),
        "dpmpp-2m-sde" => Box::new(DpmPp2MSde::default()),
        "dpmpp-3m-sde" => Box::new(DpmPp3MSde::default()),
        "edm" => Box::new(Edm::default()),
        "euler-maruyama" => Box::new(EulerMaruyama),
        "pc" => Box::new(Pc::default()),
        other => {
            return Err(Error::InvalidArgument {
                name: "solver",
                reason: format!(
                    "'{other}'; available: {}, {}",
                    deterministic_names().join(", "),
                    stochastic_names().join(", ")
                ),
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_builds_the_solver_of_that_name() {
        for name in deterministic_names() {
            let m = by_name(name).unwrap();
            assert_eq!(m.name(), name);
            assert!(!m.stochastic(), "{name}");
        }
        for name in stochastic_names() {
            let m = by_name(name).unwrap();
            assert_eq!(m.name(), name);
            assert!(m.stochastic(), "{name}");
        }
        assert!(by_name("nope").is_err());
    }
}

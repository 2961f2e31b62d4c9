//! DPM-Solver++(2S) (Lu et al. 2022b, arXiv 2211.01095, Alg. 1 with
//! `r = 1/2`), as k-diffusion's `sample_dpmpp_2s_ancestral` runs it with
//! `eta = 0` (no noise is added, so the sampler is deterministic): with
//! `ℓ = log(α/σ)`, `h = ℓ′ − ℓ` and the stage at `ℓ_s = ℓ + h/2`,
//!
//! `u = (σ_s/σ)·x − α_s·(e^{−h/2} − 1)·x̂₀(x)`,
//! `x′ = (σ′/σ)·x − α′·(e^{−h} − 1)·x̂₀(u)`.
//!
//! In k-diffusion's σ (α = 1) the stage is at the geometric mean
//! `√(σ·σ′)`. A step to σ = 0 is one evaluation and lands on `α′·x̂₀(x)`
//! (k-diffusion's Euler step to σ_down = 0). This is
//! [`DpmSolverSinglestep`] of order 2, data prediction, midpoint form,
//! stages inside the step.

use diffuse_core::Result;

use super::{DpmAlgorithm, DpmSolverSinglestep, SecondOrder, SinglestepStages};
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext};

/// DPM-Solver++(2S) [dpmpp-2s].
#[derive(Clone, Copy, Debug, Default)]
pub struct DpmPp2S;

const INNER: DpmSolverSinglestep = DpmSolverSinglestep {
    order: 2,
    algorithm: DpmAlgorithm::DataPrediction,
    solver_type: SecondOrder::Midpoint,
    stages: SinglestepStages::Lambda,
};

impl Method for DpmPp2S {
    fn name(&self) -> &str {
        "dpmpp-2s"
    }
    fn order(&self) -> usize {
        2
    }
    fn nfe_per_step(&self) -> usize {
        2
    }
    fn prediction(&self) -> Prediction {
        Prediction::Data
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        INNER.stages(ctx)
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        INNER.stage_input(ctx, s)
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        INNER.update(ctx, stages)
    }
}

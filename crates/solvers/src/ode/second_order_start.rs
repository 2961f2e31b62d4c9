//! A second-order first step for multistep methods.
//!
//! A multistep method of order p needs p − 1 past predictions; the usual
//! warm-up (diffusers, k-diffusion) takes the first step at order 1 and
//! the second at order 2. A fixed number of steps with local error
//! O(h^q) adds O(h^q) to the final error, so the first-order first step
//! (local error O(h²)) caps the order of convergence at 2, whatever p
//! (Hairer, Nørsett & Wanner, "Solving ODEs I", §III.2: starting values
//! must be accurate to the method's order). With a second-order first
//! step (local error O(h³)) and the usual second-order second step, an
//! order-3 method converges with order 3 again.
//!
//! [`SecondOrderStart`] wraps a multistep method and replaces its first
//! step by DPM-Solver-2 (Lu et al. 2022, Alg. 1 with r₁ = ½; DPM-Solver++
//! 2S for data prediction, Lu et al. 2022b, Alg. 1): one extra model
//! evaluation at the log-SNR midpoint. The prediction at the start level
//! is still the stage-0 prediction of that step, so the wrapped method
//! finds it in its history from the second step on.

use diffuse_core::Result;

use super::{DpmAlgorithm, DpmSolverSinglestep, SecondOrder, SinglestepStages};
use crate::method::{Combination, Method, Prediction, StageLevels, StepContext};

/// `inner` with a second-order (two-evaluation) first step.
pub struct SecondOrderStart<M: Method> {
    /// The multistep method.
    pub inner: M,
    /// Its name with the start: `<inner>+2s`.
    name: String,
}

impl<M: Method> SecondOrderStart<M> {
    /// Wraps `inner`.
    pub fn new(inner: M) -> Self {
        let name = format!("{}+2s", inner.name());
        Self { inner, name }
    }

    /// DPM-Solver-2 in the prediction the inner method combines.
    fn start(&self) -> DpmSolverSinglestep {
        DpmSolverSinglestep {
            order: 2,
            algorithm: match self.inner.prediction() {
                Prediction::Data => DpmAlgorithm::DataPrediction,
                Prediction::Noise => DpmAlgorithm::NoisePrediction,
            },
            solver_type: SecondOrder::Midpoint,
            stages: SinglestepStages::Lambda,
        }
    }

    /// Whether step `ctx.i` is the replaced first step (a first step to
    /// σ = 0 stays first order).
    fn replaced(ctx: &StepContext<'_>) -> bool {
        ctx.i == 0 && ctx.to().sigma > 0.0
    }
}

impl<M: Method> Method for SecondOrderStart<M> {
    fn name(&self) -> &str {
        &self.name
    }
    fn order(&self) -> usize {
        self.inner.order()
    }
    fn nfe_per_step(&self) -> usize {
        self.inner.nfe_per_step().max(2)
    }
    fn prediction(&self) -> Prediction {
        self.inner.prediction()
    }
    fn history(&self) -> usize {
        self.inner.history()
    }
    fn stages(&self, ctx: &StepContext<'_>) -> Result<StageLevels> {
        if Self::replaced(ctx) {
            self.start().stages(ctx)
        } else {
            self.inner.stages(ctx)
        }
    }
    fn stage_input(&self, ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        if Self::replaced(ctx) {
            self.start().stage_input(ctx, s)
        } else {
            self.inner.stage_input(ctx, s)
        }
    }
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination> {
        if Self::replaced(ctx) {
            self.start().update(ctx, stages)
        } else {
            self.inner.update(ctx, stages)
        }
    }
    fn keep_state(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Option<Combination>> {
        if Self::replaced(ctx) {
            Ok(None)
        } else {
            self.inner.keep_state(ctx, stages)
        }
    }
    fn keeps_state(&self) -> bool {
        self.inner.keeps_state()
    }
}

//! What a solver is: where it evaluates the model within a step, and the
//! coefficients that combine the state and the model's predictions.
//!
//! A step from level `i` to level `i + 1` evaluates the model at stage 0
//! (the state `x_i` at level `i`) and at any further stages the method asks
//! for. Every state the method produces (a further stage's input, or
//! `x_{i+1}`) is a linear combination, with scalar coefficients computed in
//! f64 on the host, of
//!
//! - `x_i`, the state at the start of the step, and `x_{i−1}`: the state
//!   the previous step chose to keep ([`Method::keep_state`]; UniPC keeps
//!   its corrected `x_{i−1}`), written in the same pass as `x_i`;
//! - `P_0 … P_s`, the predictions of this step's stages so far;
//! - `H_1 … H_h`, the stage-0 predictions of the previous steps (newest first),
//!
//! where a prediction is the data estimate `x̂₀` or the noise estimate `ε̂`
//! ([`Prediction`]) obtained from the model output through the
//! parameterisation's affine map. The driver ([`crate::Sampler`]) folds that
//! map into the same pass, so each stage costs one fused
//! [`diffuse_core::LinComb`].

use diffuse_core::{Error, Marginal, NoiseLevel, NoiseSchedule, Result};

/// Which estimate a method combines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The data estimate `x̂₀` (DPM-Solver++, UniPC with `predict_x0`, DDIM).
    Data,
    /// The noise estimate `ε̂` (DPM-Solver, DEIS, PNDM, k-diffusion's `d`).
    Noise,
}

/// Coefficients of one state in terms of the quantities listed in the
/// module documentation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Combination {
    /// Coefficient of `x_i`.
    pub x: f64,
    /// Coefficient of `x_{i−1}`, the state kept by the previous step
    /// through [`Method::keep_state`] (only for methods that keep one).
    pub x_prev: f64,
    /// Coefficients of this step's predictions `P_0 … P_s`.
    pub stages: Vec<f64>,
    /// Coefficients of `H_1 … H_h` (newest first).
    pub history: Vec<f64>,
}

impl Combination {
    /// `c_x·x_i + Σ c_j·P_j`.
    pub fn new(x: f64, stages: &[f64]) -> Self {
        Self {
            x,
            x_prev: 0.0,
            stages: stages.to_vec(),
            history: Vec::new(),
        }
    }

    /// Adds coefficients of the history predictions.
    pub fn with_history(mut self, history: &[f64]) -> Self {
        self.history = history.to_vec();
        self
    }

    /// Checks that every coefficient is finite.
    pub fn check(&self, method: &str) -> Result<()> {
        let all = std::iter::once(self.x)
            .chain(std::iter::once(self.x_prev))
            .chain(self.stages.iter().copied())
            .chain(self.history.iter().copied());
        for c in all {
            if !c.is_finite() {
                return Err(Error::NonFinite(format!("{method}: step coefficient {c}")));
            }
        }
        Ok(())
    }
}

/// What a method sees of one row's grid at step `i`.
#[derive(Clone, Copy)]
pub struct StepContext<'a> {
    /// The step index (from level `i` to `i + 1`).
    pub i: usize,
    /// The row's levels, noisy to clean.
    pub levels: &'a [NoiseLevel],
    /// How many history predictions are available (0 at the first step).
    pub history: usize,
    /// The schedule, for stages at intermediate noise levels.
    pub schedule: &'a dyn NoiseSchedule,
}

impl StepContext<'_> {
    /// Level `i` (the start of the step).
    pub fn from(&self) -> Marginal {
        self.levels[self.i].marginal
    }
    /// Level `i + 1` (the end of the step).
    pub fn to(&self) -> Marginal {
        self.levels[self.i + 1].marginal
    }
    /// The number of steps of the grid.
    pub fn steps(&self) -> usize {
        self.levels.len() - 1
    }
    /// Whether this is the last step.
    pub fn is_last(&self) -> bool {
        self.i + 2 == self.levels.len()
    }
    /// Log-SNR of level `j` halved: `λ/2 = log(α/σ)` (DPM-Solver's λ).
    pub fn half_lambda(&self, j: usize) -> f64 {
        let m = self.levels[j].marginal;
        m.alpha.ln() - m.sigma.ln()
    }
    /// The level on the schedule with half log-SNR `half_lambda`.
    pub fn level_at_half_lambda(&self, half_lambda: f64) -> Result<NoiseLevel> {
        let t = self.schedule.t_of_log_snr(2.0 * half_lambda)?;
        // α from the schedule at that time, σ from the exact log-SNR.
        let alpha = self.schedule.alpha(t);
        Ok(NoiseLevel {
            t,
            marginal: Marginal {
                alpha,
                sigma: alpha * (-half_lambda).exp(),
            },
        })
    }
}

/// A deterministic sampling method, as a coefficient recipe.
pub trait Method: Send + Sync {
    /// Canonical name (as used on the command line).
    fn name(&self) -> &str;
    /// Order of convergence.
    fn order(&self) -> usize;
    /// Model evaluations per step (the usual number; a final step may use fewer).
    fn nfe_per_step(&self) -> usize;
    /// Which estimate the method combines.
    fn prediction(&self) -> Prediction;
    /// How many previous stage-0 predictions the method reads.
    fn history(&self) -> usize {
        0
    }
    /// The levels of stages 1, 2, … of step `ctx.i` (stage 0 is level `i`).
    /// Must not depend on the row beyond its grid (rows share the structure).
    fn stages(&self, _ctx: &StepContext<'_>) -> Result<Vec<NoiseLevel>> {
        Ok(Vec::new())
    }
    /// The state at which stage `s ≥ 1` is evaluated, from `x_i`,
    /// `P_0 … P_{s−1}` and the history.
    fn stage_input(&self, _ctx: &StepContext<'_>, s: usize) -> Result<Combination> {
        Err(Error::Unsupported(format!("{}: no stage {s}", self.name())))
    }
    /// `x_{i+1}` from `x_i`, all stage predictions and the history.
    fn update(&self, ctx: &StepContext<'_>, stages: usize) -> Result<Combination>;
    /// The state to keep for the next step, where [`Combination::x_prev`]
    /// names it, as a combination of the same quantities as
    /// [`Method::update`] (including the state kept before). It is written
    /// in the same pass as `x_{i+1}`. `None` (the default) keeps nothing,
    /// and the next step's combinations must not use `x_prev`.
    fn keep_state(&self, _ctx: &StepContext<'_>, _stages: usize) -> Result<Option<Combination>> {
        Ok(None)
    }
}

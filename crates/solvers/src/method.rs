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
//!
//! A stochastic method ([`Method::stochastic`]) adds `c_z·z` to a
//! combination, `z` a fresh standard normal draw ([`Combination::noise`]);
//! the driver folds it into the same pass through the plan's noise term
//! (the numbering of the draws is documented in [`crate::SolverState`]).
//! Two further hooks cover the samplers whose noise is not a term of a
//! stage: [`Method::churn`] raises the noise level before the first model
//! call of a step (Karras et al. 2022, Alg. 2), and [`Method::corrector`]
//! asks for Langevin corrections whose step size depends on the norms of
//! the score and of the draw (Song et al. 2021, Alg. 5).

use arrayvec::ArrayVec;
use diffuse_core::{Error, Marginal, NoiseLevel, NoiseSchedule, Result};

use crate::driver::NoiseKind;

/// Which estimate a method combines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prediction {
    /// The data estimate `x̂₀` (DPM-Solver++, UniPC with `predict_x0`, DDIM).
    Data,
    /// The noise estimate `ε̂` (DPM-Solver, DEIS, PNDM, k-diffusion's `d`).
    Noise,
}

/// The most model evaluations one step may take (classic Runge–Kutta's
/// four, as in PNDM's start).
pub const MAX_STAGES: usize = 4;

/// The most previous predictions a method may read (LMS of order 4 reads
/// three, iPNDM three).
pub const MAX_HISTORY: usize = 4;

/// The levels of a step's stages after the first (fixed capacity, so no
/// step allocates).
pub type StageLevels = ArrayVec<NoiseLevel, { MAX_STAGES - 1 }>;

/// `StageLevels` from a slice; an error if a method asks for more than
/// [`MAX_STAGES`] evaluations in one step.
pub fn stage_levels(levels: &[NoiseLevel]) -> Result<StageLevels> {
    StageLevels::try_from(levels).map_err(|_| {
        Error::Unsupported(format!(
            "{} stages in one step; at most {MAX_STAGES} are supported",
            levels.len() + 1
        ))
    })
}

/// Coefficients of one state in terms of the quantities listed in the
/// module documentation. Fixed capacity ([`MAX_STAGES`], [`MAX_HISTORY`]):
/// building one never allocates; a recipe with more coefficients than that
/// is reported by [`Combination::check`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Combination {
    /// Coefficient of `x_i`.
    pub x: f64,
    /// Coefficient of `x_{i−1}`, the state kept by the previous step
    /// through [`Method::keep_state`] (only for methods that keep one).
    pub x_prev: f64,
    /// Coefficients of this step's predictions `P_0 … P_s`.
    pub stages: ArrayVec<f64, MAX_STAGES>,
    /// Coefficients of `H_1 … H_h` (newest first).
    pub history: ArrayVec<f64, MAX_HISTORY>,
    /// Coefficient `c_z` of a fresh standard normal draw `z` (zero for a
    /// deterministic combination). Only a [`Method::stochastic`] method may
    /// set it.
    pub noise: f64,
    /// Set when a constructor was given more coefficients than fit.
    overflow: bool,
}

impl Combination {
    /// `c_x·x_i + Σ c_j·P_j`.
    pub fn new(x: f64, stages: &[f64]) -> Self {
        let mut c = Self {
            x,
            ..Self::default()
        };
        c.overflow = c.stages.try_extend_from_slice(stages).is_err();
        c
    }

    /// Adds coefficients of the history predictions.
    pub fn with_history(mut self, history: &[f64]) -> Self {
        self.history.clear();
        self.overflow |= self.history.try_extend_from_slice(history).is_err();
        self
    }

    /// Adds the coefficient of the kept state `x_{i−1}`.
    pub fn with_prev(mut self, x_prev: f64) -> Self {
        self.x_prev = x_prev;
        self
    }

    /// Adds the coefficient `c_z` of a fresh standard normal draw.
    pub fn with_noise(mut self, noise: f64) -> Self {
        self.noise = noise;
        self
    }

    /// Checks that every coefficient fits and is finite.
    pub fn check(&self, method: &str) -> Result<()> {
        if self.overflow {
            return Err(Error::Unsupported(format!(
                "{method}: a step combines more than {MAX_STAGES} stage or \
                 {MAX_HISTORY} past predictions"
            )));
        }
        let all = std::iter::once(self.x)
            .chain(std::iter::once(self.x_prev))
            .chain(std::iter::once(self.noise))
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

/// A stochastic raise of the noise level before the first model call of a
/// step ("churn", Karras et al. 2022, Alg. 2 lines 4–6): the model is
/// evaluated at `level` on `x̂ = x·x_i + noise·z` instead of `x_i` at the
/// grid level, and the step's combinations then read `x̂` as `x_i`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Churn {
    /// The raised level (its log-SNR is below the grid level's).
    pub level: NoiseLevel,
    /// Coefficient of `x_i`.
    pub x: f64,
    /// Coefficient of the fresh standard normal draw `z`.
    pub noise: f64,
}

/// Langevin corrections at the start level of a step (Song et al. 2021,
/// Alg. 5): each evaluates the score `s = −ε̂/σ` at `x` and moves
/// `x ← x + ε·s + √(2ε)·z` with the step size
/// `ε = 2·alpha·(snr·√L/‖s‖)²`, `‖s‖` the norm of each batch row and `√L`
/// (`L` elements per row) the expected norm of `z`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Langevin {
    /// Corrections before the step's first stage.
    pub steps: usize,
    /// The target signal-to-noise ratio `r` (positive).
    pub snr: f64,
    /// The factor `alpha` of the step size (score_sde: `1 − β` of the
    /// discretised VP SDE, 1 for VE).
    pub alpha: f64,
}

/// A sampling method, as a coefficient recipe.
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
    fn stages(&self, _ctx: &StepContext<'_>) -> Result<StageLevels> {
        Ok(StageLevels::new())
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
    /// Whether [`Method::keep_state`] may keep a state, so the driver
    /// allocates its buffer when the run starts rather than inside the loop.
    fn keeps_state(&self) -> bool {
        false
    }
    /// Whether the method draws noise: its combinations may have a
    /// non-zero [`Combination::noise`], and it may churn or correct. A
    /// stochastic method is run with a noise source and a deterministic
    /// one without (the driver refuses the other pairings).
    fn stochastic(&self) -> bool {
        false
    }
    /// The churn before step `ctx.i`, if any (only for stochastic methods
    /// that return `true` from [`Method::churns`]).
    fn churn(&self, _ctx: &StepContext<'_>) -> Result<Option<Churn>> {
        Ok(None)
    }
    /// Whether [`Method::churn`] may churn, so the driver allocates what it
    /// needs when the run starts.
    fn churns(&self) -> bool {
        false
    }
    /// The Langevin corrections of step `ctx.i`, if any (only for
    /// stochastic methods that return `true` from [`Method::corrects`]).
    fn corrector(&self, _ctx: &StepContext<'_>) -> Result<Option<Langevin>> {
        Ok(None)
    }
    /// Whether [`Method::corrector`] may correct, so the driver allocates
    /// its buffers when the run starts. The predictor of a correcting
    /// method takes one stage per step ([`Method::nfe_per_step`] counts the
    /// corrections too).
    fn corrects(&self) -> bool {
        false
    }
    /// The noise source a [`crate::Sampler`] uses for the method unless
    /// told otherwise: the public stream's independent draws
    /// ([`NoiseKind::Philox`]) by default.
    fn default_noise(&self) -> NoiseKind {
        NoiseKind::Philox
    }
}

//! diffusers' `set_timesteps`: the inference timesteps and σ grid of every
//! supported scheduler class, reproduced from the configuration alone.
//!
//! diffusers builds its tables in float32 (torch) and its grids partly in
//! float64 (numpy). This module follows the same order of operations and
//! rounds to f32 where diffusers holds f32 values, so `timesteps` and
//! `sigmas` agree with `scheduler.timesteps` and `scheduler.sigmas` to f32
//! rounding (the conformance test asserts 1e-6 relative). σ is the
//! variance-exploding noise level `σ_VE = σ/α = √((1 − ᾱ)/ᾱ)`, including the
//! final value after the last step.
//!
//! The grid formulas themselves (Karras, exponential, Beta quantiles,
//! `linspace`) come from `diffuse_schedules::grids`; this module only adds
//! diffusers' choices of end points, spacing and rounding.

use diffuse_core::{Error, Marginal, NoiseSchedule, Result};
use diffuse_schedules::BetaSchedule;
use diffuse_schedules::grids::{beta_sigmas, exponential_sigmas, karras_sigmas, linspace};

use crate::config::{
    Betas, EdmSigmaSchedule, FinalSigmas, Interpolation, SchedulerClass, SchedulerConfig,
    SigmaSpacing, TimestepSpacing, TimestepType,
};

/// Extra inputs of `set_timesteps`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TimestepOptions {
    /// `mu`: the resolution-dependent shift of FlowMatchEulerDiscrete with
    /// `use_dynamic_shifting` (required there, rejected elsewhere).
    pub mu: Option<f64>,
}

/// The result of `set_timesteps(N)`.
#[derive(Clone, Debug, PartialEq)]
pub struct InferenceGrid {
    /// `scheduler.timesteps`: one per model evaluation (what the network is
    /// conditioned on).
    pub timesteps: Vec<f64>,
    /// `scheduler.sigmas` (σ_VE, or the flow σ), including the value after
    /// the last step; `None` for DDIM and PNDM, which have no σ grid.
    pub sigmas: Option<Vec<f64>>,
    /// `scheduler.sigmas_interpol` (KDPM2 only): the midpoint σ of each
    /// second-order step. The first entry, which diffusers leaves NaN and
    /// never reads, is 0 here.
    pub sigmas_interpol: Option<Vec<f64>>,
}

/// Rounds to the nearest f32 (what torch/numpy float32 storage does).
fn f32r(x: f64) -> f64 {
    x as f32 as f64
}

fn invalid(name: &'static str, reason: String) -> Error {
    Error::InvalidArgument { name, reason }
}

impl SchedulerConfig {
    /// diffusers' `alphas_cumprod` table (float32 values) for the classes
    /// with a β table: betas in f32, `1 − β` in f32, the running product
    /// accumulated in f64 and stored in f32; with `rescale_betas_zero_snr`
    /// the rescale of Lin et al. 2024 (Alg. 1) in f32 with diffusers' order
    /// of operations, and the final ᾱ set to 2⁻²⁴ for the σ-based classes
    /// (which cannot represent σ = ∞).
    pub fn alphas_cumprod(&self) -> Result<Vec<f64>> {
        if !self.class.uses_betas() {
            return Err(Error::Unsupported(format!(
                "{} has no β table",
                self.class.class_name()
            )));
        }
        let n = self.num_train_timesteps;
        let betas: Vec<f64> = match &self.betas {
            Betas::Named {
                schedule,
                beta_start,
                beta_end,
            } => BetaSchedule::from_name(schedule, *beta_start, *beta_end)?.betas(n)?,
            Betas::Trained(b) => b.iter().map(|&x| f32r(x)).collect(),
        };
        let betas: Vec<f32> = if self.rescale_betas_zero_snr {
            rescale_zero_terminal_snr_f32(&betas)
        } else {
            betas.iter().map(|&b| b as f32).collect()
        };
        let mut acc = 1.0f64;
        let mut acp: Vec<f64> = betas
            .iter()
            .map(|&b| {
                acc *= (1.0f32 - b) as f64;
                f32r(acc)
            })
            .collect();
        if self.rescale_betas_zero_snr
            && self.class.uses_sigmas()
            && let Some(last) = acp.last_mut()
        {
            *last = 2f64.powi(-24);
        }
        Ok(acp)
    }

    /// `set_timesteps(num_inference_steps)` of the configured class.
    pub fn set_timesteps(&self, steps: usize, options: &TimestepOptions) -> Result<InferenceGrid> {
        if steps == 0 {
            return Err(invalid(
                "num_inference_steps",
                "0; at least one step is needed".into(),
            ));
        }
        if steps > diffuse_core::MAX_STEPS {
            return Err(invalid(
                "num_inference_steps",
                format!("{steps} exceeds the limit of {}", diffuse_core::MAX_STEPS),
            ));
        }
        if options.mu.is_some() && self.class != SchedulerClass::FlowMatchEulerDiscrete {
            return Err(invalid(
                "mu",
                format!("{} has no dynamic shift", self.class.class_name()),
            ));
        }
        match self.class {
            SchedulerClass::Ddim | SchedulerClass::Pndm => self.vp_timesteps(steps),
            SchedulerClass::EulerDiscrete
            | SchedulerClass::HeunDiscrete
            | SchedulerClass::LmsDiscrete
            | SchedulerClass::Kdpm2Discrete => self.k_timesteps(steps),
            SchedulerClass::DpmSolverMultistep
            | SchedulerClass::DpmSolverSinglestep
            | SchedulerClass::UniPcMultistep
            | SchedulerClass::DeisMultistep => self.multistep_timesteps(steps),
            SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep => {
                self.edm_timesteps(steps)
            }
            SchedulerClass::FlowMatchEulerDiscrete => self.flow_timesteps(steps, options),
        }
    }

    /// The marginal `(α, σ)` at a point of an [`InferenceGrid`]: from the σ
    /// grid where there is one (`α = 1/√(1 + σ²)`, `σ_t = σ·α` for the VP
    /// classes, `(1, σ)` for EDM, `(1 − σ, σ)` for flows), else from `ᾱ` at
    /// the integer timestep (DDIM, PNDM).
    pub fn marginal_at(&self, grid: &InferenceGrid, index: usize) -> Result<Marginal> {
        let out_of_range = || invalid("grid index", format!("{index} is past the end of the grid"));
        match &grid.sigmas {
            Some(s) => {
                let s = *s.get(index).ok_or_else(out_of_range)?;
                match self.class {
                    SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep => {
                        Marginal::new(1.0, s)
                    }
                    SchedulerClass::FlowMatchEulerDiscrete => Marginal::new(1.0 - s, s),
                    _ if self.sigma_spacing == SigmaSpacing::Flow => Marginal::new(1.0 - s, s),
                    _ => {
                        let alpha = 1.0 / (s * s + 1.0).sqrt();
                        Marginal::new(alpha, s * alpha)
                    }
                }
            }
            None => {
                let t = *grid.timesteps.get(index).ok_or_else(out_of_range)?;
                let acp = self.alphas_cumprod()?;
                let a = acp[(t as usize).min(acp.len() - 1)];
                Marginal::new(a.sqrt(), (1.0 - a).sqrt())
            }
        }
    }

    fn edm_settings(&self) -> Result<crate::config::EdmSettings> {
        self.edm.ok_or_else(|| {
            invalid(
                "sigma_min",
                format!("{} needs its EDM settings", self.class.class_name()),
            )
        })
    }

    fn flow_settings(&self) -> Result<crate::config::FlowSettings> {
        self.flow.ok_or_else(|| {
            invalid(
                "shift",
                format!("{} needs its flow settings", self.class.class_name()),
            )
        })
    }

    /// The f32 σ table `√((1 − ᾱ)/ᾱ)` and its f32 logarithm.
    fn sigma_table(&self) -> Result<(Vec<f64>, Vec<f64>)> {
        let acp = self.alphas_cumprod()?;
        let sigmas: Vec<f64> = acp
            .iter()
            .map(|&a| {
                let a = a as f32;
                (((1.0f32 - a) / a).sqrt()) as f64
            })
            .collect();
        let log_sigmas = sigmas.iter().map(|&s| f32r(s.ln())).collect();
        Ok((sigmas, log_sigmas))
    }

    /// The spaced training timesteps of the classes that take `N` of them
    /// (DDIM, PNDM, Euler, Heun, LMS, KDPM2), from noisy to clean, unrounded
    /// for `linspace` (DDIM and PNDM round them).
    fn spaced_timesteps(&self, steps: usize) -> Result<Vec<f64>> {
        let t = self.num_train_timesteps;
        let tf = t as f64;
        Ok(match self.timestep_spacing {
            TimestepSpacing::Linspace => {
                let mut v = linspace(0.0, tf - 1.0, steps);
                v.reverse();
                v
            }
            TimestepSpacing::Leading => {
                let ratio = t / steps;
                (0..steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(tf, tf / steps as f64),
        })
    }

    fn check_train_steps(&self, steps: usize) -> Result<()> {
        if steps > self.num_train_timesteps {
            return Err(invalid(
                "num_inference_steps",
                format!(
                    "{steps} exceeds num_train_timesteps = {}",
                    self.num_train_timesteps
                ),
            ));
        }
        Ok(())
    }

    /// DDIM and PNDM: integer timesteps, no σ grid.
    fn vp_timesteps(&self, steps: usize) -> Result<InferenceGrid> {
        self.check_train_steps(steps)?;
        let mut ts: Vec<f64> = self
            .spaced_timesteps(steps)?
            .into_iter()
            .map(f64::round_ties_even)
            .collect();
        if self.class == SchedulerClass::Pndm {
            ts = pndm_timesteps(&ts, self.num_train_timesteps, self.solver.skip_prk_steps);
        }
        check_timesteps(&ts, self.num_train_timesteps)?;
        Ok(InferenceGrid {
            timesteps: ts,
            sigmas: None,
            sigmas_interpol: None,
        })
    }

    /// Euler, Heun, LMS and KDPM2: σ interpolated at float timesteps (or a
    /// Karras / exponential / Beta grid between the interpolated end points),
    /// then a final σ.
    fn k_timesteps(&self, steps: usize) -> Result<InferenceGrid> {
        self.check_train_steps(steps)?;
        let (table, log_table) = self.sigma_table()?;
        let mut ts = self.spaced_timesteps(steps)?;
        if self.class != SchedulerClass::LmsDiscrete {
            // Euler, Heun and KDPM2 hold these in float32.
            ts.iter_mut().for_each(|t| *t = f32r(*t));
        }
        let interpolated: Vec<f64> = ts.iter().map(|&t| interp(t, &table)).collect();
        let (mut sigmas, mut ts) = match self.sigma_spacing {
            SigmaSpacing::Interpolated => match self.interpolation_type {
                Interpolation::Linear => (interpolated, ts),
                Interpolation::LogLinear => {
                    // torch.linspace(log σ_max, log σ_min, N + 1).exp() over
                    // the whole table (this gives N + 1 σ before the final one).
                    let s = linspace(
                        f32r(table[table.len() - 1].ln()),
                        f32r(table[0].ln()),
                        steps + 1,
                    )
                    .into_iter()
                    .map(|l| f32r(f32r(l).exp()))
                    .collect();
                    (s, ts)
                }
            },
            SigmaSpacing::Karras | SigmaSpacing::Exponential | SigmaSpacing::Beta => {
                let s = self.sigma_grid(&interpolated, steps)?;
                let t = s.iter().map(|&x| sigma_to_t(x, &log_table)).collect();
                (s, t)
            }
            SigmaSpacing::LuLambdas | SigmaSpacing::Flow => {
                return Err(Error::Unsupported(format!(
                    "{} has no {:?} σ spacing",
                    self.class.class_name(),
                    self.sigma_spacing
                )));
            }
        };
        if self.class == SchedulerClass::EulerDiscrete
            && self.timestep_type == TimestepType::Continuous
            && self.prediction_type == crate::config::PredictionType::VPrediction
        {
            ts = sigmas.iter().map(|&s| f32r(0.25 * f32r(s).ln())).collect();
        }
        let last = match (self.class, self.final_sigmas_type) {
            (SchedulerClass::EulerDiscrete, FinalSigmas::SigmaMin) => table[0],
            _ => 0.0,
        };
        sigmas.push(last);
        let sigmas: Vec<f64> = sigmas.into_iter().map(f32r).collect();
        let ts: Vec<f64> = ts.into_iter().map(f32r).collect();
        check_sigmas(&sigmas)?;
        match self.class {
            SchedulerClass::HeunDiscrete => Ok(InferenceGrid {
                timesteps: repeat_tail(&ts, 0),
                sigmas: Some(repeat_tail(&sigmas, 1)),
                sigmas_interpol: None,
            }),
            SchedulerClass::Kdpm2Discrete => Ok(kdpm2_grid(&ts, &sigmas, &log_table)),
            _ => Ok(InferenceGrid {
                timesteps: ts,
                sigmas: Some(sigmas),
                sigmas_interpol: None,
            }),
        }
    }

    /// The Karras / exponential / Beta σ grid of `steps` points between the
    /// config's `sigma_max`/`sigma_min` if set, else the first and last of
    /// `span` (diffusers' `_convert_to_*`).
    fn sigma_grid(&self, span: &[f64], steps: usize) -> Result<Vec<f64>> {
        let sigma_max = self.sigma_max.unwrap_or(span[0]);
        let sigma_min = self.sigma_min.unwrap_or(span[span.len() - 1]);
        if !(sigma_min > 0.0 && sigma_min <= sigma_max && sigma_max.is_finite()) {
            return Err(invalid(
                "sigma_min",
                format!("the σ range [{sigma_min}, {sigma_max}] is empty or not positive"),
            ));
        }
        Ok(match self.sigma_spacing {
            SigmaSpacing::Karras => karras_sigmas(sigma_max, sigma_min, 7.0, steps),
            SigmaSpacing::Exponential => exponential_sigmas(sigma_max, sigma_min, steps),
            SigmaSpacing::Beta => beta_sigmas(sigma_max, sigma_min, 0.6, 0.6, steps),
            _ => unreachable_spacing(self.sigma_spacing)?,
        })
    }

    /// DPM-Solver (multistep and singlestep), UniPC and DEIS: `N + 1`
    /// spaced integer timesteps with the last dropped, or a σ grid over the
    /// whole table with rounded timesteps.
    fn multistep_timesteps(&self, steps: usize) -> Result<InferenceGrid> {
        let t_train = self.num_train_timesteps;
        let (table, log_table) = self.sigma_table()?;
        // lambda_min_clipped: drop the training steps whose log-SNR is below it.
        let clipped = if self.lambda_min_clipped == f64::NEG_INFINITY
            || self.class != SchedulerClass::DpmSolverMultistep
                && self.class != SchedulerClass::DpmSolverSinglestep
        {
            0
        } else {
            let acp = self.alphas_cumprod()?;
            // λ_t/2 = log α − log σ in f32, ascending after the flip.
            acp.iter()
                .rev()
                .filter(|&&a| {
                    let a = a as f32;
                    ((a.sqrt().ln() - (1.0f32 - a).sqrt().ln()) as f64) < self.lambda_min_clipped
                })
                .count()
        };
        let last_timestep = t_train - clipped;
        if last_timestep < 1 {
            return Err(invalid(
                "lambda_min_clipped",
                format!("{} clips every training step", self.lambda_min_clipped),
            ));
        }
        let lt = last_timestep as f64;
        let spacing = if self.class == SchedulerClass::DpmSolverSinglestep {
            TimestepSpacing::Linspace
        } else {
            self.timestep_spacing
        };
        let mut ts: Vec<f64> = match spacing {
            TimestepSpacing::Linspace => {
                let mut v: Vec<f64> = linspace(0.0, lt - 1.0, steps + 1)
                    .into_iter()
                    .map(f64::round_ties_even)
                    .collect();
                v.reverse();
                v.pop();
                v
            }
            TimestepSpacing::Leading => {
                let ratio = last_timestep / (steps + 1);
                (1..=steps)
                    .rev()
                    .map(|i| (i * ratio + self.steps_offset) as f64)
                    .collect()
            }
            TimestepSpacing::Trailing => trailing(lt, t_train as f64 / steps as f64),
        };
        let sigma_last_min = table[0];
        let sigmas: Vec<f64> = match self.sigma_spacing {
            SigmaSpacing::Interpolated => ts.iter().map(|&t| interp(t, &table)).collect(),
            SigmaSpacing::Karras | SigmaSpacing::Exponential | SigmaSpacing::Beta => {
                let flipped: Vec<f64> = table.iter().rev().copied().collect();
                let s = self.sigma_grid(&flipped, steps)?;
                // Karras timesteps are rounded; the others are truncated by
                // the cast to int64.
                let karras = self.sigma_spacing == SigmaSpacing::Karras;
                ts = s
                    .iter()
                    .map(|&x| {
                        let t = sigma_to_t(x, &log_table);
                        if karras {
                            t.round_ties_even()
                        } else {
                            t.trunc()
                        }
                    })
                    .collect();
                s
            }
            SigmaSpacing::LuLambdas => {
                if self.class != SchedulerClass::DpmSolverMultistep {
                    return unreachable_spacing(self.sigma_spacing);
                }
                // log σ evenly spaced over the whole table.
                let (hi, lo) = (log_table[log_table.len() - 1], log_table[0]);
                let s: Vec<f64> = linspace(0.0, 1.0, steps)
                    .into_iter()
                    .map(|r| (hi + r * (lo - hi)).exp())
                    .collect();
                ts = s
                    .iter()
                    .map(|&x| sigma_to_t(x, &log_table).round_ties_even())
                    .collect();
                s
            }
            SigmaSpacing::Flow => {
                let shift = self.flow_shift;
                let alphas = linspace(1.0, 1.0 / t_train as f64, steps + 1);
                let mut s: Vec<f64> = alphas
                    .iter()
                    .map(|a| {
                        let x = 1.0 - a;
                        shift * x / (1.0 + (shift - 1.0) * x)
                    })
                    .collect();
                s.reverse();
                s.pop();
                ts = s.iter().map(|x| (x * t_train as f64).trunc()).collect();
                s
            }
        };
        let last = match self.sigma_spacing {
            SigmaSpacing::Flow => sigmas[sigmas.len() - 1],
            SigmaSpacing::Karras | SigmaSpacing::Exponential | SigmaSpacing::Beta
                if self.class == SchedulerClass::DeisMultistep =>
            {
                sigmas[sigmas.len() - 1]
            }
            _ if self.class == SchedulerClass::DeisMultistep => sigma_last_min,
            _ => match self.final_sigmas_type {
                FinalSigmas::SigmaMin => sigma_last_min,
                FinalSigmas::Zero => 0.0,
            },
        };
        let mut sigmas: Vec<f64> = sigmas.into_iter().map(f32r).collect();
        sigmas.push(f32r(last));
        check_sigmas(&sigmas)?;
        if self.sigma_spacing != SigmaSpacing::Flow {
            check_timesteps(&ts, t_train)?;
        }
        Ok(InferenceGrid {
            timesteps: ts,
            sigmas: Some(sigmas),
            sigmas_interpol: None,
        })
    }

    /// EDMEuler and EDMDPMSolverMultistep: a Karras or exponential grid in
    /// σ (float32), timesteps `c_noise = ¼·ln σ`, then a final σ.
    fn edm_timesteps(&self, steps: usize) -> Result<InferenceGrid> {
        let e = self.edm_settings()?;
        let sigmas: Vec<f64> = match e.sigma_schedule {
            EdmSigmaSchedule::Karras => karras_sigmas(e.sigma_max, e.sigma_min, e.rho, steps),
            EdmSigmaSchedule::Exponential => {
                let mut s = exponential_sigmas(e.sigma_min, e.sigma_max, steps);
                s.reverse();
                s
            }
        }
        .into_iter()
        .map(f32r)
        .collect();
        let ts = sigmas.iter().map(|&s| f32r(0.25 * f32r(s.ln()))).collect();
        let last = match self.final_sigmas_type {
            FinalSigmas::SigmaMin => sigmas[sigmas.len() - 1],
            FinalSigmas::Zero => 0.0,
        };
        let mut sigmas = sigmas;
        sigmas.push(last);
        check_sigmas(&sigmas)?;
        Ok(InferenceGrid {
            timesteps: ts,
            sigmas: Some(sigmas),
            sigmas_interpol: None,
        })
    }

    /// FlowMatchEulerDiscrete: timesteps evenly spaced between the shifted
    /// training σ's end points (times T), shifted (static, dynamic μ, and
    /// the optional terminal stretch), optionally respaced (Karras,
    /// exponential, Beta), then a final 0 (or 1 with `invert_sigmas`).
    fn flow_timesteps(&self, steps: usize, options: &TimestepOptions) -> Result<InferenceGrid> {
        let f = self.flow_settings()?;
        let schedule = self.flow_schedule(options)?;
        let t_train = self.num_train_timesteps as f64;
        // The training σ table in f32: σ = shift·t/(1 + (shift − 1)·t) of
        // t = linspace(1, T, T)/T, un-shifted when the shift is dynamic.
        let train_sigma = |t: f64| -> f64 {
            let t = f32r(f32r(t) / t_train);
            if f.use_dynamic_shifting {
                t
            } else {
                let s = f.shift as f32;
                let t = t as f32;
                (s * t / (1.0 + (s - 1.0) * t)) as f64
            }
        };
        let (sigma_max, sigma_min) = (train_sigma(t_train), train_sigma(1.0));
        let t_max = sigma_max * t_train;
        let t_min = sigma_min * t_train;
        let mut sigmas: Vec<f64> = linspace(t_max, t_min, steps)
            .into_iter()
            .map(|t| t / t_train)
            .collect();
        for s in &mut sigmas {
            // The shift applied to a point of the unshifted grid (for flows the
            // unshifted σ is the schedule's time).
            *s = schedule.sigma(*s);
        }
        if let Some(terminal) = f.shift_terminal {
            if !(terminal > 0.0 && terminal < 1.0) {
                return Err(invalid(
                    "shift_terminal",
                    format!("{terminal} must lie in (0, 1)"),
                ));
            }
            let scale = (1.0 - sigmas[sigmas.len() - 1]) / (1.0 - terminal);
            for s in &mut sigmas {
                *s = 1.0 - (1.0 - *s) / scale;
            }
        }
        if matches!(
            self.sigma_spacing,
            SigmaSpacing::Karras | SigmaSpacing::Exponential | SigmaSpacing::Beta
        ) {
            let span = sigmas.clone();
            sigmas = self.sigma_grid(&span, steps)?;
        }
        let mut sigmas: Vec<f64> = sigmas.into_iter().map(f32r).collect();
        let mut ts: Vec<f64> = sigmas.iter().map(|&s| f32r(s * t_train)).collect();
        if f.invert_sigmas {
            sigmas.iter_mut().for_each(|s| *s = f32r(1.0 - *s));
            ts = sigmas.iter().map(|&s| f32r(s * t_train)).collect();
            sigmas.push(1.0);
        } else {
            sigmas.push(0.0);
        }
        check_sigmas(&sigmas)?;
        Ok(InferenceGrid {
            timesteps: ts,
            sigmas: Some(sigmas),
            sigmas_interpol: None,
        })
    }
}

impl SchedulerClass {
    /// Whether the class samples along a σ grid (`scheduler.sigmas` exists).
    pub fn uses_sigmas(self) -> bool {
        !matches!(self, Self::Ddim | Self::Pndm)
    }
}

fn unreachable_spacing<T>(spacing: SigmaSpacing) -> Result<T> {
    Err(Error::Unsupported(format!(
        "σ spacing {spacing:?} is not available here"
    )))
}

/// `round(arange(start, 0, −step)) − 1`, numpy's `arange` arithmetic
/// (`start + i·(−step)`, `⌈start/step⌉` values).
fn trailing(start: f64, step: f64) -> Vec<f64> {
    let n = (start / step).ceil() as usize;
    (0..n)
        .map(|i| (start + i as f64 * -step).round_ties_even() - 1.0)
        .collect()
}

/// numpy's `interp(x, arange(len(fp)), fp)` (f64).
fn interp(x: f64, fp: &[f64]) -> f64 {
    let last = fp.len() - 1;
    if x <= 0.0 {
        return fp[0];
    }
    if x >= last as f64 {
        return fp[last];
    }
    let j = x.floor() as usize;
    let slope = (fp[j + 1] - fp[j]) / 1.0;
    slope * (x - j as f64) + fp[j]
}

/// diffusers' `_sigma_to_t`: the fractional timestep whose log σ matches,
/// by linear interpolation in the f32 log σ table (`log_sigmas` ascending).
fn sigma_to_t(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = sigma.max(1e-10).ln();
    let count = log_sigmas.iter().filter(|&&l| log_sigma - l >= 0.0).count();
    let low_idx = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (low, high) = (log_sigmas[low_idx], log_sigmas[low_idx + 1]);
    // (low − high) is a difference of two float32 values, in float32.
    let w = ((low - log_sigma) / f32r(low - high)).clamp(0.0, 1.0);
    (1.0 - w) * low_idx as f64 + w * (low_idx + 1) as f64
}

/// The same in float32 throughout (KDPM2 applies it to a torch tensor).
fn sigma_to_t_f32(sigma: f64, log_sigmas: &[f64]) -> f64 {
    let log_sigma = (sigma as f32).max(1e-10).ln();
    let count = log_sigmas
        .iter()
        .filter(|&&l| log_sigma - l as f32 >= 0.0)
        .count();
    let low_idx = count.saturating_sub(1).min(log_sigmas.len() - 2);
    let (low, high) = (log_sigmas[low_idx] as f32, log_sigmas[low_idx + 1] as f32);
    let w = ((low - log_sigma) / (low - high)).clamp(0.0, 1.0);
    ((1.0 - w) * low_idx as f32 + w * (low_idx + 1) as f32) as f64
}

/// `[v₀, v₁, v₁, v₂, v₂, …]` (Heun's interleaving); with `tail = 1` the
/// last value is kept once more at the end, as for σ.
fn repeat_tail(v: &[f64], tail: usize) -> Vec<f64> {
    let mut out = vec![v[0]];
    let end = v.len() - tail;
    for &x in &v[1..end] {
        out.push(x);
        out.push(x);
    }
    out.extend_from_slice(&v[end..]);
    out
}

/// KDPM2's interleaved grid: σ at each step and at the geometric midpoint
/// (`exp(lerp(log σ_i, log σ_{i−1}, ½))` in f32), with the midpoint
/// timesteps found by `_sigma_to_t`.
fn kdpm2_grid(ts: &[f64], sigmas: &[f64], log_table: &[f64]) -> InferenceGrid {
    let n = sigmas.len();
    let mut interpol = vec![0.0; n];
    for i in 1..n {
        let (a, b) = ((sigmas[i] as f32).ln(), (sigmas[i - 1] as f32).ln());
        // torch.lerp with weight ½: end − (end − start)·½.
        let l = b - (b - a) * 0.5;
        interpol[i] = l.exp() as f64;
    }
    let t_interpol: Vec<f64> = interpol
        .iter()
        .map(|&s| sigma_to_t_f32(s, log_table))
        .collect();
    let mut timesteps = vec![ts[0]];
    for i in 1..ts.len() {
        timesteps.push(t_interpol[i]);
        timesteps.push(ts[i]);
    }
    InferenceGrid {
        timesteps,
        sigmas: Some(repeat_tail_end(sigmas)),
        sigmas_interpol: Some(repeat_tail_end(&interpol)),
    }
}

/// `[v₀] + each of v[1..] twice + [v_last]`.
fn repeat_tail_end(v: &[f64]) -> Vec<f64> {
    let mut out = vec![v[0]];
    for &x in &v[1..] {
        out.push(x);
        out.push(x);
    }
    out.push(v[v.len() - 1]);
    out
}

/// PNDM's order of model evaluations. With `skip_prk_steps` (PLMS only),
/// the second timestep is evaluated twice; otherwise the first three steps
/// are Runge–Kutta steps with half-step midpoints (pndm_order = 4).
fn pndm_timesteps(ts: &[f64], t_train: usize, skip_prk_steps: bool) -> Vec<f64> {
    // `ts` runs noisy → clean; diffusers builds these clean → noisy.
    let asc: Vec<f64> = ts.iter().rev().copied().collect();
    let n = asc.len();
    if skip_prk_steps {
        let mut plms: Vec<f64> = asc[..n - 1].to_vec();
        if n >= 2 {
            plms.push(asc[n - 2]);
        }
        plms.push(asc[n - 1]);
        plms.reverse();
        return plms;
    }
    let half = ((t_train / n) / 2) as f64;
    let order = 4.min(n);
    // prk = repeat(asc[-4:], 2) + tile([0, half], 4), then [:-1].repeat(2)[1:-1] reversed.
    let tail = &asc[n - order..];
    let mut prk: Vec<f64> = tail.iter().flat_map(|&x| [x, x]).collect();
    for (i, p) in prk.iter_mut().enumerate() {
        if i % 2 == 1 {
            *p += half;
        }
    }
    prk.pop();
    let doubled: Vec<f64> = prk.iter().flat_map(|&x| [x, x]).collect();
    let mut prk: Vec<f64> = doubled[1..doubled.len() - 1].to_vec();
    prk.reverse();
    let mut plms: Vec<f64> = if n > 3 { asc[..n - 3].to_vec() } else { vec![] };
    plms.reverse();
    prk.extend(plms);
    prk
}

fn check_sigmas(s: &[f64]) -> Result<()> {
    if let Some(bad) = s.iter().find(|x| !x.is_finite() || **x < 0.0) {
        return Err(Error::NonFinite(format!("σ grid (found {bad})")));
    }
    Ok(())
}

fn check_timesteps(ts: &[f64], t_train: usize) -> Result<()> {
    if let Some(bad) = ts.iter().find(|&&t| !(t >= 0.0 && t < t_train as f64)) {
        return Err(invalid(
            "steps_offset",
            format!(
                "timestep {bad} falls outside [0, {t_train}); lower steps_offset or the step count"
            ),
        ));
    }
    Ok(())
}

/// Lin et al. 2024, Alg. 1 in float32 with diffusers' order: `√ᾱ`, shift
/// so the last is 0, scale so the first is kept, square, and back to betas
/// via `α_t = ᾱ_t/ᾱ_{t−1}`.
fn rescale_zero_terminal_snr_f32(betas: &[f64]) -> Vec<f32> {
    let mut acc = 1.0f64;
    let mut sqrt_acp: Vec<f32> = betas
        .iter()
        .map(|&b| {
            acc *= (1.0f32 - b as f32) as f64;
            (acc as f32).sqrt()
        })
        .collect();
    let first = sqrt_acp[0];
    let last = sqrt_acp[sqrt_acp.len() - 1];
    let scale = first / (first - last);
    for s in &mut sqrt_acp {
        *s -= last;
        *s *= scale;
    }
    let acp: Vec<f32> = sqrt_acp.iter().map(|s| s * s).collect();
    let mut out = Vec::with_capacity(acp.len());
    out.push(1.0 - acp[0]);
    for w in acp.windows(2) {
        out.push(1.0 - w[1] / w[0]);
    }
    out
}

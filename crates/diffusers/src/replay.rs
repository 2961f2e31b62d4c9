//! Replays a run of diffusers or k-diffusion recorded in the conformance
//! format (`conformance/README.md`): the same scheduler configuration (or
//! k-diffusion sampler and σ grid), the same starting noise `z`, the exact
//! Gaussian-mixture denoiser, and diffuse's own solver. Used by
//! `diffuse replay` and by the conformance tests.

use std::sync::Arc;

use diffuse_core::{
    Backend, CpuBackend, Error, Marginal, NoiseLevel, NoiseSchedule, Parameterization, Result,
    SamplingGrid,
};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_param::Sample;
use diffuse_solvers::{
    Ddim, Deis, Dpm2, DpmAlgorithm, DpmPp2S, DpmSolverMultistep, DpmSolverSinglestep, Euler, Heun,
    Lms, Method, Pndm, PndmStart, SecondOrder, SinglestepStages, ThirdOrder, UniPc, UniPcVariant,
    VeSchedule,
};
use serde_json::Value;

use crate::config::{AlgorithmType, PredictionType, SchedulerClass, SchedulerConfig, SolverType};
use crate::parse::json_f64;
use crate::timesteps::TimestepOptions;

/// The outcome of a replay.
#[derive(Clone, Debug, PartialEq)]
pub struct Replay {
    /// The timesteps of the run (diffusers), or the σ of each model call's
    /// step (k-diffusion).
    pub timesteps: Vec<f64>,
    /// The σ grid (σ_VE; flow σ for flow matching).
    pub sigmas: Vec<f64>,
    /// The final state, in the case's own coordinates.
    pub x: Vec<Vec<f64>>,
    /// Model evaluations.
    pub nfe: usize,
    /// The solver that ran.
    pub solver: String,
}

fn bad(name: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidArgument {
        name,
        reason: reason.into(),
    }
}

fn numbers(v: &Value, name: &'static str) -> Result<Vec<f64>> {
    v.as_array()
        .ok_or_else(|| bad(name, "expected an array of numbers"))?
        .iter()
        .map(|x| json_f64(x).ok_or_else(|| bad(name, format!("{x} is not a number"))))
        .collect()
}

fn matrix(v: &Value, name: &'static str) -> Result<Vec<Vec<f64>>> {
    v.as_array()
        .ok_or_else(|| bad(name, "expected an array of rows"))?
        .iter()
        .map(|row| numbers(row, name))
        .collect()
}

/// Consecutive duplicates removed: diffusers' Heun and KDPM2 repeat each
/// σ of their interleaved stages.
fn step_sigmas(sigmas: &[f64]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(sigmas.len());
    for &s in sigmas {
        if out.last() != Some(&s) {
            out.push(s);
        }
    }
    out
}

/// PNDM's grid: the distinct timesteps its steps start from, then the level
/// the last step ends at. diffusers evaluates the model at the listed
/// timesteps (PLMS lists the second one twice: the pseudo-Heun first step
/// evaluates it at two states; the Runge–Kutta start lists the three
/// midpoints `t − r/2`, `r = T/N`) and moves each step from `t` to
/// `t − r` (to `final_alpha_cumprod` below 0), so the grid is exact only
/// when consecutive step timesteps are `r` apart (leading and trailing
/// spacing; not linspace, where the model would be evaluated at a level
/// the state is not at) and, for the Runge–Kutta start, `r` is even.
fn pndm_levels(
    config: &SchedulerConfig,
    timesteps: &[f64],
    steps: usize,
) -> Result<Vec<NoiseLevel>> {
    let ratio = (config.num_train_timesteps / steps.max(1)) as f64;
    let unsupported = |why: String| Error::Unsupported(format!("replaying PNDMScheduler {why}"));
    let mut ts = step_sigmas(timesteps);
    if !config.solver.skip_prk_steps {
        // [d, c + r/2, c, b + r/2, b, a + r/2, a, …] → [d, c, b, a, …].
        if steps < 4 || ratio % 2.0 != 0.0 || ts.len() < 7 {
            return Err(unsupported(format!(
                "with the Runge–Kutta start on {steps} steps of {ratio} timesteps (needs at least 4 steps of an even number)"
            )));
        }
        for k in [5, 3, 1] {
            if ts[k] != 0.5 * (ts[k - 1] + ts[k + 1]) {
                return Err(unsupported(format!(
                    "with the Runge–Kutta start: {} is not the midpoint of {} and {}",
                    ts[k],
                    ts[k - 1],
                    ts[k + 1]
                )));
            }
            ts.remove(k);
        }
    }
    if let Some(w) = ts.windows(2).find(|w| w[0] - ratio != w[1]) {
        return Err(unsupported(format!(
            "on timesteps {} → {}: diffusers steps to t − {ratio}, not to the next timestep",
            w[0], w[1]
        )));
    }
    let acp = config.alphas_cumprod()?;
    let final_acp = if config.solver.set_alpha_to_one {
        1.0
    } else {
        acp[0]
    };
    let level = |t: f64| -> Result<NoiseLevel> {
        let a = if t >= 0.0 {
            *acp.get(t as usize)
                .ok_or_else(|| bad("timesteps", format!("{t} is past the ᾱ table")))?
        } else {
            final_acp
        };
        Ok(NoiseLevel {
            t: t.max(0.0),
            marginal: Marginal::new(a.sqrt(), (1.0 - a).sqrt())?,
        })
    };
    let last = ts
        .last()
        .copied()
        .ok_or_else(|| bad("timesteps", "empty"))?;
    ts.push(last - ratio);
    ts.into_iter().map(level).collect()
}

/// The method diffusers' scheduler runs, for the classes and settings
/// implemented so far.
fn diffusers_method(config: &SchedulerConfig) -> Result<Box<dyn Method>> {
    let s = &config.solver;
    let unsupported = || {
        Error::Unsupported(format!(
            "replaying {} (solver_order {}, algorithm_type {:?}, solver_type {:?}) is not implemented yet",
            config.class.class_name(),
            s.solver_order,
            s.algorithm_type,
            s.solver_type
        ))
    };
    // Thresholding clips x̂₀ per row: not a linear update, not replayed yet.
    if s.thresholding {
        return Err(Error::Unsupported(format!(
            "replaying {} with thresholding (not a linear update) is not implemented",
            config.class.class_name()
        )));
    }
    Ok(match config.class {
        // Flow matching's Euler step x′ = x + (σ′ − σ)·(ε̂ − x̂₀) is
        // α′·x̂₀ + σ′·ε̂, the DDIM step, which stays defined at α = 0.
        SchedulerClass::Ddim | SchedulerClass::FlowMatchEulerDiscrete => Box::new(Ddim),
        SchedulerClass::EulerDiscrete | SchedulerClass::EdmEuler => Box::new(Euler),
        SchedulerClass::HeunDiscrete => Box::new(Heun),
        SchedulerClass::LmsDiscrete => Box::new(Lms::default()),
        SchedulerClass::Kdpm2Discrete => Box::new(Dpm2),
        // Both classes share `step` (warm-up, lower_order_final,
        // euler_at_final, a first-order step to σ = 0) and the updates.
        SchedulerClass::DpmSolverMultistep | SchedulerClass::EdmDpmSolverMultistep => {
            let (algorithm, solver_type) = dpm_options(s).ok_or_else(unsupported)?;
            let mut method = DpmSolverMultistep::new(s.solver_order, algorithm, solver_type)
                .map_err(|_| unsupported())?;
            method.lower_order_final = s.lower_order_final;
            method.euler_at_final = s.euler_at_final;
            // diffusers' order-3 coefficients (see ThirdOrder).
            method.third_order = ThirdOrder::AsLibraries;
            Box::new(method)
        }
        // Blocks of solver_order grid steps whose levels are the stages;
        // the method applies diffusers' order list (lower_order_final
        // forced on by an uneven step count or a final σ = 0).
        SchedulerClass::DpmSolverSinglestep => {
            let (algorithm, solver_type) = dpm_options(s).ok_or_else(unsupported)?;
            Box::new(
                DpmSolverSinglestep::new(
                    s.solver_order,
                    algorithm,
                    solver_type,
                    SinglestepStages::Grid {
                        lower_order_final: s.lower_order_final,
                    },
                )
                .map_err(|_| unsupported())?,
            )
        }
        SchedulerClass::UniPcMultistep => {
            let variant = match s.solver_type {
                Some(SolverType::Bh1) => UniPcVariant::Bh1,
                None | Some(SolverType::Bh2) => UniPcVariant::Bh2,
                _ => return Err(unsupported()),
            };
            let mut method = UniPc::new(s.solver_order, variant).map_err(|_| unsupported())?;
            method.predict_x0 = s.predict_x0;
            method.lower_order_final = s.lower_order_final;
            method.disable_corrector = s.disable_corrector.clone();
            Box::new(method)
        }
        // diffusers maps every other algorithm_type / solver_type of DEIS
        // to deis / logrho when parsing.
        SchedulerClass::DeisMultistep => {
            if !matches!(s.algorithm_type, None | Some(AlgorithmType::Deis))
                || !matches!(s.solver_type, None | Some(SolverType::LogRho))
            {
                return Err(unsupported());
            }
            Box::new(Deis::new(s.solver_order, s.lower_order_final).map_err(|_| unsupported())?)
        }
        // diffusers' PNDM combines the raw model outputs and converts the
        // combination to ε̂ with the step's start (x, ᾱ): for
        // v-prediction that is not the multistep method on ε̂.
        SchedulerClass::Pndm => {
            if config.prediction_type != PredictionType::Epsilon {
                return Err(Error::Unsupported(format!(
                    "replaying PNDMScheduler with prediction_type '{}' (diffusers converts the combined output at the step start) is not implemented",
                    config.prediction_type.as_str()
                )));
            }
            Box::new(Pndm::new(if s.skip_prk_steps {
                PndmStart::PseudoHeun
            } else {
                PndmStart::RungeKutta
            }))
        }
    })
}

/// diffusers' `algorithm_type` / `solver_type` of the DPM-Solver classes
/// (absent: `dpmsolver++`, `midpoint`); `None` for the SDE variants and the
/// solver types of other classes.
fn dpm_options(s: &crate::config::SolverSettings) -> Option<(DpmAlgorithm, SecondOrder)> {
    let algorithm = match s.algorithm_type {
        None | Some(AlgorithmType::DpmSolverPlusPlus) => DpmAlgorithm::DataPrediction,
        Some(AlgorithmType::DpmSolver) => DpmAlgorithm::NoisePrediction,
        _ => return None,
    };
    let solver_type = match s.solver_type {
        None | Some(SolverType::Midpoint) => SecondOrder::Midpoint,
        Some(SolverType::Heun) => SecondOrder::Heun,
        _ => return None,
    };
    Some((algorithm, solver_type))
}

/// k-diffusion's sampler `name`, for the samplers implemented so far.
fn kdiffusion_method(name: &str, kwargs: &Value) -> Result<Box<dyn Method>> {
    if name.strip_prefix("sample_").unwrap_or(name) == "dpmpp_3m_sde" {
        // At eta = 0 the SDE sampler is DPM-Solver++(3M), Heun form for
        // its warm-up step, first order only to σ = 0.
        deterministic_kwargs(name, kwargs)?;
        return Ok(Box::new(DpmSolverMultistep {
            order: 3,
            algorithm: DpmAlgorithm::DataPrediction,
            solver_type: SecondOrder::Heun,
            lower_order_final: false,
            euler_at_final: false,
            third_order: ThirdOrder::AsLibraries,
        }));
    }
    if name.strip_prefix("sample_").unwrap_or(name) == "dpmpp_2s_ancestral" {
        // At eta = 0 (σ_down = σ′, no noise) the ancestral sampler is
        // DPM-Solver++(2S).
        deterministic_kwargs(name, kwargs)?;
        return Ok(Box::new(DpmPp2S));
    }
    if kwargs.as_object().is_some_and(|o| !o.is_empty()) {
        return Err(Error::Unsupported(format!(
            "k-diffusion sampler arguments {kwargs} are not replayed yet"
        )));
    }
    let name = name.strip_prefix("sample_").unwrap_or(name);
    Ok(match name {
        "euler" => Box::new(Euler),
        "heun" => Box::new(Heun),
        "dpm_2" => Box::new(Dpm2),
        "dpmpp_2m" => Box::new(DpmSolverMultistep {
            order: 2,
            algorithm: DpmAlgorithm::DataPrediction,
            solver_type: SecondOrder::Midpoint,
            lower_order_final: false,
            euler_at_final: false,
            third_order: ThirdOrder::AsLibraries,
        }),
        "lms" => Box::new(Lms::default()),
        other => {
            return Err(Error::Unsupported(format!(
                "replaying k-diffusion's sample_{other} is not implemented yet"
            )));
        }
    })
}

/// Checks the arguments of a k-diffusion SDE sampler that is replayable
/// only when deterministic: `eta` must be given and 0 (the samplers'
/// default is 1); `s_noise` scales noise that is then never drawn.
fn deterministic_kwargs(name: &str, kwargs: &Value) -> Result<()> {
    let empty = serde_json::Map::new();
    let args = match kwargs {
        Value::Null => &empty,
        Value::Object(o) => o,
        other => return Err(bad("sampler_kwargs", format!("{other} is not an object"))),
    };
    for (key, value) in args {
        match key.as_str() {
            "eta" | "s_noise" => {
                json_f64(value).ok_or_else(|| bad("sampler_kwargs", format!("{key} = {value}")))?;
            }
            _ => {
                return Err(Error::Unsupported(format!(
                    "k-diffusion {name} argument {key} is not replayed yet"
                )));
            }
        }
    }
    if args.get("eta").and_then(json_f64) == Some(0.0) {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "{name} with eta ≠ 0: stochastic samplers are not replayable yet"
        )))
    }
}

/// Replays the case `case` (a parsed conformance JSON file) on the CPU.
pub fn replay(case: &Value) -> Result<Replay> {
    let mixture = GaussianMixture::from_json_value(
        case.get("gmm")
            .ok_or_else(|| bad("gmm", "the case has no mixture"))?,
    )?;
    let z = matrix(&case["z"], "z")?;
    if let Some(config) = case.get("full_config") {
        replay_diffusers(case, config, mixture, &z)
    } else {
        replay_kdiffusion(case, mixture, &z)
    }
}

fn run_on_cpu(
    method: &dyn Method,
    parameterization: Arc<dyn Parameterization>,
    mixture: GaussianMixture,
    schedule: &dyn NoiseSchedule,
    grid: &SamplingGrid,
    x0: &[Vec<f64>],
) -> Result<(Vec<Vec<f64>>, usize)> {
    let rows = x0.len();
    let d = x0.first().map_or(0, Vec::len);
    if rows == 0 || d == 0 || x0.iter().any(|r| r.len() != d) {
        return Err(bad("z", "expected a non-empty rectangular matrix"));
    }
    let cpu = CpuBackend::new();
    let flat: Vec<f32> = x0.iter().flatten().map(|&v| v as f32).collect();
    let mut x = cpu.upload(&[rows, d], &flat)?;
    let model = GmmDenoiser::new(mixture, parameterization);
    let report = diffuse_solvers::run(&cpu, method, &model, schedule, grid, &mut x)?;
    let host = cpu.to_host(&x)?;
    Ok((
        host.chunks(d)
            .map(|r| r.iter().map(|&v| v as f64).collect())
            .collect(),
        report.nfe,
    ))
}

fn replay_kdiffusion(case: &Value, mixture: GaussianMixture, z: &[Vec<f64>]) -> Result<Replay> {
    let sampler = case["sampler"]
        .as_str()
        .ok_or_else(|| bad("sampler", "missing"))?;
    let method = kdiffusion_method(sampler, &case["sampler_kwargs"])?;
    let sigmas = numbers(&case["sigmas"], "sigmas")?;
    let schedule = VeSchedule;
    let grid = SamplingGrid::from_sigmas(&schedule, &sigmas)?;
    let x0: Vec<Vec<f64>> = z
        .iter()
        .map(|r| r.iter().map(|v| v * sigmas[0]).collect())
        .collect();
    let (x, nfe) = run_on_cpu(
        method.as_ref(),
        Arc::new(Sample),
        mixture,
        &schedule,
        &grid,
        &x0,
    )?;
    Ok(Replay {
        timesteps: sigmas[..sigmas.len() - 1].to_vec(),
        sigmas,
        x,
        nfe,
        solver: method.name().to_string(),
    })
}

fn replay_diffusers(
    case: &Value,
    config: &Value,
    mixture: GaussianMixture,
    z: &[Vec<f64>],
) -> Result<Replay> {
    let class = case["scheduler_class"].as_str();
    let parsed = SchedulerConfig::from_value_with_class(config, class)
        .map_err(|e| bad("full_config", e.to_string()))?;
    let config = parsed.config;
    let steps = case["num_inference_steps"]
        .as_u64()
        .ok_or_else(|| bad("num_inference_steps", "missing"))? as usize;
    let options = TimestepOptions::default();
    let inference = config.set_timesteps(steps, &options)?;
    let method = diffusers_method(&config)?;
    let schedule = config.noise_schedule(&options)?;
    let parameterization: Arc<dyn Parameterization> = Arc::from(config.parameterization()?);
    let init = case
        .get("init_noise_sigma")
        .and_then(json_f64)
        .unwrap_or(1.0);
    let (grid, sigmas) = match &inference.sigmas {
        Some(s) => {
            let base = step_sigmas(s);
            let grid = if config.class == SchedulerClass::FlowMatchEulerDiscrete {
                // Flow σ: (α, σ) = (1 − σ, σ), the time is σ unshifted.
                let levels = base
                    .iter()
                    .map(|&sg| -> Result<NoiseLevel> {
                        Ok(NoiseLevel {
                            t: sg,
                            marginal: Marginal::new(1.0 - sg, sg)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                SamplingGrid::Shared(levels)
            } else if matches!(
                config.class,
                SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep
            ) {
                SamplingGrid::from_sigmas(&VeSchedule, &base)?
            } else {
                SamplingGrid::from_sigmas(schedule.as_ref(), &base)?
            };
            (grid, s.clone())
        }
        None if config.class == SchedulerClass::Pndm => (
            SamplingGrid::Shared(pndm_levels(&config, &inference.timesteps, steps)?),
            Vec::new(),
        ),
        None => {
            // DDIM: ᾱ at each timestep, then the final ᾱ.
            let mut levels = Vec::with_capacity(inference.timesteps.len() + 1);
            for (i, &t) in inference.timesteps.iter().enumerate() {
                levels.push(NoiseLevel {
                    t,
                    marginal: config.marginal_at(&inference, i)?,
                });
            }
            let acp = config.alphas_cumprod()?;
            let a = if config.solver.set_alpha_to_one {
                1.0
            } else {
                acp[0]
            };
            levels.push(NoiseLevel {
                t: 0.0,
                marginal: Marginal::new(a.sqrt(), (1.0 - a).sqrt())?,
            });
            (SamplingGrid::Shared(levels), Vec::new())
        }
    };
    // The case's state coordinates: variance-exploding x̃ = x/α for the
    // σ-scaled classes (and EDM, where α = 1), the schedule's own otherwise.
    let ve_state = matches!(
        config.class,
        SchedulerClass::EulerDiscrete
            | SchedulerClass::HeunDiscrete
            | SchedulerClass::LmsDiscrete
            | SchedulerClass::Kdpm2Discrete
    );
    let first = grid.row(0)[0].marginal;
    let last = grid.row(0)[grid.steps()].marginal;
    let scale_in = if ve_state { first.alpha } else { 1.0 };
    let x0: Vec<Vec<f64>> = z
        .iter()
        .map(|r| r.iter().map(|v| v * init * scale_in).collect())
        .collect();
    let (mut x, nfe) = run_on_cpu(
        method.as_ref(),
        parameterization,
        mixture,
        schedule.as_ref(),
        &grid,
        &x0,
    )?;
    if ve_state {
        for v in x.iter_mut().flatten() {
            *v /= last.alpha;
        }
    }
    Ok(Replay {
        timesteps: inference.timesteps,
        sigmas,
        x,
        nfe,
        solver: method.name().to_string(),
    })
}

/// The error of a replay against the case's `x_final`: the largest
/// `|x − x_final|` over all entries divided by `max(1, max |x_final|)`.
pub fn final_error(case: &Value, replay: &Replay) -> Result<f64> {
    let want = matrix(&case["x_final"], "x_final")?;
    if want.len() != replay.x.len() || want.iter().zip(&replay.x).any(|(a, b)| a.len() != b.len()) {
        return Err(Error::ShapeMismatch {
            op: "replay",
            expected: vec![want.len(), want.first().map_or(0, Vec::len)],
            found: vec![replay.x.len(), replay.x.first().map_or(0, Vec::len)],
        });
    }
    let scale = want.iter().flatten().fold(1.0f64, |m, v| m.max(v.abs()));
    let err = want
        .iter()
        .flatten()
        .zip(replay.x.iter().flatten())
        .fold(0.0f64, |m, (w, g)| m.max((w - g).abs()));
    Ok(err / scale)
}

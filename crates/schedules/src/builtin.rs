//! Named schedules with a conventional sampling range, for the command line
//! and for side-by-side comparisons.

use diffuse_core::{Error, NoiseSchedule, Result};

use crate::{
    BetaSchedule, ChenSigmoid, DiscreteVp, EdmSchedule, Flow, InterpolatedCosine, ShiftedCosine,
    SubVp, VeGeometric, VpCosine, VpLinear,
};

/// A schedule with the time range a sampler conventionally covers on it:
/// `t_start` (noisy) to `t_end` (clean), both with a finite log-SNR so that
/// every time grid (including those uniform in λ or σ) is defined.
pub struct Builtin {
    /// The name it is looked up by.
    pub name: &'static str,
    /// One line on what it is and where it comes from.
    pub description: &'static str,
    /// The schedule.
    pub schedule: Box<dyn NoiseSchedule>,
    /// Noisy end of the sampling range.
    pub t_start: f64,
    /// Clean end of the sampling range.
    pub t_end: f64,
}

/// The names [`builtin`] knows, in display order.
pub const BUILTIN_NAMES: [&str; 14] = [
    "ddpm-linear",
    "sd-scaled-linear",
    "ddpm-cosine",
    "vp-linear",
    "vp-cosine",
    "sub-vp",
    "ve",
    "edm",
    "sigmoid",
    "shifted-cosine-256",
    "interpolated-cosine",
    "flow",
    "flow-sd3",
    "flow-flux-4096",
];

/// The built-in schedule called `name` (see [`BUILTIN_NAMES`]).
pub fn builtin(name: &str) -> Result<Builtin> {
    let discrete = |b: BetaSchedule| -> Result<Box<dyn NoiseSchedule>> {
        Ok(Box::new(DiscreteVp::from_betas(&b.betas(1000)?)?))
    };
    // Continuous schedules whose λ is infinite at 0 (and for flows at 1)
    // are sampled on [ε, 1 − ε] as in score_sde (ε = 1e-3).
    const EPS: f64 = 1e-3;
    let (description, schedule, t_start, t_end): (&'static str, Box<dyn NoiseSchedule>, f64, f64) =
        match name {
            "ddpm-linear" => (
                "DDPM linear β 1e-4..0.02, 1000 steps (Ho et al. 2020)",
                discrete(BetaSchedule::Linear {
                    beta_start: 1e-4,
                    beta_end: 0.02,
                })?,
                999.0,
                0.0,
            ),
            "sd-scaled-linear" => (
                "Stable Diffusion scaled-linear β 0.00085..0.012, 1000 steps",
                discrete(BetaSchedule::ScaledLinear {
                    beta_start: 0.00085,
                    beta_end: 0.012,
                })?,
                999.0,
                0.0,
            ),
            "ddpm-cosine" => (
                "squaredcos_cap_v2 β, 1000 steps (Nichol & Dhariwal 2021)",
                discrete(BetaSchedule::SquaredCosCapV2)?,
                999.0,
                0.0,
            ),
            "vp-linear" => (
                "VP SDE, linear β(t) 0.1..20 (Song et al. 2021)",
                Box::new(VpLinear::default()),
                1.0,
                EPS,
            ),
            "vp-cosine" => (
                "continuous cosine, s = 0.008, t ≤ 0.9946 (Nichol & Dhariwal 2021)",
                Box::new(VpCosine {
                    s: 0.008,
                    t_max: 0.9946,
                }),
                0.9946,
                EPS,
            ),
            "sub-vp" => (
                "sub-VP SDE (Song et al. 2021)",
                Box::new(SubVp::default()),
                1.0,
                EPS,
            ),
            "ve" => (
                "VE SDE, σ 0.01..50 geometric (Song & Ermon 2019)",
                Box::new(VeGeometric::default()),
                1.0,
                0.0,
            ),
            "edm" => (
                "EDM, σ = t on [0.002, 80] (Karras et al. 2022)",
                Box::new(EdmSchedule::default()),
                80.0,
                0.002,
            ),
            "sigmoid" => (
                "sigmoid ᾱ, start −3, end 3, τ = 1 (Chen 2023)",
                Box::new(ChenSigmoid::default()),
                1.0 - EPS,
                EPS,
            ),
            "shifted-cosine-256" => (
                "cosine shifted from 64² to 256² (Hoogeboom et al. 2023)",
                Box::new(ShiftedCosine::new(256.0, 64.0)?),
                1.0,
                0.0,
            ),
            "interpolated-cosine" => (
                "cosine interpolated between the 32 and 256 shifts at 64² (Hoogeboom et al. 2023)",
                Box::new(InterpolatedCosine::default()),
                1.0,
                0.0,
            ),
            "flow" => (
                "rectified flow α = 1 − t, σ = t (Liu et al. 2023)",
                Box::new(Flow::default()),
                1.0 - EPS,
                EPS,
            ),
            "flow-sd3" => (
                "flow with the SD3 shift s = 3 (Esser et al. 2024)",
                Box::new(Flow::new(3.0)?),
                1.0 - EPS,
                EPS,
            ),
            "flow-flux-4096" => (
                "flow with the dynamic shift μ = 1.15 (4096 tokens, Flux defaults)",
                Box::new(Flow::with_shift(
                    crate::TimeShift::Exponential {
                        mu: crate::TimeShift::mu_for_seq_len(4096.0, 256.0, 4096.0, 0.5, 1.15)?,
                    },
                    1.0,
                )?),
                1.0 - EPS,
                EPS,
            ),
            other => {
                return Err(Error::InvalidArgument {
                    name: "schedule",
                    reason: format!(
                        "'{other}'; built-in schedules: {}",
                        BUILTIN_NAMES.join(", ")
                    ),
                });
            }
        };
    let name = BUILTIN_NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("custom");
    Ok(Builtin {
        name,
        description,
        schedule,
        t_start,
        t_end,
    })
}

//! The typed form of a diffusers `scheduler_config.json`.
//!
//! Field names follow diffusers' keys so that a reader can go from a JSON
//! file to the field that holds each value. Keys that a scheduler class does
//! not have keep the value that class behaves as if it had (for example
//! DPMSolverSinglestep has no `timestep_spacing` key and always spaces its
//! timesteps with `linspace`).

/// The diffusers scheduler classes this crate reads (`_class_name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchedulerClass {
    /// `DDIMScheduler` (Song et al. 2021, "Denoising diffusion implicit models").
    Ddim,
    /// `PNDMScheduler` (Liu et al. 2022, pseudo numerical methods).
    Pndm,
    /// `EulerDiscreteScheduler` (Karras et al. 2022, Alg. 2 without churn).
    EulerDiscrete,
    /// `HeunDiscreteScheduler` (Karras et al. 2022, Alg. 1).
    HeunDiscrete,
    /// `LMSDiscreteScheduler` (linear multistep, k-diffusion).
    LmsDiscrete,
    /// `KDPM2DiscreteScheduler` (k-diffusion's DPM-Solver-2).
    Kdpm2Discrete,
    /// `DPMSolverMultistepScheduler` (Lu et al. 2022, 2022b).
    DpmSolverMultistep,
    /// `DPMSolverSinglestepScheduler` (Lu et al. 2022, 2022b).
    DpmSolverSinglestep,
    /// `UniPCMultistepScheduler` (Zhao et al. 2023).
    UniPcMultistep,
    /// `DEISMultistepScheduler` (Zhang & Chen 2023).
    DeisMultistep,
    /// `FlowMatchEulerDiscreteScheduler` (Esser et al. 2024).
    FlowMatchEulerDiscrete,
    /// `EDMEulerScheduler` (Karras et al. 2022).
    EdmEuler,
    /// `EDMDPMSolverMultistepScheduler` (Karras et al. 2022 with DPM-Solver++).
    EdmDpmSolverMultistep,
}

impl SchedulerClass {
    /// Every supported class.
    pub const ALL: [SchedulerClass; 13] = [
        Self::Ddim,
        Self::Pndm,
        Self::EulerDiscrete,
        Self::HeunDiscrete,
        Self::LmsDiscrete,
        Self::Kdpm2Discrete,
        Self::DpmSolverMultistep,
        Self::DpmSolverSinglestep,
        Self::UniPcMultistep,
        Self::DeisMultistep,
        Self::FlowMatchEulerDiscrete,
        Self::EdmEuler,
        Self::EdmDpmSolverMultistep,
    ];

    /// The diffusers class name, as in `_class_name`.
    pub fn class_name(self) -> &'static str {
        match self {
            Self::Ddim => "DDIMScheduler",
            Self::Pndm => "PNDMScheduler",
            Self::EulerDiscrete => "EulerDiscreteScheduler",
            Self::HeunDiscrete => "HeunDiscreteScheduler",
            Self::LmsDiscrete => "LMSDiscreteScheduler",
            Self::Kdpm2Discrete => "KDPM2DiscreteScheduler",
            Self::DpmSolverMultistep => "DPMSolverMultistepScheduler",
            Self::DpmSolverSinglestep => "DPMSolverSinglestepScheduler",
            Self::UniPcMultistep => "UniPCMultistepScheduler",
            Self::DeisMultistep => "DEISMultistepScheduler",
            Self::FlowMatchEulerDiscrete => "FlowMatchEulerDiscreteScheduler",
            Self::EdmEuler => "EDMEulerScheduler",
            Self::EdmDpmSolverMultistep => "EDMDPMSolverMultistepScheduler",
        }
    }

    /// The class with diffusers name `name`, if supported.
    pub fn from_class_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.class_name() == name)
    }

    /// Whether the class's noise levels come from a β table (`num_train_timesteps`
    /// discrete steps); false for the EDM and flow-matching classes.
    pub fn uses_betas(self) -> bool {
        !matches!(
            self,
            Self::FlowMatchEulerDiscrete | Self::EdmEuler | Self::EdmDpmSolverMultistep
        )
    }
}

/// Where the β table comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum Betas {
    /// A named schedule (`beta_schedule`) between `beta_start` and `beta_end`.
    Named {
        /// `beta_schedule`: linear, scaled_linear, squaredcos_cap_v2, sigmoid, exp, laplace.
        schedule: String,
        /// `beta_start`.
        beta_start: f64,
        /// `beta_end`.
        beta_end: f64,
    },
    /// `trained_betas`: an explicit table (its length replaces `num_train_timesteps`).
    Trained(Vec<f64>),
}

/// `prediction_type`: what the network outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PredictionType {
    /// `epsilon`.
    Epsilon,
    /// `sample` (x₀).
    Sample,
    /// `v_prediction`.
    VPrediction,
    /// `flow_prediction` (velocity `ε − x₀`).
    FlowPrediction,
}

impl PredictionType {
    /// The diffusers spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Epsilon => "epsilon",
            Self::Sample => "sample",
            Self::VPrediction => "v_prediction",
            Self::FlowPrediction => "flow_prediction",
        }
    }
}

/// `timestep_spacing`: how the inference timesteps are picked among the
/// training ones (Lin et al. 2024, Table 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepSpacing {
    /// Evenly spaced from the last training step to 0, rounded.
    Linspace,
    /// Multiples of `⌊T/N⌋` from 0, plus `steps_offset`.
    Leading,
    /// Multiples of `T/N` down from `T`, minus 1 (always includes `T − 1`).
    Trailing,
}

/// `interpolation_type` of the σ table at non-integer timesteps (Euler).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interpolation {
    /// Piecewise linear in σ.
    Linear,
    /// σ log-linear between the first and last table values.
    LogLinear,
}

/// How the σ grid is built from the training table (`use_*_sigmas` flags;
/// at most one may be set).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SigmaSpacing {
    /// The table's σ at the spaced timesteps (no flag set).
    Interpolated,
    /// `use_karras_sigmas`: Karras et al. 2022 eq. 5 with ρ = 7.
    Karras,
    /// `use_exponential_sigmas`: log σ evenly spaced.
    Exponential,
    /// `use_beta_sigmas`: Beta(0.6, 0.6) quantiles (Lee et al. 2024).
    Beta,
    /// `use_lu_lambdas`: log σ evenly spaced over the whole table (Lu et al. 2022b).
    LuLambdas,
    /// `use_flow_sigmas`: flow-matching σ with `flow_shift`.
    Flow,
}

/// `final_sigmas_type`: the σ after the last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalSigmas {
    /// `zero`: finish at a clean sample.
    Zero,
    /// `sigma_min`: finish at the smallest training σ.
    SigmaMin,
}

/// `timestep_type` (Euler): what the network is conditioned on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestepType {
    /// The (fractional) training timestep.
    Discrete,
    /// `0.25·ln σ` (with v-prediction, as in EDM's c_noise).
    Continuous,
}

/// `sigma_schedule` of the EDM classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EdmSigmaSchedule {
    /// Karras et al. 2022 eq. 5 with `rho`.
    Karras,
    /// log σ evenly spaced.
    Exponential,
}

/// EDM classes' settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EdmSettings {
    /// `sigma_min` (0.002).
    pub sigma_min: f64,
    /// `sigma_max` (80).
    pub sigma_max: f64,
    /// `sigma_data` (0.5).
    pub sigma_data: f64,
    /// `sigma_schedule`.
    pub sigma_schedule: EdmSigmaSchedule,
    /// `rho` (7).
    pub rho: f64,
}

/// `time_shift_type` of flow matching's dynamic shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeShiftType {
    /// `σ' = e^μ / (e^μ + (1/σ − 1))`.
    Exponential,
    /// `σ' = μ / (μ + (1/σ − 1))`.
    Linear,
}

/// FlowMatchEulerDiscrete's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FlowSettings {
    /// `shift` (SD3: 3).
    pub shift: f64,
    /// `use_dynamic_shifting`: the shift μ depends on the image size and
    /// must be given when setting the timesteps.
    pub use_dynamic_shifting: bool,
    /// `base_shift`.
    pub base_shift: f64,
    /// `max_shift`.
    pub max_shift: f64,
    /// `base_image_seq_len`.
    pub base_image_seq_len: usize,
    /// `max_image_seq_len`.
    pub max_image_seq_len: usize,
    /// `invert_sigmas`.
    pub invert_sigmas: bool,
    /// `shift_terminal`: stretch so the last σ equals this.
    pub shift_terminal: Option<f64>,
    /// `time_shift_type`.
    pub time_shift_type: TimeShiftType,
    /// `stochastic_sampling`.
    pub stochastic_sampling: bool,
}

/// `algorithm_type` of the DPM-Solver family and DEIS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlgorithmType {
    /// `dpmsolver` (Lu et al. 2022; noise prediction).
    DpmSolver,
    /// `dpmsolver++` (Lu et al. 2022b; data prediction).
    DpmSolverPlusPlus,
    /// `sde-dpmsolver`.
    SdeDpmSolver,
    /// `sde-dpmsolver++`.
    SdeDpmSolverPlusPlus,
    /// `deis` (DEIS's only algorithm).
    Deis,
}

/// `solver_type`: the second-order update form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SolverType {
    /// `midpoint` (DPM-Solver).
    Midpoint,
    /// `heun` (DPM-Solver).
    Heun,
    /// `logrho` (DEIS).
    LogRho,
    /// `bh1` (UniPC, B(h) = h).
    Bh1,
    /// `bh2` (UniPC, B(h) = eʰ − 1).
    Bh2,
}

/// `variance_type` (DPM-Solver: whether the model also predicts variance).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VarianceType {
    /// `learned`.
    Learned,
    /// `learned_range`.
    LearnedRange,
}

/// Settings that only the solver reads (used by `diffuse-solvers`).
#[derive(Clone, Debug, PartialEq)]
pub struct SolverSettings {
    /// `solver_order` (1..=3; UniPC allows more).
    pub solver_order: usize,
    /// `algorithm_type`.
    pub algorithm_type: Option<AlgorithmType>,
    /// `solver_type`.
    pub solver_type: Option<SolverType>,
    /// `lower_order_final`.
    pub lower_order_final: bool,
    /// `euler_at_final`.
    pub euler_at_final: bool,
    /// `thresholding` (Imagen dynamic thresholding).
    pub thresholding: bool,
    /// `dynamic_thresholding_ratio`.
    pub dynamic_thresholding_ratio: f64,
    /// `sample_max_value`.
    pub sample_max_value: f64,
    /// `clip_sample`.
    pub clip_sample: bool,
    /// `clip_sample_range`.
    pub clip_sample_range: f64,
    /// `variance_type`.
    pub variance_type: Option<VarianceType>,
    /// `predict_x0` (UniPC).
    pub predict_x0: bool,
    /// `disable_corrector` (UniPC): step indices without the corrector.
    pub disable_corrector: Vec<usize>,
    /// `skip_prk_steps` (PNDM).
    pub skip_prk_steps: bool,
    /// `set_alpha_to_one` (DDIM, PNDM): the final ᾱ is 1 instead of ᾱ₀.
    pub set_alpha_to_one: bool,
}

/// A diffusers scheduler configuration, read and validated.
#[derive(Clone, Debug, PartialEq)]
pub struct SchedulerConfig {
    /// `_class_name`.
    pub class: SchedulerClass,
    /// `num_train_timesteps` (1000); the β table's length.
    pub num_train_timesteps: usize,
    /// `beta_schedule` / `beta_start` / `beta_end` / `trained_betas`
    /// (unused by the EDM and flow classes).
    pub betas: Betas,
    /// `rescale_betas_zero_snr` (Lin et al. 2024).
    pub rescale_betas_zero_snr: bool,
    /// `prediction_type`.
    pub prediction_type: PredictionType,
    /// `timestep_spacing`.
    pub timestep_spacing: TimestepSpacing,
    /// `steps_offset`.
    pub steps_offset: usize,
    /// `interpolation_type` (Euler).
    pub interpolation_type: Interpolation,
    /// The `use_*_sigmas` / `use_lu_lambdas` flag that is set, if any.
    pub sigma_spacing: SigmaSpacing,
    /// `flow_shift` (with `use_flow_sigmas`).
    pub flow_shift: f64,
    /// `final_sigmas_type`.
    pub final_sigmas_type: FinalSigmas,
    /// `lambda_min_clipped` (DPM-Solver): timesteps with a smaller log-SNR
    /// are not used (−∞ keeps all).
    pub lambda_min_clipped: f64,
    /// `timestep_type` (Euler).
    pub timestep_type: TimestepType,
    /// `sigma_min` override of the Karras / exponential / beta grids (Euler, UniPC).
    pub sigma_min: Option<f64>,
    /// `sigma_max` override of the Karras / exponential / beta grids (Euler, UniPC).
    pub sigma_max: Option<f64>,
    /// EDM classes.
    pub edm: Option<EdmSettings>,
    /// FlowMatchEulerDiscrete.
    pub flow: Option<FlowSettings>,
    /// Solver-only settings.
    pub solver: SolverSettings,
}

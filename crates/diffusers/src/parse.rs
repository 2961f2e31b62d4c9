//! Reading a diffusers `scheduler_config.json` into a [`SchedulerConfig`].
//!
//! # Text
//!
//! diffusers writes its configs with Python's `json`, which spells the
//! non-finite floats as the bare tokens `NaN`, `Infinity` and `-Infinity`
//! (DPM-Solver configs carry `"lambda_min_clipped": -Infinity`). JSON has no
//! such tokens, so [`parse_python_json`] first rewrites every one of them that
//! stands *outside* a string literal (quotes and backslash escapes are
//! tracked, so `"-Infinity"` inside a string stays a string) into a private
//! string sentinel, then parses the result with `serde_json`. [`json_f64`]
//! reads a number or a sentinel back as an `f64`. Syntax errors report the
//! line and column of the original text.
//!
//! # Keys
//!
//! The scheduler class comes from `_class_name`, or from the caller
//! ([`SchedulerConfig::from_value_with_class`]), in which case the caller's
//! class wins, as in diffusers' `Class.from_config(config)`. Each class
//! accepts exactly the keyword arguments of its diffusers 0.42 `__init__`
//! ([`SchedulerClass::accepted_keys`]); a key absent from the file takes that
//! argument's default ([`SchedulerConfig::defaults`]). Then:
//!
//! - keys starting with `_` (`_class_name`, `_diffusers_version`,
//!   `_name_or_path`, …) are metadata and are skipped silently;
//! - a key the class does not accept is ignored with a warning
//!   (`unknown key 'skip_prk_steps' for EulerDiscreteScheduler is ignored`):
//!   configs on model hubs routinely carry keys of the class they were
//!   saved from;
//! - `null` stands for the default where diffusers treats `None` as the
//!   default (`trained_betas`, `variance_type`, `sigma_min`/`sigma_max` of
//!   Euler and UniPC, `shift_terminal`, `solver_p`, and the Optional
//!   dynamic-shift parameters of flow matching); elsewhere it is a type error;
//! - values diffusers silently replaces are replaced the same way, with a
//!   warning (DPM-Solver's `algorithm_type: "deis"` becomes `dpmsolver++`,
//!   its `solver_type: "logrho" | "bh1" | "bh2"` becomes `midpoint`; DEIS
//!   maps `dpmsolver`/`dpmsolver++` to `deis` and the DPM/UniPC solver types
//!   to `logrho`; UniPC maps `midpoint`/`heun`/`logrho` to `bh2`);
//! - everything else is type-checked (numbers must be JSON numbers, booleans
//!   JSON booleans, names JSON strings from the class's list) and validated
//!   ([`SchedulerConfig::validate`]); a `NaN` anywhere is an error naming its
//!   key. Every [`ConfigError`] names the offending key.
//!
//! Fields of [`SchedulerConfig`] for keys a class does not have take the
//! value the class behaves as if it had: no `timestep_spacing` means
//! `linspace` with `steps_offset` 0; DEIS, and DDIM/PNDM with
//! `set_alpha_to_one: false`, end at the smallest training σ
//! ([`FinalSigmas::SigmaMin`]); the EDM classes condition the network on
//! `0.25·ln σ` ([`TimestepType::Continuous`]); classes without
//! `solver_order` report 1. The flow-matching and EDM classes have no β
//! table: their `betas` hold the unused placeholder `linear` 1e-4..0.02.
//!
//! Settings diffusers accepts but the typed config cannot hold are refused
//! with [`ConfigError::Unsupported`] rather than dropped: `solver_p`,
//! `use_dynamic_shifting: true` outside flow matching, and UniPC's
//! `shift_terminal`.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::config::{
    AlgorithmType, Betas, EdmSettings, EdmSigmaSchedule, FinalSigmas, FlowSettings, Interpolation,
    PredictionType, SchedulerClass, SchedulerConfig, SigmaSpacing, SolverSettings, SolverType,
    TimeShiftType, TimestepSpacing, TimestepType, VarianceType,
};

/// A configuration read from JSON, with the warnings raised while reading it.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedConfig {
    /// The typed, validated configuration.
    pub config: SchedulerConfig,
    /// Human-readable notes about keys that were ignored or values diffusers
    /// replaces (for example `unknown key 'foo' for DDIMScheduler is ignored`).
    pub warnings: Vec<String>,
}

/// Why a scheduler config could not be read. Every message names the
/// offending key (or `_class_name`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not JSON (after the Python non-finite tokens are accepted).
    #[error("invalid JSON at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line in the original text.
        line: usize,
        /// 1-based column (in bytes) in the original text.
        column: usize,
        /// What the JSON parser found wrong.
        message: String,
    },
    /// The file could not be read.
    #[error("cannot read scheduler config {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The top level of the JSON is not an object.
    #[error("a scheduler config must be a JSON object at the top level, found {found}")]
    NotAnObject {
        /// What was found instead.
        found: String,
    },
    /// Neither the config (`_class_name`) nor the caller names the class.
    #[error(
        "missing `_class_name`: the config does not name its scheduler class and none was given"
    )]
    MissingClass,
    /// `_class_name` (or the caller's class) is not a supported class.
    #[error(
        "unknown scheduler class \"{name}\" in `_class_name`; supported classes: {}",
        .supported.join(", ")
    )]
    UnknownClass {
        /// The name given.
        name: String,
        /// The supported class names.
        supported: Vec<String>,
    },
    /// A key has a value of the wrong type or outside its range.
    #[error("invalid value for `{key}`: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// What is wrong, with the value found.
        reason: String,
    },
    /// Keys whose values cannot hold together.
    #[error("conflicting {}: {reason}", join_keys(.keys))]
    Conflict {
        /// The keys involved.
        keys: Vec<String>,
        /// Why they conflict.
        reason: String,
    },
    /// A setting diffusers accepts but this crate cannot represent.
    #[error("unsupported setting `{key}`: {reason}")]
    Unsupported {
        /// The key.
        key: String,
        /// Why it is refused.
        reason: String,
    },
}

fn join_keys(keys: &[String]) -> String {
    let quoted: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
    match quoted.len() {
        0 => "keys".to_owned(),
        1 => format!("key {}", quoted[0]),
        _ => format!("keys {}", quoted.join(" and ")),
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn conflict(keys: &[&str], reason: impl Into<String>) -> ConfigError {
    ConfigError::Conflict {
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        reason: reason.into(),
    }
}

fn unsupported(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

fn type_error(key: &str, expected: &str, found: &Value) -> ConfigError {
    invalid(
        key,
        format!("expected {expected}, found {}", describe(found)),
    )
}

// ---------------------------------------------------------------------------
// Python-flavoured JSON text
// ---------------------------------------------------------------------------

/// The decoded content of the string that stands for a non-finite token.
const SENTINEL_PREFIX: &str = "\u{0}diffuse-nonfinite:";

/// The bare tokens Python's `json` writes for non-finite floats.
const NON_FINITE_TOKENS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];

/// Where a replacement changed the length of a line, to map error columns
/// back to the original text.
struct Shift {
    line: usize,
    /// 1-based column (new text) where the sentinel starts.
    new_start: usize,
    /// 1-based column (new text) just after the sentinel.
    new_end: usize,
    /// 1-based column (original text) where the token started.
    orig_start: usize,
    /// Length of the token in the original text.
    orig_len: usize,
}

/// Rewrites bare `NaN`, `Infinity` and `-Infinity` outside string literals
/// into sentinel strings.
fn replace_non_finite(text: &str) -> (String, Vec<Shift>) {
    let bytes = text.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len() + 64);
    let mut shifts = Vec::new();
    let (mut in_string, mut escaped) = (false, false);
    let (mut line, mut line_start_out, mut line_start_in) = (1usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if let Some(token) = NON_FINITE_TOKENS.iter().find(|t| {
            bytes[i..].starts_with(t.as_bytes())
                && bytes
                    .get(i + t.len())
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
        }) {
            let new_start = out.len() - line_start_out + 1;
            out.extend_from_slice(format!("\"\\u0000diffuse-nonfinite:{token}\"").as_bytes());
            shifts.push(Shift {
                line,
                new_start,
                new_end: out.len() - line_start_out + 1,
                orig_start: i - line_start_in + 1,
                orig_len: token.len(),
            });
            i += token.len();
            continue;
        }
        out.push(b);
        i += 1;
        if b == b'\n' {
            line += 1;
            line_start_out = out.len();
            line_start_in = i;
        }
    }
    // Only ASCII was inserted and the rest copied byte for byte, so this is
    // always valid UTF-8.
    (String::from_utf8_lossy(&out).into_owned(), shifts)
}

/// Maps a column of the rewritten text back to the original text.
fn original_column(shifts: &[Shift], line: usize, column: usize) -> usize {
    let mut growth = 0;
    for s in shifts.iter().filter(|s| s.line == line) {
        if column >= s.new_end {
            growth += (s.new_end - s.new_start) - s.orig_len;
        } else if column >= s.new_start {
            return s.orig_start;
        }
    }
    column.saturating_sub(growth).max(1)
}

/// Parses JSON text as Python's `json` writes it: the bare tokens `NaN`,
/// `Infinity` and `-Infinity` outside string literals are accepted and
/// become private sentinel strings in the returned value (read them with
/// [`json_f64`]). Strings in the text are never changed.
///
/// # Errors
///
/// [`ConfigError::Json`] with the line and column of the original text.
pub fn parse_python_json(text: &str) -> Result<Value, ConfigError> {
    let (rewritten, shifts) = replace_non_finite(text);
    serde_json::from_str(&rewritten).map_err(|e| {
        let full = e.to_string();
        let message = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(m, _)| m)
            .to_owned();
        ConfigError::Json {
            line: e.line(),
            column: original_column(&shifts, e.line(), e.column()),
            message,
        }
    })
}

/// The non-finite token a sentinel string stands for, if it is one.
fn sentinel_token(s: &str) -> Option<&str> {
    s.strip_prefix(SENTINEL_PREFIX)
        .filter(|t| NON_FINITE_TOKENS.contains(t))
}

/// Reads a JSON number, or a non-finite token rewritten by
/// [`parse_python_json`] (`-Infinity` → `f64::NEG_INFINITY`, `Infinity` →
/// `f64::INFINITY`, `NaN` → NaN). Anything else, including an ordinary
/// string such as `"-Infinity"`, gives `None`.
pub fn json_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match sentinel_token(s)? {
            "-Infinity" => Some(f64::NEG_INFINITY),
            "Infinity" => Some(f64::INFINITY),
            _ => Some(f64::NAN),
        },
        _ => None,
    }
}

/// A float as Python's `json` spells it (`Infinity`, `-Infinity`, `NaN`).
fn python_float(x: f64) -> String {
    match x {
        f64::INFINITY => "Infinity".to_owned(),
        f64::NEG_INFINITY => "-Infinity".to_owned(),
        x if x.is_nan() => "NaN".to_owned(),
        x => x.to_string(),
    }
}

/// A short description of a JSON value for error messages.
fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => match sentinel_token(s) {
            Some(token) => token.to_owned(),
            None => v.to_string(),
        },
        Value::Array(_) => "an array".to_owned(),
        Value::Object(_) => "an object".to_owned(),
        _ => v.to_string(),
    }
}

/// Where in `v` a NaN token sits (`""` for `v` itself, `"[3]"` for an entry).
fn find_nan(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if sentinel_token(s) == Some("NaN") => Some(String::new()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nan(item).map(|inner| format!("[{i}]{inner}"))),
        Value::Object(map) => map
            .iter()
            .find_map(|(k, item)| find_nan(item).map(|inner| format!(".{k}{inner}"))),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// What each class accepts
// ---------------------------------------------------------------------------

const DDIM_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "clip_sample",
    "set_alpha_to_one",
    "steps_offset",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "clip_sample_range",
    "sample_max_value",
    "timestep_spacing",
    "rescale_betas_zero_snr",
];

const PNDM_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "skip_prk_steps",
    "set_alpha_to_one",
    "prediction_type",
    "timestep_spacing",
    "steps_offset",
];

const EULER_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "interpolation_type",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "sigma_min",
    "sigma_max",
    "timestep_spacing",
    "timestep_type",
    "steps_offset",
    "rescale_betas_zero_snr",
    "final_sigmas_type",
];

const HEUN_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "prediction_type",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "clip_sample",
    "clip_sample_range",
    "timestep_spacing",
    "steps_offset",
];

/// LMSDiscrete and KDPM2Discrete take the same arguments.
const LMS_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "prediction_type",
    "timestep_spacing",
    "steps_offset",
];

const DPM_MULTISTEP_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "solver_order",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "algorithm_type",
    "solver_type",
    "lower_order_final",
    "euler_at_final",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_lu_lambdas",
    "use_flow_sigmas",
    "flow_shift",
    "final_sigmas_type",
    "lambda_min_clipped",
    "variance_type",
    "timestep_spacing",
    "steps_offset",
    "rescale_betas_zero_snr",
    "use_dynamic_shifting",
    "time_shift_type",
];

const DPM_SINGLESTEP_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "solver_order",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "algorithm_type",
    "solver_type",
    "lower_order_final",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_flow_sigmas",
    "flow_shift",
    "final_sigmas_type",
    "lambda_min_clipped",
    "variance_type",
    "use_dynamic_shifting",
    "time_shift_type",
];

const UNIPC_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "solver_order",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "predict_x0",
    "solver_type",
    "lower_order_final",
    "disable_corrector",
    "solver_p",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_flow_sigmas",
    "flow_shift",
    "timestep_spacing",
    "steps_offset",
    "final_sigmas_type",
    "rescale_betas_zero_snr",
    "use_dynamic_shifting",
    "time_shift_type",
    "sigma_min",
    "sigma_max",
    "shift_terminal",
];

const DEIS_KEYS: &[&str] = &[
    "num_train_timesteps",
    "beta_start",
    "beta_end",
    "beta_schedule",
    "trained_betas",
    "solver_order",
    "prediction_type",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "algorithm_type",
    "solver_type",
    "lower_order_final",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "use_flow_sigmas",
    "flow_shift",
    "timestep_spacing",
    "steps_offset",
    "use_dynamic_shifting",
    "time_shift_type",
];

const FLOW_MATCH_KEYS: &[&str] = &[
    "num_train_timesteps",
    "shift",
    "use_dynamic_shifting",
    "base_shift",
    "max_shift",
    "base_image_seq_len",
    "max_image_seq_len",
    "invert_sigmas",
    "shift_terminal",
    "use_karras_sigmas",
    "use_exponential_sigmas",
    "use_beta_sigmas",
    "time_shift_type",
    "stochastic_sampling",
];

const EDM_EULER_KEYS: &[&str] = &[
    "sigma_min",
    "sigma_max",
    "sigma_data",
    "sigma_schedule",
    "num_train_timesteps",
    "prediction_type",
    "rho",
    "final_sigmas_type",
];

const EDM_DPM_KEYS: &[&str] = &[
    "sigma_min",
    "sigma_max",
    "sigma_data",
    "sigma_schedule",
    "num_train_timesteps",
    "prediction_type",
    "rho",
    "solver_order",
    "thresholding",
    "dynamic_thresholding_ratio",
    "sample_max_value",
    "algorithm_type",
    "solver_type",
    "lower_order_final",
    "euler_at_final",
    "final_sigmas_type",
];

impl SchedulerClass {
    /// The keyword arguments of the class's diffusers 0.42 `__init__`: the
    /// keys its `scheduler_config.json` may carry (besides `_`-metadata).
    pub fn accepted_keys(self) -> &'static [&'static str] {
        match self {
            Self::Ddim => DDIM_KEYS,
            Self::Pndm => PNDM_KEYS,
            Self::EulerDiscrete => EULER_KEYS,
            Self::HeunDiscrete => HEUN_KEYS,
            Self::LmsDiscrete | Self::Kdpm2Discrete => LMS_KEYS,
            Self::DpmSolverMultistep => DPM_MULTISTEP_KEYS,
            Self::DpmSolverSinglestep => DPM_SINGLESTEP_KEYS,
            Self::UniPcMultistep => UNIPC_KEYS,
            Self::DeisMultistep => DEIS_KEYS,
            Self::FlowMatchEulerDiscrete => FLOW_MATCH_KEYS,
            Self::EdmEuler => EDM_EULER_KEYS,
            Self::EdmDpmSolverMultistep => EDM_DPM_KEYS,
        }
    }
}

use SchedulerClass as C;

/// Every `beta_schedule` some diffusers scheduler knows (for messages).
const ALL_BETA_SCHEDULES: [&str; 6] = [
    "linear",
    "scaled_linear",
    "squaredcos_cap_v2",
    "sigmoid",
    "exp",
    "laplace",
];

/// The `beta_schedule` names the class's `__init__` implements.
fn beta_schedules(class: SchedulerClass) -> &'static [&'static str] {
    match class {
        C::HeunDiscrete => &["linear", "scaled_linear", "squaredcos_cap_v2", "exp"],
        C::FlowMatchEulerDiscrete | C::EdmEuler | C::EdmDpmSolverMultistep => &[],
        _ => &["linear", "scaled_linear", "squaredcos_cap_v2"],
    }
}

/// The `prediction_type` names the class implements (its `step` raises on
/// the others).
fn prediction_types(class: SchedulerClass) -> &'static [(&'static str, PredictionType)] {
    use PredictionType as P;
    match class {
        C::Ddim | C::HeunDiscrete | C::LmsDiscrete => &[
            ("epsilon", P::Epsilon),
            ("sample", P::Sample),
            ("v_prediction", P::VPrediction),
        ],
        C::EulerDiscrete => &[
            ("epsilon", P::Epsilon),
            ("sample", P::Sample),
            ("original_sample", P::Sample),
            ("v_prediction", P::VPrediction),
        ],
        // PNDM and the EDM preconditioning take ε or v only; KDPM2 raises
        // NotImplementedError for `sample`.
        C::Pndm | C::Kdpm2Discrete | C::EdmEuler | C::EdmDpmSolverMultistep => {
            &[("epsilon", P::Epsilon), ("v_prediction", P::VPrediction)]
        }
        C::DpmSolverMultistep | C::DpmSolverSinglestep | C::UniPcMultistep | C::DeisMultistep => &[
            ("epsilon", P::Epsilon),
            ("sample", P::Sample),
            ("v_prediction", P::VPrediction),
            ("flow_prediction", P::FlowPrediction),
        ],
        C::FlowMatchEulerDiscrete => &[("flow_prediction", P::FlowPrediction)],
    }
}

/// The `use_*` flags, in the order diffusers' `set_timesteps` tests them.
const SIGMA_FLAGS: [(&str, SigmaSpacing); 5] = [
    ("use_karras_sigmas", SigmaSpacing::Karras),
    ("use_lu_lambdas", SigmaSpacing::LuLambdas),
    ("use_exponential_sigmas", SigmaSpacing::Exponential),
    ("use_beta_sigmas", SigmaSpacing::Beta),
    ("use_flow_sigmas", SigmaSpacing::Flow),
];

fn sigma_flag_key(spacing: SigmaSpacing) -> &'static str {
    SIGMA_FLAGS
        .iter()
        .find(|(_, s)| *s == spacing)
        .map_or("use_karras_sigmas", |(k, _)| k)
}

/// The σ spacings the class offers.
fn sigma_spacings(class: SchedulerClass) -> &'static [SigmaSpacing] {
    use SigmaSpacing as S;
    match class {
        C::Ddim | C::Pndm | C::EdmEuler | C::EdmDpmSolverMultistep => &[S::Interpolated],
        C::EulerDiscrete
        | C::HeunDiscrete
        | C::LmsDiscrete
        | C::Kdpm2Discrete
        | C::FlowMatchEulerDiscrete => &[S::Interpolated, S::Karras, S::Exponential, S::Beta],
        C::DpmSolverMultistep => &[
            S::Interpolated,
            S::Karras,
            S::Exponential,
            S::Beta,
            S::LuLambdas,
            S::Flow,
        ],
        C::DpmSolverSinglestep | C::UniPcMultistep | C::DeisMultistep => {
            &[S::Interpolated, S::Karras, S::Exponential, S::Beta, S::Flow]
        }
    }
}

/// `algorithm_type` names the class implements.
fn algorithm_types(class: SchedulerClass) -> &'static [(&'static str, AlgorithmType)] {
    use AlgorithmType as A;
    match class {
        C::DpmSolverMultistep => &[
            ("dpmsolver", A::DpmSolver),
            ("dpmsolver++", A::DpmSolverPlusPlus),
            ("sde-dpmsolver", A::SdeDpmSolver),
            ("sde-dpmsolver++", A::SdeDpmSolverPlusPlus),
        ],
        C::DpmSolverSinglestep => &[
            ("dpmsolver", A::DpmSolver),
            ("dpmsolver++", A::DpmSolverPlusPlus),
            ("sde-dpmsolver++", A::SdeDpmSolverPlusPlus),
        ],
        C::EdmDpmSolverMultistep => &[
            ("dpmsolver++", A::DpmSolverPlusPlus),
            ("sde-dpmsolver++", A::SdeDpmSolverPlusPlus),
        ],
        C::DeisMultistep => &[("deis", A::Deis)],
        _ => &[],
    }
}

/// `algorithm_type` names diffusers silently replaces.
fn algorithm_aliases(class: SchedulerClass) -> &'static [(&'static str, AlgorithmType)] {
    use AlgorithmType as A;
    match class {
        C::DpmSolverMultistep | C::DpmSolverSinglestep | C::EdmDpmSolverMultistep => {
            &[("deis", A::DpmSolverPlusPlus)]
        }
        C::DeisMultistep => &[("dpmsolver", A::Deis), ("dpmsolver++", A::Deis)],
        _ => &[],
    }
}

/// `solver_type` names the class implements.
fn solver_types(class: SchedulerClass) -> &'static [(&'static str, SolverType)] {
    use SolverType as T;
    match class {
        C::DpmSolverMultistep | C::DpmSolverSinglestep | C::EdmDpmSolverMultistep => {
            &[("midpoint", T::Midpoint), ("heun", T::Heun)]
        }
        C::DeisMultistep => &[("logrho", T::LogRho)],
        C::UniPcMultistep => &[("bh1", T::Bh1), ("bh2", T::Bh2)],
        _ => &[],
    }
}

/// `solver_type` names diffusers silently replaces.
fn solver_aliases(class: SchedulerClass) -> &'static [(&'static str, SolverType)] {
    use SolverType as T;
    match class {
        C::DpmSolverMultistep | C::DpmSolverSinglestep | C::EdmDpmSolverMultistep => &[
            ("logrho", T::Midpoint),
            ("bh1", T::Midpoint),
            ("bh2", T::Midpoint),
        ],
        C::DeisMultistep => &[
            ("midpoint", T::LogRho),
            ("heun", T::LogRho),
            ("bh1", T::LogRho),
            ("bh2", T::LogRho),
        ],
        C::UniPcMultistep => &[("midpoint", T::Bh2), ("heun", T::Bh2), ("logrho", T::Bh2)],
        _ => &[],
    }
}

/// The allowed range of `solver_order`, if the class has the key.
fn solver_order_range(class: SchedulerClass) -> Option<(usize, Option<usize>)> {
    match class {
        C::DpmSolverMultistep
        | C::DpmSolverSinglestep
        | C::DeisMultistep
        | C::EdmDpmSolverMultistep => Some((1, Some(3))),
        C::UniPcMultistep => Some((1, None)),
        _ => None,
    }
}

fn is_dpm(class: SchedulerClass) -> bool {
    matches!(
        class,
        C::DpmSolverMultistep | C::DpmSolverSinglestep | C::EdmDpmSolverMultistep
    )
}

fn is_edm(class: SchedulerClass) -> bool {
    matches!(class, C::EdmEuler | C::EdmDpmSolverMultistep)
}

const SPACINGS: &[(&str, TimestepSpacing)] = &[
    ("linspace", TimestepSpacing::Linspace),
    ("leading", TimestepSpacing::Leading),
    ("trailing", TimestepSpacing::Trailing),
];

const INTERPOLATIONS: &[(&str, Interpolation)] = &[
    ("linear", Interpolation::Linear),
    ("log_linear", Interpolation::LogLinear),
];

const TIMESTEP_TYPES: &[(&str, TimestepType)] = &[
    ("discrete", TimestepType::Discrete),
    ("continuous", TimestepType::Continuous),
];

const FINAL_SIGMAS: &[(&str, FinalSigmas)] = &[
    ("zero", FinalSigmas::Zero),
    ("sigma_min", FinalSigmas::SigmaMin),
];

const VARIANCE_TYPES: &[(&str, VarianceType)] = &[
    ("learned", VarianceType::Learned),
    ("learned_range", VarianceType::LearnedRange),
];

const EDM_SCHEDULES: &[(&str, EdmSigmaSchedule)] = &[
    ("karras", EdmSigmaSchedule::Karras),
    ("exponential", EdmSigmaSchedule::Exponential),
];

const TIME_SHIFT_TYPES: &[(&str, TimeShiftType)] = &[
    ("exponential", TimeShiftType::Exponential),
    ("linear", TimeShiftType::Linear),
];

fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T)], value: T) -> &'static str {
    table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or("?", |(n, _)| n)
}

fn list_names<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    names
        .into_iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

// ---------------------------------------------------------------------------
// Reading typed values
// ---------------------------------------------------------------------------

/// Typed access to the keys a class accepts.
struct Reader<'a> {
    class: SchedulerClass,
    map: &'a Map<String, Value>,
}

impl<'a> Reader<'a> {
    /// The value of `key` if the class accepts it and it is present.
    fn raw(&self, key: &str) -> Option<&'a Value> {
        if self.class.accepted_keys().contains(&key) {
            self.map.get(key)
        } else {
            None
        }
    }

    /// Whether `key` is present (and accepted).
    fn has(&self, key: &str) -> bool {
        self.raw(key).is_some()
    }

    /// The value of `key`; `null` counts as absent where `null_is_default`.
    fn value(&self, key: &str, null_is_default: bool) -> Option<&'a Value> {
        match self.raw(key) {
            Some(Value::Null) if null_is_default => None,
            other => other,
        }
    }

    /// A number (possibly ±∞), if present and not a defaulting `null`.
    fn number(&self, key: &str, null_is_default: bool) -> Result<Option<f64>, ConfigError> {
        match self.value(key, null_is_default) {
            None => Ok(None),
            Some(v) => json_f64(v)
                .map(Some)
                .ok_or_else(|| type_error(key, "a number", v)),
        }
    }

    fn finite(&self, key: &str, null_is_default: bool) -> Result<Option<f64>, ConfigError> {
        match self.number(key, null_is_default)? {
            Some(x) if !x.is_finite() => Err(invalid(
                key,
                format!("expected a finite number, found {}", python_float(x)),
            )),
            other => Ok(other),
        }
    }

    /// A finite number, or `default` when absent.
    fn f64(&self, key: &str, default: f64) -> Result<f64, ConfigError> {
        Ok(self.finite(key, false)?.unwrap_or(default))
    }

    /// A finite number, `None` when absent or `null`.
    fn opt_f64(&self, key: &str) -> Result<Option<f64>, ConfigError> {
        self.finite(key, true)
    }

    /// A non-negative integer (an integral float such as `1000.0` is accepted).
    fn integer(&self, key: &str, null_is_default: bool) -> Result<Option<usize>, ConfigError> {
        let Some(v) = self.value(key, null_is_default) else {
            return Ok(None);
        };
        let expected = "a non-negative integer";
        if let Value::Number(n) = v {
            if let Some(u) = n.as_u64() {
                return usize::try_from(u)
                    .map(Some)
                    .map_err(|_| invalid(key, format!("{u} is too large")));
            }
            if let Some(x) = n.as_f64()
                && x >= 0.0
                && x.fract() == 0.0
                && x <= u32::MAX as f64
            {
                return Ok(Some(x as usize));
            }
        }
        Err(type_error(key, expected, v))
    }

    fn usize(&self, key: &str, default: usize) -> Result<usize, ConfigError> {
        Ok(self.integer(key, false)?.unwrap_or(default))
    }

    fn bool(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(type_error(key, "a boolean (true or false)", v)),
        }
    }

    /// A string, if present.
    fn string(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(Value::String(s)) if sentinel_token(s).is_none() => Ok(Some(s)),
            Some(v) => Err(type_error(key, "a string", v)),
        }
    }

    /// One of the names of `table`, if present.
    fn pick<T: Copy>(
        &self,
        key: &str,
        table: &[(&'static str, T)],
        null_is_default: bool,
    ) -> Result<Option<T>, ConfigError> {
        if self.value(key, null_is_default).is_none() {
            return Ok(None);
        }
        let Some(name) = self.string(key)? else {
            return Ok(None);
        };
        table
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| Some(*v))
            .ok_or_else(|| {
                invalid(
                    key,
                    format!(
                        "expected one of {} for {}, found \"{name}\"",
                        list_names(table.iter().map(|(n, _)| *n)),
                        self.class.class_name()
                    ),
                )
            })
    }

    /// Like [`Reader::pick`], also accepting the names diffusers replaces
    /// (with a warning). Returns the value and the name as written.
    fn pick_with_aliases<T: Copy + PartialEq>(
        &self,
        key: &str,
        table: &[(&'static str, T)],
        aliases: &[(&'static str, T)],
        warnings: &mut Vec<String>,
    ) -> Result<Option<(T, &'a str)>, ConfigError> {
        let Some(name) = self.string(key)? else {
            return Ok(None);
        };
        if let Some((_, v)) = table.iter().find(|(n, _)| *n == name) {
            return Ok(Some((*v, name)));
        }
        if let Some((_, v)) = aliases.iter().find(|(n, _)| *n == name) {
            let canonical = name_of(table, *v);
            warnings.push(format!(
                "{key} '{name}' is not implemented by {}; diffusers replaces it with '{canonical}'",
                self.class.class_name()
            ));
            return Ok(Some((*v, name)));
        }
        Err(invalid(
            key,
            format!(
                "expected one of {} for {}, found \"{name}\"",
                list_names(table.iter().map(|(n, _)| *n)),
                self.class.class_name()
            ),
        ))
    }

    /// An array of finite numbers, if present and not `null`.
    fn f64_array(&self, key: &str) -> Result<Option<Vec<f64>>, ConfigError> {
        let Some(v) = self.value(key, true) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(type_error(key, "an array of numbers", v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                json_f64(item).ok_or_else(|| {
                    invalid(
                        key,
                        format!(
                            "expected an array of numbers, found {} at index {i}",
                            describe(item)
                        ),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    /// An array of non-negative integers, if present.
    fn usize_array(&self, key: &str) -> Result<Option<Vec<usize>>, ConfigError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let Value::Array(items) = v else {
            return Err(type_error(key, "an array of non-negative integers", v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                item.as_u64()
                    .and_then(|u| usize::try_from(u).ok())
                    .ok_or_else(|| {
                        invalid(
                            key,
                            format!(
                                "expected an array of non-negative integers, found {} at index {i}",
                                describe(item)
                            ),
                        )
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

// ---------------------------------------------------------------------------
// Building and validating
// ---------------------------------------------------------------------------

impl SchedulerConfig {
    /// Reads a `scheduler_config.json` text (Python's `NaN`/`Infinity`
    /// tokens accepted); the class comes from `_class_name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending key; see the module docs.
    pub fn from_json_str(text: &str) -> Result<ParsedConfig, ConfigError> {
        Self::from_json_str_with_class(text, None)
    }

    /// Like [`SchedulerConfig::from_json_str`], with the class given by the
    /// caller when `class_name` is `Some` (it wins over `_class_name`).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending key; see the module docs.
    pub fn from_json_str_with_class(
        text: &str,
        class_name: Option<&str>,
    ) -> Result<ParsedConfig, ConfigError> {
        Self::from_value_with_class(&parse_python_json(text)?, class_name)
    }

    /// Reads a `scheduler_config.json` file.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Io`] if the file cannot be read, otherwise as
    /// [`SchedulerConfig::from_json_str`].
    pub fn from_path(path: &Path) -> Result<ParsedConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_json_str(&text)
    }

    /// Reads a parsed JSON object; the class comes from `_class_name`.
    /// Non-finite numbers may be given as the sentinels of
    /// [`parse_python_json`].
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the offending key; see the module docs.
    pub fn from_value(v: &Value) -> Result<ParsedConfig, ConfigError> {
        Self::from_value_with_class(v, None)
    }

    /// Reads a parsed JSON object as the class `class_name` when it is
    /// `Some` (as diffusers' `Class.from_config(config)`: keys of the class
    /// the config was saved for that this class does not take become
    /// warnings), otherwise as the class named by `_class_name`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::NotAnObject`], [`ConfigError::MissingClass`],
    /// [`ConfigError::UnknownClass`], or an error naming the offending key.
    pub fn from_value_with_class(
        v: &Value,
        class_name: Option<&str>,
    ) -> Result<ParsedConfig, ConfigError> {
        let Value::Object(map) = v else {
            return Err(ConfigError::NotAnObject { found: describe(v) });
        };
        let saved_as = match map.get("_class_name") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(other) => return Err(type_error("_class_name", "a string", other)),
        };
        let name = class_name.or(saved_as).ok_or(ConfigError::MissingClass)?;
        let class =
            SchedulerClass::from_class_name(name).ok_or_else(|| ConfigError::UnknownClass {
                name: name.to_owned(),
                supported: SchedulerClass::ALL
                    .iter()
                    .map(|c| c.class_name().to_owned())
                    .collect(),
            })?;
        let mut warnings = Vec::new();
        if let Some(saved) = saved_as
            && saved != name
        {
            warnings.push(format!(
                "the config was saved for {saved} and is read as {name}"
            ));
        }
        let config = build(class, map, &mut warnings)?;
        Ok(ParsedConfig { config, warnings })
    }

    /// The configuration diffusers 0.42 builds for `class` from its
    /// `__init__` defaults (`Class()` with no arguments).
    pub fn defaults(class: SchedulerClass) -> SchedulerConfig {
        let mut c = SchedulerConfig {
            class,
            num_train_timesteps: 1000,
            betas: Betas::Named {
                schedule: "linear".to_owned(),
                beta_start: 0.0001,
                beta_end: 0.02,
            },
            rescale_betas_zero_snr: false,
            prediction_type: PredictionType::Epsilon,
            timestep_spacing: TimestepSpacing::Linspace,
            steps_offset: 0,
            interpolation_type: Interpolation::Linear,
            sigma_spacing: SigmaSpacing::Interpolated,
            flow_shift: 1.0,
            final_sigmas_type: FinalSigmas::Zero,
            lambda_min_clipped: f64::NEG_INFINITY,
            timestep_type: TimestepType::Discrete,
            sigma_min: None,
            sigma_max: None,
            edm: None,
            flow: None,
            solver: SolverSettings {
                solver_order: 1,
                algorithm_type: None,
                solver_type: None,
                lower_order_final: false,
                euler_at_final: false,
                thresholding: false,
                dynamic_thresholding_ratio: 0.995,
                sample_max_value: 1.0,
                clip_sample: false,
                clip_sample_range: 1.0,
                variance_type: None,
                predict_x0: false,
                disable_corrector: Vec::new(),
                skip_prk_steps: false,
                set_alpha_to_one: false,
            },
        };
        let edm = EdmSettings {
            sigma_min: 0.002,
            sigma_max: 80.0,
            sigma_data: 0.5,
            sigma_schedule: EdmSigmaSchedule::Karras,
            rho: 7.0,
        };
        match class {
            C::Ddim => {
                c.timestep_spacing = TimestepSpacing::Leading;
                c.solver.clip_sample = true;
                c.solver.set_alpha_to_one = true;
            }
            C::Pndm => {
                c.timestep_spacing = TimestepSpacing::Leading;
                // set_alpha_to_one = False: the last step ends at ᾱ₀.
                c.final_sigmas_type = FinalSigmas::SigmaMin;
            }
            C::EulerDiscrete | C::LmsDiscrete => {}
            C::HeunDiscrete | C::Kdpm2Discrete => {
                c.betas = Betas::Named {
                    schedule: "linear".to_owned(),
                    beta_start: 0.00085,
                    beta_end: 0.012,
                };
            }
            C::DpmSolverMultistep | C::DpmSolverSinglestep => {
                c.solver.solver_order = 2;
                c.solver.algorithm_type = Some(AlgorithmType::DpmSolverPlusPlus);
                c.solver.solver_type = Some(SolverType::Midpoint);
                c.solver.lower_order_final = class == C::DpmSolverMultistep;
            }
            C::UniPcMultistep => {
                c.solver.solver_order = 2;
                c.solver.solver_type = Some(SolverType::Bh2);
                c.solver.lower_order_final = true;
                c.solver.predict_x0 = true;
            }
            C::DeisMultistep => {
                c.solver.solver_order = 2;
                c.solver.algorithm_type = Some(AlgorithmType::Deis);
                c.solver.solver_type = Some(SolverType::LogRho);
                c.solver.lower_order_final = true;
                // DEIS appends the σ of ᾱ₀ (or repeats the last grid σ).
                c.final_sigmas_type = FinalSigmas::SigmaMin;
            }
            C::FlowMatchEulerDiscrete => {
                c.prediction_type = PredictionType::FlowPrediction;
                c.flow = Some(FlowSettings {
                    shift: 1.0,
                    use_dynamic_shifting: false,
                    base_shift: 0.5,
                    max_shift: 1.15,
                    base_image_seq_len: 256,
                    max_image_seq_len: 4096,
                    invert_sigmas: false,
                    shift_terminal: None,
                    time_shift_type: TimeShiftType::Exponential,
                    stochastic_sampling: false,
                });
            }
            C::EdmEuler => {
                c.timestep_type = TimestepType::Continuous;
                c.edm = Some(edm);
            }
            C::EdmDpmSolverMultistep => {
                c.timestep_type = TimestepType::Continuous;
                c.edm = Some(edm);
                c.solver.solver_order = 2;
                c.solver.algorithm_type = Some(AlgorithmType::DpmSolverPlusPlus);
                c.solver.solver_type = Some(SolverType::Midpoint);
                c.solver.lower_order_final = true;
            }
        }
        c
    }

    /// Checks the invariants of a configuration (ranges, and the
    /// combinations diffusers refuses), as every `from_*` does before
    /// returning.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidValue`] or [`ConfigError::Conflict`] naming the
    /// offending keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let class = self.class;
        let name = class.class_name();
        if self.num_train_timesteps == 0 {
            return Err(invalid(
                "num_train_timesteps",
                "must be at least 1, found 0",
            ));
        }
        if class.uses_betas() {
            validate_betas(class, self.num_train_timesteps, &self.betas)?;
        }
        let predictions = prediction_types(class);
        if !predictions.iter().any(|(_, p)| *p == self.prediction_type) {
            return Err(invalid(
                "prediction_type",
                format!(
                    "expected one of {} for {name}, found \"{}\"",
                    list_names(predictions.iter().map(|(n, _)| *n)),
                    self.prediction_type.as_str()
                ),
            ));
        }
        if !sigma_spacings(class).contains(&self.sigma_spacing) {
            return Err(invalid(
                sigma_flag_key(self.sigma_spacing),
                format!("{name} has no such σ spacing"),
            ));
        }
        if !(self.flow_shift.is_finite() && self.flow_shift > 0.0) {
            return Err(invalid(
                "flow_shift",
                format!("must be a finite number > 0, found {}", self.flow_shift),
            ));
        }
        if self.lambda_min_clipped.is_nan() || self.lambda_min_clipped == f64::INFINITY {
            return Err(invalid(
                "lambda_min_clipped",
                format!(
                    "must be a number or -Infinity, found {}",
                    python_float(self.lambda_min_clipped)
                ),
            ));
        }
        validate_sigma_bounds(self.sigma_min, self.sigma_max)?;
        match (is_edm(class), &self.edm) {
            (true, Some(edm)) => validate_edm(edm)?,
            (false, None) => {}
            (true, None) => {
                return Err(invalid(
                    "_class_name",
                    format!("{name} needs its EDM settings (edm is None)"),
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "_class_name",
                    format!("{name} is not an EDM class but has EDM settings"),
                ));
            }
        }
        match (class == C::FlowMatchEulerDiscrete, &self.flow) {
            (true, Some(flow)) => validate_flow(flow)?,
            (false, None) => {}
            (true, None) => {
                return Err(invalid(
                    "_class_name",
                    format!("{name} needs its flow settings (flow is None)"),
                ));
            }
            (false, Some(_)) => {
                return Err(invalid(
                    "_class_name",
                    format!("{name} is not a flow-matching class but has flow settings"),
                ));
            }
        }
        validate_solver(class, self.final_sigmas_type, &self.solver)
    }
}

fn validate_betas(class: SchedulerClass, n: usize, betas: &Betas) -> Result<(), ConfigError> {
    match betas {
        Betas::Trained(b) => {
            if b.is_empty() {
                return Err(invalid("trained_betas", "must not be empty"));
            }
            if let Some((i, x)) = b
                .iter()
                .enumerate()
                .find(|(_, x)| !(x.is_finite() && **x > 0.0 && **x < 1.0))
            {
                return Err(invalid(
                    "trained_betas",
                    format!("every entry must lie in (0, 1), found {x} at index {i}"),
                ));
            }
            if b.len() != n {
                return Err(conflict(
                    &["trained_betas", "num_train_timesteps"],
                    format!("{} trained betas but num_train_timesteps = {n}", b.len()),
                ));
            }
        }
        Betas::Named {
            schedule,
            beta_start,
            beta_end,
        } => {
            check_schedule(class, schedule)?;
            for (key, x) in [("beta_start", beta_start), ("beta_end", beta_end)] {
                if !x.is_finite() {
                    return Err(invalid(key, format!("must be finite, found {x}")));
                }
                if matches!(schedule.as_str(), "linear" | "scaled_linear")
                    && !(*x > 0.0 && *x < 1.0)
                {
                    return Err(invalid(
                        key,
                        format!("must lie in (0, 1) for the {schedule} schedule, found {x}"),
                    ));
                }
            }
            if matches!(schedule.as_str(), "linear" | "scaled_linear") && beta_start > beta_end {
                return Err(conflict(
                    &["beta_start", "beta_end"],
                    format!("beta_start = {beta_start} exceeds beta_end = {beta_end}"),
                ));
            }
        }
    }
    Ok(())
}

fn check_schedule(class: SchedulerClass, schedule: &str) -> Result<(), ConfigError> {
    let accepted = beta_schedules(class);
    if accepted.contains(&schedule) {
        return Ok(());
    }
    let known = if ALL_BETA_SCHEDULES.contains(&schedule) {
        " (a diffusers schedule, but not one this class implements)"
    } else {
        ""
    };
    Err(invalid(
        "beta_schedule",
        format!(
            "expected one of {} for {}, found \"{schedule}\"{known}",
            list_names(accepted.iter().copied()),
            class.class_name()
        ),
    ))
}

fn validate_sigma_bounds(min: Option<f64>, max: Option<f64>) -> Result<(), ConfigError> {
    for (key, x) in [("sigma_min", min), ("sigma_max", max)] {
        if let Some(x) = x
            && !(x.is_finite() && x > 0.0)
        {
            return Err(invalid(
                key,
                format!("must be a finite number > 0, found {x}"),
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (min, max)
        && lo >= hi
    {
        return Err(conflict(
            &["sigma_min", "sigma_max"],
            format!("sigma_min = {lo} must be below sigma_max = {hi}"),
        ));
    }
    Ok(())
}

fn validate_edm(edm: &EdmSettings) -> Result<(), ConfigError> {
    for (key, x) in [
        ("sigma_min", edm.sigma_min),
        ("sigma_max", edm.sigma_max),
        ("sigma_data", edm.sigma_data),
        ("rho", edm.rho),
    ] {
        if !(x.is_finite() && x > 0.0) {
            return Err(invalid(
                key,
                format!("must be a finite number > 0, found {x}"),
            ));
        }
    }
    if edm.sigma_min >= edm.sigma_max {
        return Err(conflict(
            &["sigma_min", "sigma_max"],
            format!(
                "sigma_min = {} must be below sigma_max = {}",
                edm.sigma_min, edm.sigma_max
            ),
        ));
    }
    Ok(())
}

fn validate_flow(flow: &FlowSettings) -> Result<(), ConfigError> {
    if !(flow.shift.is_finite() && flow.shift > 0.0) {
        return Err(invalid(
            "shift",
            format!("must be a finite number > 0, found {}", flow.shift),
        ));
    }
    for (key, x) in [
        ("base_shift", flow.base_shift),
        ("max_shift", flow.max_shift),
    ] {
        if !x.is_finite() {
            return Err(invalid(key, format!("must be finite, found {x}")));
        }
    }
    if let Some(t) = flow.shift_terminal
        && !(t > 0.0 && t < 1.0)
    {
        return Err(invalid(
            "shift_terminal",
            format!("must lie in (0, 1), found {t}"),
        ));
    }
    if flow.use_dynamic_shifting {
        if flow.base_image_seq_len >= flow.max_image_seq_len {
            return Err(conflict(
                &["base_image_seq_len", "max_image_seq_len"],
                format!(
                    "dynamic shifting interpolates between the two lengths, so base_image_seq_len \
                     = {} must be below max_image_seq_len = {}",
                    flow.base_image_seq_len, flow.max_image_seq_len
                ),
            ));
        }
        if flow.time_shift_type == TimeShiftType::Linear && flow.base_shift <= 0.0 {
            return Err(invalid(
                "base_shift",
                format!(
                    "the linear time shift needs μ > 0, so base_shift must be > 0, found {}",
                    flow.base_shift
                ),
            ));
        }
    }
    Ok(())
}

fn validate_solver(
    class: SchedulerClass,
    final_sigmas: FinalSigmas,
    s: &SolverSettings,
) -> Result<(), ConfigError> {
    let name = class.class_name();
    if let Some((lo, hi)) = solver_order_range(class) {
        let order = s.solver_order;
        let ok = order >= lo && hi.is_none_or(|hi| order <= hi);
        if !ok {
            let range = match hi {
                Some(hi) => format!("{lo}..={hi}"),
                None => format!("at least {lo}"),
            };
            return Err(invalid(
                "solver_order",
                format!("{name} takes a solver_order of {range}, found {order}"),
            ));
        }
    }
    let algorithms = algorithm_types(class);
    let algorithm_ok = match s.algorithm_type {
        None => algorithms.is_empty(),
        Some(a) => algorithms.iter().any(|(_, x)| *x == a),
    };
    if !algorithm_ok {
        return Err(invalid(
            "algorithm_type",
            format!(
                "expected one of {} for {name}",
                list_names(algorithms.iter().map(|(n, _)| *n))
            ),
        ));
    }
    let solvers = solver_types(class);
    let solver_ok = match s.solver_type {
        None => solvers.is_empty(),
        Some(t) => solvers.iter().any(|(_, x)| *x == t),
    };
    if !solver_ok {
        return Err(invalid(
            "solver_type",
            format!(
                "expected one of {} for {name}",
                list_names(solvers.iter().map(|(n, _)| *n))
            ),
        ));
    }
    if matches!(
        s.algorithm_type,
        Some(AlgorithmType::DpmSolver | AlgorithmType::SdeDpmSolver)
    ) && final_sigmas == FinalSigmas::Zero
    {
        return Err(zero_final_conflict(name_of(
            algorithms,
            s.algorithm_type.unwrap_or(AlgorithmType::DpmSolver),
        )));
    }
    if !(s.dynamic_thresholding_ratio > 0.0 && s.dynamic_thresholding_ratio <= 1.0) {
        return Err(invalid(
            "dynamic_thresholding_ratio",
            format!("must lie in (0, 1], found {}", s.dynamic_thresholding_ratio),
        ));
    }
    for (key, x) in [
        ("sample_max_value", s.sample_max_value),
        ("clip_sample_range", s.clip_sample_range),
    ] {
        if !(x.is_finite() && x > 0.0) {
            return Err(invalid(
                key,
                format!("must be a finite number > 0, found {x}"),
            ));
        }
    }
    if s.variance_type.is_some() && !matches!(class, C::DpmSolverMultistep | C::DpmSolverSinglestep)
    {
        return Err(invalid(
            "variance_type",
            format!("{name} has no variance_type"),
        ));
    }
    Ok(())
}

fn zero_final_conflict(algorithm: &str) -> ConfigError {
    conflict(
        &["algorithm_type", "final_sigmas_type"],
        format!(
            "final_sigmas_type \"zero\" is not supported with algorithm_type \"{algorithm}\" \
             (diffusers raises ValueError); use \"sigma_min\""
        ),
    )
}

/// Reads `map` as `class`, starting from the class's defaults.
fn build(
    class: SchedulerClass,
    map: &Map<String, Value>,
    warnings: &mut Vec<String>,
) -> Result<SchedulerConfig, ConfigError> {
    let accepted = class.accepted_keys();
    for (key, value) in map {
        if let Some(at) = find_nan(value) {
            let reason = if at.is_empty() {
                "NaN is not a valid value".to_owned()
            } else {
                format!("NaN is not a valid value (at {key}{at})")
            };
            return Err(invalid(key, reason));
        }
        if !key.starts_with('_') && !accepted.contains(&key.as_str()) {
            warnings.push(format!(
                "unknown key '{key}' for {} is ignored",
                class.class_name()
            ));
        }
    }
    let r = Reader { class, map };
    let mut c = SchedulerConfig::defaults(class);

    c.num_train_timesteps = r.usize("num_train_timesteps", c.num_train_timesteps)?;
    if class.uses_betas() {
        read_betas(&r, &mut c)?;
    }
    c.rescale_betas_zero_snr = r.bool("rescale_betas_zero_snr", c.rescale_betas_zero_snr)?;
    if let Some(p) = r.pick("prediction_type", prediction_types(class), false)? {
        c.prediction_type = p;
    }
    if let Some(s) = r.pick("timestep_spacing", SPACINGS, false)? {
        c.timestep_spacing = s;
    }
    c.steps_offset = r.usize("steps_offset", c.steps_offset)?;
    if let Some(i) = r.pick("interpolation_type", INTERPOLATIONS, false)? {
        c.interpolation_type = i;
    }
    if let Some(t) = r.pick("timestep_type", TIMESTEP_TYPES, false)? {
        c.timestep_type = t;
    }
    if let Some(f) = r.pick("final_sigmas_type", FINAL_SIGMAS, false)? {
        c.final_sigmas_type = f;
    }
    if let Some(x) = r.number("lambda_min_clipped", false)? {
        c.lambda_min_clipped = x;
    }
    if matches!(class, C::EulerDiscrete | C::UniPcMultistep) {
        c.sigma_min = r.opt_f64("sigma_min")?;
        c.sigma_max = r.opt_f64("sigma_max")?;
    }
    read_sigma_flags(&r, &mut c)?;
    c.flow_shift = r.f64("flow_shift", c.flow_shift)?;
    read_solver(&r, &mut c, warnings)?;
    read_shifting(&r)?;
    if is_edm(class) {
        c.edm = Some(read_edm(&r, c.edm)?);
    }
    if class == C::FlowMatchEulerDiscrete {
        c.flow = Some(read_flow(&r, c.flow)?);
    }
    if matches!(class, C::Ddim | C::Pndm) {
        c.final_sigmas_type = if c.solver.set_alpha_to_one {
            FinalSigmas::Zero
        } else {
            FinalSigmas::SigmaMin
        };
    }
    c.validate()?;
    Ok(c)
}

fn read_betas(r: &Reader<'_>, c: &mut SchedulerConfig) -> Result<(), ConfigError> {
    let (schedule, start, end) = match &c.betas {
        Betas::Named {
            schedule,
            beta_start,
            beta_end,
        } => (schedule.clone(), *beta_start, *beta_end),
        Betas::Trained(_) => ("linear".to_owned(), 0.0001, 0.02),
    };
    let beta_start = r.f64("beta_start", start)?;
    let beta_end = r.f64("beta_end", end)?;
    let schedule = r.string("beta_schedule")?.map_or(schedule, str::to_owned);
    match r.f64_array("trained_betas")? {
        Some(betas) => {
            if betas.is_empty() {
                return Err(invalid("trained_betas", "must not be empty"));
            }
            // diffusers ignores beta_schedule and the β range here; the table
            // fixes the number of training steps.
            if r.has("num_train_timesteps") && c.num_train_timesteps != betas.len() {
                return Err(conflict(
                    &["trained_betas", "num_train_timesteps"],
                    format!(
                        "{} trained betas but num_train_timesteps = {}",
                        betas.len(),
                        c.num_train_timesteps
                    ),
                ));
            }
            c.num_train_timesteps = betas.len();
            c.betas = Betas::Trained(betas);
        }
        None => {
            check_schedule(r.class, &schedule)?;
            c.betas = Betas::Named {
                schedule,
                beta_start,
                beta_end,
            };
        }
    }
    Ok(())
}

fn read_sigma_flags(r: &Reader<'_>, c: &mut SchedulerConfig) -> Result<(), ConfigError> {
    let mut set = Vec::new();
    for (key, spacing) in SIGMA_FLAGS {
        if r.bool(key, false)? {
            set.push((key, spacing));
        }
    }
    if let [(a, _), (b, _), ..] = set.as_slice() {
        return Err(conflict(
            &[a, b],
            "at most one of the use_*_sigmas / use_lu_lambdas flags may be true \
             (diffusers raises ValueError)",
        ));
    }
    c.sigma_spacing = set.first().map_or(SigmaSpacing::Interpolated, |(_, s)| *s);
    Ok(())
}

fn read_solver(
    r: &Reader<'_>,
    c: &mut SchedulerConfig,
    warnings: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let class = r.class;
    let s = &mut c.solver;
    s.solver_order = r.usize("solver_order", s.solver_order)?;
    if let Some((a, written)) = r.pick_with_aliases(
        "algorithm_type",
        algorithm_types(class),
        algorithm_aliases(class),
        warnings,
    )? {
        s.algorithm_type = Some(a);
        // diffusers tests the name as written (so "deis" fails here too).
        if is_dpm(class)
            && !matches!(written, "dpmsolver++" | "sde-dpmsolver++")
            && c.final_sigmas_type == FinalSigmas::Zero
        {
            return Err(zero_final_conflict(written));
        }
    }
    if let Some((t, _)) = r.pick_with_aliases(
        "solver_type",
        solver_types(class),
        solver_aliases(class),
        warnings,
    )? {
        s.solver_type = Some(t);
    }
    s.lower_order_final = r.bool("lower_order_final", s.lower_order_final)?;
    s.euler_at_final = r.bool("euler_at_final", s.euler_at_final)?;
    s.thresholding = r.bool("thresholding", s.thresholding)?;
    s.dynamic_thresholding_ratio =
        r.f64("dynamic_thresholding_ratio", s.dynamic_thresholding_ratio)?;
    s.sample_max_value = r.f64("sample_max_value", s.sample_max_value)?;
    s.clip_sample = r.bool("clip_sample", s.clip_sample)?;
    s.clip_sample_range = r.f64("clip_sample_range", s.clip_sample_range)?;
    s.variance_type = r.pick("variance_type", VARIANCE_TYPES, true)?;
    s.predict_x0 = r.bool("predict_x0", s.predict_x0)?;
    if let Some(d) = r.usize_array("disable_corrector")? {
        s.disable_corrector = d;
    }
    if r.value("solver_p", true).is_some() {
        return Err(unsupported(
            "solver_p",
            "a second scheduler used as UniPC's predictor cannot be given in a config file",
        ));
    }
    s.skip_prk_steps = r.bool("skip_prk_steps", s.skip_prk_steps)?;
    s.set_alpha_to_one = r.bool("set_alpha_to_one", s.set_alpha_to_one)?;
    Ok(())
}

/// The dynamic-shift keys of the DPM-Solver, UniPC and DEIS classes, which
/// the typed config has no place for.
fn read_shifting(r: &Reader<'_>) -> Result<(), ConfigError> {
    if r.class == C::FlowMatchEulerDiscrete {
        return Ok(());
    }
    r.pick("time_shift_type", TIME_SHIFT_TYPES, false)?;
    if r.bool("use_dynamic_shifting", false)? {
        return Err(unsupported(
            "use_dynamic_shifting",
            format!(
                "dynamic shifting of {}'s flow sigmas (mu given to set_timesteps) has no field \
                 in SchedulerConfig",
                r.class.class_name()
            ),
        ));
    }
    if let Some(t) = r.opt_f64("shift_terminal")? {
        if !r.bool("use_flow_sigmas", false)? {
            return Err(conflict(
                &["shift_terminal", "use_flow_sigmas"],
                "shift_terminal is only supported with use_flow_sigmas = true \
                 (diffusers raises ValueError)",
            ));
        }
        // diffusers only stretches when shift_terminal is truthy.
        if t != 0.0 {
            return Err(unsupported(
                "shift_terminal",
                format!(
                    "{}'s terminal stretch of the flow sigmas has no field in SchedulerConfig",
                    r.class.class_name()
                ),
            ));
        }
    }
    Ok(())
}

fn read_edm(r: &Reader<'_>, default: Option<EdmSettings>) -> Result<EdmSettings, ConfigError> {
    let d = default.unwrap_or(EdmSettings {
        sigma_min: 0.002,
        sigma_max: 80.0,
        sigma_data: 0.5,
        sigma_schedule: EdmSigmaSchedule::Karras,
        rho: 7.0,
    });
    Ok(EdmSettings {
        sigma_min: r.f64("sigma_min", d.sigma_min)?,
        sigma_max: r.f64("sigma_max", d.sigma_max)?,
        sigma_data: r.f64("sigma_data", d.sigma_data)?,
        sigma_schedule: r
            .pick("sigma_schedule", EDM_SCHEDULES, false)?
            .unwrap_or(d.sigma_schedule),
        rho: r.f64("rho", d.rho)?,
    })
}

fn read_flow(r: &Reader<'_>, default: Option<FlowSettings>) -> Result<FlowSettings, ConfigError> {
    let d = default.unwrap_or(FlowSettings {
        shift: 1.0,
        use_dynamic_shifting: false,
        base_shift: 0.5,
        max_shift: 1.15,
        base_image_seq_len: 256,
        max_image_seq_len: 4096,
        invert_sigmas: false,
        shift_terminal: None,
        time_shift_type: TimeShiftType::Exponential,
        stochastic_sampling: false,
    });
    Ok(FlowSettings {
        shift: r.f64("shift", d.shift)?,
        use_dynamic_shifting: r.bool("use_dynamic_shifting", d.use_dynamic_shifting)?,
        base_shift: r.opt_f64("base_shift")?.unwrap_or(d.base_shift),
        max_shift: r.opt_f64("max_shift")?.unwrap_or(d.max_shift),
        base_image_seq_len: r
            .integer("base_image_seq_len", true)?
            .unwrap_or(d.base_image_seq_len),
        max_image_seq_len: r
            .integer("max_image_seq_len", true)?
            .unwrap_or(d.max_image_seq_len),
        invert_sigmas: r.bool("invert_sigmas", d.invert_sigmas)?,
        // diffusers only stretches when shift_terminal is truthy, so 0 is "off".
        shift_terminal: r.opt_f64("shift_terminal")?.filter(|t| *t != 0.0),
        time_shift_type: r
            .pick("time_shift_type", TIME_SHIFT_TYPES, false)?
            .unwrap_or(d.time_shift_type),
        stochastic_sampling: r.bool("stochastic_sampling", d.stochastic_sampling)?,
    })
}

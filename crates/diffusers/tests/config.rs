//! Reading diffusers `scheduler_config.json` files: the golden conformance
//! configs, the defaults of every class, warnings, and the errors.

use std::path::PathBuf;

use diffuse_diffusers::{
    AlgorithmType, Betas, ConfigError, EdmSigmaSchedule, FinalSigmas, Interpolation, ParsedConfig,
    PredictionType, SchedulerClass, SchedulerConfig, SigmaSpacing, SolverType, TimeShiftType,
    TimestepSpacing, TimestepType, VarianceType, json_f64, parse_python_json,
};
use serde_json::{Value, json};

fn conformance_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

/// Parses `v` as `class`, panicking with the error's message.
fn parse_as(v: &Value, class: &str) -> ParsedConfig {
    SchedulerConfig::from_value_with_class(v, Some(class))
        .unwrap_or_else(|e| panic!("{class}: {e}"))
}

/// The error of parsing `v` (which must name its class).
fn error_of(v: Value) -> ConfigError {
    match SchedulerConfig::from_value(&v) {
        Ok(p) => panic!("expected an error, got {:?}", p.config),
        Err(e) => e,
    }
}

fn spacing_name(s: TimestepSpacing) -> &'static str {
    match s {
        TimestepSpacing::Linspace => "linspace",
        TimestepSpacing::Leading => "leading",
        TimestepSpacing::Trailing => "trailing",
    }
}

fn algorithm_name(a: AlgorithmType) -> &'static str {
    match a {
        AlgorithmType::DpmSolver => "dpmsolver",
        AlgorithmType::DpmSolverPlusPlus => "dpmsolver++",
        AlgorithmType::SdeDpmSolver => "sde-dpmsolver",
        AlgorithmType::SdeDpmSolverPlusPlus => "sde-dpmsolver++",
        AlgorithmType::Deis => "deis",
    }
}

fn solver_name(t: SolverType) -> &'static str {
    match t {
        SolverType::Midpoint => "midpoint",
        SolverType::Heun => "heun",
        SolverType::LogRho => "logrho",
        SolverType::Bh1 => "bh1",
        SolverType::Bh2 => "bh2",
    }
}

fn final_name(f: FinalSigmas) -> &'static str {
    match f {
        FinalSigmas::Zero => "zero",
        FinalSigmas::SigmaMin => "sigma_min",
    }
}

fn time_shift_name(t: TimeShiftType) -> &'static str {
    match t {
        TimeShiftType::Exponential => "exponential",
        TimeShiftType::Linear => "linear",
    }
}

fn f(v: &Value) -> f64 {
    json_f64(v).unwrap_or_else(|| panic!("not a number: {v}"))
}

fn opt_f(v: &Value) -> Option<f64> {
    if v.is_null() { None } else { Some(f(v)) }
}

/// Checks that every key of a diffusers `scheduler.config` dict is held by
/// the typed config with the same value.
fn assert_matches_json(case: &str, c: &SchedulerConfig, full: &serde_json::Map<String, Value>) {
    let s = &c.solver;
    for (key, v) in full {
        let ctx = format!("{case}: key {key} = {v}");
        match key.as_str() {
            "num_train_timesteps" => {
                assert_eq!(c.num_train_timesteps as u64, v.as_u64().unwrap(), "{ctx}")
            }
            "beta_start" | "beta_end" | "beta_schedule" => {
                let Betas::Named {
                    schedule,
                    beta_start,
                    beta_end,
                } = &c.betas
                else {
                    panic!("{ctx}: expected named betas");
                };
                match key.as_str() {
                    "beta_start" => assert_eq!(*beta_start, f(v), "{ctx}"),
                    "beta_end" => assert_eq!(*beta_end, f(v), "{ctx}"),
                    _ => assert_eq!(schedule, v.as_str().unwrap(), "{ctx}"),
                }
            }
            "trained_betas" => {
                assert!(v.is_null(), "{ctx}");
                assert!(matches!(c.betas, Betas::Named { .. }), "{ctx}");
            }
            "rescale_betas_zero_snr" => {
                assert_eq!(Some(c.rescale_betas_zero_snr), v.as_bool(), "{ctx}")
            }
            "prediction_type" => {
                assert_eq!(c.prediction_type.as_str(), v.as_str().unwrap(), "{ctx}")
            }
            "timestep_spacing" => {
                assert_eq!(
                    spacing_name(c.timestep_spacing),
                    v.as_str().unwrap(),
                    "{ctx}"
                )
            }
            "steps_offset" => assert_eq!(c.steps_offset as u64, v.as_u64().unwrap(), "{ctx}"),
            "interpolation_type" => {
                let want = match v.as_str().unwrap() {
                    "linear" => Interpolation::Linear,
                    _ => Interpolation::LogLinear,
                };
                assert_eq!(c.interpolation_type, want, "{ctx}");
            }
            "timestep_type" => {
                let want = match v.as_str().unwrap() {
                    "discrete" => TimestepType::Discrete,
                    _ => TimestepType::Continuous,
                };
                assert_eq!(c.timestep_type, want, "{ctx}");
            }
            "final_sigmas_type" => {
                assert_eq!(
                    final_name(c.final_sigmas_type),
                    v.as_str().unwrap(),
                    "{ctx}"
                )
            }
            "use_karras_sigmas"
            | "use_exponential_sigmas"
            | "use_beta_sigmas"
            | "use_lu_lambdas"
            | "use_flow_sigmas" => {
                let spacing = match key.as_str() {
                    "use_karras_sigmas" => SigmaSpacing::Karras,
                    "use_exponential_sigmas" => SigmaSpacing::Exponential,
                    "use_beta_sigmas" => SigmaSpacing::Beta,
                    "use_lu_lambdas" => SigmaSpacing::LuLambdas,
                    _ => SigmaSpacing::Flow,
                };
                assert_eq!(Some(c.sigma_spacing == spacing), v.as_bool(), "{ctx}");
            }
            "flow_shift" => assert_eq!(c.flow_shift, f(v), "{ctx}"),
            "lambda_min_clipped" => assert_eq!(c.lambda_min_clipped, f(v), "{ctx}"),
            "sigma_min" | "sigma_max" | "sigma_data" | "rho" | "sigma_schedule" => {
                match (&c.edm, key.as_str()) {
                    (Some(e), "sigma_min") => assert_eq!(e.sigma_min, f(v), "{ctx}"),
                    (Some(e), "sigma_max") => assert_eq!(e.sigma_max, f(v), "{ctx}"),
                    (Some(e), "sigma_data") => assert_eq!(e.sigma_data, f(v), "{ctx}"),
                    (Some(e), "rho") => assert_eq!(e.rho, f(v), "{ctx}"),
                    (Some(e), _) => {
                        let want = match v.as_str().unwrap() {
                            "karras" => EdmSigmaSchedule::Karras,
                            _ => EdmSigmaSchedule::Exponential,
                        };
                        assert_eq!(e.sigma_schedule, want, "{ctx}");
                    }
                    (None, "sigma_min") => assert_eq!(c.sigma_min, opt_f(v), "{ctx}"),
                    (None, "sigma_max") => assert_eq!(c.sigma_max, opt_f(v), "{ctx}"),
                    (None, _) => panic!("{ctx}: EDM key without EDM settings"),
                }
            }
            "solver_order" => assert_eq!(s.solver_order as u64, v.as_u64().unwrap(), "{ctx}"),
            "algorithm_type" => {
                assert_eq!(s.algorithm_type.map(algorithm_name), v.as_str(), "{ctx}")
            }
            "solver_type" => assert_eq!(s.solver_type.map(solver_name), v.as_str(), "{ctx}"),
            "lower_order_final" => assert_eq!(Some(s.lower_order_final), v.as_bool(), "{ctx}"),
            "euler_at_final" => assert_eq!(Some(s.euler_at_final), v.as_bool(), "{ctx}"),
            "thresholding" => assert_eq!(Some(s.thresholding), v.as_bool(), "{ctx}"),
            "dynamic_thresholding_ratio" => {
                assert_eq!(s.dynamic_thresholding_ratio, f(v), "{ctx}")
            }
            "sample_max_value" => assert_eq!(s.sample_max_value, f(v), "{ctx}"),
            "clip_sample" => assert_eq!(Some(s.clip_sample), v.as_bool(), "{ctx}"),
            "clip_sample_range" => assert_eq!(s.clip_sample_range, f(v), "{ctx}"),
            "variance_type" => {
                let want = match v.as_str() {
                    None => None,
                    Some("learned") => Some(VarianceType::Learned),
                    Some(_) => Some(VarianceType::LearnedRange),
                };
                assert_eq!(s.variance_type, want, "{ctx}");
            }
            "predict_x0" => assert_eq!(Some(s.predict_x0), v.as_bool(), "{ctx}"),
            "disable_corrector" => {
                let want: Vec<usize> = v
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(s.disable_corrector, want, "{ctx}");
            }
            "solver_p" => assert!(v.is_null(), "{ctx}"),
            "skip_prk_steps" => assert_eq!(Some(s.skip_prk_steps), v.as_bool(), "{ctx}"),
            "set_alpha_to_one" => assert_eq!(Some(s.set_alpha_to_one), v.as_bool(), "{ctx}"),
            "shift"
            | "base_shift"
            | "max_shift"
            | "base_image_seq_len"
            | "max_image_seq_len"
            | "invert_sigmas"
            | "stochastic_sampling" => {
                let flow = c
                    .flow
                    .as_ref()
                    .unwrap_or_else(|| panic!("{ctx}: no flow settings"));
                match key.as_str() {
                    "shift" => assert_eq!(flow.shift, f(v), "{ctx}"),
                    "base_shift" => assert_eq!(flow.base_shift, f(v), "{ctx}"),
                    "max_shift" => assert_eq!(flow.max_shift, f(v), "{ctx}"),
                    "base_image_seq_len" => {
                        assert_eq!(flow.base_image_seq_len as u64, v.as_u64().unwrap(), "{ctx}")
                    }
                    "max_image_seq_len" => {
                        assert_eq!(flow.max_image_seq_len as u64, v.as_u64().unwrap(), "{ctx}")
                    }
                    "invert_sigmas" => assert_eq!(Some(flow.invert_sigmas), v.as_bool(), "{ctx}"),
                    _ => assert_eq!(Some(flow.stochastic_sampling), v.as_bool(), "{ctx}"),
                }
            }
            // Outside flow matching these have no typed field: only the
            // defaults (no dynamic shift, no terminal stretch) are accepted.
            "use_dynamic_shifting" => assert_eq!(
                c.flow.as_ref().is_some_and(|fl| fl.use_dynamic_shifting),
                v.as_bool().unwrap(),
                "{ctx}"
            ),
            "shift_terminal" => {
                assert_eq!(
                    c.flow.as_ref().and_then(|fl| fl.shift_terminal),
                    opt_f(v),
                    "{ctx}"
                )
            }
            "time_shift_type" => {
                let typed = c
                    .flow
                    .as_ref()
                    .map_or(TimeShiftType::Exponential, |fl| fl.time_shift_type);
                assert_eq!(time_shift_name(typed), v.as_str().unwrap(), "{ctx}");
            }
            other => panic!("{case}: the test does not know key {other}"),
        }
    }
}

/// Every conformance case with a `full_config`, parsed whole (its text has
/// Python's `-Infinity` and `NaN` tokens).
fn conformance_cases() -> Vec<(String, String, Value)> {
    let mut cases = Vec::new();
    let entries = std::fs::read_dir(conformance_dir()).expect("conformance folder");
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("readable case");
        let doc = parse_python_json(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let Some(full) = doc.get("full_config").filter(|v| !v.is_null()) else {
            continue;
        };
        let class = doc["scheduler_class"]
            .as_str()
            .expect("scheduler_class")
            .to_owned();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        cases.push((name, class, full.clone()));
    }
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    cases
}

#[test]
fn conformance_full_configs_parse_without_warnings_and_match_the_json() {
    let cases = conformance_cases();
    assert!(
        cases.len() >= 15,
        "only {} diffusers cases found",
        cases.len()
    );
    for (name, class, full) in &cases {
        let parsed = parse_as(full, class);
        assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
        assert_eq!(parsed.config.class.class_name(), class, "{name}");
        assert_matches_json(name, &parsed.config, full.as_object().unwrap());
        parsed.config.validate().unwrap();
    }
}

#[test]
fn conformance_spot_checks() {
    let cases = conformance_cases();
    let get = |n: &str| {
        let (_, class, full) = cases
            .iter()
            .find(|c| c.0 == n)
            .unwrap_or_else(|| panic!("{n}"));
        parse_as(full, class).config
    };

    let c = get("dpmpp2m_karras_sd_10");
    assert_eq!(c.class, SchedulerClass::DpmSolverMultistep);
    assert_eq!(c.sigma_spacing, SigmaSpacing::Karras);
    assert_eq!(c.solver.solver_order, 2);
    assert_eq!(
        c.solver.algorithm_type,
        Some(AlgorithmType::DpmSolverPlusPlus)
    );
    assert_eq!(c.solver.solver_type, Some(SolverType::Midpoint));
    assert_eq!(c.lambda_min_clipped, f64::NEG_INFINITY);
    assert_eq!(c.final_sigmas_type, FinalSigmas::Zero);
    assert_eq!(
        c.betas,
        Betas::Named {
            schedule: "scaled_linear".into(),
            beta_start: 0.00085,
            beta_end: 0.012
        }
    );

    let c = get("dpmpp3m_sd_10");
    assert_eq!(c.solver.solver_order, 3);
    assert_eq!(c.sigma_spacing, SigmaSpacing::Interpolated);

    let c = get("dpmpp2m_vpred_ddpm_10");
    assert_eq!(c.prediction_type, PredictionType::VPrediction);

    let c = get("ddim_sd_trailing_zsnr_vpred_25");
    assert_eq!(c.timestep_spacing, TimestepSpacing::Trailing);
    assert!(c.rescale_betas_zero_snr);
    assert_eq!(c.prediction_type, PredictionType::VPrediction);
    assert_eq!(c.steps_offset, 1);
    assert!(!c.solver.set_alpha_to_one);
    assert_eq!(c.final_sigmas_type, FinalSigmas::SigmaMin);

    let c = get("ddim_sd_leading_10");
    assert_eq!(c.timestep_spacing, TimestepSpacing::Leading);
    assert!(!c.solver.clip_sample);

    let c = get("deis3_sd_10");
    assert_eq!(c.solver.algorithm_type, Some(AlgorithmType::Deis));
    assert_eq!(c.solver.solver_type, Some(SolverType::LogRho));
    assert_eq!(c.solver.solver_order, 3);
    assert_eq!(c.final_sigmas_type, FinalSigmas::SigmaMin);

    let c = get("unipc_bh2_sd_10");
    assert_eq!(c.solver.solver_type, Some(SolverType::Bh2));
    assert!(c.solver.predict_x0);
    assert!(c.solver.disable_corrector.is_empty());

    let c = get("dpmpp_singlestep_o2_sd_10");
    assert_eq!(c.class, SchedulerClass::DpmSolverSinglestep);
    assert_eq!(c.timestep_spacing, TimestepSpacing::Linspace);
    assert_eq!(c.steps_offset, 0);

    let c = get("pndm_plms_sd_20");
    assert!(c.solver.skip_prk_steps);
    assert_eq!(c.timestep_spacing, TimestepSpacing::Leading);

    let c = get("flowmatch_euler_shift3_28");
    assert_eq!(c.prediction_type, PredictionType::FlowPrediction);
    let flow = c.flow.expect("flow settings");
    assert_eq!(flow.shift, 3.0);
    assert!(!flow.use_dynamic_shifting);
    assert_eq!(flow.shift_terminal, None);
    assert!(c.edm.is_none());

    let c = get("edm_euler_20");
    let edm = c.edm.expect("EDM settings");
    assert_eq!(
        (edm.sigma_min, edm.sigma_max, edm.sigma_data, edm.rho),
        (0.002, 80.0, 0.5, 7.0)
    );
    assert_eq!(edm.sigma_schedule, EdmSigmaSchedule::Karras);
    assert_eq!(c.timestep_type, TimestepType::Continuous);
    assert!(c.flow.is_none());

    let c = get("euler_sd_20");
    assert_eq!(c.timestep_spacing, TimestepSpacing::Leading);
    assert_eq!(c.sigma_min, None);
    assert_eq!(c.interpolation_type, Interpolation::Linear);
}

#[test]
fn python_non_finite_tokens_in_a_whole_case_file() {
    // The KDPM2 case stores `NaN` as the first interpolated sigma.
    let text = std::fs::read_to_string(conformance_dir().join("kdpm2_sd_10.json")).unwrap();
    let doc = parse_python_json(&text).unwrap();
    assert!(f(&doc["sigmas_interpol"][0]).is_nan());
    assert!(f(&doc["sigmas_interpol"][1]) > 10.0);
}

#[test]
fn defaults_of_every_class_validate_and_equal_an_empty_config() {
    for class in SchedulerClass::ALL {
        let d = SchedulerConfig::defaults(class);
        d.validate()
            .unwrap_or_else(|e| panic!("{}: {e}", class.class_name()));
        assert_eq!(d.class, class);
        let parsed = parse_as(&json!({}), class.class_name());
        assert!(parsed.warnings.is_empty());
        assert_eq!(parsed.config, d, "{}", class.class_name());
        // Classes with a β table start from their own defaults; the others
        // carry EDM or flow settings instead.
        assert_eq!(
            d.edm.is_some(),
            matches!(
                class,
                SchedulerClass::EdmEuler | SchedulerClass::EdmDpmSolverMultistep
            )
        );
        assert_eq!(
            d.flow.is_some(),
            class == SchedulerClass::FlowMatchEulerDiscrete
        );
    }
}

#[test]
fn defaults_follow_diffusers() {
    let ddim = SchedulerConfig::defaults(SchedulerClass::Ddim);
    assert!(ddim.solver.clip_sample && ddim.solver.set_alpha_to_one);
    assert_eq!(ddim.timestep_spacing, TimestepSpacing::Leading);
    assert_eq!(ddim.final_sigmas_type, FinalSigmas::Zero);

    let heun = SchedulerConfig::defaults(SchedulerClass::HeunDiscrete);
    assert_eq!(
        heun.betas,
        Betas::Named {
            schedule: "linear".into(),
            beta_start: 0.00085,
            beta_end: 0.012
        }
    );

    let single = SchedulerConfig::defaults(SchedulerClass::DpmSolverSinglestep);
    assert!(!single.solver.lower_order_final);
    let multi = SchedulerConfig::defaults(SchedulerClass::DpmSolverMultistep);
    assert!(multi.solver.lower_order_final);
    assert_eq!(multi.lambda_min_clipped, f64::NEG_INFINITY);

    let unipc = SchedulerConfig::defaults(SchedulerClass::UniPcMultistep);
    assert_eq!(unipc.solver.solver_type, Some(SolverType::Bh2));

    let flow = SchedulerConfig::defaults(SchedulerClass::FlowMatchEulerDiscrete);
    let settings = flow.flow.unwrap();
    assert_eq!(
        (settings.shift, settings.base_shift, settings.max_shift),
        (1.0, 0.5, 1.15)
    );
    assert_eq!(
        (settings.base_image_seq_len, settings.max_image_seq_len),
        (256, 4096)
    );
}

#[test]
fn every_class_accepts_its_own_keys() {
    for class in SchedulerClass::ALL {
        let keys = class.accepted_keys();
        assert!(
            keys.contains(&"num_train_timesteps"),
            "{}",
            class.class_name()
        );
        let mut sorted = keys.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            keys.len(),
            "{}: duplicate key",
            class.class_name()
        );
    }
}

#[test]
fn unknown_key_gives_exactly_one_warning() {
    let parsed = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DDIMScheduler", "_diffusers_version": "0.42.1",
            "_name_or_path": "x/y", "foo": 3, "beta_schedule": "scaled_linear"}"#,
    )
    .unwrap();
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert!(
        parsed.warnings[0].contains("'foo'"),
        "{}",
        parsed.warnings[0]
    );
    assert!(parsed.warnings[0].contains("DDIMScheduler"));
}

#[test]
fn keys_of_another_class_are_warnings_not_errors() {
    // A hub Euler config carrying PNDM's key.
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "EulerDiscreteScheduler",
        "skip_prk_steps": true,
        "set_alpha_to_one": false,
        "use_karras_sigmas": true
    }))
    .unwrap();
    assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
    assert!(
        parsed
            .warnings
            .iter()
            .any(|w| w.contains("'skip_prk_steps'"))
    );
    assert_eq!(parsed.config.sigma_spacing, SigmaSpacing::Karras);
    assert!(!parsed.config.solver.skip_prk_steps);
}

#[test]
fn the_callers_class_wins_over_class_name() {
    // Like diffusers' EulerDiscreteScheduler.from_config(pndm.config).
    let v = json!({"_class_name": "PNDMScheduler", "skip_prk_steps": true, "steps_offset": 1});
    let parsed = parse_as(&v, "EulerDiscreteScheduler");
    assert_eq!(parsed.config.class, SchedulerClass::EulerDiscrete);
    assert_eq!(parsed.config.steps_offset, 1);
    assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
}

fn expect_key(e: &ConfigError, key: &str) {
    assert!(
        e.to_string().contains(key),
        "message does not name {key}: {e}"
    );
}

#[test]
fn conflicting_sigma_flags_name_both_keys() {
    let e = error_of(json!({
        "_class_name": "EulerDiscreteScheduler",
        "use_karras_sigmas": true,
        "use_exponential_sigmas": true
    }));
    let ConfigError::Conflict { keys, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(keys, &["use_karras_sigmas", "use_exponential_sigmas"]);
    expect_key(&e, "use_karras_sigmas");
    expect_key(&e, "use_exponential_sigmas");

    let e = error_of(json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "use_lu_lambdas": true,
        "use_flow_sigmas": true
    }));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
}

#[test]
fn solver_order_out_of_range() {
    let e = error_of(json!({"_class_name": "DPMSolverMultistepScheduler", "solver_order": 9}));
    assert!(
        matches!(&e, ConfigError::InvalidValue { key, .. } if key == "solver_order"),
        "{e:?}"
    );
    expect_key(&e, "solver_order");
    let e = error_of(json!({"_class_name": "DEISMultistepScheduler", "solver_order": 0}));
    expect_key(&e, "solver_order");
    // UniPC takes any order ≥ 1.
    let parsed = SchedulerConfig::from_value(
        &json!({"_class_name": "UniPCMultistepScheduler", "solver_order": 4}),
    )
    .unwrap();
    assert_eq!(parsed.config.solver.solver_order, 4);
}

#[test]
fn unknown_beta_schedule_lists_the_names() {
    let e = error_of(json!({"_class_name": "DDIMScheduler", "beta_schedule": "nope"}));
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "beta_schedule"));
    let msg = e.to_string();
    for name in ["linear", "scaled_linear", "squaredcos_cap_v2", "nope"] {
        assert!(msg.contains(name), "{msg}");
    }
    // `exp` is Heun's only.
    let e = error_of(json!({"_class_name": "LMSDiscreteScheduler", "beta_schedule": "exp"}));
    expect_key(&e, "beta_schedule");
    let heun = SchedulerConfig::from_value(
        &json!({"_class_name": "HeunDiscreteScheduler", "beta_schedule": "exp"}),
    )
    .unwrap();
    assert!(matches!(heun.config.betas, Betas::Named { ref schedule, .. } if schedule == "exp"));
}

#[test]
fn invalid_prediction_type() {
    let e = error_of(json!({"_class_name": "EulerDiscreteScheduler", "prediction_type": "x"}));
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "prediction_type"));
    assert!(e.to_string().contains("\"x\""), "{e}");
    // KDPM2 does not implement `sample`; DDIM does not take flow_prediction.
    expect_key(
        &error_of(json!({"_class_name": "KDPM2DiscreteScheduler", "prediction_type": "sample"})),
        "prediction_type",
    );
    expect_key(
        &error_of(json!({"_class_name": "DDIMScheduler", "prediction_type": "flow_prediction"})),
        "prediction_type",
    );
    let unipc = SchedulerConfig::from_value(&json!({
        "_class_name": "UniPCMultistepScheduler",
        "prediction_type": "flow_prediction",
        "use_flow_sigmas": true,
        "flow_shift": 3.0
    }))
    .unwrap()
    .config;
    assert_eq!(unipc.prediction_type, PredictionType::FlowPrediction);
    assert_eq!(unipc.sigma_spacing, SigmaSpacing::Flow);
    assert_eq!(unipc.flow_shift, 3.0);
}

#[test]
fn zero_training_steps() {
    let e = error_of(json!({"_class_name": "PNDMScheduler", "num_train_timesteps": 0}));
    assert!(matches!(&e, ConfigError::InvalidValue { key, .. } if key == "num_train_timesteps"));
}

#[test]
fn wrong_json_types_name_key_and_expected_type() {
    let e = error_of(json!({"_class_name": "DDIMScheduler", "beta_start": "abc"}));
    assert_eq!(
        e.to_string(),
        "invalid value for `beta_start`: expected a number, found \"abc\""
    );
    let e = error_of(json!({"_class_name": "DDIMScheduler", "clip_sample": "false"}));
    expect_key(&e, "clip_sample");
    assert!(e.to_string().contains("boolean"), "{e}");
    let e = error_of(json!({"_class_name": "DDIMScheduler", "clip_sample": 0}));
    expect_key(&e, "clip_sample");
    let e = error_of(json!({"_class_name": "DDIMScheduler", "steps_offset": -1}));
    expect_key(&e, "steps_offset");
    let e = error_of(json!({"_class_name": "DDIMScheduler", "num_train_timesteps": 10.5}));
    expect_key(&e, "num_train_timesteps");
    let e = error_of(json!({"_class_name": "DDIMScheduler", "timestep_spacing": 3}));
    assert!(e.to_string().contains("expected a string"), "{e}");
    let e =
        error_of(json!({"_class_name": "DPMSolverMultistepScheduler", "use_karras_sigmas": null}));
    expect_key(&e, "use_karras_sigmas");
    let e =
        error_of(json!({"_class_name": "UniPCMultistepScheduler", "disable_corrector": [1, "a"]}));
    expect_key(&e, "disable_corrector");
    // An integral float is an integer.
    let ok = SchedulerConfig::from_value(
        &json!({"_class_name": "DDIMScheduler", "num_train_timesteps": 500.0}),
    )
    .unwrap();
    assert_eq!(ok.config.num_train_timesteps, 500);
}

#[test]
fn null_means_default_where_diffusers_says_so() {
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "EulerDiscreteScheduler",
        "sigma_min": null,
        "sigma_max": null,
        "trained_betas": null
    }))
    .unwrap();
    assert_eq!(
        parsed.config,
        SchedulerConfig::defaults(SchedulerClass::EulerDiscrete)
    );
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "EulerDiscreteScheduler",
        "use_karras_sigmas": true,
        "sigma_min": 0.03,
        "sigma_max": 14.6
    }))
    .unwrap();
    assert_eq!(
        (parsed.config.sigma_min, parsed.config.sigma_max),
        (Some(0.03), Some(14.6))
    );
    let e = error_of(
        json!({"_class_name": "EulerDiscreteScheduler", "sigma_min": 2.0, "sigma_max": 1.0}),
    );
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
}

#[test]
fn dpmsolver_with_zero_final_sigmas_conflicts() {
    let e = error_of(json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver",
        "final_sigmas_type": "zero"
    }));
    let ConfigError::Conflict { keys, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(keys, &["algorithm_type", "final_sigmas_type"]);
    // The default final_sigmas_type is "zero" too.
    let e = error_of(
        json!({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "sde-dpmsolver"}),
    );
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    let ok = SchedulerConfig::from_value(&json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "dpmsolver",
        "final_sigmas_type": "sigma_min"
    }))
    .unwrap();
    assert_eq!(
        ok.config.solver.algorithm_type,
        Some(AlgorithmType::DpmSolver)
    );
    assert_eq!(ok.config.final_sigmas_type, FinalSigmas::SigmaMin);
}

#[test]
fn replaced_names_follow_diffusers_with_a_warning() {
    // DPM-Solver maps "deis" to dpmsolver++ (and, testing the name as
    // written, still refuses it with zero final sigmas).
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "algorithm_type": "deis",
        "solver_type": "logrho",
        "final_sigmas_type": "sigma_min"
    }))
    .unwrap();
    assert_eq!(
        parsed.config.solver.algorithm_type,
        Some(AlgorithmType::DpmSolverPlusPlus)
    );
    assert_eq!(parsed.config.solver.solver_type, Some(SolverType::Midpoint));
    assert_eq!(parsed.warnings.len(), 2, "{:?}", parsed.warnings);
    expect_key(
        &error_of(json!({"_class_name": "DPMSolverMultistepScheduler", "algorithm_type": "deis"})),
        "final_sigmas_type",
    );
    // DEIS accepts only "deis" (dpmsolver/dpmsolver++ are mapped to it).
    let deis = SchedulerConfig::from_value(&json!({
        "_class_name": "DEISMultistepScheduler",
        "algorithm_type": "dpmsolver++",
        "solver_type": "midpoint"
    }))
    .unwrap();
    assert_eq!(deis.config.solver.algorithm_type, Some(AlgorithmType::Deis));
    assert_eq!(deis.config.solver.solver_type, Some(SolverType::LogRho));
    let e = error_of(
        json!({"_class_name": "DEISMultistepScheduler", "algorithm_type": "sde-dpmsolver++"}),
    );
    expect_key(&e, "algorithm_type");
    // UniPC maps the DPM solver types to bh2; unknown names are errors.
    let unipc = SchedulerConfig::from_value(
        &json!({"_class_name": "UniPCMultistepScheduler", "solver_type": "heun"}),
    )
    .unwrap();
    assert_eq!(unipc.config.solver.solver_type, Some(SolverType::Bh2));
    assert_eq!(unipc.warnings.len(), 1);
    expect_key(
        &error_of(json!({"_class_name": "UniPCMultistepScheduler", "solver_type": "bh3"})),
        "solver_type",
    );
    // The singlestep solver has no sde-dpmsolver.
    expect_key(
        &error_of(json!({
            "_class_name": "DPMSolverSinglestepScheduler",
            "algorithm_type": "sde-dpmsolver",
            "final_sigmas_type": "sigma_min"
        })),
        "algorithm_type",
    );
}

#[test]
fn unknown_class_lists_the_supported_classes() {
    let e = error_of(json!({"_class_name": "FancyScheduler"}));
    assert!(matches!(&e, ConfigError::UnknownClass { name, .. } if name == "FancyScheduler"));
    let msg = e.to_string();
    assert!(msg.contains("_class_name"), "{msg}");
    for class in SchedulerClass::ALL {
        assert!(msg.contains(class.class_name()), "{msg}");
    }
}

#[test]
fn missing_class_name() {
    let e = error_of(json!({"num_train_timesteps": 1000}));
    assert!(matches!(e, ConfigError::MissingClass));
    assert!(e.to_string().contains("_class_name"));
    let e = error_of(json!({"_class_name": 3}));
    expect_key(&e, "_class_name");
}

#[test]
fn non_object_top_level_is_an_error() {
    for text in ["[1, 2]", "3", "\"DDIMScheduler\"", "null"] {
        let e = SchedulerConfig::from_json_str(text).unwrap_err();
        assert!(
            matches!(e, ConfigError::NotAnObject { .. }),
            "{text}: {e:?}"
        );
    }
}

#[test]
fn bad_json_reports_the_original_line_and_column() {
    let text = "{\n  \"_class_name\": \"DPMSolverMultistepScheduler\",\n  \"lambda_min_clipped\": -Infinity, ]\n}";
    let e = SchedulerConfig::from_json_str(text).unwrap_err();
    let ConfigError::Json { line, column, .. } = e else {
        panic!("{e:?}")
    };
    assert_eq!(line, 3);
    // The `]` is byte 36 of the original line.
    let original_line = text.lines().nth(2).unwrap();
    assert_eq!(column, original_line.find(']').unwrap() + 1);
}

#[test]
fn non_finite_tokens() {
    let parsed = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -Infinity}"#,
    )
    .unwrap();
    assert_eq!(parsed.config.lambda_min_clipped, f64::NEG_INFINITY);
    let parsed = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": -5.1}"#,
    )
    .unwrap();
    assert_eq!(parsed.config.lambda_min_clipped, -5.1);

    // NaN anywhere is an error naming the key, even for keys the class ignores.
    let e = SchedulerConfig::from_json_str(r#"{"_class_name": "DDIMScheduler", "beta_end": NaN}"#)
        .unwrap_err();
    assert!(
        matches!(&e, ConfigError::InvalidValue { key, .. } if key == "beta_end"),
        "{e:?}"
    );
    let e = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DDIMScheduler", "trained_betas": [0.1, NaN]}"#,
    )
    .unwrap_err();
    expect_key(&e, "trained_betas");
    // Infinity is not a valid β, nor +Infinity a valid clip.
    let e =
        SchedulerConfig::from_json_str(r#"{"_class_name": "DDIMScheduler", "beta_end": Infinity}"#)
            .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value for `beta_end`: expected a finite number, found Infinity"
    );
    expect_key(
        &SchedulerConfig::from_json_str(
            r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": Infinity}"#,
        )
        .unwrap_err(),
        "lambda_min_clipped",
    );
}

#[test]
fn non_finite_tokens_inside_strings_stay_strings() {
    let text =
        r#"{"a": "-Infinity", "b": -Infinity, "c": "say \"NaN\" Infinity", "d": [NaN, Infinity]}"#;
    let v = parse_python_json(text).unwrap();
    assert_eq!(v["a"], Value::String("-Infinity".into()));
    assert_eq!(json_f64(&v["a"]), None);
    assert_eq!(json_f64(&v["b"]), Some(f64::NEG_INFINITY));
    assert_eq!(v["c"], Value::String("say \"NaN\" Infinity".into()));
    assert!(json_f64(&v["d"][0]).unwrap().is_nan());
    assert_eq!(json_f64(&v["d"][1]), Some(f64::INFINITY));

    // A string where a number belongs is a type error, not −∞.
    let e = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DPMSolverMultistepScheduler", "lambda_min_clipped": "-Infinity"}"#,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value for `lambda_min_clipped`: expected a number, found \"-Infinity\""
    );
    // And in a metadata string it is left alone.
    let parsed = SchedulerConfig::from_json_str(
        r#"{"_class_name": "DDIMScheduler", "_name_or_path": "runs/-Infinity NaN"}"#,
    )
    .unwrap();
    assert!(parsed.warnings.is_empty());
}

#[test]
fn trained_betas() {
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "DDIMScheduler",
        "trained_betas": [0.001, 0.002, 0.003, 0.004],
        "beta_schedule": "whatever diffusers ignores here"
    }))
    .unwrap();
    assert_eq!(parsed.config.num_train_timesteps, 4);
    assert_eq!(
        parsed.config.betas,
        Betas::Trained(vec![0.001, 0.002, 0.003, 0.004])
    );

    for bad in [
        json!([0.1, 1.0]),
        json!([0.0, 0.1]),
        json!([]),
        json!("0.1"),
    ] {
        let e = error_of(json!({"_class_name": "DDIMScheduler", "trained_betas": bad}));
        expect_key(&e, "trained_betas");
    }
    let e = error_of(json!({
        "_class_name": "DDIMScheduler",
        "trained_betas": [0.1, 0.2],
        "num_train_timesteps": 1000
    }));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
}

#[test]
fn beta_ranges() {
    expect_key(
        &error_of(json!({"_class_name": "DDIMScheduler", "beta_start": 0.0})),
        "beta_start",
    );
    expect_key(
        &error_of(json!({"_class_name": "DDIMScheduler", "beta_end": 1.5})),
        "beta_end",
    );
    let e = error_of(json!({"_class_name": "DDIMScheduler", "beta_start": 0.03, "beta_end": 0.02}));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
}

#[test]
fn edm_settings_are_validated() {
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "EDMDPMSolverMultistepScheduler",
        "sigma_schedule": "exponential",
        "sigma_max": 120.0,
        "solver_order": 3,
        "prediction_type": "v_prediction"
    }))
    .unwrap();
    let edm = parsed.config.edm.unwrap();
    assert_eq!(edm.sigma_schedule, EdmSigmaSchedule::Exponential);
    assert_eq!(edm.sigma_max, 120.0);
    assert_eq!(parsed.config.solver.solver_order, 3);
    let e = error_of(json!({"_class_name": "EDMEulerScheduler", "sigma_min": 100.0}));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    for (key, value) in [
        ("sigma_data", json!(0.0)),
        ("rho", json!(-1.0)),
        ("sigma_schedule", json!("cosine")),
        ("prediction_type", json!("sample")),
    ] {
        let mut v = json!({"_class_name": "EDMEulerScheduler"});
        v[key] = value;
        expect_key(&error_of(v), key);
    }
    // EDM's DPM-Solver has only the ++ algorithms.
    expect_key(
        &error_of(json!({
            "_class_name": "EDMDPMSolverMultistepScheduler",
            "algorithm_type": "dpmsolver",
            "final_sigmas_type": "sigma_min"
        })),
        "algorithm_type",
    );
}

#[test]
fn flow_settings_are_validated() {
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "shift": 3.0,
        "use_dynamic_shifting": true,
        "base_shift": null,
        "shift_terminal": 0.02,
        "time_shift_type": "linear"
    }))
    .unwrap();
    let flow = parsed.config.flow.unwrap();
    assert!(flow.use_dynamic_shifting);
    assert_eq!(flow.base_shift, 0.5);
    assert_eq!(flow.shift_terminal, Some(0.02));
    assert_eq!(flow.time_shift_type, TimeShiftType::Linear);
    assert_eq!(parsed.config.timestep_spacing, TimestepSpacing::Linspace);
    assert_eq!(parsed.config.steps_offset, 0);

    expect_key(
        &error_of(json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 0.0})),
        "shift",
    );
    expect_key(
        &error_of(json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "shift_terminal": 1.0})),
        "shift_terminal",
    );
    expect_key(
        &error_of(
            json!({"_class_name": "FlowMatchEulerDiscreteScheduler", "time_shift_type": "cubic"}),
        ),
        "time_shift_type",
    );
    let e = error_of(json!({
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "use_dynamic_shifting": true,
        "base_image_seq_len": 4096,
        "max_image_seq_len": 256
    }));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
    // A prediction_type key is not a FlowMatch argument.
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "prediction_type": "epsilon"
    }))
    .unwrap();
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(
        parsed.config.prediction_type,
        PredictionType::FlowPrediction
    );
}

#[test]
fn settings_the_typed_config_cannot_hold_are_unsupported() {
    let e = error_of(json!({"_class_name": "UniPCMultistepScheduler", "solver_p": {"a": 1}}));
    assert!(
        matches!(&e, ConfigError::Unsupported { key, .. } if key == "solver_p"),
        "{e:?}"
    );
    let e = error_of(json!({
        "_class_name": "UniPCMultistepScheduler",
        "use_flow_sigmas": true,
        "use_dynamic_shifting": true
    }));
    assert!(matches!(&e, ConfigError::Unsupported { key, .. } if key == "use_dynamic_shifting"));
    let e = error_of(json!({
        "_class_name": "UniPCMultistepScheduler",
        "use_flow_sigmas": true,
        "shift_terminal": 0.1
    }));
    assert!(matches!(&e, ConfigError::Unsupported { key, .. } if key == "shift_terminal"));
    // Without flow sigmas diffusers refuses shift_terminal outright.
    let e = error_of(json!({"_class_name": "UniPCMultistepScheduler", "shift_terminal": 0.1}));
    assert!(matches!(e, ConfigError::Conflict { .. }), "{e:?}");
}

#[test]
fn thresholding_ratio_and_variance_type() {
    expect_key(
        &error_of(json!({"_class_name": "DDIMScheduler", "dynamic_thresholding_ratio": 1.5})),
        "dynamic_thresholding_ratio",
    );
    let parsed = SchedulerConfig::from_value(&json!({
        "_class_name": "DPMSolverMultistepScheduler",
        "variance_type": "learned_range",
        "thresholding": true
    }))
    .unwrap();
    assert_eq!(
        parsed.config.solver.variance_type,
        Some(VarianceType::LearnedRange)
    );
    assert!(parsed.config.solver.thresholding);
    expect_key(
        &error_of(json!({"_class_name": "DPMSolverMultistepScheduler", "variance_type": "fixed"})),
        "variance_type",
    );
}

#[test]
fn from_path_round_trip() {
    let dir = std::env::temp_dir().join(format!(
        "diffuse-diffusers-config-test-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("scheduler_config.json");
    let text = r#"{
  "_class_name": "DPMSolverMultistepScheduler",
  "_diffusers_version": "0.42.1",
  "algorithm_type": "dpmsolver++",
  "beta_end": 0.012,
  "beta_schedule": "scaled_linear",
  "beta_start": 0.00085,
  "lambda_min_clipped": -Infinity,
  "use_karras_sigmas": true,
  "solver_order": 2
}"#;
    std::fs::write(&path, text).unwrap();
    let from_file = SchedulerConfig::from_path(&path);
    let from_text = SchedulerConfig::from_json_str(text);
    std::fs::remove_dir_all(&dir).unwrap();
    let from_file = from_file.unwrap();
    assert_eq!(from_file, from_text.unwrap());
    assert!(from_file.warnings.is_empty());
    assert_eq!(from_file.config.sigma_spacing, SigmaSpacing::Karras);
    assert_eq!(from_file.config.lambda_min_clipped, f64::NEG_INFINITY);

    let missing = dir.join("does-not-exist.json");
    let e = SchedulerConfig::from_path(&missing).unwrap_err();
    assert!(
        matches!(&e, ConfigError::Io { path, .. } if *path == missing),
        "{e:?}"
    );
    assert!(e.to_string().contains("does-not-exist.json"));
}

//! Every diffusers case in `conformance/`: the timesteps and σ grid rebuilt
//! from the case's `full_config` (with `_class_name` = `scheduler_class`)
//! equal diffusers' `scheduler.timesteps` and `scheduler.sigmas` to 1e-6
//! relative, and the ᾱ table is diffusers' float32 table.

use std::path::PathBuf;

use diffuse_diffusers::timesteps::TimestepOptions;
use diffuse_diffusers::{SchedulerConfig, parse_python_json};
use serde_json::Value;

fn folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

fn numbers(v: &Value) -> Option<Vec<f64>> {
    v.as_array().map(|a| {
        a.iter()
            .map(|x| diffuse_diffusers::json_f64(x).unwrap_or(f64::NAN))
            .collect()
    })
}

/// Largest `|got − want| / |want|` (0 where both are equal, including 0 = 0).
fn worst_relative(what: &str, got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: length");
    got.iter()
        .zip(want)
        .map(|(g, w)| if g == w { 0.0 } else { (g - w).abs() / w.abs() })
        .fold(0.0, f64::max)
}

#[test]
fn timesteps_and_sigmas_match_diffusers() {
    let mut cases = 0;
    for entry in std::fs::read_dir(folder()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let case = parse_python_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let Some(full) = case.get("full_config") else {
            continue; // a k-diffusion case: no scheduler
        };
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let class = case["scheduler_class"].as_str().unwrap();
        let parsed = SchedulerConfig::from_value_with_class(full, Some(class)).unwrap();
        assert!(parsed.warnings.is_empty(), "{name}: {:?}", parsed.warnings);
        let config = parsed.config;
        let n = case["num_inference_steps"].as_u64().unwrap() as usize;
        let grid = config
            .set_timesteps(n, &TimestepOptions::default())
            .unwrap();

        let want_t = numbers(&case["timesteps"]).unwrap();
        let et = worst_relative(&name, &grid.timesteps, &want_t);
        let es = match (numbers(&case["sigmas"]), &grid.sigmas) {
            (Some(want), Some(got)) => worst_relative(&name, got, &want),
            (None, None) => 0.0,
            (want, got) => panic!(
                "{name}: σ grid present in diffusers: {}, here: {}",
                want.is_some(),
                got.is_some()
            ),
        };
        println!("{name:40} {class:32} timesteps {et:.1e}  sigmas {es:.1e}");
        assert!(
            et <= 1e-6,
            "{name}: timesteps differ by {et:e}\n got {:?}\nwant {want_t:?}",
            grid.timesteps
        );
        assert!(
            es <= 1e-6,
            "{name}: sigmas differ by {es:e}\n got {:?}",
            grid.sigmas
        );

        if let Some(want) = numbers(&case["sigmas_interpol"]) {
            // diffusers' first entry is NaN (log 0 − log 0) and never read.
            let got = grid.sigmas_interpol.as_ref().unwrap();
            let e = worst_relative(&name, &got[1..], &want[1..]);
            assert!(e <= 1e-6, "{name}: sigmas_interpol differ by {e:e}");
        }
        if let (Some(want), true) = (numbers(&case["alphas_cumprod"]), config.class.uses_betas()) {
            let got = config.alphas_cumprod().unwrap();
            let e = worst_relative(&name, &got, &want);
            // Bit-identical float32 values (1e-15 covers the decimal printing),
            // except after the zero-terminal-SNR rescale, where diffusers'
            // float32 cancellation near ᾱ ≈ 1e-7 is reproduced only to 1e-5.
            let tol = if config.rescale_betas_zero_snr {
                1e-5
            } else {
                1e-15
            };
            assert!(e <= tol, "{name}: alphas_cumprod differ by {e:e}");
        }
        cases += 1;
    }
    assert_eq!(cases, 16, "diffusers cases in conformance/");
}

//! The `diffuse` binary end to end: outputs, files, and one-line errors.

use std::path::Path;
use std::process::{Command, Output};

use diffuse_core::NoiseStream;

fn diffuse(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .args(args)
        .output()
        .expect("run diffuse")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A failure is one line on stderr, a non-zero exit, and no panic.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let o = diffuse(args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("error:"), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err} lacks {needle}");
}

#[test]
fn help_lists_the_subcommands() {
    let o = diffuse(&["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in ["noise", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
}

#[test]
fn noise_json_is_the_public_stream() {
    let o = diffuse(&[
        "noise", "--seed", "42", "--stream", "7", "--shape", "3,7", "--format", "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["shape"], serde_json::json!([3, 7]));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 21);
    let z = NoiseStream::new(42, 7);
    for (i, x) in data.iter().enumerate() {
        assert_eq!(x.as_f64().unwrap() as f32, z.at(i as u64), "element {i}");
    }
}

#[test]
fn noise_offset_draws_a_shard() {
    let whole = diffuse(&["noise", "--seed", "5", "--shape", "4,3", "--format", "json"]);
    let shard = diffuse(&[
        "noise", "--seed", "5", "--shape", "2,3", "--offset", "6", "--format", "json",
    ]);
    let w: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let s: serde_json::Value = serde_json::from_slice(&shard.stdout).unwrap();
    assert_eq!(
        w["data"].as_array().unwrap()[6..],
        s["data"].as_array().unwrap()[..]
    );
}

#[test]
fn noise_npy_round_trips_and_is_never_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.npy");
    let p = path.to_str().unwrap();
    let o = diffuse(&["noise", "--seed", "1", "--shape", "3,7", "--out", p]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a: ndarray::ArrayD<f32> = ndarray_npy::read_npy(&path).unwrap();
    assert_eq!(a.shape(), &[3, 7]);
    let mut want = vec![0.0f32; 21];
    NoiseStream::new(1, 0).fill(0, &mut want);
    assert_eq!(a.iter().copied().collect::<Vec<_>>(), want);
    // A second write with other numbers is refused and leaves the file alone.
    let before = std::fs::read(&path).unwrap();
    assert_one_line_error(
        &["noise", "--seed", "2", "--shape", "3,7", "--out", p],
        "--force",
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // --force replaces it.
    let o = diffuse(&[
        "noise", "--seed", "2", "--shape", "3,7", "--out", p, "--force",
    ]);
    assert!(o.status.success());
    assert_ne!(std::fs::read(&path).unwrap(), before);
    // No temporary files are left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn bad_arguments_give_one_line_errors() {
    assert_one_line_error(
        &["noise", "--seed", "1", "--shape", "3,0", "--format", "json"],
        "positive",
    );
    assert_one_line_error(
        &["noise", "--seed", "1", "--shape", "3,x", "--format", "json"],
        "'x'",
    );
    assert_one_line_error(
        &["noise", "--seed", "-1", "--shape", "3", "--format", "json"],
        "--seed",
    );
    assert_one_line_error(&["noise", "--shape", "3", "--format", "json"], "--seed");
    assert_one_line_error(&["noise", "--seed", "1", "--shape", "3"], "--out");
    assert_one_line_error(
        &[
            "noise",
            "--seed",
            "1",
            "--shape",
            "100000,100000",
            "--format",
            "json",
        ],
        "elements",
    );
    assert_one_line_error(&["bogus"], "bogus");
    assert_one_line_error(&["bench", "step", "--inputs", "9"], "--inputs");
    assert_one_line_error(&["bench", "step", "--outputs", "0"], "--outputs");
    assert_one_line_error(&["bench", "step", "--elements", "0"], "--elements");
    assert_one_line_error(&["bench", "step", "--device", "tpu"], "tpu");
    let missing = Path::new("/nonexistent-dir/z.npy");
    assert_one_line_error(
        &[
            "noise",
            "--seed",
            "1",
            "--shape",
            "2",
            "--out",
            missing.to_str().unwrap(),
        ],
        "nonexistent-dir",
    );
}

#[test]
fn bench_step_prints_json() {
    let o = diffuse(&[
        "bench",
        "step",
        "--elements",
        "4096",
        "--inputs",
        "3",
        "--outputs",
        "2",
        "--noise",
        "--repeats",
        "3",
        "--triad",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let gbps = v["gbps"].as_f64().unwrap();
    let ms = v["ms"].as_f64().unwrap();
    assert!(gbps > 0.0 && ms > 0.0, "{v}");
    assert_eq!(v["bytes"].as_u64(), Some(4 * 4096 * 5));
    assert!((gbps - 4.0 * 4096.0 * 5.0 / (ms * 1e6)).abs() < 1e-6 * gbps);
    assert!(v["ratio_to_triad"].as_f64().unwrap() > 0.0);
}

/// `diffuse schedule --config` on a scheduler_config.json built from a
/// conformance case prints diffusers' timesteps and σ, and per noise level
/// t, α, σ, λ consistent with each other.
#[test]
fn schedule_json_reproduces_a_diffusers_config() {
    let dir = tempfile::tempdir().unwrap();
    let case_path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/euler_sd_20.json");
    let case: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(case_path)
            .unwrap()
            .replace(": NaN", ": null")
            .replace(": -Infinity", ": null"),
    )
    .unwrap();
    let mut config = case["full_config"].clone();
    config["_class_name"] = case["scheduler_class"].clone();
    config["an_unknown_key"] = serde_json::json!(1);
    let path = dir.path().join("scheduler_config.json");
    std::fs::write(&path, config.to_string()).unwrap();
    let o = diffuse(&[
        "schedule",
        "--config",
        path.to_str().unwrap(),
        "--steps",
        "20",
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("an_unknown_key"),
        "no warning: {}",
        stderr(&o)
    );
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for key in ["timesteps", "sigmas"] {
        let got = out[key].as_array().unwrap();
        let want = case[key].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{key}");
        for (g, w) in got.iter().zip(want) {
            let (g, w) = (g.as_f64().unwrap(), w.as_f64().unwrap());
            assert!((g - w).abs() <= 1e-6 * w.abs(), "{key}: {g} vs {w}");
        }
    }
    let (alpha, sigma, log_snr) = (&out["alpha"], &out["sigma"], &out["log_snr"]);
    assert_eq!(alpha.as_array().unwrap().len(), 21);
    for i in 0..20 {
        let (a, s) = (alpha[i].as_f64().unwrap(), sigma[i].as_f64().unwrap());
        assert!((a * a + s * s - 1.0).abs() < 1e-12);
        assert!((log_snr[i].as_f64().unwrap() - 2.0 * (a / s).ln()).abs() < 1e-9);
    }
    // The clean final state has λ = +∞, written as null.
    assert!(log_snr[20].is_null());
}

#[test]
fn schedule_builtin_plot_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let o = diffuse(&[
        "schedule",
        "--builtin",
        "vp-cosine",
        "--steps",
        "5",
        "--grid",
        "logsnr",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(text.lines().count(), 2 + 6, "{text}");
    let png = dir.path().join("schedules.png");
    let png = png.to_str().unwrap();
    let o = diffuse(&["schedule", "--plot", png]);
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert_one_line_error(&["schedule", "--plot", png], "exists");
    assert_one_line_error(&["schedule", "--builtin", "nope"], "built-in schedules");
    assert_one_line_error(
        &["schedule", "--builtin", "edm", "--grid", "karras:x"],
        "karras:x",
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true, "use_beta_sigmas": true}"#).unwrap();
    assert_one_line_error(
        &["schedule", "--config", bad.to_str().unwrap()],
        "use_beta_sigmas",
    );
    std::fs::write(
        &bad,
        r#"{"_class_name": "DDIMScheduler", "solver_order": "two", "beta_schedule": "nope"}"#,
    )
    .unwrap();
    assert_one_line_error(
        &["schedule", "--config", bad.to_str().unwrap()],
        "beta_schedule",
    );
    assert_one_line_error(
        &["schedule", "--config", "/nonexistent/x.json"],
        "/nonexistent/x.json",
    );
}

#[test]
fn replay_reproduces_a_case_and_writes_results() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/heun_sd_10.json");
    let case = case.to_str().unwrap();
    let o = diffuse(&["replay", case]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    let err: f64 = text.rsplit("= ").next().unwrap().trim().parse().unwrap();
    assert!(err < 1e-4, "{text}");
    assert!(text.contains("nfe 19 (recorded 19)"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let out = out.to_str().unwrap();
    let o = diffuse(&["replay", case, "--out", out]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out).unwrap()).unwrap();
    assert_eq!(v["nfe"], 19);
    assert_eq!(v["x"].as_array().unwrap().len(), 64);
    assert_eq!(v["timesteps"].as_array().unwrap().len(), 19);
    assert_one_line_error(&["replay", case, "--out", out], "exists");
    assert_one_line_error(
        &["replay", "/nonexistent/case.json"],
        "/nonexistent/case.json",
    );
}

#[test]
fn orders_are_measured() {
    let o = diffuse(&["orders", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let mut targets = Vec::new();
    for row in rows.as_array().unwrap() {
        let name = row["solver"].as_str().unwrap();
        let measured = row["order"].as_f64();
        // Every configuration converges, at least at first order.
        assert!(
            measured.is_some_and(|p| p > 0.75),
            "{name}: order {measured:?}"
        );
        if let Some(tolerance) = row["tolerance"].as_f64() {
            let expected = row["expected"].as_f64().unwrap();
            let measured = measured.unwrap();
            assert!(
                (measured - expected).abs() <= tolerance,
                "{name} ({}): order {measured}, expected {expected} ± {tolerance}",
                row["options"]
            );
            targets.push(name.to_string());
        }
    }
    // The order targets: Euler and DDIM; Heun, DPM-Solver-2, DPM-Solver++(2M),
    // UniPC of order 2; DPM-Solver-3, DPM-Solver++(3M), UniPC of order 3,
    // DEIS of order 3.
    let want = [
        "ddim",
        "euler",
        "heun",
        "dpm2",
        "dpmpp-2m",
        "unipc-1+c",
        "dpm-solver-3s",
        "dpmpp-3m+2s",
        "deis-3+2s",
        "unipc-2+c",
    ];
    for name in want {
        assert!(targets.iter().any(|t| t == name), "{name} is not a target");
    }
    assert_eq!(targets.len(), want.len());
}

#[test]
fn the_device_flag_switches_to_cuda_or_says_why_not() {
    let args = [
        "bench",
        "step",
        "--device",
        "cuda",
        "--elements",
        "4096",
        "--format",
        "json",
    ];
    let o = diffuse(&args);
    if o.status.success() {
        // A machine with a GPU: the same report as on the CPU.
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert!(v["gbps"].as_f64().unwrap() > 0.0);
        assert_eq!(v["bytes"], 4 * 4096 * 3);
    } else {
        assert_one_line_error(&args, "CUDA");
    }
    assert_one_line_error(&["bench", "step", "--device", "gpu"], "cuda:N");
}

#[test]
fn solvers_are_listed() {
    let o = diffuse(&["solvers", "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let list = v.as_array().unwrap();
    let find = |name: &str| list.iter().find(|e| e["name"] == name).unwrap().clone();
    assert_eq!(find("heun")["nfe_per_step"], 2);
    assert_eq!(find("dpmpp-2m")["order"], 2);
    assert_eq!(find("dpmpp-2m")["stochastic"], false);
    assert_eq!(find("euler-ancestral")["stochastic"], true);
    assert!(list.len() >= 25);
}

#[test]
fn sample_on_cuda_runs_the_mixture_or_says_why_not() {
    let dir = tempfile::tempdir().unwrap();
    let gmm = dir.path().join("gmm.json");
    std::fs::write(
        &gmm,
        r#"{"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "stds": [0.3, 0.3]}"#,
    )
    .unwrap();
    let out = dir.path().join("x.npy");
    let spec = format!("gmm:{}", gmm.display());
    let out_s = out.display().to_string();
    let args = [
        "sample",
        "--denoiser",
        &spec,
        "--device",
        "cuda",
        "--n",
        "64",
        "--steps",
        "5",
        "--out",
        &out_s,
    ];
    let o = diffuse(&args);
    if o.status.success() {
        assert!(out.exists());
    } else {
        // No GPU here: the backend's typed error, one line, no panic.
        assert_one_line_error(&args, "CUDA device 0");
        assert!(!out.exists());
    }
    // Trained networks refuse the GPU at once, before reading the file.
    let o = diffuse(&[
        "sample",
        "--model",
        "missing.ckpt",
        "--device",
        "cuda:1",
        "--n",
        "4",
        "--out",
        &out_s,
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert_one_line_error(
        &[
            "sample",
            "--model",
            "missing.ckpt",
            "--device",
            "cuda:1",
            "--n",
            "4",
            "--out",
            &out_s,
        ],
        "trained networks run on the CPU only",
    );
}

/// A two-dimensional mixture for `diffuse likelihood`, as JSON and as the
/// library type.
fn likelihood_mixture(dir: &Path) -> (String, diffuse_nets::GaussianMixture) {
    let (weights, means, stds) = (
        vec![0.5, 0.3, 0.2],
        vec![vec![-1.0, 0.5], vec![1.0, 1.0], vec![0.5, -1.0]],
        vec![0.3, 0.5, 0.25],
    );
    let path = dir.join("mixture.json");
    let json = serde_json::json!({"weights": weights, "means": means, "stds": stds});
    std::fs::write(&path, json.to_string()).unwrap();
    let gmm = diffuse_nets::GaussianMixture::new(weights, means, stds).unwrap();
    (format!("gmm:{}", path.display()), gmm)
}

/// `n` exact draws from `gmm`, rounded to f32: component `k` for a share
/// `wₖ` of the rows (in order), normals from the public noise stream.
fn mixture_draws(gmm: &diffuse_nets::GaussianMixture, n: usize) -> ndarray::Array2<f32> {
    let z = NoiseStream::new(11, 0);
    let d = gmm.dim();
    let mut out = ndarray::Array2::<f32>::zeros((n, d));
    let mut bound = 0.0;
    let mut k = 0;
    for r in 0..n {
        while (r as f64 + 0.5) / n as f64 > bound + gmm.weights()[k] {
            bound += gmm.weights()[k];
            k += 1;
        }
        for j in 0..d {
            let v = gmm.means()[k][j] + gmm.stds()[k] * f64::from(z.at((r * d + j) as u64));
            out[[r, j]] = v as f32;
        }
    }
    out
}

fn write_npy<T: ndarray_npy::WritableElement, D: ndarray::Dimension>(
    path: &Path,
    a: &ndarray::Array<T, D>,
) {
    ndarray_npy::write_npy(path, a).unwrap();
}

/// `diffuse likelihood` on exact draws of a mixture gives the exact
/// log density, in bits/dim, of the data convolved with N(0, σ̃min²·I)
/// (where the probability flow starts; no dequantisation offset).
#[test]
fn likelihood_matches_the_exact_mixture_density() {
    let dir = tempfile::tempdir().unwrap();
    let (denoiser, gmm) = likelihood_mixture(dir.path());
    let n = 200;
    let x = mixture_draws(&gmm, n);
    let data = dir.path().join("x.npy");
    write_npy(&data, &x);
    let data = data.to_str().unwrap();
    let o = diffuse(&[
        "likelihood",
        "--denoiser",
        &denoiser,
        "--data",
        data,
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], n);
    assert_eq!(v["dim"], 2);
    assert_eq!(v["divergence"], "exact");
    let per_sample: Vec<f64> = v["per_sample"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert_eq!(per_sample.len(), n);
    // The exact density at the start level σ̃min (the cosine schedule's
    // clean end by default).
    let sigma_min = v["sigma_min"].as_f64().unwrap();
    assert!((sigma_min - 0.0064).abs() < 1e-4, "{sigma_min}");
    let start = diffuse_nets::GaussianMixture::new(
        gmm.weights().to_vec(),
        gmm.means().to_vec(),
        gmm.stds()
            .iter()
            .map(|s| (s * s + sigma_min * sigma_min).sqrt())
            .collect(),
    )
    .unwrap();
    let bits = 2.0 * std::f64::consts::LN_2;
    let exact: Vec<f64> = x
        .rows()
        .into_iter()
        .map(|r| {
            let p: Vec<f64> = r.iter().map(|&v| f64::from(v)).collect();
            -start.log_density(&p).unwrap() / bits
        })
        .collect();
    let exact_mean = exact.iter().sum::<f64>() / n as f64;
    let bpd = v["bpd"].as_f64().unwrap();
    println!(
        "likelihood: {bpd:.5} bits/dim, exact {exact_mean:.5}, NFE {}",
        v["nfe"]
    );
    assert!((bpd - exact_mean).abs() < 0.02, "{bpd} vs {exact_mean}");
    // Mean and per-point values agree; so do bits and nats.
    let mean = per_sample.iter().sum::<f64>() / n as f64;
    assert!((mean - bpd).abs() < 1e-12);
    assert!((v["nats"].as_f64().unwrap() - bpd * bits).abs() < 1e-9);
    for (i, (got, want)) in per_sample.iter().zip(&exact).enumerate() {
        assert!((got - want).abs() < 0.1, "row {i}: {got} vs {want}");
    }
    // float64 data are read too.
    let x64 = x.mapv(f64::from);
    let data64 = dir.path().join("x64.npy");
    write_npy(&data64, &x64.slice(ndarray::s![..20, ..]).to_owned());
    let o = diffuse(&[
        "likelihood",
        "--denoiser",
        &denoiser,
        "--data",
        data64.to_str().unwrap(),
        "--format",
        "json",
        "--divergence",
        "hutchinson",
        "--probes",
        "4",
        "--seed",
        "3",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["n"], 20);
    assert_eq!(v["probes"], 4);
    let bpd = v["bpd"].as_f64().unwrap();
    let exact_mean = exact[..20].iter().sum::<f64>() / 20.0;
    // The Hutchinson estimate is unbiased but noisy.
    assert!((bpd - exact_mean).abs() < 0.2, "{bpd} vs {exact_mean}");
}

#[test]
fn likelihood_input_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (denoiser, _) = likelihood_mixture(dir.path());
    let run = |name: &str, needle: &str| {
        let path = dir.path().join(name);
        assert_one_line_error(
            &[
                "likelihood",
                "--denoiser",
                &denoiser,
                "--data",
                path.to_str().unwrap(),
            ],
            needle,
        );
    };
    run("missing.npy", "missing.npy");
    write_npy(
        &dir.path().join("three.npy"),
        &ndarray::Array2::<f32>::zeros((4, 3)),
    );
    run("three.npy", "dimension 3");
    let mut nan = ndarray::Array2::<f32>::zeros((5, 2));
    nan[[3, 1]] = f32::NAN;
    write_npy(&dir.path().join("nan.npy"), &nan);
    run("nan.npy", "row 3");
    write_npy(
        &dir.path().join("int.npy"),
        &ndarray::Array2::<i64>::zeros((4, 2)),
    );
    run("int.npy", "float32 or float64");
    write_npy(
        &dir.path().join("flat.npy"),
        &ndarray::Array1::<f32>::zeros(4),
    );
    run("flat.npy", "[n, d]");
    write_npy(
        &dir.path().join("empty.npy"),
        &ndarray::Array2::<f32>::zeros((0, 2)),
    );
    run("empty.npy", "no points");
    std::fs::write(dir.path().join("junk.npy"), b"not an npy file").unwrap();
    run("junk.npy", "junk.npy");
    let ok = dir.path().join("ok.npy");
    write_npy(&ok, &ndarray::Array2::<f32>::zeros((2, 2)));
    let ok = ok.to_str().unwrap();
    assert_one_line_error(
        &[
            "likelihood",
            "--denoiser",
            &denoiser,
            "--data",
            ok,
            "--probes",
            "2",
        ],
        "hutchinson",
    );
    assert_one_line_error(
        &["likelihood", "--denoiser", "mixture.json", "--data", ok],
        "gmm:",
    );
    assert_one_line_error(
        &[
            "likelihood",
            "--denoiser",
            &denoiser,
            "--data",
            ok,
            "--sigma-min",
            "0",
        ],
        "sigma_min",
    );
    assert_one_line_error(
        &[
            "likelihood",
            "--denoiser",
            &denoiser,
            "--data",
            ok,
            "--sigma-max",
            "1e6",
        ],
        "outside the noise levels of schedule vp-cosine",
    );
}

/// Fraction of the rows of `x.npy` with a positive first coordinate, and
/// the largest absolute coordinate.
fn right_fraction_and_max(path: &Path) -> (f64, f32) {
    let x: ndarray::Array2<f32> = ndarray_npy::read_npy(path).unwrap();
    let right = x.rows().into_iter().filter(|r| r[0] > 0.0).count();
    let max = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    (right as f64 / x.nrows() as f64, max)
}

#[test]
fn sample_guides_toward_a_class_and_bounds_the_data_estimate() {
    let dir = tempfile::tempdir().unwrap();
    let gmm = dir.path().join("gmm.json");
    std::fs::write(
        &gmm,
        r#"{"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "stds": [0.5, 0.5],
            "labels": [0, 1]}"#,
    )
    .unwrap();
    let spec = format!("gmm:{}", gmm.display());
    let run = |name: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let out_s = out.display().to_string();
        let mut args = vec![
            "sample",
            "--denoiser",
            &spec,
            "--n",
            "2000",
            "--steps",
            "20",
            "--seed",
            "3",
            "--out",
            &out_s,
        ];
        args.extend_from_slice(extra);
        let o = diffuse(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        right_fraction_and_max(&out)
    };
    // Unconditional: half the mass on each side; conditional on class 1:
    // Φ(1/0.5) = 0.977 of it on the right; guidance pushes further.
    let (uncond, uncond_max) = run("u.npy", &[]);
    let (zero, _) = run("z.npy", &["--class", "1", "--guidance", "0"]);
    let (cond, _) = run("c.npy", &["--class", "1"]);
    let (guided, _) = run("g.npy", &["--class", "1", "--guidance", "3"]);
    assert!((uncond - 0.5).abs() < 0.05, "{uncond}");
    assert_eq!(zero, uncond, "scale 0 is the unconditional model");
    assert!((cond - 0.977).abs() < 0.015, "{cond}");
    assert!(guided > cond && guided > 0.99, "{guided} vs {cond}");
    let (_, rescaled_max) = run(
        "r.npy",
        &[
            "--class",
            "1",
            "--guidance",
            "3",
            "--guidance-rescale",
            "0.7",
            "--guidance-interval",
            "0.1,5",
        ],
    );
    assert!(rescaled_max.is_finite());
    // Clipping bounds the data estimate; the last level of the grid is not
    // quite clean (σ/α = 0.0064 after a step that keeps about 0.6 of the
    // state), so the samples may exceed the bound by a few percent.
    assert!(uncond_max > 2.0, "{uncond_max}");
    let (_, clipped) = run("k.npy", &["--clip", "0.5"]);
    assert!(clipped <= 0.55, "{clipped}");
    let (_, thresholded) = run("t.npy", &["--threshold", "0.9,1.2"]);
    assert!(thresholded <= 1.1, "{thresholded}");
    let out_s = dir.path().join("e.npy").display().to_string();
    let base = ["sample", "--denoiser", &spec, "--n", "8", "--out", &out_s];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<&str> = base.to_vec();
        v.extend_from_slice(extra);
        v
    };
    assert_one_line_error(&with(&["--class", "7"]), "class");
    assert_one_line_error(&with(&["--threshold", "1.5"]), "percentile");
    assert_one_line_error(&with(&["--clip", "0"]), "clip");
    assert_one_line_error(
        &with(&[
            "--class",
            "1",
            "--guidance",
            "2",
            "--guidance-interval",
            "3",
        ]),
        "LO,HI",
    );
    assert_one_line_error(
        &with(&["--class", "1", "--guidance", "2", "--guidance-rescale", "2"]),
        "rescale",
    );
    assert_one_line_error(&with(&["--class", "1", "--device", "cuda"]), "CPU only");
}

#[test]
fn sample_noise_source_is_selectable() {
    let dir = tempfile::tempdir().unwrap();
    let gmm = dir.path().join("gmm.json");
    std::fs::write(
        &gmm,
        r#"{"weights": [0.5, 0.5], "means": [[-1.0, 0.0], [1.0, 0.0]], "stds": [0.3, 0.3]}"#,
    )
    .unwrap();
    let spec = format!("gmm:{}", gmm.display());
    let run = |name: &str, solver: &str, steps: &str, extra: &[&str]| {
        let out = dir.path().join(name);
        let out_s = out.display().to_string();
        let mut args = vec![
            "sample",
            "--denoiser",
            &spec,
            "--solver",
            solver,
            "--steps",
            steps,
            "--n",
            "256",
            "--out",
            &out_s,
        ];
        args.extend_from_slice(extra);
        let o = diffuse(&args);
        assert!(o.status.success(), "{extra:?}: {}", stderr(&o));
        let x: ndarray::Array2<f32> = ndarray_npy::read_npy(&out).unwrap();
        x
    };
    // dpmpp-sde walks the Brownian tree by default; --noise picks either.
    let default = run("d.npy", "dpmpp-sde", "20", &[]);
    let tree = run("t.npy", "dpmpp-sde", "20", &["--noise", "brownian"]);
    let draws = run("p.npy", "dpmpp-sde", "20", &["--noise", "philox"]);
    assert_eq!(default, tree);
    assert_ne!(default, draws);
    // On one Brownian path, euler-ancestral at 40 and 80 steps ends closer
    // together than with independent draws (median distance per sample).
    let median_gap = |a: &ndarray::Array2<f32>, b: &ndarray::Array2<f32>| {
        let mut d: Vec<f32> = a
            .rows()
            .into_iter()
            .zip(b.rows())
            .map(|(p, q)| ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt())
            .collect();
        d.sort_by(f32::total_cmp);
        d[d.len() / 2]
    };
    let t40 = run("t40.npy", "euler-ancestral", "40", &["--noise", "brownian"]);
    let t80 = run("t80.npy", "euler-ancestral", "80", &["--noise", "brownian"]);
    let p40 = run("p40.npy", "euler-ancestral", "40", &["--noise", "philox"]);
    let p80 = run("p80.npy", "euler-ancestral", "80", &["--noise", "philox"]);
    let (gap_tree, gap_draws) = (median_gap(&t40, &t80), median_gap(&p40, &p80));
    assert!(gap_tree < 0.5 * gap_draws, "{gap_tree} vs {gap_draws}");
    let out_s = dir.path().join("e.npy").display().to_string();
    assert_one_line_error(
        &[
            "sample",
            "--denoiser",
            &spec,
            "--solver",
            "dpmpp-2m",
            "--noise",
            "brownian",
            "--n",
            "4",
            "--out",
            &out_s,
        ],
        "deterministic",
    );
}

//! `diffuse train`, `sample` and `demo` end to end, on tiny runs.

use std::path::Path;
use std::process::{Command, Output};

use ndarray::Array2;
use ndarray_npy::ReadNpyExt;

fn diffuse(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_diffuse"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run diffuse")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A failure is one line on stderr naming `needle`, with no panic.
fn fails(dir: &Path, args: &[&str], needle: &str) {
    let o = diffuse(dir, args);
    let err = text(&o.stderr);
    assert!(!o.status.success(), "{args:?} succeeded");
    assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(err.contains(needle), "{args:?}: {err} lacks {needle}");
}

const TINY: [&str; 8] = [
    "--steps", "40", "--batch", "64", "--hidden", "16,16", "--quiet", "--seed",
];

#[test]
fn train_then_sample_and_no_clobber() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let mut args = vec![
        "train",
        "--data",
        "moons",
        "--schedule",
        "cosine",
        "--pred",
        "v",
    ];
    args.extend(["--loss", "min-snr:5", "--out", "m.safetensors"]);
    args.extend(TINY);
    args.push("3");
    ok(&diffuse(d, &args));
    assert!(d.join("m.safetensors").exists());
    // No clobber without --force; --force replaces.
    fails(d, &args, "exists");
    let mut forced = args.clone();
    forced.push("--force");
    ok(&diffuse(d, &forced));

    let sample = [
        "sample",
        "--model",
        "m.safetensors",
        "--solver",
        "dpmpp-2m",
        "--steps",
        "5",
        "--n",
        "300",
        "--out",
        "x.npy",
        "--plot",
        "x.png",
        "--seed",
        "2",
        "--format",
        "json",
    ];
    let o = diffuse(d, &sample);
    ok(&o);
    let summary: serde_json::Value = serde_json::from_str(&text(&o.stdout)).expect("json");
    assert_eq!(summary["nfe"], 5);
    assert!(summary["sw"].as_f64().is_some_and(f64::is_finite));
    let x = Array2::<f32>::read_npy(std::fs::File::open(d.join("x.npy")).expect("npy"))
        .expect("read npy");
    assert_eq!(x.dim(), (300, 2));
    assert!(x.iter().all(|v| v.is_finite()));
    assert!(
        std::fs::read(d.join("x.png"))
            .expect("png")
            .starts_with(b"\x89PNG")
    );
    fails(d, &sample, "exists");

    // Resume continues to the new total.
    ok(&diffuse(
        d,
        &[
            "train",
            "--resume",
            "m.safetensors",
            "--steps",
            "60",
            "--out",
            "m2.safetensors",
            "--quiet",
        ],
    ));
    fails(
        d,
        &[
            "train",
            "--resume",
            "m.safetensors",
            "--steps",
            "20",
            "--out",
            "m3.safetensors",
            "--quiet",
        ],
        "steps",
    );
}

#[test]
fn bad_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let base = |flag: &'static str, value: &'static str| {
        let mut a = vec!["train", flag, value, "--out", "bad.safetensors"];
        a.extend(TINY);
        a.push("0");
        a
    };
    fails(d, &base("--loss", "huber"), "min-snr");
    fails(d, &base("--schedule", "linear-ish"), "vp-cosine");
    fails(d, &base("--data", "spirals"), "moons");
    fails(d, &base("--pred", "noise"), "eps");
    assert!(!d.join("bad.safetensors").exists());
    fails(
        d,
        &[
            "sample",
            "--model",
            "missing.safetensors",
            "--n",
            "10",
            "--out",
            "y.npy",
        ],
        "missing.safetensors",
    );
}

#[test]
fn sample_from_a_gaussian_mixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(
        d.join("g.json"),
        r#"{"weights": [0.5, 0.5], "means": [[-2, 0], [2, 0]], "stds": [0.3, 0.3]}"#,
    )
    .expect("write");
    for solver in ["unipc", "ddim-eta"] {
        let out = format!("{solver}.npy");
        let mut args = vec![
            "sample",
            "--denoiser",
            "gmm:g.json",
            "--solver",
            solver,
            "--schedule",
            "vp-linear",
            "--steps",
            "25",
            "--n",
            "2000",
            "--seed",
            "5",
            "--out",
            &out,
        ];
        if solver == "ddim-eta" {
            args.extend(["--eta", "0.5"]);
        }
        ok(&diffuse(d, &args));
        let x = Array2::<f32>::read_npy(std::fs::File::open(d.join(&out)).expect("npy"))
            .expect("read npy");
        // Both modes, each near ±2 with spread ≈ 0.3.
        let right: Vec<f32> = x.column(0).iter().copied().filter(|v| *v > 0.0).collect();
        let frac = right.len() as f64 / 2000.0;
        assert!((frac - 0.5).abs() < 0.05, "{solver}: {frac}");
        let mean = right.iter().map(|v| f64::from(*v)).sum::<f64>() / right.len() as f64;
        // The stochastic sampler carries more discretisation error at 25
        // steps (measured 1.94 for ddim-eta η = 0.5, 2.00 for unipc).
        let tol = if solver == "unipc" { 0.03 } else { 0.1 };
        assert!((mean - 2.0).abs() < tol, "{solver}: {mean}");
    }
    fails(
        d,
        &[
            "sample",
            "--denoiser",
            "g.json",
            "--n",
            "10",
            "--out",
            "z.npy",
        ],
        "gmm:",
    );
    fails(
        d,
        &[
            "sample",
            "--denoiser",
            "gmm:g.json",
            "--solver",
            "euler",
            "--eta",
            "1",
            "--n",
            "10",
            "--out",
            "z.npy",
        ],
        "ddim-eta",
    );
}

#[test]
fn demo_quick_json_shape_and_fresh_plot_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::write(d.join("demo.png"), b"keep").expect("write");
    let o = diffuse(d, &["demo", "--quick", "--format", "json"]);
    ok(&o);
    let v: serde_json::Value = serde_json::from_str(&text(&o.stdout)).expect("json");
    assert_eq!(v["dataset"], "moons");
    assert!(v["floor"].as_f64().is_some_and(|f| f > 0.0));
    let results = v["results"].as_array().expect("results");
    assert_eq!(results.len(), 20);
    for r in results {
        assert!(r["solver"].is_string());
        assert!(r["nfe"].as_u64().is_some_and(|n| (1..=50).contains(&n)));
        assert!(r["sw"].as_f64().is_some_and(f64::is_finite));
    }
    // The existing demo.png is kept; the grid goes to demo-1.png.
    assert_eq!(v["plot"], "demo-1.png");
    assert_eq!(std::fs::read(d.join("demo.png")).expect("read"), b"keep");
    assert!(
        std::fs::read(d.join("demo-1.png"))
            .expect("png")
            .starts_with(b"\x89PNG")
    );
}

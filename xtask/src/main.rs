//! Project tasks, run as `cargo xtask TASK`.
//!
//! - `cargo xtask bench [ARGS…]`: runs the criterion benches of the fused
//!   step (extra arguments go to criterion) and writes `docs/benchmarks.md`
//!   with GB/s and the ratio to the STREAM triad measured in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask bench [criterion arguments…]");
            std::process::exit(2);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct BenchmarkJson {
    throughput: Option<Throughput>,
}

#[derive(Deserialize)]
enum Throughput {
    Bytes(u64),
    #[serde(other)]
    Other,
}

struct Row {
    id: String,
    bytes: u64,
    median_ns: f64,
}

impl Row {
    fn gbps(&self) -> f64 {
        self.bytes as f64 / self.median_ns
    }
}

fn read_row(dir: &Path, id: &str) -> Result<Row> {
    let new = dir.join(id).join("new");
    let est: Estimates = serde_json::from_str(
        &std::fs::read_to_string(new.join("estimates.json"))
            .with_context(|| format!("reading {}", new.display()))?,
    )?;
    let bench: BenchmarkJson =
        serde_json::from_str(&std::fs::read_to_string(new.join("benchmark.json"))?)?;
    let bytes = match bench.throughput {
        Some(Throughput::Bytes(b)) => b,
        _ => bail!("{id}: no byte throughput recorded"),
    };
    Ok(Row {
        id: id.to_string(),
        bytes,
        median_ns: est.median.point_estimate,
    })
}

/// The median time of the criterion benchmark `id` in `dir`, in ns.
fn median_ns(dir: &Path, id: &str) -> Result<f64> {
    let new = dir.join(id).join("new");
    let est: Estimates = serde_json::from_str(
        &std::fs::read_to_string(new.join("estimates.json"))
            .with_context(|| format!("reading {}", new.display()))?,
    )?;
    Ok(est.median.point_estimate)
}

/// Steps of the short and long runs in the `sampling_loop` bench of
/// diffuse-solvers.
const LOOP_STEPS: [f64; 2] = [100.0, 400.0];

/// Runs the sampling-loop bench and returns its section of the report.
fn sampling_loop_section(root: &Path, target: &Path, extra: &[String]) -> Result<String> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args([
            "bench",
            "-p",
            "diffuse-solvers",
            "--bench",
            "sampling_loop",
            "--",
        ])
        .args(extra)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench (sampling loop) failed");
    }
    let dir = target.join("criterion").join("sampling_loop");
    let mut md = String::from(
        "\n## The sampling loop against its fused step\n\n\
         Runs of 100 and 400 steps on 2²⁰ elements with a model that costs nothing (its output \
         is left as it is), against one `lincomb` of the same layout timed alone. The cost per \
         step is the difference of the two runs over 300 steps (the driver's host work and the \
         pass); the cost of starting a run (allocating and first touching its buffers) is what \
         the 100-step run takes beyond 100 such steps. Target: per step ≤ 1.1× the fused step.\n\n\
         | solver | fused step, ms | per step, ms | ratio | run start, ms | 100-step run / (100 × fused) | target |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    for (run, fused, label) in [
        ("ddim_run", "fused_k2_m1", "DDIM (K=2, M=1)"),
        ("dpmpp_2m_run", "fused_k3_m2", "DPM-Solver++(2M) (K=3, M=2)"),
    ] {
        let short = median_ns(&dir, &format!("{run}_100"))?;
        let long = median_ns(&dir, &format!("{run}_400"))?;
        let step = median_ns(&dir, fused)?;
        let per_step = (long - short) / (LOOP_STEPS[1] - LOOP_STEPS[0]);
        let start = short - LOOP_STEPS[0] * per_step;
        let ratio = per_step / step;
        let whole = short / (LOOP_STEPS[0] * step);
        let verdict = if ratio <= 1.1 {
            "≤ 1.1: met"
        } else {
            "≤ 1.1: **not met**"
        };
        md.push_str(&format!(
            "| {label} | {:.3} | {:.3} | {ratio:.3} | {:.2} | {whole:.3} | {verdict} |\n",
            step / 1e6,
            per_step / 1e6,
            start / 1e6
        ));
    }
    Ok(md)
}

#[derive(Deserialize)]
struct Paired {
    gbps: f64,
    triad_gbps: f64,
    #[serde(rename = "ratio_to_triad")]
    ratio: f64,
}

/// Runs `diffuse bench step --triad` for the case `id` (`k3_m2_noise`…).
fn paired_step(root: &Path, elements: u64, id: &str) -> Result<Paired> {
    let mut parts = id.split('_');
    let k = parts
        .next()
        .and_then(|p| p.strip_prefix('k'))
        .context("case id")?;
    let m = parts
        .next()
        .and_then(|p| p.strip_prefix('m'))
        .context("case id")?;
    let noise = parts.next() == Some("noise");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "diffuse-cli",
        "--",
        "bench",
        "step",
    ]);
    cmd.args([
        "--elements",
        &elements.to_string(),
        "--inputs",
        k,
        "--outputs",
        m,
    ]);
    cmd.args(["--repeats", "30", "--triad", "--format", "json"]);
    if noise {
        cmd.arg("--noise");
    }
    let out = cmd.output().context("running diffuse bench step")?;
    if !out.status.success() {
        bail!(
            "diffuse bench step failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {threads} threads (rayon), {rustc}")
}

fn bench(extra: &[String]) -> Result<()> {
    let root = root();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["bench", "-p", "diffuse-core", "--bench", "lincomb", "--"])
        .args(extra)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = target.join("criterion").join("lincomb");
    let triad = read_row(&dir, "triad")?;
    let cases = [
        ("k2_m1", "K=2, M=1", Some(0.9)),
        ("k3_m2", "K=3, M=2", None),
        ("k3_m2_noise", "K=3, M=2, with noise", Some(0.7)),
        ("k1_m1_noise", "K=1, M=1, with noise", None),
    ];
    let elements = triad.bytes / 12;
    let mut md = String::new();
    md.push_str("# Benchmarks\n\n");
    md.push_str(
        "Written by `cargo xtask bench` (criterion, median of 20 samples); do not edit by hand.\n\n",
    );
    md.push_str(&format!(
        "Machine: {}. Tensors of {elements} f32 elements.\n\n",
        machine()
    ));
    md.push_str("## The fused step (`lincomb`) against the memory-bandwidth floor\n\n");
    md.push_str(
        "A step that reads K tensors and writes M moves `4·n·(K+M)` bytes; its floor is that \
         count over the memory bandwidth, measured here by a STREAM-like triad `a = b + s·c` \
         (`12·n` bytes) in the same binary, on the same thread pool, in the same run. \
         Inputs and outputs are distinct tensors, as in the triad.\n\n",
    );
    md.push_str(
        "Shared machines drift: their bandwidth changes between runs by tens of percent. So \
         besides criterion's figures (each case timed on its own, after the triad), every case \
         is timed again with `diffuse bench step --triad`, which alternates the step and the \
         triad run by run and takes the median of each; the targets are judged on that \
         paired ratio.\n\n",
    );
    md.push_str(
        "| case | median ms | GB/s | ratio to triad (criterion) | paired GB/s: step / triad | paired ratio | target |\n\
         |---|---:|---:|---:|---:|---:|---|\n",
    );
    md.push_str(&format!(
        "| triad `a = b + s·c` | {:.3} | {:.2} | 1.000 | | | |\n",
        triad.median_ns / 1e6,
        triad.gbps()
    ));
    let mut paired_triads = Vec::new();
    for (id, label, target) in cases {
        let row = read_row(&dir, id)?;
        let ratio = row.gbps() / triad.gbps();
        let paired = paired_step(&root, elements, id)?;
        paired_triads.push(paired.triad_gbps);
        let target = match target {
            Some(t) if paired.ratio >= t => format!("≥ {t}: met"),
            Some(t) => format!("≥ {t}: **not met**"),
            None => String::new(),
        };
        md.push_str(&format!(
            "| {label} (`{}`) | {:.3} | {:.2} | {ratio:.3} | {:.2} / {:.2} | {:.3} | {target} |\n",
            row.id,
            row.median_ns / 1e6,
            row.gbps(),
            paired.gbps,
            paired.triad_gbps,
            paired.ratio,
        ));
    }
    let noise = read_row(&dir, "noise_fill")?;
    let per_elem_ns = noise.median_ns / (noise.bytes / 4) as f64;
    let ceiling = 20.0 / per_elem_ns;
    let paired_triad = paired_triads.iter().sum::<f64>() / paired_triads.len() as f64;
    md.push_str(&format!(
        "\n## The noise stream\n\n\
         Filling {elements} elements with the public noise stream (`noise_fill`) takes {:.3} ms: \
         {per_elem_ns:.3} ns per normal on all threads together ({:.0} M normals/s). A step \
         with noise cannot be faster than generating its noise, so K=3, M=2 with noise \
         (20 bytes per element) is bounded by {ceiling:.2} GB/s here: {:.3}× criterion's triad, \
         {:.3}× the mean paired triad ({paired_triad:.2} GB/s), however well memory traffic \
         and arithmetic overlap.\n",
        noise.median_ns / 1e6,
        1e3 / per_elem_ns,
        ceiling / triad.gbps(),
        ceiling / paired_triad,
    ));
    md.push_str(&sampling_loop_section(&root, &target, extra)?);
    md.push_str(
        "\nReproduce: `cargo xtask bench` (all cases), or for one case on your machine \
         `cargo run --release -- bench step --elements 16777216 --inputs 3 --outputs 2 --noise --triad`.\n",
    );
    let out = root.join("docs").join("benchmarks.md");
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

//! Project tasks, run as `cargo xtask TASK`.
//!
//! - `cargo xtask bench [ARGS…]`: runs the criterion benches of the fused
//!   step (extra arguments go to criterion) and writes `docs/benchmarks.md`
//!   with GB/s and the ratio to the STREAM triad measured in the same run,
//!   the sampling loop against its fused step, and the reference training
//!   step of diffuse-nets.
//! - `cargo xtask bench --only train [ARGS…]`: runs the training bench only
//!   and replaces that section of `docs/benchmarks.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("bench") => bench(&args[1..]),
        _ => {
            eprintln!("usage: cargo xtask bench [--only train] [criterion arguments…]");
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
    Elements(u64),
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

/// Threads of the rayon pool the benches run on.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
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
    let threads = threads();
    let rustc = Command::new("rustc")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {threads} threads (rayon), {rustc}")
}

fn bench(args: &[String]) -> Result<()> {
    let root = root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let out = root.join("docs").join("benchmarks.md");
    if args.first().map(String::as_str) == Some("--only") {
        match args.get(1).map(String::as_str) {
            Some("train") => {
                let section = training_section(&root, &target, &args[2..])?;
                let doc = std::fs::read_to_string(&out)
                    .with_context(|| format!("reading {}", out.display()))?;
                std::fs::write(&out, splice_section(&doc, TRAIN_HEADING, &section))
                    .with_context(|| format!("writing {}", out.display()))?;
                println!("updated the training section of {}", out.display());
                return Ok(());
            }
            other => bail!("--only {}: the sections are: train", other.unwrap_or("")),
        }
    }
    let extra = args;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&root)
        .args(["bench", "-p", "diffuse-core", "--bench", "lincomb", "--"])
        .args(extra)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench failed");
    }
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
    md.push_str(
        "\nReproduce: `cargo xtask bench` (all sections), or for one case on your machine \
         `cargo run --release -- bench step --elements 16777216 --inputs 3 --outputs 2 --noise --triad`.\n",
    );
    md.push_str(&sampling_loop_section(&root, &target, extra)?);
    md.push_str(&training_section(&root, &target, extra)?);
    std::fs::write(&out, md).with_context(|| format!("writing {}", out.display()))?;
    println!("wrote {}", out.display());
    Ok(())
}

/// Heading of the training section of `docs/benchmarks.md`.
const TRAIN_HEADING: &str = "## The reference training step";

/// Multiply–adds per row of one forward pass of the reference network:
/// `(2 + 128) → 256 → 256 → 256 → 2` (data plus sinusoidal time features in,
/// three hidden layers of 256, the prediction out).
const REFERENCE_MACS_PER_ROW: f64 = 130.0 * 256.0 + 2.0 * 256.0 * 256.0 + 256.0 * 2.0;

/// Multiply–adds per row of the first layer's input gradient, which a
/// training step does not compute (the input is data, not a parameter).
const FIRST_LAYER_MACS_PER_ROW: f64 = 130.0 * 256.0;

/// Batch of the reference training step and rows of the forward-pass bench.
const TRAIN_BATCH: f64 = 4096.0;
const FORWARD_ROWS: f64 = 65_536.0;

/// The nominal clock of the first CPU in `/proc/cpuinfo`, in GHz.
fn nominal_ghz() -> Option<f64> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("cpu MHz"))?
        .split(':')
        .nth(1)?
        .trim()
        .parse::<f64>()
        .ok()
        .map(|mhz| mhz / 1e3)
}

/// Runs the training bench of diffuse-nets and returns its section.
///
/// FLOP count: a forward pass costs `2·B·M` FLOP with `M` the multiply–adds
/// per row ([`REFERENCE_MACS_PER_ROW`]); backward costs the gradients with
/// respect to the weights (`2·B·M`) and to the layer inputs (`2·B·M` less
/// the first layer's, [`FIRST_LAYER_MACS_PER_ROW`]). Two references: the
/// nominal peak, 32 FLOP per cycle per core (two 8-wide FMA units, AVX2) at
/// the clock `/proc/cpuinfo` reports (boost clocks are higher, so a ratio
/// above 1 is possible), and the rate the GEMM itself reaches on one core
/// for the step's matrix shapes (criterion group `gemm`), times the threads.
fn training_section(root: &Path, target: &Path, extra: &[String]) -> Result<String> {
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(root)
        .args(["bench", "-p", "diffuse-nets", "--bench", "train", "--"])
        .args(extra)
        .status()
        .context("running cargo bench")?;
    if !status.success() {
        bail!("cargo bench (training step) failed");
    }
    let dir = target.join("criterion").join("nets");
    let step = median_ns(&dir, "reference_train_step_b4096")?;
    let forward = median_ns(&dir, "forward_65536")?;
    let step_flop = 2.0 * TRAIN_BATCH * (3.0 * REFERENCE_MACS_PER_ROW - FIRST_LAYER_MACS_PER_ROW);
    let forward_flop = 2.0 * FORWARD_ROWS * REFERENCE_MACS_PER_ROW;
    let steps_per_s = 1e9 / step;
    let verdict = if steps_per_s >= 34.0 {
        "≥ 34: met"
    } else {
        "≥ 34: **not met**"
    };
    let threads = threads();
    let peak = nominal_ghz().map(|ghz| 32.0 * ghz * threads as f64);
    let vs_peak = |gflops: f64| peak.map_or(String::from("n/a"), |p| format!("{:.2}", gflops / p));
    let step_gflops = step_flop / step;
    let forward_gflops = forward_flop / forward;
    let mut md = format!(
        "\n{TRAIN_HEADING}\n\n\
         The reference model: 2-D data plus a 128-feature sinusoidal time embedding, three \
         hidden layers of 256 with SiLU, a 2-D output; ε-prediction MSE on moons, Adam, \
         batch 4096 (`cargo bench -p diffuse-nets --bench train`). FLOP: forward `2·B·M` with \
         M = {REFERENCE_MACS_PER_ROW:.0} multiply–adds per row; a training step adds the weight \
         and input gradients, {:.2} GFLOP in all. Peak: 32 FLOP/cycle/core (AVX2 FMA) × \
         {threads} threads at the nominal clock{} — boost clocks are higher, so the ratio can \
         exceed 1.\n\n\
         | case | median ms | rate | GFLOP/s | ratio to nominal peak | target |\n\
         |---|---:|---:|---:|---:|---|\n",
        step_flop / 1e9,
        peak.map_or(String::from(" (unknown here)"), |p| format!(
            " ({p:.0} GFLOP/s)"
        )),
    );
    md.push_str(&format!(
        "| training step, batch 4096 | {:.2} | {steps_per_s:.1} steps/s | {step_gflops:.0} | {} | {verdict} |\n",
        step / 1e6,
        vs_peak(step_gflops),
    ));
    md.push_str(&format!(
        "| forward pass, 65 536 points | {:.1} | {:.0} k points/s | {forward_gflops:.0} | {} | PyTorch: 312 ms |\n",
        forward / 1e6,
        FORWARD_ROWS / forward * 1e6,
        vs_peak(forward_gflops),
    ));
    md.push_str(&gemm_table(
        &target.join("criterion").join("gemm"),
        threads,
        step_gflops,
    )?);
    md.push_str(
        "\nThe same step is timed by `diffuse bench train` (median of the steps after \
         warm-up). Reproduce this section alone: `cargo xtask bench --only train`.\n",
    );
    Ok(md)
}

/// The table of the `gemm` group (each matrix product of one training shard
/// timed alone on one thread), and the step's rate against the best of them
/// times `threads`: how close the step comes to running the GEMM alone.
fn gemm_table(dir: &Path, threads: usize, step_gflops: f64) -> Result<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let id = entry?.file_name().to_string_lossy().into_owned();
        let new = dir.join(&id).join("new");
        let Ok(text) = std::fs::read_to_string(new.join("benchmark.json")) else {
            continue;
        };
        let bench: BenchmarkJson = serde_json::from_str(&text)?;
        let Some(Throughput::Elements(flop)) = bench.throughput else {
            bail!("gemm/{id}: no FLOP count recorded");
        };
        rows.push((id.clone(), flop as f64 / median_ns(dir, &id)?));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let best = rows.iter().map(|r| r.1).fold(0.0, f64::max);
    let mut md = String::from(
        "\nThe matrix products of one 1024-row shard, each alone on one thread (criterion group \
         `gemm`, the `gemm` crate):\n\n| product | GFLOP/s (one core) |\n|---|---:|\n",
    );
    for (id, gflops) in &rows {
        md.push_str(&format!("| `{id}` | {gflops:.1} |\n"));
    }
    md.push_str(&format!(
        "\nThe whole step runs at {step_gflops:.0} GFLOP/s, {:.2}× the best product's rate on \
         {threads} cores ({:.0} GFLOP/s): what remains is the element-wise work between the \
         products (bias, SiLU, embedding, Adam) and the packing of the operands.\n",
        step_gflops / (best * threads as f64),
        best * threads as f64,
    ));
    Ok(md)
}

/// Replaces the section that starts with `heading` in `doc` (up to the next
/// `## ` heading or the end) by `section`, or appends it.
fn splice_section(doc: &str, heading: &str, section: &str) -> String {
    let Some(start) = doc.find(&format!("\n{heading}\n")) else {
        return format!("{}\n{}", doc.trim_end(), section);
    };
    let rest = &doc[start + 1..];
    let end = rest[heading.len()..]
        .find("\n## ")
        .map_or(doc.len(), |i| start + 1 + heading.len() + i);
    format!("{}{}{}", &doc[..start], section, &doc[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_replaces_only_its_section() {
        let doc = "# B\n\nintro\n\n## A\n\nold a\n\n## T\n\nold t\n\n## C\n\nc\n";
        let out = splice_section(doc, "## T", "\n## T\n\nnew t\n");
        assert_eq!(
            out,
            "# B\n\nintro\n\n## A\n\nold a\n\n## T\n\nnew t\n\n## C\n\nc\n"
        );
        let last = splice_section("# B\n\n## T\n\nold\n", "## T", "\n## T\n\nnew\n");
        assert_eq!(last, "# B\n\n## T\n\nnew\n");
        let appended = splice_section("# B\n\n## A\n\na\n", "## T", "\n## T\n\nt\n");
        assert_eq!(appended, "# B\n\n## A\n\na\n\n## T\n\nt\n");
    }
}

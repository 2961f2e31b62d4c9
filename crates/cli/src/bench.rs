//! `diffuse bench step`: the fused step's bandwidth on this machine.

use std::time::Instant;

use serde::Serialize;

use diffuse_core::CpuBackend;
use diffuse_core::bench::{StepWorkload, Triad};

use crate::cli::{Format, StepArgs};
use crate::error::{CliError, CliResult};

/// Untimed runs before timing.
const WARMUP: usize = 3;

#[derive(Serialize)]
struct StepReport {
    gbps: f64,
    ms: f64,
    elements: u64,
    inputs: u8,
    outputs: u8,
    noise: bool,
    bytes: u64,
    threads: usize,
    repeats: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    triad_gbps: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratio_to_triad: Option<f64>,
}

/// Median wall time in milliseconds of `repeats` runs after warm-up.
fn median_ms(repeats: u32, mut f: impl FnMut() -> CliResult<()>) -> CliResult<f64> {
    for _ in 0..WARMUP {
        f()?;
    }
    let mut times = Vec::with_capacity(repeats as usize);
    for _ in 0..repeats {
        let start = Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    Ok(if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    })
}

pub fn step(args: StepArgs) -> CliResult<()> {
    if args.device != "cpu" {
        return Err(CliError::Usage(format!(
            "device '{}' is not available in this build; use --device cpu",
            args.device
        )));
    }
    let cpu = CpuBackend::new();
    let n = args.elements as usize;
    let mut work = StepWorkload::new(
        cpu.clone(),
        n,
        args.inputs.into(),
        args.outputs.into(),
        args.noise,
    )?;
    let ms = median_ms(args.repeats, || Ok(work.run()?))?;
    let bytes = work.bytes();
    let gbps = bytes as f64 / (ms * 1e6);
    let triad_gbps = if args.triad {
        let mut triad = Triad::new(cpu.clone(), n)?;
        let t = median_ms(args.repeats, || {
            triad.run();
            Ok(())
        })?;
        Some(triad.bytes() as f64 / (t * 1e6))
    } else {
        None
    };
    let report = StepReport {
        gbps,
        ms,
        elements: args.elements,
        inputs: args.inputs,
        outputs: args.outputs,
        noise: args.noise,
        bytes,
        threads: cpu.threads(),
        repeats: args.repeats,
        triad_gbps,
        ratio_to_triad: triad_gbps.map(|t| gbps / t),
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&report)?),
        Format::Text => {
            println!(
                "lincomb K={} M={}{} on {} elements, {} threads: {:.3} ms, {:.2} GB/s ({} bytes per step)",
                args.inputs,
                args.outputs,
                if args.noise { " +noise" } else { "" },
                args.elements,
                report.threads,
                ms,
                gbps,
                bytes
            );
            if let (Some(t), Some(r)) = (report.triad_gbps, report.ratio_to_triad) {
                println!("triad a = b + s·c: {t:.2} GB/s; ratio {r:.3}");
            }
        }
    }
    Ok(())
}

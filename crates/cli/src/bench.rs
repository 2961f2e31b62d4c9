//! `diffuse bench step`: the fused step's bandwidth on this machine.

use std::time::Instant;

use serde::Serialize;

use diffuse_core::CpuBackend;
use diffuse_core::bench::{StepWorkload, Triad};

use crate::cli::{Format, StepArgs};
use crate::device::Device;
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

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        0.5 * (times[mid - 1] + times[mid])
    }
}

/// Median wall times in milliseconds of `repeats` runs of the step (and of
/// the triad, alternating with it) after warm-up.
fn median_ms(
    repeats: u32,
    work: &mut StepWorkload,
    mut triad: Option<&mut Triad>,
) -> CliResult<(f64, Option<f64>)> {
    let mut step_times = Vec::with_capacity(repeats as usize);
    let mut triad_times = Vec::with_capacity(repeats as usize);
    for i in 0..WARMUP + repeats as usize {
        let start = Instant::now();
        work.run()?;
        let step = start.elapsed().as_secs_f64() * 1e3;
        let start = Instant::now();
        if let Some(t) = triad.as_deref_mut() {
            t.run();
        }
        let tri = start.elapsed().as_secs_f64() * 1e3;
        if i >= WARMUP {
            step_times.push(step);
            triad_times.push(tri);
        }
    }
    Ok((median(step_times), triad.map(|_| median(triad_times))))
}

/// The fused step on a CUDA device: median milliseconds (the stream is
/// synchronised after each run, so the time is the kernel's).
fn cuda_step_ms(ordinal: usize, args: &StepArgs) -> CliResult<f64> {
    use diffuse_core::{Backend, LinComb, NoiseStream, Operand};
    let gpu = diffuse_cuda::CudaBackend::new(ordinal)?;
    let n = args.elements as usize;
    let (k, m) = (usize::from(args.inputs), usize::from(args.outputs));
    let operands: Vec<Operand> = (0..k).map(Operand::Input).collect();
    let mut plan = LinComb::new(&operands, m)?;
    if args.noise {
        plan = plan.with_noise(NoiseStream::new(0, 1), 0);
    }
    for mm in 0..m {
        for kk in 0..k {
            plan.set(mm, kk, 1.0 / (1 + mm + kk) as f64)?;
        }
        if args.noise {
            plan.set_noise(mm, 0.1)?;
        }
    }
    let mut tensor = |stream: u64| -> CliResult<diffuse_cuda::CudaTensor> {
        let mut t = gpu.zeros(&[n])?;
        gpu.fill_noise(NoiseStream::new(1, stream), 0, &mut t)?;
        Ok(t)
    };
    let inputs = (0..k as u64)
        .map(&mut tensor)
        .collect::<CliResult<Vec<_>>>()?;
    let mut outputs = (0..m as u64)
        .map(|s| tensor(100 + s))
        .collect::<CliResult<Vec<_>>>()?;
    gpu.prepare(k, m)?;
    let refs: Vec<&diffuse_cuda::CudaTensor> = inputs.iter().collect();
    let mut times = Vec::with_capacity(args.repeats as usize);
    for i in 0..WARMUP + args.repeats as usize {
        let mut targets: Vec<&mut diffuse_cuda::CudaTensor> = outputs.iter_mut().collect();
        gpu.synchronize()?;
        let start = Instant::now();
        gpu.lincomb(&plan, &refs, &mut targets)?;
        gpu.synchronize()?;
        if i >= WARMUP {
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(median(times))
}

pub fn step(args: StepArgs) -> CliResult<()> {
    if let Device::Cuda(ordinal) = args.device {
        if args.triad {
            return Err(CliError::Usage(
                "--triad times the CPU's memory bandwidth; on a GPU compare with the card's \
                 bandwidth (docs/cuda.md)"
                    .into(),
            ));
        }
        let ms = cuda_step_ms(ordinal, &args)?;
        let bytes = 4 * args.elements * (u64::from(args.inputs) + u64::from(args.outputs));
        let gbps = bytes as f64 / (ms * 1e6);
        let report = StepReport {
            gbps,
            ms,
            elements: args.elements,
            inputs: args.inputs,
            outputs: args.outputs,
            noise: args.noise,
            bytes,
            threads: 0,
            repeats: args.repeats,
            triad_gbps: None,
            ratio_to_triad: None,
        };
        match args.format {
            Format::Json => println!("{}", serde_json::to_string(&report)?),
            Format::Text => println!(
                "lincomb K={} M={}{} on {} elements, {}: {:.3} ms, {:.2} GB/s ({} bytes per step)",
                args.inputs,
                args.outputs,
                if args.noise { " +noise" } else { "" },
                args.elements,
                args.device,
                ms,
                gbps,
                bytes
            ),
        }
        return Ok(());
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
    // With the triad, the two are timed alternately so that both see the
    // same machine (memory bandwidth on shared hosts drifts between runs).
    let mut triad = match args.triad {
        true => Some(Triad::new(cpu.clone(), n)?),
        false => None,
    };
    let (ms, triad_ms) = median_ms(args.repeats, &mut work, triad.as_mut())?;
    let bytes = work.bytes();
    let gbps = bytes as f64 / (ms * 1e6);
    let triad_gbps = triad
        .as_ref()
        .zip(triad_ms)
        .map(|(t, ms)| t.bytes() as f64 / (ms * 1e6));
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

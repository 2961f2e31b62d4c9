//! `diffuse orders`: the measured convergence order of every deterministic
//! solver, on a 2-D Gaussian mixture with the exact denoiser.
//!
//! Setup: variance-exploding noise levels σ from 20 down to 0.02 (the final
//! step does not reach σ = 0, where several solvers switch to first order),
//! evenly spaced in log-SNR; 256 starting points `σ_max·z` from the public
//! noise stream (seed 0). The error at N steps is the RMS deviation from a
//! reference run (Heun, 8192 steps) relative to max(1, |x|); the
//! order is the least-squares slope of −log(error) against log N over the
//! three finest step counts whose error stays above the float32 floor (1e-5).
//!
//! What to expect: multistep methods start with lower-order steps, and
//! methods with fixed Adams–Bashforth weights (PNDM, iPNDM) assume steps
//! even in σ̃, so on this grid they measure about 2 whatever their nominal
//! order; DPM-Solver(++)-3M keeps diffusers' and k-diffusion's halved
//! second-difference term and measures about 2 as well.

use std::io::Write;
use std::sync::Arc;

use diffuse_core::{Backend, CpuBackend, NoiseSchedule, NoiseStream, SamplingGrid};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_param::Sample;
use diffuse_schedules::grids::exponential_sigmas;
use diffuse_solvers::{Method, VeSchedule, by_name, deterministic_names};
use serde::Serialize;

use crate::cli::OrdersArgs;
use crate::error::CliResult;
use crate::output::print_result;

/// Step counts at which the error is measured.
const STEPS: [usize; 6] = [8, 16, 32, 64, 128, 256];
/// Errors below this are float32 rounding, not discretisation.
const FLOOR: f64 = 1e-5;
const ROWS: usize = 256;
const SIGMA_MAX: f64 = 10.0;
const SIGMA_MIN: f64 = 0.1;

#[derive(Serialize)]
struct Row {
    solver: String,
    /// The method's nominal order.
    expected: usize,
    steps: Vec<usize>,
    nfe: Vec<usize>,
    errors: Vec<f64>,
    /// The measured order (null if fewer than two errors above the floor).
    order: Option<f64>,
}

fn mixture() -> CliResult<GaussianMixture> {
    Ok(GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![vec![1.5, 0.0], vec![-1.0, 1.2], vec![-0.5, -1.5]],
        vec![0.5, 0.7, 0.6],
    )?)
}

fn solve(
    cpu: &CpuBackend,
    method: &dyn Method,
    model: &GmmDenoiser,
    steps: usize,
) -> CliResult<(Vec<f32>, usize)> {
    let schedule = VeSchedule;
    let grid = SamplingGrid::from_sigmas(
        &schedule,
        &exponential_sigmas(SIGMA_MAX, SIGMA_MIN, steps + 1),
    )?;
    let mut x = cpu.zeros(&[ROWS, 2])?;
    cpu.fill_noise(NoiseStream { seed: 0, stream: 0 }, 0, &mut x)?;
    let z = cpu.to_host(&x)?;
    let scaled: Vec<f32> = z.iter().map(|v| v * SIGMA_MAX as f32).collect();
    let mut x = cpu.upload(&[ROWS, 2], &scaled)?;
    let report = diffuse_solvers::run(
        cpu,
        method,
        model,
        &schedule as &dyn NoiseSchedule,
        &grid,
        &mut x,
    )?;
    Ok((cpu.to_host(&x)?, report.nfe))
}

/// Least-squares slope of −log e against log N.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let (mx, my) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    Some(sxy / sxx)
}

pub fn run(args: &OrdersArgs) -> CliResult<()> {
    let cpu = CpuBackend::new();
    let model = GmmDenoiser::new(mixture()?, Arc::new(Sample));
    let (reference, _) = solve(&cpu, by_name("heun")?.as_ref(), &model, 8192)?;
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs() as f64));
    let mut rows = Vec::new();
    for name in deterministic_names() {
        let method = by_name(name)?;
        let (mut errors, mut nfe) = (Vec::new(), Vec::new());
        for &n in &STEPS {
            let (x, used) = solve(&cpu, method.as_ref(), &model, n)?;
            let mse = x
                .iter()
                .zip(&reference)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum::<f64>()
                / x.len() as f64;
            let e = mse.sqrt() / scale;
            errors.push(e);
            nfe.push(used);
        }
        let points: Vec<(f64, f64)> = STEPS
            .iter()
            .zip(&errors)
            .filter(|(_, e)| **e > FLOOR)
            .map(|(n, e)| ((*n as f64).ln(), -e.ln()))
            .collect();
        rows.push(Row {
            solver: name.to_string(),
            expected: method.order(),
            steps: STEPS.to_vec(),
            nfe,
            errors,
            order: slope(&points[points.len().saturating_sub(3)..]),
        });
    }
    print_result(args.format, &rows, |out| print_table(out, &rows))
}

fn print_table(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "convergence on a 2-D Gaussian mixture, σ {SIGMA_MAX} → {SIGMA_MIN} uniform in log-SNR, RMS error vs Heun at 8192 steps"
    )?;
    write!(out, "{:<12} {:>8} {:>9}", "solver", "expected", "measured")?;
    for n in STEPS {
        write!(out, " {:>10}", format!("N={n}"))?;
    }
    writeln!(out)?;
    for r in rows {
        let order = r.order.map_or("-".to_string(), |p| format!("{p:.2}"));
        write!(out, "{:<12} {:>8} {:>9}", r.solver, r.expected, order)?;
        for e in &r.errors {
            write!(out, " {e:>10.2e}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

//! `diffuse orders`: the measured convergence order of the deterministic
//! solvers, on a 2-D Gaussian mixture with the exact denoiser.
//!
//! Setup: the variance-exploding probability-flow ODE
//! `dx/dσ = (x − D(x; σ))/σ` (Karras et al. 2022, eq. 3 with σ(t) = t)
//! from σ = [`SIGMA_MAX`] to [`SIGMA_MIN`] on grids evenly spaced in
//! log σ (evenly spaced in log-SNR), for [`ROWS`] starting points
//! `σ_max·z` from the public noise stream (seed 0), where `D` is the exact
//! posterior mean of the mixture. The final step does not reach σ = 0,
//! where several solvers switch to first order.
//!
//! The reference is a high-accuracy solve in f64 on the host: classic
//! Runge–Kutta 4 in `s = log σ`, `dx/ds = x − D(x; eˢ)`, with
//! [`REFERENCE_STEPS`] steps (its own error is far below the float32
//! floor). The error at N steps is the RMS deviation of the float32 result
//! from it, relative to max(1, |x|); the order is the least-squares slope
//! of −log(error) against log N over N = 8 … 128, using the step counts
//! whose error is above [`FLOOR`], ten times the float32 rounding noise of
//! a run of 128 steps (about 1e-6 here).
//!
//! The `expected` column is the asymptotic order theory gives each
//! configuration; rows marked as targets are asserted by a test. What
//! theory says:
//! - a fixed number of steps with local error O(hᵠ) adds O(hᵠ) to the
//!   final error, so a multistep method whose warm-up starts with a
//!   first-order step (local error O(h²): diffusers' and k-diffusion's
//!   warm-up) converges with order 2 at most, whatever its own order;
//!   with a second-order first step ([`SecondOrderStart`], one more model
//!   evaluation) an order-3 multistep method converges with order 3. At
//!   these step counts the warm-up's share of the error is still small,
//!   so such rows measure between 2 and their own order;
//! - `lower_order_final` ends with a first-order step, which also caps the
//!   order at 2 (diffusers' UniPC default, `unipc-2`);
//! - UniPC adds the corrector's order to the predictor's: UniP-p with UniC
//!   is of order p + 1 (Zhao et al. 2023, Thm 3.1), so the order-2 and
//!   order-3 UniPC targets are UniP-1 and UniP-2 with UniC. UniP-3 with UniC
//!   would be order 4 from exact starting values, but its first corrected
//!   step is of order 2, so theory gives 3 from a cold start;
//! - DPM-Solver++(3M) with the libraries' halved D₂ term is of order 2
//!   (see `diffuse_solvers::ThirdOrder`);
//! - PNDM and iPNDM use fixed Adams–Bashforth weights, which assume equal
//!   steps; on this log-spaced grid no order is claimed.

use std::io::Write;
use std::sync::Arc;

use diffuse_core::{Backend, CpuBackend, Marginal, NoiseSchedule, NoiseStream, SamplingGrid};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_param::Sample;
use diffuse_schedules::grids::exponential_sigmas;
use diffuse_solvers::{
    Deis, DpmAlgorithm, DpmSolverMultistep, Method, SecondOrder, SecondOrderStart, ThirdOrder,
    UniPc, UniPcVariant, VeSchedule, by_name,
};
use serde::Serialize;

use crate::cli::OrdersArgs;
use crate::error::CliResult;
use crate::output::print_result;

/// Step counts at which the error is measured.
pub const STEPS: [usize; 5] = [8, 16, 32, 64, 128];
/// Errors below this are float32 rounding, not discretisation.
pub const FLOOR: f64 = 1e-5;
/// Batch rows (starting points).
pub const ROWS: usize = 256;
/// The noisy end of the grid.
pub const SIGMA_MAX: f64 = 10.0;
/// The clean end of the grid.
pub const SIGMA_MIN: f64 = 0.1;
/// Steps of the f64 reference solve.
pub const REFERENCE_STEPS: usize = 4096;

/// One measured configuration.
#[derive(Serialize)]
struct Row {
    solver: String,
    /// The asymptotic order theory gives this configuration (null where
    /// theory gives none on this grid).
    expected: Option<f64>,
    /// The accepted |measured − expected| where this row is a target.
    tolerance: Option<f64>,
    /// The options that differ from the named solver's defaults.
    options: String,
    steps: Vec<usize>,
    nfe: Vec<usize>,
    errors: Vec<f64>,
    /// The measured order (null if fewer than two errors above the floor).
    order: Option<f64>,
}

/// A solver configuration to measure: label, options, expected order.
struct Config {
    label: &'static str,
    options: &'static str,
    expected: Option<f64>,
    /// The accepted deviation, for the configurations the order targets
    /// cover (a test asserts them).
    tolerance: Option<f64>,
    method: Box<dyn Method>,
}

fn configs() -> CliResult<Vec<Config>> {
    let named = |label: &'static str, expected: f64, tolerance: Option<f64>| -> CliResult<Config> {
        Ok(Config {
            label,
            options: "",
            expected: Some(expected),
            tolerance,
            method: by_name(label)?,
        })
    };
    let unipc = |order, lower_order_final| UniPc {
        order,
        variant: UniPcVariant::Bh2,
        lower_order_final,
        ..UniPc::default()
    };
    let multistep = |order, algorithm| -> CliResult<DpmSolverMultistep> {
        Ok(DpmSolverMultistep {
            lower_order_final: false,
            ..DpmSolverMultistep::new(order, algorithm, SecondOrder::Midpoint)?
        })
    };
    let libraries_3m = DpmSolverMultistep {
        third_order: ThirdOrder::AsLibraries,
        ..multistep(3, DpmAlgorithm::DataPrediction)?
    };
    Ok(vec![
        named("ddim", 1.0, Some(0.25))?,
        named("euler", 1.0, Some(0.25))?,
        named("heun", 2.0, Some(0.3))?,
        named("dpm2", 2.0, Some(0.3))?,
        named("dpmpp-2s", 2.0, None)?,
        named("dpm-solver-2s", 2.0, None)?,
        Config {
            label: "dpm-solver-2m",
            options: "no lower_order_final",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(multistep(2, DpmAlgorithm::NoisePrediction)?),
        },
        Config {
            label: "dpmpp-2m",
            options: "no lower_order_final",
            expected: Some(2.0),
            tolerance: Some(0.3),
            method: Box::new(multistep(2, DpmAlgorithm::DataPrediction)?),
        },
        Config {
            label: "unipc-1+c",
            options: "UniP-1 with UniC (order 1 + 1), bh2",
            expected: Some(2.0),
            tolerance: Some(0.3),
            method: Box::new(unipc(1, false)),
        },
        Config {
            label: "unipc-2",
            options: "order 2, bh2, lower_order_final (diffusers' defaults)",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(unipc(2, true)),
        },
        named("dpm-solver-3s", 3.0, Some(0.4))?,
        Config {
            label: "dpm-solver-3m",
            options: "no lower_order_final",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(multistep(3, DpmAlgorithm::NoisePrediction)?),
        },
        Config {
            label: "dpmpp-3m",
            options: "no lower_order_final",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(multistep(3, DpmAlgorithm::DataPrediction)?),
        },
        Config {
            label: "dpmpp-3m",
            options: "the libraries' halved D₂ term",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(libraries_3m),
        },
        Config {
            label: "dpmpp-3m+2s",
            options: "second-order first step",
            expected: Some(3.0),
            tolerance: Some(0.4),
            method: Box::new(SecondOrderStart::new(multistep(
                3,
                DpmAlgorithm::DataPrediction,
            )?)),
        },
        Config {
            label: "dpm-solver-3m+2s",
            options: "second-order first step",
            expected: Some(3.0),
            tolerance: None,
            method: Box::new(SecondOrderStart::new(multistep(
                3,
                DpmAlgorithm::NoisePrediction,
            )?)),
        },
        Config {
            label: "deis-3+2s",
            options: "order 3, no lower_order_final, second-order first step",
            expected: Some(3.0),
            tolerance: Some(0.4),
            method: Box::new(SecondOrderStart::new(Deis::new(3, false)?)),
        },
        Config {
            label: "unipc-2+c",
            options: "UniP-2 with UniC (order 2 + 1), bh2",
            expected: Some(3.0),
            tolerance: Some(0.4),
            method: Box::new(unipc(2, false)),
        },
        Config {
            label: "unipc-3+c",
            options: "UniP-3 with UniC, bh2 (4 from exact starting values)",
            expected: Some(3.0),
            tolerance: None,
            method: Box::new(unipc(3, false)),
        },
        Config {
            label: "deis-3",
            options: "order 3, no lower_order_final, lower-order warm-up",
            expected: Some(2.0),
            tolerance: None,
            method: Box::new(Deis::new(3, false)?),
        },
        named("lms", 2.0, None)?,
        Config {
            label: "pndm",
            options: "fixed Adams–Bashforth weights (equal steps assumed)",
            expected: None,
            tolerance: None,
            method: by_name("pndm")?,
        },
        Config {
            label: "ipndm",
            options: "fixed Adams–Bashforth weights (equal steps assumed)",
            expected: None,
            tolerance: None,
            method: by_name("ipndm")?,
        },
    ])
}

fn mixture() -> CliResult<GaussianMixture> {
    Ok(GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![vec![1.5, 0.0], vec![-1.0, 1.2], vec![-0.5, -1.5]],
        vec![0.5, 0.7, 0.6],
    )?)
}

/// The starting points `σ_max·z`, z from the public noise stream.
fn start(cpu: &CpuBackend) -> CliResult<Vec<f32>> {
    let mut x = cpu.zeros(&[ROWS, 2])?;
    cpu.fill_noise(NoiseStream { seed: 0, stream: 0 }, 0, &mut x)?;
    Ok(cpu
        .to_host(&x)?
        .iter()
        .map(|v| v * SIGMA_MAX as f32)
        .collect())
}

/// Runs `method` for `steps` steps in float32; returns x and the NFE.
fn solve(
    cpu: &CpuBackend,
    method: &dyn Method,
    model: &GmmDenoiser,
    x0: &[f32],
    steps: usize,
) -> CliResult<(Vec<f32>, usize)> {
    let schedule = VeSchedule;
    let grid = SamplingGrid::from_sigmas(
        &schedule,
        &exponential_sigmas(SIGMA_MAX, SIGMA_MIN, steps + 1),
    )?;
    let mut x = cpu.upload(&[ROWS, 2], x0)?;
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

/// The f64 reference: RK4 in `s = log σ` on `dx/ds = x − D(x; eˢ)`.
fn reference(mixture: &GaussianMixture, x0: &[f32]) -> CliResult<Vec<f64>> {
    let (s0, s1) = (SIGMA_MAX.ln(), SIGMA_MIN.ln());
    let h = (s1 - s0) / REFERENCE_STEPS as f64;
    let drift = |x: &[f64], s: f64, out: &mut [f64]| -> CliResult<()> {
        let m = Marginal {
            alpha: 1.0,
            sigma: s.exp(),
        };
        mixture.posterior_mean_into(x, m, out)?;
        for (o, v) in out.iter_mut().zip(x) {
            *o = v - *o;
        }
        Ok(())
    };
    let mut result = Vec::with_capacity(x0.len());
    let (mut k1, mut k2, mut k3, mut k4, mut tmp) =
        ([0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2], [0.0; 2]);
    for row in x0.chunks(2) {
        let mut x = [f64::from(row[0]), f64::from(row[1])];
        for i in 0..REFERENCE_STEPS {
            let s = s0 + h * i as f64;
            drift(&x, s, &mut k1)?;
            for d in 0..2 {
                tmp[d] = x[d] + 0.5 * h * k1[d];
            }
            drift(&tmp, s + 0.5 * h, &mut k2)?;
            for d in 0..2 {
                tmp[d] = x[d] + 0.5 * h * k2[d];
            }
            drift(&tmp, s + 0.5 * h, &mut k3)?;
            for d in 0..2 {
                tmp[d] = x[d] + h * k3[d];
            }
            drift(&tmp, s + h, &mut k4)?;
            for d in 0..2 {
                x[d] += h / 6.0 * (k1[d] + 2.0 * k2[d] + 2.0 * k3[d] + k4[d]);
            }
        }
        result.extend_from_slice(&x);
    }
    Ok(result)
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
    let mixture = mixture()?;
    let x0 = start(&cpu)?;
    let reference = reference(&mixture, &x0)?;
    let scale = reference.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    let model = GmmDenoiser::new(mixture, Arc::new(Sample));
    let mut rows = Vec::new();
    for config in configs()? {
        let (mut errors, mut nfe) = (Vec::new(), Vec::new());
        for &n in &STEPS {
            let (x, used) = solve(&cpu, config.method.as_ref(), &model, &x0, n)?;
            let mse = x
                .iter()
                .zip(&reference)
                .map(|(a, b)| (f64::from(*a) - b).powi(2))
                .sum::<f64>()
                / x.len() as f64;
            errors.push(mse.sqrt() / scale);
            nfe.push(used);
        }
        let points: Vec<(f64, f64)> = STEPS
            .iter()
            .zip(&errors)
            .filter(|(_, e)| **e > FLOOR)
            .map(|(n, e)| ((*n as f64).ln(), -e.ln()))
            .collect();
        rows.push(Row {
            solver: config.label.to_string(),
            expected: config.expected,
            tolerance: config.tolerance,
            options: config.options.to_string(),
            steps: STEPS.to_vec(),
            nfe,
            errors,
            order: slope(&points),
        });
    }
    print_result(args.format, &rows, |out| print_table(out, &rows))
}

fn print_table(out: &mut dyn Write, rows: &[Row]) -> std::io::Result<()> {
    writeln!(
        out,
        "convergence on a 2-D Gaussian mixture, σ {SIGMA_MAX} → {SIGMA_MIN} uniform in log-SNR; \
         RMS error vs an f64 RK4 solve ({REFERENCE_STEPS} steps), order fitted over N = 8…128"
    )?;
    write!(out, "{:<18} {:>8} {:>9}", "solver", "expected", "measured")?;
    for n in STEPS {
        write!(out, " {:>9}", format!("N={n}"))?;
    }
    writeln!(out, "  options")?;
    for r in rows {
        let order = r.order.map_or("-".to_string(), |p| format!("{p:.2}"));
        let expected = r.expected.map_or("-".to_string(), |p| format!("{p}"));
        let target = if r.tolerance.is_some() { "*" } else { " " };
        write!(out, "{:<17}{target} {expected:>8} {order:>9}", r.solver)?;
        for e in &r.errors {
            write!(out, " {e:>9.2e}")?;
        }
        writeln!(out, "  {}", r.options)?;
    }
    writeln!(
        out,
        "* a target: |measured − expected| ≤ 0.25 (order 1), 0.3 (order 2), 0.4 (order 3)"
    )?;
    Ok(())
}

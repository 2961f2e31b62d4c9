//! Flow-matching Euler and Heun: Euler is DDIM bit for bit and starts from
//! pure noise (α = 0); Heun matches the velocity form of diffusers'
//! FlowMatchHeunDiscreteScheduler, converges with order 2 on Gaussian data
//! with its exact denoiser, and ends with an Euler step at τ = 0.

mod common;

use common::{Gaussian, Sample, linspace_levels};
use diffuse_solvers::{
    Backend, CpuBackend, Ddim, FlowEuler, FlowHeun, Marginal, Method, NoiseLevel, Result,
    SamplingGrid, SolverState,
};

/// The flow schedule `α = 1 − t`, `σ = t`.
struct FlowSchedule;

impl diffuse_core::NoiseSchedule for FlowSchedule {
    fn name(&self) -> &str {
        "flow"
    }
    fn t_range(&self) -> (f64, f64) {
        (0.0, 1.0)
    }
    fn alpha(&self, t: f64) -> f64 {
        1.0 - t
    }
    fn sigma(&self, t: f64) -> f64 {
        t
    }
    fn t_of_log_snr(&self, lambda: f64) -> Result<f64> {
        Ok(1.0 / (1.0 + (0.5 * lambda).exp()))
    }
}

fn level(t: f64) -> NoiseLevel {
    NoiseLevel {
        t,
        marginal: Marginal {
            alpha: 1.0 - t,
            sigma: t,
        },
    }
}

/// Data `N(μ, s²)`: `E[x₀ | x] = μ + α·s²/(α²s² + σ²)·(x − α·μ)`.
const MU: f64 = 0.7;
const S: f64 = 0.4;

fn posterior(x: f64, m: Marginal) -> f64 {
    Gaussian { mu: MU, s: S }.x0_hat(x, m)
}

/// The exact flow: `x(τ) = α·μ + √(α²s² + σ²)·z`.
fn exact(x_start: f64, from: Marginal, to: Marginal) -> f64 {
    let sd = |m: Marginal| (m.alpha * m.alpha * S * S + m.sigma * m.sigma).sqrt();
    let z = (x_start - from.alpha * MU) / sd(from);
    to.alpha * MU + sd(to) * z
}

/// Runs `method` on rows `xs` over `levels` with the exact denoiser.
fn run(method: &dyn Method, levels: &[NoiseLevel], xs: &[f32]) -> Result<(Vec<f32>, usize)> {
    let cpu = CpuBackend::new();
    let grid = SamplingGrid::Shared(levels.to_vec());
    let mut x = cpu.upload(&[xs.len(), 1], xs)?;
    let mut out = cpu.zeros(&[xs.len(), 1])?;
    let mut state = SolverState::new(&cpu, method, &FlowSchedule, &grid, &x)?;
    while !state.is_done() {
        let input = cpu.to_host(state.model_input(&x))?;
        let pred: Vec<f32> = input
            .iter()
            .zip(state.request())
            .map(|(v, l)| posterior(f64::from(*v), l.marginal) as f32)
            .collect();
        out = cpu.upload(&[xs.len(), 1], &pred)?;
        state.advance(&cpu, &Sample, &mut x, &out)?;
    }
    drop(out);
    Ok((cpu.to_host(&x)?, state.report().nfe))
}

fn uniform(n: usize, t0: f64, t1: f64) -> Vec<NoiseLevel> {
    linspace_levels(t0, t1, n, level)
}

#[test]
fn flow_euler_is_ddim_and_starts_from_pure_noise() -> Result<()> {
    let levels = uniform(10, 1.0, 0.0);
    let xs = [-1.3f32, 0.2, 2.1];
    let (a, _) = run(&FlowEuler, &levels, &xs)?;
    let (b, _) = run(&Ddim, &levels, &xs)?;
    assert_eq!(a, b);
    assert!(a.iter().all(|v| v.is_finite()));
    Ok(())
}

/// diffusers' FlowMatchHeun in velocity form, in f64.
fn heun_velocity_form(levels: &[NoiseLevel], x: f64) -> f64 {
    let v = |x: f64, l: &NoiseLevel| (x - posterior(x, l.marginal)) / l.t;
    let mut x = x;
    for w in levels.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let d = b.t - a.t;
        let v1 = v(x, a);
        if b.t == 0.0 {
            x += d * v1;
        } else {
            let xe = x + d * v1;
            x += d * 0.5 * (v1 + v(xe, b));
        }
    }
    x
}

#[test]
fn flow_heun_is_the_trapezoidal_rule_on_the_velocity() -> Result<()> {
    let levels = uniform(12, 1.0, 0.0);
    let xs = [-1.3f32, 0.2, 2.1];
    let (got, nfe) = run(&FlowHeun, &levels, &xs)?;
    // Two evaluations per step, one on the last (Euler to τ = 0).
    assert_eq!(nfe, 2 * 12 - 1);
    for (g, x) in got.iter().zip(xs) {
        let want = heun_velocity_form(&levels, f64::from(x));
        assert!((f64::from(*g) - want).abs() < 2e-6, "{g} vs {want}");
    }
    Ok(())
}

#[test]
fn flow_heun_converges_with_order_two() -> Result<()> {
    // τ from 1 (pure noise) to 0.05; error of the final state vs the exact flow.
    let xs: Vec<f32> = (0..16).map(|i| -2.0 + 0.25 * i as f32).collect();
    let err = |n: usize| -> Result<f64> {
        let levels = uniform(n, 1.0, 0.05);
        let (got, _) = run(&FlowHeun, &levels, &xs)?;
        let (first, last) = (levels[0].marginal, levels[n].marginal);
        Ok(got
            .iter()
            .zip(&xs)
            .map(|(g, x)| (f64::from(*g) - exact(f64::from(*x), first, last)).abs())
            .fold(0.0, f64::max))
    };
    let (e1, e2) = (err(8)?, err(16)?);
    let order = (e1 / e2).log2();
    assert!((order - 2.0).abs() < 0.3, "order {order} ({e1}, {e2})");
    // Euler is first order on the same problem.
    let euler = |n: usize| -> Result<f64> {
        let levels = uniform(n, 1.0, 0.05);
        let (got, _) = run(&FlowEuler, &levels, &xs)?;
        let (first, last) = (levels[0].marginal, levels[n].marginal);
        Ok(got
            .iter()
            .zip(&xs)
            .map(|(g, x)| (f64::from(*g) - exact(f64::from(*x), first, last)).abs())
            .fold(0.0, f64::max))
    };
    let p = (euler(16)? / euler(32)?).log2();
    assert!((p - 1.0).abs() < 0.25, "Euler order {p}");
    Ok(())
}

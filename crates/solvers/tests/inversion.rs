//! Inversion and truncated sampling: inversion grids, the DDIM inversion
//! step by hand, round trips (invert, then sample back) whose error
//! shrinks with the step count at the method's order, convergence of the
//! latent, diffusers' strength rule, the noising pass and image-to-image
//! sampling, and typed errors.

mod common;

use std::sync::Arc;

// Levels at half log-SNR `l` with time 0 (the runs use the VE schedule).
use common::vp_at_half_log_snr as vp;
use common::{Eps, linspace_levels, max_abs_diff_f32, three_bumps_2d};

use diffuse_core::{Backend, CpuBackend, Error, Marginal, NoiseLevel, NoiseStream, SamplingGrid};
use diffuse_nets::GmmDenoiser;
use diffuse_solvers::inversion::{
    Truncation, inversion_grid, invert, noise_to, sample_from_data, strength_start, truncate,
};
use diffuse_solvers::{
    Ddim, DpmAlgorithm, DpmSolverMultistep, Method, SecondOrder, VeSchedule, run,
};

/// `n` sampling steps evenly spaced in λ from `l0` (noisy) to `l1`.
fn sampling_grid(l0: f64, l1: f64, n: usize) -> SamplingGrid {
    SamplingGrid::Shared(linspace_levels(l0, l1, n, vp))
}

/// Nine states at the data level `vp(l)`, `α·x̃` with `x̃` drawn from the
/// mixture widened by `σ̃` (component `r mod 3` for row `r`): points where
/// the data are, since the flow from noise to data contracts towards the
/// modes and so expands errors in the regions between them.
fn data_states(l: f64) -> Vec<f32> {
    let m = vp(l).marginal;
    let gmm = three_bumps_2d();
    let z = NoiseStream::new(3, 0);
    let mut out = Vec::new();
    for r in 0..9 {
        let k = r % 3;
        let s = (gmm.stds()[k].powi(2) + (m.sigma / m.alpha).powi(2)).sqrt();
        for j in 0..2 {
            let x = gmm.means()[k][j] + s * f64::from(z.at((2 * r + j) as u64));
            out.push((m.alpha * x) as f32);
        }
    }
    out
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    f64::from(max_abs_diff_f32(a, b))
}

const L_NOISE: f64 = -3.0;
const L_DATA: f64 = 3.0;

fn methods() -> Vec<(Box<dyn Method>, usize)> {
    let multistep = |order, algorithm| -> Box<dyn Method> {
        Box::new(DpmSolverMultistep {
            lower_order_final: false,
            ..DpmSolverMultistep::new(order, algorithm, SecondOrder::Midpoint).unwrap()
        })
    };
    vec![
        (Box::new(Ddim), 1),
        (multistep(2, DpmAlgorithm::DataPrediction), 2),
        (multistep(2, DpmAlgorithm::NoisePrediction), 2),
        (multistep(3, DpmAlgorithm::DataPrediction), 3),
    ]
}

#[test]
fn inversion_grids_reverse_sampling_grids() {
    let grid = sampling_grid(-2.0, 2.0, 4);
    let inv = grid.reversed().unwrap();
    assert!(inv.is_inverse() && inv.is_shared());
    assert_eq!(inv.steps(), 4);
    assert_eq!(inv.row(0)[0], grid.row(0)[4]);
    assert_eq!(inv.reversed().unwrap(), grid);
    // A final clean level is dropped by inversion_grid, refused by reversed.
    let mut levels = grid.row(0).to_vec();
    levels.push(NoiseLevel {
        t: 0.0,
        marginal: Marginal {
            alpha: 1.0,
            sigma: 0.0,
        },
    });
    let with_clean = SamplingGrid::Shared(levels);
    assert!(with_clean.reversed().is_err());
    assert_eq!(inversion_grid(&with_clean).unwrap(), inv);
    assert_eq!(inversion_grid(&inv).unwrap(), inv);
    // The direction is checked both ways.
    assert!(SamplingGrid::Inverse(grid.row(0).to_vec()).check().is_err());
    assert!(SamplingGrid::Shared(inv.row(0).to_vec()).check().is_err());
    let per_row = SamplingGrid::PerRow(vec![grid.row(0).to_vec(); 2]);
    assert!(matches!(per_row.reversed(), Err(Error::Unsupported(_))));
    assert!(matches!(
        inversion_grid(&per_row),
        Err(Error::Unsupported(_))
    ));
    assert!(truncate(&inv, 1).is_err());
}

#[test]
fn one_ddim_inversion_step_matches_the_formula() {
    let gmm = three_bumps_2d();
    let model = GmmDenoiser::new(gmm.clone(), Arc::new(Eps));
    let cpu = CpuBackend::new();
    let (from, to) = (vp(1.0), vp(-0.5));
    let grid = SamplingGrid::Inverse(vec![from, to]);
    let x0 = [0.3f32, -0.7, 1.1, 0.4];
    let mut x = cpu.upload(&[2, 2], &x0).unwrap();
    run(&cpu, &Ddim, &model, &VeSchedule, &grid, &mut x).unwrap();
    let got = cpu.to_host(&x).unwrap();
    let (m, n) = (from.marginal, to.marginal);
    for r in 0..2 {
        let row = [f64::from(x0[2 * r]), f64::from(x0[2 * r + 1])];
        let mean = gmm.posterior_mean(&row, m).unwrap();
        for j in 0..2 {
            // x′ = α′·x̂₀ + σ′·ε̂, ε̂ = (x − α·x̂₀)/σ.
            let eps = (row[j] - m.alpha * mean[j]) / m.sigma;
            let want = n.alpha * mean[j] + n.sigma * eps;
            assert!((f64::from(got[2 * r + j]) - want).abs() < 1e-5);
        }
    }
}

/// Inverts the data states with `n` steps and samples back with `n`;
/// returns the latent and the reconstruction.
fn round_trip(method: &dyn Method, n: usize) -> (Vec<f32>, Vec<f32>) {
    let model = GmmDenoiser::new(three_bumps_2d(), Arc::new(Eps));
    let cpu = CpuBackend::new();
    let data = data_states(L_DATA);
    let grid = sampling_grid(L_NOISE, L_DATA, n);
    let mut x = cpu.upload(&[data.len() / 2, 2], &data).unwrap();
    let report = invert(&cpu, method, &model, &VeSchedule, &grid, &mut x).unwrap();
    assert_eq!(report.steps, n);
    let latent = cpu.to_host(&x).unwrap();
    run(&cpu, method, &model, &VeSchedule, &grid, &mut x).unwrap();
    (latent, cpu.to_host(&x).unwrap())
}

#[test]
fn round_trips_reproduce_the_input_with_shrinking_error() {
    let data = data_states(L_DATA);
    let ns = [8, 16, 32, 64];
    for (method, order) in methods() {
        let errs: Vec<f64> = ns
            .iter()
            .map(|&n| max_abs_diff(&round_trip(&*method, n).1, &data))
            .collect();
        let rate = (errs[2] / errs[3]).log2();
        println!(
            "{}: round-trip errors {errs:?}, last rate {rate:.2}",
            method.name()
        );
        for w in errs.windows(2) {
            assert!(w[1] < w[0], "{}: {errs:?}", method.name());
        }
        // The error falls at about the method's order.
        assert!(rate > order as f64 - 0.5, "{}: rate {rate}", method.name());
        let bound = match order {
            1 => 1e-1,
            _ => 1e-3,
        };
        assert!(errs[3] < bound, "{}: {errs:?}", method.name());
    }
}

#[test]
fn inverted_latents_converge() {
    // Reference: DPM-Solver++(3M) inversion with 400 steps.
    let reference = round_trip(
        &DpmSolverMultistep::new(3, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint).unwrap(),
        400,
    )
    .0;
    for (method, order) in methods() {
        let errs: Vec<f64> = [8, 32, 128]
            .iter()
            .map(|&n| max_abs_diff(&round_trip(&*method, n).0, &reference))
            .collect();
        println!("{}: latent errors {errs:?}", method.name());
        assert!(
            errs[1] < errs[0] && errs[2] < errs[1],
            "{}: {errs:?}",
            method.name()
        );
        let bound = if order == 1 { 5e-2 } else { 2e-3 };
        assert!(errs[2] < bound, "{}: {errs:?}", method.name());
    }
}

#[test]
fn strength_follows_the_diffusers_rule() {
    assert_eq!(strength_start(50, 0.8).unwrap(), 10);
    assert_eq!(strength_start(50, 1.0).unwrap(), 0);
    // int(10 * 0.3) = int(3.0000000000000004) = 3.
    assert_eq!(strength_start(10, 0.3).unwrap(), 7);
    // int(25 * 0.75) = 18.
    assert_eq!(strength_start(25, 0.75).unwrap(), 7);
    for bad in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(strength_start(10, bad).is_err());
    }
    // int(50 * 0.01) = 0 steps.
    assert!(strength_start(50, 0.01).is_err());
    let grid = sampling_grid(-2.0, 2.0, 5);
    assert_eq!(truncate(&grid, 2).unwrap().row(0), &grid.row(0)[2..]);
    assert!(truncate(&grid, 5).is_err());
    let per_row = SamplingGrid::PerRow(vec![
        grid.row(0).to_vec(),
        sampling_grid(-1.0, 2.5, 5).row(0).to_vec(),
    ]);
    let t = truncate(&per_row, 3).unwrap();
    assert_eq!(t.steps(), 2);
    assert_eq!(t.row(1), &per_row.row(1)[3..]);
}

#[test]
fn noising_is_the_forward_marginal_with_the_stream() {
    let cpu = CpuBackend::new();
    let x0: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let xt = cpu.upload(&[3, 4], &x0).unwrap();
    let noise = NoiseStream::new(8, 2);
    let levels = [vp(0.5), vp(-1.0), vp(2.0)];
    for (shared, offset) in [(true, 0u64), (false, 7)] {
        let used: &[NoiseLevel] = if shared { &levels[..1] } else { &levels };
        let mut out = cpu.zeros(&[3, 4]).unwrap();
        noise_to(&cpu, &xt, used, noise, offset, &mut out).unwrap();
        let got = cpu.to_host(&out).unwrap();
        for i in 0..12 {
            let m = used[if shared { 0 } else { i / 4 }].marginal;
            // The fused pass: f32 coefficients, α·x₀ then + σ·z, no FMA.
            let want = (m.alpha as f32) * x0[i] + (m.sigma as f32) * noise.at(offset + i as u64);
            assert_eq!(got[i].to_bits(), want.to_bits());
        }
    }
    let mut out = cpu.zeros(&[3, 4]).unwrap();
    assert!(matches!(
        noise_to(&cpu, &xt, &levels[..2], noise, 0, &mut out),
        Err(Error::ShapeMismatch { .. })
    ));
}

#[test]
fn image_to_image_is_noising_then_the_tail_of_the_grid() {
    let model = GmmDenoiser::new(three_bumps_2d(), Arc::new(Eps));
    let cpu = CpuBackend::new();
    let grid = sampling_grid(L_NOISE, L_DATA, 20);
    let data = data_states(L_DATA);
    let method =
        DpmSolverMultistep::new(2, DpmAlgorithm::DataPrediction, SecondOrder::Midpoint).unwrap();
    let noise = NoiseStream::new(4, 9);
    let mut x = cpu.upload(&[9, 2], &data).unwrap();
    let truncation = Truncation {
        strength: 0.6,
        noise,
    };
    let report = sample_from_data(
        &cpu,
        &method,
        &model,
        &VeSchedule,
        &grid,
        truncation,
        &mut x,
    )
    .unwrap();
    assert_eq!(report.steps, 12);
    // By hand: level 8 of 20, noise, then the last 12 steps.
    let d = cpu.upload(&[9, 2], &data).unwrap();
    let mut y = cpu.zeros(&[9, 2]).unwrap();
    noise_to(&cpu, &d, &[grid.row(0)[8]], noise, 0, &mut y).unwrap();
    let tail = truncate(&grid, 8).unwrap();
    run(&cpu, &method, &model, &VeSchedule, &tail, &mut y).unwrap();
    let (a, b) = (cpu.to_host(&x).unwrap(), cpu.to_host(&y).unwrap());
    assert_eq!(a, b);
    // A weak edit stays near the input (the sample is drawn from the
    // posterior given the lightly noised data).
    let weak = Truncation {
        strength: 0.1,
        noise,
    };
    let mut z = cpu.upload(&[9, 2], &data).unwrap();
    sample_from_data(&cpu, &method, &model, &VeSchedule, &grid, weak, &mut z).unwrap();
    assert!(max_abs_diff(&cpu.to_host(&z).unwrap(), &data) < 0.2);
    let none = Truncation {
        strength: 0.01,
        noise,
    };
    assert!(sample_from_data(&cpu, &method, &model, &VeSchedule, &grid, none, &mut z).is_err());
}

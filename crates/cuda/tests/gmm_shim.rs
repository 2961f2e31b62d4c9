//! The Gaussian-mixture kernel (`kernels/gmm.cu`) compiled for the host (the
//! shim crate) against the CPU reference `diffuse_nets::GmmDenoiser`: bit
//! for bit, over random mixtures (1–8 components, d 1–16, some zero
//! weights), random per-row levels (including α = 0 and σ = 0) and the x0,
//! epsilon and v parameterisations. The kernel follows the CPU's f64
//! operation order and uses the same hand-written logarithm and exponential,
//! so no tolerance is needed.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use diffuse_core::{
    Backend, Condition, CpuBackend, Denoiser, Error, IsotropicMixture, Marginal, NoiseLevel,
    NoiseStream, Parameterization,
};
use diffuse_cuda::ActiveComponents;
use diffuse_cuda::gmm::row_levels;
use diffuse_cuda::kernels::{GmmArgs, GmmFailure, check_gmm_status};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// One launch of the kernel in the shim; returns the outputs and the status
/// words.
fn shim_predict(
    mixture: &IsotropicMixture,
    param: &dyn Parameterization,
    levels: &[NoiseLevel],
    x: &[f32],
    grid: u32,
    block: u32,
) -> Result<(Vec<f32>, Vec<u32>), Error> {
    let rows = levels.len();
    let d = mixture.dim();
    let active = ActiveComponents::of(mixture);
    let host_levels = row_levels(param, levels)?;
    let mut out = vec![0.0f32; rows * d];
    let mut acc = vec![0.0f64; rows * d];
    let mut status = vec![0u32; rows];
    let args = GmmArgs {
        x: x.as_ptr() as u64,
        out: out.as_mut_ptr() as u64,
        acc: acc.as_mut_ptr() as u64,
        status: status.as_mut_ptr() as u64,
        levels: host_levels.as_ptr() as u64,
        means: active.means.as_ptr() as u64,
        variances: active.variances.as_ptr() as u64,
        log_weights: active.log_weights.as_ptr() as u64,
        prior_mean: mixture.prior_mean().as_ptr() as u64,
        rows: rows as u64,
        dim: d as u64,
        components: active.components() as u64,
    };
    // SAFETY: every pointer is a live host buffer of the size the kernel
    // reads or writes for these rows, dimension and components.
    unsafe { diffuse_cuda_shim::gmm(grid, block, (&raw const args).cast()) };
    Ok((out, status))
}

/// The CPU reference's output for the same call.
fn cpu_predict(
    gmm: &GaussianMixture,
    param: Arc<dyn Parameterization>,
    levels: &[NoiseLevel],
    x: &[f32],
) -> Result<Vec<f32>, Error> {
    let cpu = CpuBackend::new();
    let shape = [levels.len(), gmm.dim()];
    let xt = cpu.upload(&shape, x)?;
    let mut out = cpu.zeros(&shape)?;
    let model = GmmDenoiser::new(gmm.clone(), param);
    model.predict(&cpu, &xt, levels, Condition::Unconditional, &mut out)?;
    cpu.to_host(&out)
}

fn parameterization(i: usize) -> Arc<dyn Parameterization> {
    Arc::from(diffuse_param::by_name(["x0", "epsilon", "v"][i % 3]).unwrap())
}

#[derive(Debug, Clone)]
struct Case {
    weights: Vec<f64>,
    means: Vec<Vec<f64>>,
    stds: Vec<f64>,
    levels: Vec<(f64, f64)>,
    x: Vec<f32>,
    param: usize,
    grid: u32,
    block: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=8, 1usize..=16, 1usize..=6, any::<u64>()).prop_flat_map(|(k, d, rows, seed)| {
        let weights = prop::collection::vec(prop_oneof![1 => Just(0.0), 6 => 0.05f64..1.0], k);
        let means = prop::collection::vec(prop::collection::vec(-4.0f64..4.0, d), k);
        let stds = prop::collection::vec(0.02f64..2.0, k);
        // α, σ per row: the general case, and the exact special cases.
        let level = prop_oneof![
            6 => (0.01f64..1.0, 0.001f64..1.0),
            1 => (0.01f64..1.0, 0.001f64..80.0),
            1 => (Just(0.0), 0.5f64..2.0),
            1 => (0.2f64..1.0, Just(0.0)),
        ];
        let levels = prop::collection::vec(level, rows);
        (
            weights,
            means,
            stds,
            levels,
            0usize..3,
            1u32..4,
            prop_oneof![Just(1u32), Just(2), Just(32)],
        )
            .prop_map(
                move |(mut weights, means, stds, levels, param, grid, block)| {
                    if weights.iter().all(|&w| w == 0.0) {
                        weights[0] = 1.0;
                    }
                    let sum: f64 = weights.iter().sum();
                    weights.iter_mut().for_each(|w| *w /= sum);
                    let mut x = vec![0.0f32; rows * d];
                    NoiseStream::new(seed, 0).fill(0, &mut x);
                    // States at the rows' scale (σ up to 80 in VE-like rows).
                    for (r, &(alpha, sigma)) in levels.iter().enumerate() {
                        let scale = (alpha * 2.0 + sigma) as f32;
                        x[r * d..(r + 1) * d].iter_mut().for_each(|v| *v *= scale);
                    }
                    Case {
                        weights,
                        means,
                        stds,
                        levels,
                        x,
                        param,
                        grid,
                        block,
                    }
                },
            )
    })
}

#[test]
fn the_mixture_kernel_matches_the_cpu_reference_bit_for_bit() {
    let compared = AtomicU64::new(0);
    // Cases that matched bit for bit, were refused by both, overflowed.
    let outcomes = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];
    let mut runner = TestRunner::new(Config {
        cases: 400,
        ..Config::default()
    });
    runner
        .run(&case(), |c| {
            let gmm = GaussianMixture::new(c.weights.clone(), c.means.clone(), c.stds.clone())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let levels: Vec<NoiseLevel> = c
                .levels
                .iter()
                .map(|&(alpha, sigma)| NoiseLevel {
                    t: 0.5,
                    marginal: Marginal::new(alpha, sigma).unwrap(),
                })
                .collect();
            let param = parameterization(c.param);
            let cpu = cpu_predict(&gmm, param.clone(), &levels, &c.x);
            let shim = shim_predict(gmm.isotropic(), &*param, &levels, &c.x, c.grid, c.block);
            match (cpu, shim) {
                (Ok(want), Ok((got, status))) => {
                    prop_assert!(check_gmm_status(&status).is_ok(), "status {status:?}");
                    let w: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
                    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(g, w);
                    compared.fetch_add(want.len() as u64, Ordering::Relaxed);
                    outcomes[0].fetch_add(1, Ordering::Relaxed);
                }
                // Both refuse a map the parameterisation cannot express
                // (ε at σ = 0 …), with the same error.
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a.to_string(), b.to_string());
                    outcomes[1].fetch_add(1, Ordering::Relaxed);
                }
                // The CPU stops at an overflow the kernel records per row.
                (Err(Error::NonFinite(_)), Ok((_, status))) => {
                    prop_assert!(check_gmm_status(&status).is_err());
                    outcomes[2].fetch_add(1, Ordering::Relaxed);
                }
                (a, b) => {
                    return Err(TestCaseError::fail(format!("cpu {a:?} against shim {b:?}")));
                }
            }
            Ok(())
        })
        .unwrap();
    let n = compared.load(Ordering::Relaxed);
    let [same, refused, overflow] = outcomes.map(|o| o.load(Ordering::Relaxed));
    assert!(
        n > 2_000 && same > 150,
        "only {n} elements in {same} cases compared"
    );
    report(&format!(
        "gmm kernel (shim) against GmmDenoiser: {n} elements bit for bit in {same} of 400 cases \
         ({refused} refused by both with the same error, {overflow} overflows recorded)"
    ));
}

#[test]
fn a_failing_row_is_recorded_and_filled_with_nan() {
    let mixture = IsotropicMixture::new(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.0], vec![1.0, 0.0]],
        vec![0.5, 0.5],
    )
    .unwrap();
    let param = parameterization(0);
    let level = NoiseLevel {
        t: 0.5,
        marginal: Marginal::new(0.8, 0.6).unwrap(),
    };
    let x = [0.1f32, 0.2, f32::NAN, 0.0, 0.3, 0.4];
    let (out, status) = shim_predict(&mixture, &*param, &[level; 3], &x, 1, 2).unwrap();
    assert_eq!(status, [0, 1, 0]);
    assert!(out[2].is_nan() && out[3].is_nan());
    assert!(out[0].is_finite() && out[5].is_finite());
    let err = check_gmm_status(&status).unwrap_err();
    assert!(
        matches!(err, Error::NonFinite(ref m) if m.contains("row 1")),
        "{err}"
    );
    assert_eq!(GmmFailure::from_code(4), Some(GmmFailure::OutputRange));
    assert_eq!(GmmFailure::from_code(0), None);
}

#[test]
fn the_kernel_layout_keeps_the_active_components_in_order() {
    // Zero weights are left out; the others keep their order and the
    // mixture's own derived numbers.
    let mixture = IsotropicMixture::new(
        vec![0.25, 0.0, 0.75],
        vec![vec![1.0, 2.0], vec![5.0, 6.0], vec![3.0, 4.0]],
        vec![2.0, 1.0, 0.5],
    )
    .unwrap();
    let active = ActiveComponents::of(&mixture);
    assert_eq!(active.components(), 2);
    assert_eq!(active.means, [1.0, 2.0, 3.0, 4.0]);
    assert_eq!(active.variances, [4.0, 0.25]);
    assert_eq!(active.log_weights, [0.25f64.ln(), 0.75f64.ln()]);
    assert_eq!(mixture.prior_mean(), [2.5, 3.5]);
}

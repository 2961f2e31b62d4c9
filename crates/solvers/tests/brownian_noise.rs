//! Brownian-tree noise for the stochastic samplers: the draws of a run are
//! standardised increments of one Brownian path in `σ̃`, so a step split in
//! two draws the same total increment (directly through the source, and
//! inside DPM-Solver++ SDE runs at `N` and `2N` steps); with a fixed seed
//! DPM-Solver++ SDE then converges as the step count grows, where
//! independent draws give different samples at every step count; bad uses
//! are typed errors.

mod common;

use std::sync::{Arc, Mutex};

use common::{BASE, VpBySigma, geometric_grid, two_blobs_model, vp_level, vp_start};
use diffuse_solvers::{
    Backend, BrownianNoise, CpuBackend, DpmPpSde, Draw, DrawInfo, DrawKind, Error, Method,
    NoiseKind, NoiseSource, NoiseStream, Result, Sampler, SamplingGrid, Solver, noise_source,
    run_with_noise,
};

/// `n` steps geometric in σ̃ from 10 to 0.05 (`n + 1` levels, so the grid
/// of `2n` steps holds every level of the grid of `n`), then a clean level.
fn grid(n: usize) -> SamplingGrid {
    geometric_grid(10.0, 0.05, n + 1, vp_level)
}

fn step_info(rows: usize, span: (f64, f64)) -> DrawInfo {
    DrawInfo {
        index: 1,
        step: 0,
        first_row: 0,
        rows,
        row_len: 2,
        kind: DrawKind::Step,
        span: Some(span),
    }
}

/// The draw of `source` for `span`, on the host.
fn draw(
    cpu: &CpuBackend,
    source: &mut BrownianNoise<CpuBackend>,
    info: DrawInfo,
) -> Result<Vec<f32>> {
    match source.draw(cpu, info)? {
        Draw::Tensor(z) => cpu.to_host(z),
        Draw::Stream { stream, offset } => {
            let mut v = vec![0.0f32; info.rows * info.row_len];
            stream.fill(offset, &mut v);
            Ok(v)
        }
    }
}

#[test]
fn the_source_draws_additive_standardised_increments() -> Result<()> {
    let cpu = CpuBackend::new();
    let rows = 500;
    let g = grid(4);
    let mut source = BrownianNoise::for_grid(&cpu, &[rows, 2], &g, BASE)?;
    assert_eq!(source.tree().interval(), (0.0, 10.0));
    let (a, b, c) = (7.3, 2.1, 0.4);
    let ab = draw(&cpu, &mut source, step_info(rows, (a, b)))?;
    let bc = draw(&cpu, &mut source, step_info(rows, (b, c)))?;
    let ac = draw(&cpu, &mut source, step_info(rows, (a, c)))?;
    let (sab, sbc, sac) = ((a - b).sqrt(), (b - c).sqrt(), (a - c).sqrt());
    let mut worst = 0.0f64;
    for i in 0..ab.len() {
        let sum = sab * f64::from(ab[i]) + sbc * f64::from(bc[i]);
        worst = worst.max((sum - sac * f64::from(ac[i])).abs());
    }
    assert!(worst < 2e-5, "{worst}");
    // Standard normals: mean 0, variance 1 (1000 draws each), and the two
    // halves of a step independent.
    for z in [&ab, &bc, &ac] {
        let n = z.len() as f64;
        let mean = z.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = z
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "var {var}");
    }
    let n = ab.len() as f64;
    let corr = ab
        .iter()
        .zip(&bc)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum::<f64>()
        / n;
    assert!(corr.abs() < 4.0 / n.sqrt(), "correlation {corr}");
    // The draw of a shard is the same rows of the whole draw.
    let mut shard = BrownianNoise::for_grid(&cpu, &[100, 2], &g, BASE)?;
    let part = draw(
        &cpu,
        &mut shard,
        DrawInfo {
            first_row: 200,
            ..step_info(100, (a, c))
        },
    )?;
    assert_eq!(part[..], ac[400..600]);
    // Churn and corrections come from the public stream, as PhiloxNoise's.
    let churn = draw(
        &cpu,
        &mut source,
        DrawInfo {
            index: 3,
            kind: DrawKind::Churn,
            span: None,
            ..step_info(rows, (a, c))
        },
    )?;
    let mut want = vec![0.0f32; rows * 2];
    NoiseStream::new(BASE.seed, BASE.stream + 3).fill(0, &mut want);
    assert_eq!(churn, want);
    Ok(())
}

/// The levels `(σ̃, σ̃′)` of a draw and its values.
type Logged<T> = ((f64, f64), Vec<T>);

/// Records the draws of the wrapped source: `(span, z)` for tensor draws.
struct Recording {
    inner: BrownianNoise<CpuBackend>,
    log: Arc<Mutex<Vec<Logged<f32>>>>,
}

impl NoiseSource<CpuBackend> for Recording {
    fn draw(&mut self, backend: &CpuBackend, info: DrawInfo) -> Result<Draw<'_, CpuBackend>> {
        let draw = self.inner.draw(backend, info)?;
        if let (Draw::Tensor(z), Some(span)) = (&draw, info.span) {
            let host = backend.to_host(z)?;
            if let Ok(mut log) = self.log.lock() {
                log.push((span, host));
            }
        }
        Ok(draw)
    }
}

/// The Brownian increments `√|σ̃ − σ̃′|·z` of the update passes of a
/// DPM-Solver++ SDE run of `n` steps, one per step with noise.
fn update_increments(n: usize, rows: usize) -> Result<Vec<Logged<f64>>> {
    let cpu = CpuBackend::new();
    let g = grid(n);
    let mut x = vp_start(&cpu, rows);
    let log = Arc::new(Mutex::new(Vec::new()));
    let source = Recording {
        inner: BrownianNoise::for_grid(&cpu, &[rows, 2], &g, BASE)?,
        log: log.clone(),
    };
    let m = two_blobs_model();
    run_with_noise(
        &cpu,
        &DpmPpSde::default(),
        &m,
        &VpBySigma,
        &g,
        &mut x,
        Box::new(source),
        0,
    )?;
    let levels: Vec<f64> = g.row(0).iter().map(|l| l.marginal.ve_sigma()).collect();
    let log = log
        .lock()
        .map_err(|_| Error::Unsupported("poisoned".into()))?;
    // Two draws per step with noise: the stage's, then the update's (to
    // the next grid level).
    let mut out = Vec::new();
    for ((from, to), z) in log.iter() {
        if levels.contains(to) {
            let s = (from - to).abs().sqrt();
            out.push(((*from, *to), z.iter().map(|&v| s * f64::from(v)).collect()));
        }
    }
    assert_eq!(log.len(), 2 * out.len());
    Ok(out)
}

#[test]
fn dpmpp_sde_walks_the_same_path_at_n_and_2n_steps() -> Result<()> {
    let rows = 8;
    let coarse = update_increments(6, rows)?;
    let fine = update_increments(12, rows)?;
    // Every step but the last (to σ = 0) draws: 6 and 12 updates.
    assert_eq!(coarse.len(), 6);
    assert_eq!(fine.len(), 12);
    for (i, ((from, to), dw)) in coarse.iter().enumerate() {
        let ((f0, m0), a) = &fine[2 * i];
        let ((m1, t1), b) = &fine[2 * i + 1];
        assert_eq!((from, to), (f0, t1), "step {i}");
        assert_eq!(m0, m1);
        for j in 0..dw.len() {
            let d = (dw[j] - (a[j] + b[j])).abs();
            assert!(
                d < 2e-5,
                "step {i}, element {j}: {} vs {}",
                dw[j],
                a[j] + b[j]
            );
        }
    }
    Ok(())
}

/// The median over rows of the distance between two sets of 2-D samples
/// (robust to the odd sample that lands in the other component at one
/// step count).
fn median_distance(a: &[f32], b: &[f32]) -> f64 {
    let mut d: Vec<f64> = a
        .chunks(2)
        .zip(b.chunks(2))
        .map(|(p, q)| {
            let dx = f64::from(p[0]) - f64::from(q[0]);
            let dy = f64::from(p[1]) - f64::from(q[1]);
            dx.hypot(dy)
        })
        .collect();
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

/// DPM-Solver++ SDE with the seed fixed, at 50, 100 and 200 steps.
fn samples_at(kind: NoiseKind, rows: usize) -> Result<Vec<Vec<f32>>> {
    let cpu = CpuBackend::new();
    let m = two_blobs_model();
    let mut out = Vec::new();
    for n in [50, 100, 200] {
        let mut x = vp_start(&cpu, rows);
        let mut sampler = Sampler::new(DpmPpSde::default()).with_noise_kind(kind);
        sampler.sample(&cpu, &m, &VpBySigma, &grid(n), &mut x, Some(BASE))?;
        out.push(cpu.to_host(&x)?);
    }
    Ok(out)
}

/// Why the tree exists (k-diffusion's motivation): with a fixed seed the
/// samples at 50, 100 and 200 steps approach one limit (the median
/// distance between successive results shrinks), whereas independent draws give
/// unrelated samples at each step count.
#[test]
fn with_the_tree_samples_converge_as_steps_grow() -> Result<()> {
    let rows = 256;
    let tree = samples_at(NoiseKind::BrownianTree, rows)?;
    let (d1, d2) = (
        median_distance(&tree[0], &tree[1]),
        median_distance(&tree[1], &tree[2]),
    );
    let philox = samples_at(NoiseKind::Philox, rows)?;
    let (p1, p2) = (
        median_distance(&philox[0], &philox[1]),
        median_distance(&philox[1], &philox[2]),
    );
    println!(
        "median distance, tree: 50→100 steps {d1:.4}, 100→200 {d2:.4}; \
         independent draws: {p1:.4}, {p2:.4}"
    );
    assert!(d2 < 0.8 * d1, "{d1} → {d2}");
    // Independent draws: the samples do not settle (the spread of the
    // data, not a discretisation error).
    assert!(p2 > 0.3, "{p2}");
    assert!(d2 < 0.25 * p2, "{d2} vs {p2}");
    // The default for dpmpp-sde on a shared grid is the tree.
    let cpu = CpuBackend::new();
    let mut x = vp_start(&cpu, rows);
    Sampler::new(DpmPpSde::default()).sample(
        &cpu,
        &two_blobs_model(),
        &VpBySigma,
        &grid(50),
        &mut x,
        Some(BASE),
    )?;
    assert_eq!(cpu.to_host(&x)?, tree[0]);
    assert_eq!(DpmPpSde::default().default_noise(), NoiseKind::BrownianTree);
    Ok(())
}

#[test]
fn misuse_is_a_typed_error() -> Result<()> {
    let cpu = CpuBackend::new();
    let x = vp_start(&cpu, 4);
    // Per-row grids have no single level sequence.
    let per_row = SamplingGrid::PerRow(vec![grid(4).row(0).to_vec(); 4]);
    assert!(matches!(
        noise_source(&cpu, NoiseKind::BrownianTree, &per_row, &x, BASE),
        Err(Error::Unsupported(_))
    ));
    // ... but a Sampler left at its default falls back to the stream there.
    let mut y = vp_start(&cpu, 4);
    let sampler = Sampler::new(DpmPpSde::default());
    assert_eq!(sampler.noise_kind(&per_row), NoiseKind::Philox);
    let mut sampler = sampler;
    sampler.sample(
        &cpu,
        &two_blobs_model(),
        &VpBySigma,
        &per_row,
        &mut y,
        Some(BASE),
    )?;
    // A level beyond the tree, a draw of another shape, a step draw
    // without levels.
    let mut source = BrownianNoise::for_grid(&cpu, &[4, 2], &grid(4), BASE)?;
    assert!(matches!(
        source.draw(&cpu, step_info(4, (20.0, 1.0))),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        source.draw(&cpu, step_info(5, (2.0, 1.0))),
        Err(Error::ShapeMismatch { .. })
    ));
    assert!(matches!(
        source.draw(
            &cpu,
            DrawInfo {
                span: None,
                ..step_info(4, (2.0, 1.0))
            }
        ),
        Err(Error::Unsupported(_))
    ));
    // A grid with no positive level.
    let flat = SamplingGrid::Shared(vec![vp_level(0.0), vp_level(0.0)]);
    assert!(matches!(
        BrownianNoise::for_grid(&cpu, &[4, 2], &flat, BASE),
        Err(Error::InvalidArgument { .. })
    ));
    Ok(())
}

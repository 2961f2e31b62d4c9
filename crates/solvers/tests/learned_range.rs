//! DDPM with the learned-range variance of improved DDPM (Nichol &
//! Dhariwal 2021, eq. 15) through `run_learned_range`, on the exact mixture
//! denoiser with a variance output `v` of our choosing: `v ≡ −1` and
//! `v ≡ +1` reproduce the generic driver's `fixed_small` and `fixed_large`
//! runs (same seed, same normals), a per-element `v` scales each element's
//! noise as the f64 formula says, `v ≡ 0` samples a 2-D mixture, and shards
//! and thread counts give the same bits.

mod common;

use std::sync::Arc;

use common::{
    BASE, Sample, VpBySigma, bits, fraction_se, geometric_grid, three_blobs_2d, two_blobs_model,
    vp_level, vp_start,
};
use diffuse_core::CpuTensor;
use diffuse_nets::GmmDenoiser;
use diffuse_solvers::{
    Backend, Condition, CpuBackend, Ddpm, DdpmVariance, Denoiser, Error, NoiseLevel, NoiseStream,
    Parameterization, PhiloxNoise, Result, SamplingGrid, VarianceDenoiser, run_learned_range,
    run_with_noise,
};

/// The variance output of [`LearnedRange`].
#[derive(Clone, Copy)]
enum V {
    /// The same `v` everywhere.
    Const(f32),
    /// `vᵢ = tanh(xᵢ)`, element by element.
    TanhOfState,
}

/// The exact mixture denoiser with a chosen variance output.
struct LearnedRange {
    inner: GmmDenoiser,
    v: V,
}

impl Denoiser<CpuBackend> for LearnedRange {
    fn parameterization(&self) -> &dyn Parameterization {
        Denoiser::<CpuBackend>::parameterization(&self.inner)
    }
    fn predict(
        &self,
        backend: &CpuBackend,
        x: &CpuTensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, CpuTensor>,
        out: &mut CpuTensor,
    ) -> Result<()> {
        self.inner.predict(backend, x, levels, condition, out)
    }
}

impl VarianceDenoiser<CpuBackend> for LearnedRange {
    fn predict_variance(
        &self,
        _backend: &CpuBackend,
        x: &CpuTensor,
        _levels: &[NoiseLevel],
        _condition: Condition<'_, CpuTensor>,
        out: &mut CpuTensor,
    ) -> Result<()> {
        for (o, &xi) in out.as_mut_slice().iter_mut().zip(x.as_slice()) {
            *o = match self.v {
                V::Const(c) => c,
                V::TanhOfState => xi.tanh(),
            };
        }
        Ok(())
    }
}

fn model(v: V) -> LearnedRange {
    LearnedRange {
        inner: two_blobs_model(),
        v,
    }
}

fn grid(steps: usize) -> SamplingGrid {
    geometric_grid(10.0, 0.02, steps, vp_level)
}

/// `run_learned_range` with constant `v` against the generic driver's run
/// of `variance`.
fn compare_with_fixed(v: f32, variance: DdpmVariance) -> Result<()> {
    let cpu = CpuBackend::new();
    let g = grid(20);
    let rows = 64;
    let mut lr = vp_start(&cpu, rows);
    run_learned_range(&cpu, &model(V::Const(v)), &VpBySigma, &g, &mut lr, BASE, 0)?;
    let mut fixed = vp_start(&cpu, rows);
    let method = Ddpm::new(variance)?;
    let source = Box::new(PhiloxNoise::new(BASE));
    run_with_noise(
        &cpu,
        &method,
        &two_blobs_model(),
        &VpBySigma,
        &g,
        &mut fixed,
        source,
        0,
    )?;
    let (a, b) = (cpu.to_host(&lr)?, cpu.to_host(&fixed)?);
    // The scale exp(a + b·v) differs from the rounded standard deviation by
    // a few f32 ulps per step; over 20 steps on states of size ~3 that stays
    // below 1e-4 (a wrong draw or coefficient moves samples by ~0.1).
    let worst = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "v = {v} vs {variance:?}: max diff {worst}");
    assert!(a != b || worst == 0.0);
    Ok(())
}

#[test]
fn v_minus_one_is_fixed_small() -> Result<()> {
    compare_with_fixed(-1.0, DdpmVariance::FixedSmall)
}

#[test]
fn v_plus_one_is_fixed_large() -> Result<()> {
    compare_with_fixed(1.0, DdpmVariance::FixedLarge)
}

#[test]
fn the_two_ends_differ() -> Result<()> {
    // The comparison above can fail: fixed_small and fixed_large runs
    // differ by far more than its tolerance.
    let cpu = CpuBackend::new();
    let g = grid(20);
    let mut s = vp_start(&cpu, 16);
    let mut l = vp_start(&cpu, 16);
    run_learned_range(
        &cpu,
        &model(V::Const(-1.0)),
        &VpBySigma,
        &g,
        &mut s,
        BASE,
        0,
    )?;
    run_learned_range(&cpu, &model(V::Const(1.0)), &VpBySigma, &g, &mut l, BASE, 0)?;
    let (s, l) = (cpu.to_host(&s)?, cpu.to_host(&l)?);
    let worst = s
        .iter()
        .zip(&l)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst > 1e-2, "{worst}");
    Ok(())
}

#[test]
fn per_element_noise_scale_matches_the_formula() -> Result<()> {
    let cpu = CpuBackend::new();
    let (from, to) = (vp_level(2.0), vp_level(1.2));
    let g = SamplingGrid::Shared(vec![from, to]);
    let rows = 32;
    let x0 = vp_start(&cpu, rows);
    let m = model(V::TanhOfState);
    let mut out = cpu.zeros(&[rows, 2])?;
    m.predict(
        &cpu,
        &x0,
        &vec![from; rows],
        Condition::Unconditional,
        &mut out,
    )?;
    let mut x = x0.clone();
    run_learned_range(&cpu, &m, &VpBySigma, &g, &mut x, BASE, 0)?;
    // f64: x′ = μ̃ + exp(½·log Σ)·z, log Σ = f·log β + (1 − f)·log β̃,
    // f = (v + 1)/2, β̃ = σ′²(1 − q), β = σ²(1 − q), q = (σ̃′/σ̃)², and
    // μ̃ = α′(1 − q)·x̂₀ + (α′/α)·q·x (x̂₀ = out: x₀-prediction).
    let (a, s) = (from.marginal.alpha, from.marginal.sigma);
    let (a2, s2) = (to.marginal.alpha, to.marginal.sigma);
    let q = (1.2f64 / 2.0).powi(2);
    let (small, large) = (s2 * s2 * (1.0 - q), s * s * (1.0 - q));
    let z = NoiseStream::new(BASE.seed, BASE.stream + 1);
    let (xs, os, got) = (x0.as_slice(), out.as_slice(), x.as_slice());
    let mut spread = (f64::INFINITY, 0.0f64);
    for i in 0..2 * rows {
        let xi = f64::from(xs[i]);
        let v = f64::from(xs[i].tanh());
        let f = (v + 1.0) / 2.0;
        let log_var = f * large.ln() + (1.0 - f) * small.ln();
        let scale = (0.5 * log_var).exp();
        spread = (spread.0.min(scale), spread.1.max(scale));
        let mean = a2 * (1.0 - q) * f64::from(os[i]) + a2 / a * q * xi;
        let want = mean + scale * f64::from(z.at(i as u64));
        let e = (f64::from(got[i]) - want).abs();
        assert!(
            e < 2e-6 * (1.0 + want.abs()),
            "element {i}: {} vs {want}",
            got[i]
        );
    }
    // The scales really vary across elements.
    assert!(spread.1 / spread.0 > 1.1, "{spread:?}");
    Ok(())
}

#[test]
fn v_zero_samples_the_mixture() -> Result<()> {
    const N: usize = 4000;
    let weights = [0.5, 0.3, 0.2];
    let means = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]];
    let stds = [0.3f64, 0.5, 0.4];
    let sigma_max = 20.0;
    let g = geometric_grid(sigma_max, 0.005, 100, vp_level);
    let alpha = g.row(0)[0].marginal.alpha;
    // Exact draws of the marginal at σ̃_max (stratified components).
    let mut z = vec![0.0f32; 4 * N];
    NoiseStream::new(5, 0).fill(0, &mut z);
    let mut start = Vec::with_capacity(2 * N);
    for i in 0..N {
        let u = (i as f64 + 0.5) / N as f64;
        let k = if u < 0.5 {
            0
        } else if u < 0.8 {
            1
        } else {
            2
        };
        for d in 0..2 {
            let v = means[k][d]
                + stds[k] * f64::from(z[4 * i + d])
                + sigma_max * f64::from(z[4 * i + 2 + d]);
            start.push((alpha * v) as f32);
        }
    }
    let cpu = CpuBackend::new();
    let mut x = cpu.upload(&[N, 2], &start)?;
    let m = LearnedRange {
        inner: GmmDenoiser::new(three_blobs_2d(), Arc::new(Sample)),
        v: V::Const(0.0),
    };
    run_learned_range(&cpu, &m, &VpBySigma, &g, &mut x, NoiseStream::new(5, 1), 0)?;
    let x = cpu.to_host(&x)?;
    let mut count = [0usize; 3];
    let mut sum = [[0.0f64; 2]; 3];
    for p in x.chunks(2) {
        let (a, b) = (f64::from(p[0]), f64::from(p[1]));
        let score = |k: usize| {
            let d2 = (a - means[k][0]).powi(2) + (b - means[k][1]).powi(2);
            f64::ln(weights[k]) - 2.0 * stds[k].ln() - d2 / (2.0 * stds[k] * stds[k])
        };
        let k = (0..3)
            .max_by(|&i, &j| score(i).total_cmp(&score(j)))
            .unwrap_or(0);
        count[k] += 1;
        sum[k][0] += a;
        sum[k][1] += b;
    }
    for k in 0..3 {
        let frac = count[k] as f64 / N as f64;
        let se = fraction_se(weights[k], N);
        assert!(
            (frac - weights[k]).abs() < 4.0 * se,
            "component {k}: fraction {frac}"
        );
        for d in 0..2 {
            let mean = sum[k][d] / count[k].max(1) as f64;
            // Standard error of a component mean ≤ 0.5/√800 ≈ 0.018.
            assert!(
                (mean - means[k][d]).abs() < 0.08,
                "component {k}: mean {mean}"
            );
        }
    }
    Ok(())
}

#[test]
fn shards_and_threads_give_the_same_bits() -> Result<()> {
    let g = grid(12);
    let rows = 40;
    let m = model(V::TanhOfState);
    let one = CpuBackend::with_threads(1)?;
    let two = CpuBackend::with_threads(2)?;
    let mut x1 = vp_start(&one, rows);
    run_learned_range(&one, &m, &VpBySigma, &g, &mut x1, BASE, 0)?;
    let mut x2 = vp_start(&two, rows);
    run_learned_range(&two, &m, &VpBySigma, &g, &mut x2, BASE, 0)?;
    let whole = one.to_host(&x1)?;
    assert_eq!(bits(&whole), bits(&two.to_host(&x2)?));
    let k = 13;
    let mut shards = Vec::new();
    for (first, len) in [(0, k), (k, rows - k)] {
        let mut x = one.upload(&[len, 2], &whole_start(rows)[2 * first..2 * (first + len)])?;
        run_learned_range(&one, &m, &VpBySigma, &g, &mut x, BASE, first)?;
        shards.extend(one.to_host(&x)?);
    }
    assert_eq!(bits(&whole), bits(&shards));
    // A per-row grid with every row equal gives the shared grid's bits.
    let per_row = SamplingGrid::PerRow(vec![g.row(0).to_vec(); rows]);
    let mut x = vp_start(&one, rows);
    run_learned_range(&one, &m, &VpBySigma, &per_row, &mut x, BASE, 0)?;
    assert_eq!(bits(&whole), bits(&one.to_host(&x)?));
    Ok(())
}

fn whole_start(rows: usize) -> Vec<f32> {
    vp_start(&CpuBackend::new(), rows).into_vec()
}

#[test]
fn bad_inputs_are_typed_errors() {
    let cpu = CpuBackend::new();
    let g = grid(5);
    let mut x = vp_start(&cpu, 4);
    for bad in [f32::NAN, f32::INFINITY] {
        let mut x = vp_start(&cpu, 4);
        let r = run_learned_range(&cpu, &model(V::Const(bad)), &VpBySigma, &g, &mut x, BASE, 0);
        assert!(matches!(r, Err(Error::NonFinite(_))), "{r:?}");
    }
    let inverse = SamplingGrid::Shared(vec![vp_level(2.0), vp_level(1.0)])
        .reversed()
        .unwrap();
    let r = run_learned_range(
        &cpu,
        &model(V::Const(0.0)),
        &VpBySigma,
        &inverse,
        &mut x,
        BASE,
        0,
    );
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
    let per_row = SamplingGrid::PerRow(vec![g.row(0).to_vec(); 3]);
    let r = run_learned_range(
        &cpu,
        &model(V::Const(0.0)),
        &VpBySigma,
        &per_row,
        &mut x,
        BASE,
        0,
    );
    assert!(matches!(r, Err(Error::InvalidArgument { .. })), "{r:?}");
    let e = Ddpm::new(DdpmVariance::LearnedRange).unwrap_err();
    assert!(matches!(e, Error::Unsupported(_)));
    assert!(e.to_string().contains("run_learned_range"));
}

//! Guidance and thresholding wrappers against exact answers: the
//! class-conditional Gaussian mixture gives the exact conditional and
//! unconditional denoisers and the exact classifier gradient, so
//! classifier-free guidance, classifier guidance and Bayes' rule can be
//! checked against each other; thresholding against hand-computed rows.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Eps, Sample, VpBySigma, fraction_se, geometric_grid, three_blobs_2d, vp_level};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::guidance::{
    ClassifierFree, ClassifierGradient, ClassifierGuided, Conditioning, GuidanceInterval,
    Threshold, Thresholded,
};
use diffuse_solvers::{
    Affine, Backend, Condition, CpuBackend, Denoiser, Error, Marginal, NoiseLevel, NoiseStream,
    Parameterization, Result, by_name, run,
};

type Cpu = CpuBackend;
type Tensor = <CpuBackend as Backend>::Tensor;

/// v-prediction on a VP marginal: `x̂₀ = α·x − σ·v`.
struct V;
impl Parameterization for V {
    fn name(&self) -> &str {
        "v_prediction"
    }
    fn x0_map(&self, m: Marginal) -> Result<Affine> {
        Ok(Affine {
            a: m.alpha,
            b: -m.sigma,
        })
    }
}

fn params() -> Vec<Arc<dyn Parameterization>> {
    vec![Arc::new(Eps), Arc::new(Sample), Arc::new(V)]
}

/// Three components in 2-D; class 0 = components 0 and 2, class 1 = 1.
fn labelled() -> GaussianMixture {
    three_blobs_2d().with_labels(vec![0, 1, 0]).unwrap()
}

/// `rows` deterministic 2-D states spread over the mixture's support.
fn states(cpu: &Cpu, rows: usize, scale: f64) -> Tensor {
    let mut z = vec![0.0f32; 2 * rows];
    NoiseStream::new(11, 0).fill(0, &mut z);
    let v: Vec<f32> = z.iter().map(|&e| (f64::from(e) * scale) as f32).collect();
    cpu.upload(&[rows, 2], &v).unwrap()
}

fn predict(
    cpu: &Cpu,
    model: &dyn Denoiser<Cpu>,
    x: &Tensor,
    levels: &[NoiseLevel],
    c: Condition<'_, Tensor>,
) -> Result<Vec<f32>> {
    let mut out = cpu.zeros(cpu.shape(x))?;
    model.predict(cpu, x, levels, c, &mut out)?;
    cpu.to_host(&out)
}

/// Counts the evaluations of the wrapped denoiser.
struct Counting<'a> {
    inner: &'a GmmDenoiser,
    calls: AtomicUsize,
}

impl Denoiser<Cpu> for Counting<'_> {
    fn parameterization(&self) -> &dyn Parameterization {
        Denoiser::<Cpu>::parameterization(self.inner)
    }
    fn predict(
        &self,
        backend: &Cpu,
        x: &Tensor,
        levels: &[NoiseLevel],
        condition: Condition<'_, Tensor>,
        out: &mut Tensor,
    ) -> Result<()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.inner.predict(backend, x, levels, condition, out)
    }
}

/// The exact classifier of the mixture for fixed target labels.
struct ExactClassifier<'a> {
    model: &'a GmmDenoiser,
    labels: Vec<Option<u32>>,
}

impl ClassifierGradient<Cpu> for ExactClassifier<'_> {
    fn gradient(
        &self,
        backend: &Cpu,
        x: &Tensor,
        levels: &[NoiseLevel],
        out: &mut Tensor,
    ) -> Result<()> {
        let xs: Vec<f64> = backend.to_host(x)?.into_iter().map(f64::from).collect();
        let g = self.model.classifier_gradient(levels, &xs, &self.labels)?;
        let g32: Vec<f32> = g.iter().map(|&v| v as f32).collect();
        backend.copy(&backend.upload(backend.shape(x), &g32)?, out)
    }
}

fn close(a: &[f32], b: &[f32], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len());
    for (i, (&p, &q)) in a.iter().zip(b).enumerate() {
        let (p, q) = (f64::from(p), f64::from(q));
        assert!(
            (p - q).abs() <= tol * (1.0 + q.abs()),
            "{what}: element {i}: {p} vs {q}"
        );
    }
}

#[test]
fn cfg_at_scale_one_is_conditional_and_at_zero_unconditional() -> Result<()> {
    let cpu = CpuBackend::new();
    let labels = [Some(0), Some(1), None, Some(1), Some(0), Some(0)];
    let nulls = [None; 6];
    let x = states(&cpu, 6, 2.0);
    for p in params() {
        let model = GmmDenoiser::new(labelled(), p);
        for s in [0.4, 1.0, 3.0] {
            let levels = [vp_level(s); 6];
            let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
            let uncond = predict(&cpu, &model, &x, &levels, Condition::Class(&nulls))?;
            let one = ClassifierFree::new(&model, Conditioning::Class(&labels), 1.0)?;
            let got = predict(&cpu, &one, &x, &levels, Condition::Unconditional)?;
            let bits = |v: &[f32]| v.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&cond));
            let zero = ClassifierFree::new(&model, Conditioning::Class(&labels), 0.0)?;
            let got = predict(&cpu, &zero, &x, &levels, Condition::Unconditional)?;
            assert_eq!(got, uncond);
            // Scale 2: out_u + 2·(out_c − out_u), in f32 as the fused pass.
            let two = ClassifierFree::new(&model, Conditioning::Class(&labels), 2.0)?;
            let got = predict(&cpu, &two, &x, &levels, Condition::Unconditional)?;
            let want: Vec<f32> = uncond
                .iter()
                .zip(&cond)
                .map(|(&u, &c)| -u + 2.0 * c)
                .collect();
            assert_eq!(got, want);
        }
    }
    Ok(())
}

#[test]
fn the_guidance_interval_skips_the_unconditional_call() -> Result<()> {
    let cpu = CpuBackend::new();
    let model = GmmDenoiser::new(labelled(), Arc::new(Eps));
    let counting = Counting {
        inner: &model,
        calls: AtomicUsize::new(0),
    };
    let labels = [Some(1); 4];
    let x = states(&cpu, 4, 2.0);
    let cfg = ClassifierFree::new(&counting, Conditioning::Class(&labels), 3.0)?
        .interval(GuidanceInterval::new(0.3, 2.0)?);
    // σ̃ = 0.2 and 5 are outside (0.3, 2]: one call, the conditional output.
    for s in [0.2, 5.0, 0.3] {
        let levels = [vp_level(s); 4];
        counting.calls.store(0, Ordering::Relaxed);
        let got = predict(&cpu, &cfg, &x, &levels, Condition::Unconditional)?;
        assert_eq!(counting.calls.load(Ordering::Relaxed), 1, "σ̃ = {s}");
        let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
        assert_eq!(got, cond);
    }
    // Inside (σ̃ = 1 and the upper end 2): two calls, guided.
    for s in [1.0, 2.0] {
        let levels = [vp_level(s); 4];
        counting.calls.store(0, Ordering::Relaxed);
        let got = predict(&cpu, &cfg, &x, &levels, Condition::Unconditional)?;
        assert_eq!(counting.calls.load(Ordering::Relaxed), 2);
        let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
        assert_ne!(got, cond);
    }
    // A batch with rows on both sides: guided rows only.
    let levels = [vp_level(1.0), vp_level(5.0), vp_level(1.0), vp_level(0.1)];
    let got = predict(&cpu, &cfg, &x, &levels, Condition::Unconditional)?;
    let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
    assert_eq!(&got[2..4], &cond[2..4]);
    assert_eq!(&got[6..8], &cond[6..8]);
    assert_ne!(&got[..2], &cond[..2]);
    // No row guided at scale 1: one call.
    let one = ClassifierFree::new(&counting, Conditioning::Class(&labels), 1.0)?.rescale(0.7)?;
    counting.calls.store(0, Ordering::Relaxed);
    predict(
        &cpu,
        &one,
        &x,
        &[vp_level(1.0); 4],
        Condition::Unconditional,
    )?;
    assert_eq!(counting.calls.load(Ordering::Relaxed), 1);
    Ok(())
}

#[test]
fn cfg_equals_classifier_guidance_with_the_exact_classifier() -> Result<()> {
    // Both give the score ∇log p(x) + s·∇log p(y | x) of the exact model.
    let cpu = CpuBackend::new();
    let labels = vec![Some(0), Some(1), Some(1), Some(0), Some(1)];
    let nulls = [None; 5];
    let x = states(&cpu, 5, 1.5);
    for p in params() {
        let model = GmmDenoiser::new(labelled(), p.clone());
        let classifier = ExactClassifier {
            model: &model,
            labels: labels.clone(),
        };
        for sigma in [0.3, 1.0, 3.0] {
            let levels = [vp_level(sigma); 5];
            for s in [0.5, 1.0, 2.5] {
                let cfg = ClassifierFree::new(&model, Conditioning::Class(&labels), s)?;
                let a = predict(&cpu, &cfg, &x, &levels, Condition::Unconditional)?;
                let cg = ClassifierGuided::new(&model, &classifier, s)?;
                let b = predict(&cpu, &cg, &x, &levels, Condition::Class(&nulls))?;
                close(&a, &b, 2e-4, &format!("{} σ̃ {sigma} s {s}", p.name()));
            }
            // Scale 1 is Bayes: the exact conditional model.
            let cg = ClassifierGuided::new(&model, &classifier, 1.0)?;
            let b = predict(&cpu, &cg, &x, &levels, Condition::Unconditional)?;
            let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
            close(&b, &cond, 2e-4, &format!("Bayes, {} σ̃ {sigma}", p.name()));
        }
    }
    Ok(())
}

/// Unbiased standard deviation of each row of `rows` rows.
fn row_std(v: &[f32], rows: usize) -> Vec<f64> {
    v.chunks(v.len() / rows)
        .map(|r| {
            let n = r.len() as f64;
            let mean = r.iter().map(|&e| f64::from(e)).sum::<f64>() / n;
            let ss: f64 = r.iter().map(|&e| (f64::from(e) - mean).powi(2)).sum();
            (ss / (n - 1.0)).sqrt()
        })
        .collect()
}

#[test]
fn rescale_zero_is_plain_cfg_and_one_restores_the_conditional_std() -> Result<()> {
    let cpu = CpuBackend::new();
    // 16 rows of one 2-D point each would give 2-element rows; use a
    // mixture in 8 dimensions for a meaningful per-row std.
    let gmm = GaussianMixture::new(
        vec![0.6, 0.4],
        vec![vec![1.0; 8], (0..8).map(|i| i as f64 * 0.5 - 2.0).collect()],
        vec![0.5, 0.7],
    )?
    .with_labels(vec![0, 1])?;
    let labels = [Some(0), Some(1), Some(1), Some(0)];
    let mut z = vec![0.0f32; 32];
    NoiseStream::new(3, 0).fill(0, &mut z);
    let x = cpu.upload(&[4, 8], &z)?;
    for p in params() {
        let model = GmmDenoiser::new(gmm.clone(), p.clone());
        let levels = [vp_level(1.5); 4];
        let plain = ClassifierFree::new(&model, Conditioning::Class(&labels), 4.0)?;
        let want = predict(&cpu, &plain, &x, &levels, Condition::Unconditional)?;
        let zero = ClassifierFree::new(&model, Conditioning::Class(&labels), 4.0)?.rescale(0.0)?;
        let got = predict(&cpu, &zero, &x, &levels, Condition::Unconditional)?;
        assert_eq!(got, want);
        let full = ClassifierFree::new(&model, Conditioning::Class(&labels), 4.0)?.rescale(1.0)?;
        let got = predict(&cpu, &full, &x, &levels, Condition::Unconditional)?;
        let cond = predict(&cpu, &model, &x, &levels, Condition::Class(&labels))?;
        let (sg, sc, sp) = (row_std(&got, 4), row_std(&cond, 4), row_std(&want, 4));
        for r in 0..4 {
            assert!(
                (sg[r] / sc[r] - 1.0).abs() < 1e-5,
                "{} row {r}: {} vs {}",
                p.name(),
                sg[r],
                sc[r]
            );
            // And the rescale changed something.
            assert!((sp[r] / sc[r] - 1.0).abs() > 1e-3);
        }
        // φ = 0.5: the factor 1 + φ·(std_c/std_g − 1) on the plain output.
        let half = ClassifierFree::new(&model, Conditioning::Class(&labels), 4.0)?.rescale(0.5)?;
        let got = predict(&cpu, &half, &x, &levels, Condition::Unconditional)?;
        for r in 0..4 {
            let f = 1.0 + 0.5 * (sc[r] / sp[r] - 1.0);
            let want_row: Vec<f32> = want[8 * r..8 * r + 8]
                .iter()
                .map(|&e| (f64::from(e) * f) as f32)
                .collect();
            close(&got[8 * r..8 * r + 8], &want_row, 1e-5, "φ = 0.5");
        }
    }
    Ok(())
}

/// A denoiser that returns fixed rows.
struct Fixed {
    data: Vec<f32>,
    param: Arc<dyn Parameterization>,
}

impl Denoiser<Cpu> for Fixed {
    fn parameterization(&self) -> &dyn Parameterization {
        &*self.param
    }
    fn predict(
        &self,
        backend: &Cpu,
        x: &Tensor,
        _levels: &[NoiseLevel],
        _condition: Condition<'_, Tensor>,
        out: &mut Tensor,
    ) -> Result<()> {
        backend.copy(&backend.upload(backend.shape(x), &self.data)?, out)
    }
}

fn threshold(data: &[f32], rows: usize, t: Threshold) -> Result<Vec<f32>> {
    let cpu = CpuBackend::new();
    let model = Fixed {
        data: data.to_vec(),
        param: Arc::new(Sample),
    };
    let x = cpu.zeros(&[rows, data.len() / rows])?;
    let th = Thresholded::new(&model, t)?;
    assert_eq!(Denoiser::<Cpu>::parameterization(&th).name(), "sample");
    predict(
        &cpu,
        &th,
        &x,
        &vec![vp_level(1.0); rows],
        Condition::Unconditional,
    )
}

#[test]
fn dynamic_thresholding_by_hand() -> Result<()> {
    let rows = [
        // |x| sorted 0.5 1 2 3; p = 0.5: h = 1.5, s = 1 + 0.5·(2 − 1) = 1.5.
        [0.5f32, -3.0, 2.0, 1.0],
        // All within [−1, 1]: s = quantile ≤ 1 is raised to 1, a no-op.
        [0.25, -0.75, 1.0, 0.0],
        // s = 1 + 0.5·(2.5 − 1)... sorted 1 2.5 6 8: h = 1.5 → 2.5 + 0.5·3.5
        // = 4.25, clamped to the max value 4.
        [-8.0, 6.0, 2.5, 1.0],
    ];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let got = threshold(&flat, 3, Threshold::dynamic(0.5, 4.0)?)?;
    let s = [1.5f32, 1.0, 4.0];
    for r in 0..3 {
        for j in 0..4 {
            let v = rows[r][j].clamp(-s[r], s[r]) / s[r];
            assert_eq!(got[4 * r + j], v, "row {r} element {j}");
        }
    }
    assert_eq!(&got[4..8], &rows[1]);
    // p = 1 with a large max value: divide by max |x̂₀| where it exceeds 1.
    let got = threshold(&flat, 3, Threshold::dynamic(1.0, 1e6)?)?;
    for r in [0, 2] {
        let m = rows[r].iter().fold(0.0f32, |a, &v| a.max(v.abs()));
        for j in 0..4 {
            assert_eq!(got[4 * r + j], rows[r][j] / m);
        }
    }
    assert_eq!(&got[4..8], &rows[1]);
    // Random rows land in [−1, 1], with a ±1 in every row that had
    // |x̂₀| > 1 beyond the quantile.
    let mut z = vec![0.0f32; 64 * 50];
    NoiseStream::new(9, 0).fill(0, &mut z);
    let wide: Vec<f32> = z.iter().map(|v| 3.0 * v).collect();
    let got = threshold(&wide, 64, Threshold::dynamic(0.995, 10.0)?)?;
    assert!(got.iter().all(|v| v.abs() <= 1.0));
    for row in got.chunks(50) {
        assert!(row.iter().any(|v| v.abs() == 1.0));
    }
    Ok(())
}

#[test]
fn static_clipping_and_conversion_to_x0() -> Result<()> {
    let data = [0.5f32, -3.0, 2.0, 1.0, -0.25, 0.75];
    let got = threshold(&data, 2, Threshold::clip(1.0)?)?;
    assert_eq!(got, vec![0.5, -1.0, 1.0, 1.0, -0.25, 0.75]);
    let got = threshold(&data, 2, Threshold::clip(2.5)?)?;
    assert_eq!(got, vec![0.5, -2.5, 2.0, 1.0, -0.25, 0.75]);
    // An ε-prediction model: the wrapper outputs x̂₀ = (x − σ·ε̂)/α, clipped.
    let cpu = CpuBackend::new();
    let model = Fixed {
        data: data.to_vec(),
        param: Arc::new(Eps),
    };
    let xs = [1.0f32, 0.5, -2.0, 0.0, 3.0, -1.0];
    let x = cpu.upload(&[2, 3], &xs)?;
    let levels = [vp_level(0.5), vp_level(2.0)];
    let th = Thresholded::new(&model, Threshold::clip(1.0)?)?;
    let got = predict(&cpu, &th, &x, &levels, Condition::Unconditional)?;
    for i in 0..6 {
        let m = levels[i / 3].marginal;
        let (a, b) = ((1.0 / m.alpha) as f32, (-m.sigma / m.alpha) as f32);
        let x0 = a * xs[i] + b * data[i];
        assert_eq!(got[i], x0.clamp(-1.0, 1.0), "element {i}");
    }
    Ok(())
}

#[test]
fn bad_options_are_typed_errors() -> Result<()> {
    let model = GmmDenoiser::new(labelled(), Arc::new(Eps));
    let labels = [Some(0); 2];
    let invalid = |e: Error| matches!(e, Error::InvalidArgument { .. });
    for p in [0.0, -0.1, 1.5, f64::NAN] {
        assert!(invalid(Threshold::dynamic(p, 2.0).unwrap_err()), "p = {p}");
    }
    for m in [0.5, -1.0, f64::NAN] {
        assert!(
            invalid(Threshold::dynamic(0.9, m).unwrap_err()),
            "max = {m}"
        );
    }
    for c in [0.0, -1.0, f64::INFINITY, f64::NAN] {
        assert!(invalid(Threshold::clip(c).unwrap_err()), "c = {c}");
    }
    let bad = Threshold::Dynamic {
        percentile: 2.0,
        max_value: 1.0,
    };
    assert!(Thresholded::<Cpu>::new(&model, bad).is_err());
    for phi in [-0.1, 1.5, f64::NAN] {
        let cfg = ClassifierFree::<Cpu>::new(&model, Conditioning::Class(&labels), 2.0)?;
        assert!(invalid(cfg.rescale(phi).err().unwrap()), "φ = {phi}");
    }
    assert!(ClassifierFree::<Cpu>::new(&model, Conditioning::Class(&labels), f64::NAN).is_err());
    assert!(GuidanceInterval::new(2.0, 1.0).is_err());
    assert!(GuidanceInterval::new(-1.0, 1.0).is_err());
    assert!(GuidanceInterval::new(0.0, f64::INFINITY).is_ok());
    // Conditioning rows against the batch, and a condition handed in.
    let cpu = CpuBackend::new();
    let x = states(&cpu, 3, 1.0);
    let cfg = ClassifierFree::new(&model, Conditioning::Class(&labels), 2.0)?;
    let e = predict(
        &cpu,
        &cfg,
        &x,
        &[vp_level(1.0); 3],
        Condition::Unconditional,
    )
    .unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }), "{e}");
    let x = states(&cpu, 2, 1.0);
    let e = predict(
        &cpu,
        &cfg,
        &x,
        &[vp_level(1.0); 2],
        Condition::Class(&labels),
    )
    .unwrap_err();
    assert!(invalid(e));
    // An unknown class surfaces from the model.
    let unknown = [Some(7); 2];
    let cfg = ClassifierFree::new(&model, Conditioning::Class(&unknown), 2.0)?;
    let e = predict(
        &cpu,
        &cfg,
        &x,
        &[vp_level(1.0); 2],
        Condition::Unconditional,
    )
    .unwrap_err();
    assert!(invalid(e));
    Ok(())
}

/// Two overlapping classes on the x axis: class 0 at −1, class 1 at +1,
/// standard deviation 0.8 (so P(x > 0 | class 1) = Φ(1.25) = 0.8944).
fn overlapping() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.5],
        vec![vec![-1.0, 0.0], vec![1.0, 0.0]],
        vec![0.8, 0.8],
    )
    .unwrap()
    .with_labels(vec![0, 1])
    .unwrap()
}

const N: usize = 4000;
const SIGMA_MAX: f64 = 40.0;

/// Samples `N` rows of class 1 with CFG at scale `s` through dpmpp-2m (25
/// steps, VP, data prediction); returns the samples.
fn sample_class_1(s: f64) -> Result<Vec<f32>> {
    let cpu = CpuBackend::new();
    let model = GmmDenoiser::new(overlapping(), Arc::new(Sample));
    let labels = vec![Some(1); N];
    let cfg = ClassifierFree::new(&model, Conditioning::Class(&labels), s)?;
    let steps = 25;
    let grid = geometric_grid(SIGMA_MAX, 0.005, steps, vp_level);
    // Exact draws of the class-1 marginal at σ̃_max.
    let mut z = vec![0.0f32; 4 * N];
    NoiseStream::new(21, 0).fill(0, &mut z);
    let alpha = vp_level(SIGMA_MAX).marginal.alpha;
    let start: Vec<f32> = (0..N)
        .flat_map(|i| {
            let z = &z[4 * i..4 * i + 4];
            [0, 1].map(|d| {
                let mu = [1.0, 0.0][d];
                let v = mu + 0.8 * f64::from(z[d]) + SIGMA_MAX * f64::from(z[2 + d]);
                (alpha * v) as f32
            })
        })
        .collect();
    let mut x = cpu.upload(&[N, 2], &start)?;
    run(
        &cpu,
        by_name("dpmpp-2m")?.as_ref(),
        &cfg,
        &VpBySigma,
        &grid,
        &mut x,
    )?;
    cpu.to_host(&x)
}

/// Fraction of samples on class 1's side (`x > 0`) and the mean.
fn side_and_mean(x: &[f32]) -> (f64, [f64; 2]) {
    let n = (x.len() / 2) as f64;
    let right = x.chunks(2).filter(|p| p[0] > 0.0).count() as f64 / n;
    let mut m = [0.0; 2];
    for p in x.chunks(2) {
        m[0] += f64::from(p[0]) / n;
        m[1] += f64::from(p[1]) / n;
    }
    (right, m)
}

/// CFG at scale 1 samples the class-conditional distribution: the fraction
/// on class 1's side within 4 standard errors of Φ(1.25), the mean within
/// 0.05 of (1, 0). Larger scales push mass further toward the class
/// (monotone fraction), scale 0 samples the whole mixture (half, mean 0).
#[test]
fn cfg_sampling_reproduces_the_class_and_sharpens_it() -> Result<()> {
    let target = 0.894_350_2;
    let se = fraction_se(target, N);
    let (frac1, mean1) = side_and_mean(&sample_class_1(1.0)?);
    assert!(
        (frac1 - target).abs() < 4.0 * se,
        "s = 1: {frac1} vs {target}"
    );
    assert!(
        (mean1[0] - 1.0).abs() < 0.05 && mean1[1].abs() < 0.05,
        "{mean1:?}"
    );
    let (frac0, mean0) = side_and_mean(&sample_class_1(0.0)?);
    assert!(
        (frac0 - 0.5).abs() < 4.0 * fraction_se(0.5, N),
        "s = 0: {frac0}"
    );
    assert!(mean0[0].abs() < 0.1, "{mean0:?}");
    let mut last = frac1;
    for s in [1.25, 1.5, 2.0] {
        let (f, _) = side_and_mean(&sample_class_1(s)?);
        assert!(f > last, "s = {s}: {f} after {last}");
        last = f;
    }
    assert!(last > 0.99, "s = 2: {last}");
    Ok(())
}

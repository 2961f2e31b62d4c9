//! Stochastic samplers: the same seed gives the same samples for any split
//! of the batch into shards and any thread count; the noise-free options
//! reduce to the deterministic methods bit for bit; samplers that agree in
//! exact arithmetic agree to rounding; a tensor noise source reproduces
//! the stream; bad options and missing or surplus noise are typed errors;
//! the Brownian-tree source is as independent of shards and threads as
//! the stream.

mod common;

use common::{
    BASE, VpBySigma, bits, geometric_grid, max_abs_diff_f32, two_blobs_model, vp_level, vp_start,
};
use diffuse_solvers::{
    Backend, CpuBackend, Ddim, DdimEta, Ddpm, DdpmVariance, Dpm2, Dpm2Ancestral, DpmAlgorithm,
    DpmPp2MSde, DpmPp2S, DpmPp2SAncestral, DpmPp3MSde, DpmPpSde, DpmSolverMultistep, Draw,
    DrawInfo, Edm, Error, Euler, EulerAncestral, Heun, Method, NoiseSource, NoiseStream, Pc,
    PhiloxNoise, Result, Sampler, SamplingGrid, SecondOrder, Solver, SolverState, ThirdOrder,
    by_name, run, run_with_noise, stochastic_names,
};
use diffuse_solvers::{NoiseKind, noise_source};

/// `n` steps geometric in σ̃ from `hi` to `lo`, then a clean level.
fn grid(n: usize, hi: f64, lo: f64) -> SamplingGrid {
    geometric_grid(hi, lo, n, vp_level)
}

fn sample(
    cpu: &CpuBackend,
    method: &dyn Method,
    grid: &SamplingGrid,
    x: &mut diffuse_core::CpuTensor,
    first_row: usize,
) -> Result<()> {
    let m = two_blobs_model();
    run_with_noise(
        cpu,
        method,
        &m,
        &VpBySigma,
        grid,
        x,
        Box::new(PhiloxNoise::new(BASE)),
        first_row,
    )
    .map(|_| ())
}

/// A run of `method` on `grid` over the states `x`, the first of which is
/// row `first_row` of the batch.
type Run =
    fn(&CpuBackend, &dyn Method, &SamplingGrid, &mut diffuse_core::CpuTensor, usize) -> Result<()>;

/// Runs `method` with `run` on the [`vp_start`] states of the shards'
/// rows, on one thread (`one`); checks that the samples are finite, that
/// two threads (`two`) and the batch split into `shards` give the same
/// samples bit for bit, and returns the one-thread samples.
fn same_for_threads_and_shards(
    name: &str,
    run: Run,
    method: &dyn Method,
    g: &SamplingGrid,
    (one, two): (&CpuBackend, &CpuBackend),
    shards: &[(usize, usize)],
) -> Result<Vec<f32>> {
    let rows = shards.last().map_or(0, |s| s.1);
    let mut full = vp_start(one, rows);
    run(one, method, g, &mut full, 0)?;
    let full = one.to_host(&full)?;
    assert!(full.iter().all(|v| v.is_finite()), "{name}");
    let mut x = vp_start(two, rows);
    run(two, method, g, &mut x, 0)?;
    assert_eq!(bits(&two.to_host(&x)?), bits(&full), "{name}: 2 threads");
    let init = one.to_host(&vp_start(one, rows))?;
    let mut got = Vec::new();
    for &(a, b) in shards {
        let mut x = one.upload(&[b - a, 2], &init[2 * a..2 * b])?;
        run(one, method, g, &mut x, a)?;
        got.extend(one.to_host(&x)?);
    }
    assert_eq!(bits(&got), bits(&full), "{name}: shards");
    Ok(full)
}

#[test]
fn shards_and_thread_counts_give_the_same_samples() -> Result<()> {
    let g = grid(6, 10.0, 0.05);
    let rows = 40;
    let one = CpuBackend::with_threads(1)?;
    let two = CpuBackend::with_threads(2)?;
    for name in stochastic_names() {
        let method = by_name(name)?;
        // Two threads, and shards [0, 15) and [15, 40).
        let full = same_for_threads_and_shards(
            name,
            sample,
            method.as_ref(),
            &g,
            (&one, &two),
            &[(0, 15), (15, rows)],
        )?;
        // Another seed changes the samples.
        let mut x = vp_start(&one, rows);
        let m = two_blobs_model();
        run_with_noise(
            &one,
            method.as_ref(),
            &m,
            &VpBySigma,
            &g,
            &mut x,
            Box::new(PhiloxNoise::new(NoiseStream::new(12, 1))),
            0,
        )?;
        assert_ne!(bits(&one.to_host(&x)?), bits(&full), "{name}: seed");
    }
    Ok(())
}

#[test]
fn large_states_split_across_threads_agree() -> Result<()> {
    // 40 000 rows × 2: the fused pass is split into several chunks.
    let g = grid(3, 10.0, 0.1);
    let rows = 40_000;
    let one = CpuBackend::with_threads(1)?;
    let two = CpuBackend::with_threads(2)?;
    for name in ["euler-ancestral", "edm", "pc", "dpmpp-sde"] {
        let method = by_name(name)?;
        let (mut a, mut b) = (vp_start(&one, rows), vp_start(&two, rows));
        sample(&one, method.as_ref(), &g, &mut a, 0)?;
        sample(&two, method.as_ref(), &g, &mut b, 0)?;
        assert_eq!(bits(&one.to_host(&a)?), bits(&two.to_host(&b)?), "{name}");
    }
    Ok(())
}

fn multistep(order: usize, form: SecondOrder) -> DpmSolverMultistep {
    DpmSolverMultistep {
        order,
        algorithm: DpmAlgorithm::DataPrediction,
        solver_type: form,
        lower_order_final: false,
        euler_at_final: false,
        third_order: ThirdOrder::Exact,
    }
}

#[test]
fn noise_free_options_are_the_deterministic_methods_bit_for_bit() -> Result<()> {
    let g = grid(8, 10.0, 0.05);
    let cpu = CpuBackend::new();
    let pairs: Vec<(Box<dyn Method>, Box<dyn Method>)> = vec![
        (Box::new(EulerAncestral::new(0.0, 1.0)?), Box::new(Euler)),
        (Box::new(Dpm2Ancestral::new(0.0, 1.0)?), Box::new(Dpm2)),
        (
            Box::new(DpmPp2SAncestral::new(0.0, 1.0)?),
            Box::new(DpmPp2S),
        ),
        (Box::new(DpmPpSde::new(0.0, 1.0, 0.5)?), Box::new(DpmPp2S)),
        (Box::new(DdimEta::new(0.0)?), Box::new(Ddim)),
        (
            Box::new(DpmPp2MSde::new(0.0, 1.0, SecondOrder::Midpoint)?),
            Box::new(multistep(2, SecondOrder::Midpoint)),
        ),
        (
            Box::new(DpmPp2MSde::new(0.0, 1.0, SecondOrder::Heun)?),
            Box::new(multistep(2, SecondOrder::Heun)),
        ),
        (
            Box::new(DpmPp3MSde::new(0.0, 1.0, ThirdOrder::Exact)?),
            Box::new(multistep(3, SecondOrder::Heun)),
        ),
        (
            Box::new(Edm::new(0.0, 0.0, f64::INFINITY, 1.0)?),
            Box::new(Heun),
        ),
    ];
    let m = two_blobs_model();
    for (stochastic, deterministic) in &pairs {
        let mut a = vp_start(&cpu, 16);
        sample(&cpu, stochastic.as_ref(), &g, &mut a, 0)?;
        let mut b = vp_start(&cpu, 16);
        run(&cpu, deterministic.as_ref(), &m, &VpBySigma, &g, &mut b)?;
        assert_eq!(
            bits(&cpu.to_host(&a)?),
            bits(&cpu.to_host(&b)?),
            "{} vs {}",
            stochastic.name(),
            deterministic.name()
        );
    }
    Ok(())
}

#[test]
fn tiny_eta_is_close_to_eta_zero() -> Result<()> {
    // The general formulas (not the η = 0 shortcut) approach the ODE. (The
    // grid stops at σ̃ = 0.3: below that the mixture's posterior mean is so
    // steep between the components that it amplifies any perturbation.)
    let g = grid(8, 10.0, 0.3);
    let cpu = CpuBackend::new();
    let cases: Vec<(Box<dyn Method>, Box<dyn Method>)> = vec![
        (Box::new(EulerAncestral::new(1e-12, 1.0)?), Box::new(Euler)),
        (Box::new(Dpm2Ancestral::new(1e-12, 1.0)?), Box::new(Dpm2)),
        (
            Box::new(DpmPp2SAncestral::new(1e-12, 1.0)?),
            Box::new(DpmPp2S),
        ),
        (Box::new(DpmPpSde::new(1e-12, 1.0, 0.5)?), Box::new(DpmPp2S)),
        (Box::new(DdimEta::new(1e-12)?), Box::new(Ddim)),
        (
            Box::new(DpmPp2MSde::new(1e-12, 1.0, SecondOrder::Midpoint)?),
            Box::new(multistep(2, SecondOrder::Midpoint)),
        ),
        (
            Box::new(DpmPp2MSde::new(1e-12, 1.0, SecondOrder::Heun)?),
            Box::new(multistep(2, SecondOrder::Heun)),
        ),
        (
            Box::new(DpmPp3MSde::new(1e-12, 1.0, ThirdOrder::Exact)?),
            Box::new(multistep(3, SecondOrder::Heun)),
        ),
        (
            Box::new(Edm::new(1e-12, 0.0, f64::INFINITY, 1.0)?),
            Box::new(Heun),
        ),
    ];
    let m = two_blobs_model();
    for (stochastic, deterministic) in &cases {
        let mut a = vp_start(&cpu, 16);
        sample(&cpu, stochastic.as_ref(), &g, &mut a, 0)?;
        let mut b = vp_start(&cpu, 16);
        run(&cpu, deterministic.as_ref(), &m, &VpBySigma, &g, &mut b)?;
        let d = max_abs_diff_f32(&cpu.to_host(&a)?, &cpu.to_host(&b)?);
        assert!(d < 1e-3, "{}: {d}", stochastic.name());
    }
    Ok(())
}

#[test]
fn ddpm_ddim_eta_one_and_euler_ancestral_are_one_sampler() -> Result<()> {
    // μ̃ and β̃ of DDPM equal DDIM at η = 1 and Euler ancestral at η = 1 in
    // exact arithmetic; with the same draws they agree to rounding.
    let g = grid(20, 10.0, 0.02);
    let cpu = CpuBackend::new();
    let mut out = Vec::new();
    let methods: [Box<dyn Method>; 3] = [
        Box::new(Ddpm::new(DdpmVariance::FixedSmall)?),
        Box::new(DdimEta::new(1.0)?),
        Box::new(EulerAncestral::new(1.0, 1.0)?),
    ];
    for m in &methods {
        let mut x = vp_start(&cpu, 32);
        sample(&cpu, m.as_ref(), &g, &mut x, 0)?;
        out.push(cpu.to_host(&x)?);
    }
    assert!(
        max_abs_diff_f32(&out[0], &out[1]) < 2e-4,
        "{}",
        max_abs_diff_f32(&out[0], &out[1])
    );
    assert!(
        max_abs_diff_f32(&out[0], &out[2]) < 2e-4,
        "{}",
        max_abs_diff_f32(&out[0], &out[2])
    );
    // The large variance draws more noise: different samples.
    let mut x = vp_start(&cpu, 32);
    sample(&cpu, &Ddpm::new(DdpmVariance::FixedLarge)?, &g, &mut x, 0)?;
    assert!(max_abs_diff_f32(&cpu.to_host(&x)?, &out[0]) > 1e-3);
    // The log forms are the same standard deviations.
    for (log, plain) in [
        (DdpmVariance::FixedSmallLog, DdpmVariance::FixedSmall),
        (DdpmVariance::FixedLargeLog, DdpmVariance::FixedLarge),
    ] {
        let (mut a, mut b) = (vp_start(&cpu, 8), vp_start(&cpu, 8));
        sample(&cpu, &Ddpm::new(log)?, &g, &mut a, 0)?;
        sample(&cpu, &Ddpm::new(plain)?, &g, &mut b, 0)?;
        assert_eq!(bits(&cpu.to_host(&a)?), bits(&cpu.to_host(&b)?));
    }
    Ok(())
}

/// The public stream handed over as a tensor, filled by the backend.
struct TensorStream {
    base: NoiseStream,
    z: diffuse_core::CpuTensor,
}

impl NoiseSource<CpuBackend> for TensorStream {
    fn draw(&mut self, backend: &CpuBackend, info: DrawInfo) -> Result<Draw<'_, CpuBackend>> {
        let stream = NoiseStream::new(self.base.seed, self.base.stream + info.index);
        backend.fill_noise(stream, info.first_row * info.row_len as u64, &mut self.z)?;
        Ok(Draw::Tensor(&self.z))
    }
}

#[test]
fn a_tensor_noise_source_reproduces_the_stream() -> Result<()> {
    let g = grid(6, 10.0, 0.05);
    let cpu = CpuBackend::new();
    let m = two_blobs_model();
    for name in stochastic_names() {
        let method = by_name(name)?;
        let mut a = vp_start(&cpu, 12);
        sample(&cpu, method.as_ref(), &g, &mut a, 0)?;
        let mut b = vp_start(&cpu, 12);
        let source = TensorStream {
            base: BASE,
            z: cpu.zeros(&[12, 2])?,
        };
        run_with_noise(
            &cpu,
            method.as_ref(),
            &m,
            &VpBySigma,
            &g,
            &mut b,
            Box::new(source),
            0,
        )?;
        assert_eq!(bits(&cpu.to_host(&a)?), bits(&cpu.to_host(&b)?), "{name}");
    }
    Ok(())
}

fn invalid(r: Result<impl Sized>, name: &str) {
    match r {
        Err(Error::InvalidArgument { name: n, .. }) => assert_eq!(n, name),
        Err(e) => panic!("{name}: unexpected error {e}"),
        Ok(_) => panic!("{name}: accepted"),
    }
}

#[test]
fn bad_options_and_noise_mismatches_are_typed_errors() -> Result<()> {
    invalid(EulerAncestral::new(-1.0, 1.0), "eta");
    invalid(EulerAncestral::new(1.0, f64::NAN), "s_noise");
    invalid(Dpm2Ancestral::new(-0.1, 1.0), "eta");
    invalid(DpmPp2SAncestral::new(-0.1, 1.0), "eta");
    invalid(DpmPpSde::new(1.0, 1.0, 0.0), "r");
    invalid(DpmPp2MSde::new(-1.0, 1.0, SecondOrder::Midpoint), "eta");
    invalid(
        DpmPp3MSde::new(f64::INFINITY, 1.0, ThirdOrder::Exact),
        "eta",
    );
    invalid(DdimEta::new(-0.5), "eta");
    invalid(Edm::new(-1.0, 0.0, 1.0, 1.0), "s_churn");
    invalid(Edm::new(1.0, 2.0, 1.0, 1.0), "s_tmax");
    invalid(Pc::new(0.0, 1), "snr");
    invalid(Pc::new(-0.16, 1), "snr");
    invalid(Pc::new(0.16, 1000), "corrector_steps");
    assert!(matches!(
        Ddpm::new(DdpmVariance::LearnedRange),
        Err(Error::Unsupported(_))
    ));
    let cpu = CpuBackend::new();
    let g = grid(5, 10.0, 0.05);
    let m = two_blobs_model();
    // Options checked again when a struct built by hand runs.
    let mut x = vp_start(&cpu, 4);
    invalid(
        sample(
            &cpu,
            &EulerAncestral {
                eta: -1.0,
                s_noise: 1.0,
            },
            &g,
            &mut x,
            0,
        ),
        "eta",
    );
    // η so large that a step asks for more noise than σ′.
    invalid(sample(&cpu, &DdimEta { eta: 5.0 }, &g, &mut x, 0), "eta");
    // A stochastic sampler without noise, a deterministic one with noise.
    let mut x = vp_start(&cpu, 4);
    invalid(
        Sampler::new(EulerAncestral::default()).sample(&cpu, &m, &VpBySigma, &g, &mut x, None),
        "noise",
    );
    invalid(
        Sampler::new(Euler).sample(&cpu, &m, &VpBySigma, &g, &mut x, Some(BASE)),
        "noise",
    );
    invalid(
        SolverState::new(&cpu, &Pc::default(), &VpBySigma, &g, &x),
        "noise",
    );
    invalid(
        SolverState::with_noise(
            &cpu,
            &Heun,
            &VpBySigma,
            &g,
            &x,
            Box::new(PhiloxNoise::new(BASE)),
            0,
        ),
        "noise",
    );
    // The Solver trait reports stochasticity and samples with a stream.
    let mut s = Sampler::new(Edm::default());
    assert!(<Sampler<Edm> as Solver<CpuBackend>>::stochastic(&s));
    let report = s.sample(&cpu, &m, &VpBySigma, &g, &mut x, Some(BASE))?;
    assert_eq!(report.steps, 5);
    assert_eq!(report.nfe, 9);
    Ok(())
}

#[test]
fn corrections_count_as_model_evaluations() -> Result<()> {
    let cpu = CpuBackend::new();
    let g = grid(5, 10.0, 0.05);
    let m = two_blobs_model();
    let mut x = vp_start(&cpu, 4);
    let mut s = Sampler::new(Pc::new(0.16, 2)?);
    let report = s.sample(&cpu, &m, &VpBySigma, &g, &mut x, Some(BASE))?;
    // 5 steps: a predictor call and two corrections each.
    assert_eq!(report.nfe, 15);
    // Zero corrections: Euler–Maruyama.
    let (mut a, mut b) = (vp_start(&cpu, 4), vp_start(&cpu, 4));
    sample(&cpu, &Pc::new(0.16, 0)?, &g, &mut a, 0)?;
    sample(&cpu, &diffuse_solvers::EulerMaruyama, &g, &mut b, 0)?;
    assert_eq!(bits(&cpu.to_host(&a)?), bits(&cpu.to_host(&b)?));
    Ok(())
}

/// Runs `method` drawing from the Brownian tree of `BASE` on `grid`.
fn sample_tree(
    cpu: &CpuBackend,
    method: &dyn Method,
    grid: &SamplingGrid,
    x: &mut diffuse_core::CpuTensor,
    first_row: usize,
) -> Result<()> {
    let m = two_blobs_model();
    let source = noise_source(cpu, NoiseKind::BrownianTree, grid, x, BASE)?;
    run_with_noise(cpu, method, &m, &VpBySigma, grid, x, source, first_row).map(|_| ())
}

/// The Brownian-tree source keeps the guarantee of the stream: for every
/// stochastic sampler, two threads and any split of the batch into shards
/// give the same samples bit for bit, on small and on large states. Where
/// a sampler's only noise is churn (edm), the tree source draws it from
/// the stream and the samples are those of `PhiloxNoise`; every other
/// sampler's samples change.
#[test]
fn brownian_tree_noise_does_not_depend_on_shards_or_threads() -> Result<()> {
    let g = grid(6, 10.0, 0.05);
    let rows = 40;
    let one = CpuBackend::with_threads(1)?;
    let two = CpuBackend::with_threads(2)?;
    for name in stochastic_names() {
        let method = by_name(name)?;
        let full = same_for_threads_and_shards(
            name,
            sample_tree,
            method.as_ref(),
            &g,
            (&one, &two),
            &[(0, 15), (15, 31), (31, rows)],
        )?;
        let mut stream = vp_start(&one, rows);
        sample(&one, method.as_ref(), &g, &mut stream, 0)?;
        let same = bits(&one.to_host(&stream)?) == bits(&full);
        assert_eq!(same, name == "edm", "{name}: tree vs stream");
    }
    // 40 000 rows × 2: passes split into several chunks.
    let g = grid(3, 10.0, 0.1);
    let rows = 40_000;
    for name in ["dpmpp-sde", "euler-ancestral", "pc"] {
        let method = by_name(name)?;
        let (mut a, mut b) = (vp_start(&one, rows), vp_start(&two, rows));
        sample_tree(&one, method.as_ref(), &g, &mut a, 0)?;
        sample_tree(&two, method.as_ref(), &g, &mut b, 0)?;
        assert_eq!(bits(&one.to_host(&a)?), bits(&two.to_host(&b)?), "{name}");
    }
    Ok(())
}

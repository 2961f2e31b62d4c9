//! `diffuse sample`: samples from a trained model or from the exact
//! denoiser of a Gaussian mixture, written as float32 .npy `[n, 2]`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use diffuse_core::{Backend, Denoiser};
use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_solvers::guidance::{
    ClassifierFree, Conditioning, GuidanceInterval, Threshold, Thresholded,
};
use diffuse_train::{SampleSpec, TrainedModel, sample_on, schedule_by_name, score};
use ndarray::Array2;
use ndarray_npy::WriteNpyExt;
use serde::Serialize;

use crate::cli::SampleArgs;
use crate::device::Device;
use crate::error::{CliError, CliResult};
use crate::output::{print_result, write_file};
use crate::plot::{Panel, ScatterGrid};

#[derive(Serialize)]
struct Summary {
    solver: String,
    steps: usize,
    nfe: usize,
    n: usize,
    out: String,
    /// Sliced Wasserstein distance to held-out data (trained models only).
    sw: Option<f64>,
    plot: Option<String>,
}

/// Writes `png` to `path` (no clobber unless `force`).
pub fn write_png(path: &Path, force: bool, png: &[u8]) -> CliResult<()> {
    write_file(path, force, |w| {
        w.write_all(png).map_err(|source| CliError::Io {
            path: path.to_path_buf(),
            source,
        })
    })
}

/// The points of `x` as plot points.
pub fn points(x: &Array2<f32>) -> Vec<[f64; 2]> {
    x.rows()
        .into_iter()
        .map(|r| [f64::from(r[0]), f64::from(r[1])])
        .collect()
}

/// The guidance and corrections asked for on the command line.
#[derive(Clone, Copy, Debug, Default)]
struct Guidance {
    /// The class sampled (`--class`).
    class: Option<u32>,
    /// Classifier-free guidance scale (`--guidance`, 1 by default).
    scale: f64,
    /// `--guidance-interval`.
    interval: Option<GuidanceInterval>,
    /// `--guidance-rescale` (0 = off).
    rescale: f64,
    /// `--threshold` or `--clip`.
    threshold: Option<Threshold>,
}

/// Parses `A,B` into two numbers.
fn pair(flag: &str, text: &str) -> CliResult<(f64, Option<f64>)> {
    let bad = || CliError::Usage(format!("{flag} '{text}': expected a number or two, A,B"));
    let mut parts = text.split(',');
    let a = parts
        .next()
        .and_then(|p| p.trim().parse::<f64>().ok())
        .ok_or_else(bad)?;
    let b = match parts.next() {
        Some(p) => Some(p.trim().parse::<f64>().map_err(|_| bad())?),
        None => None,
    };
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok((a, b))
}

impl Guidance {
    fn from_args(args: &SampleArgs) -> CliResult<Self> {
        let interval = match &args.guidance_interval {
            Some(text) => match pair("--guidance-interval", text)? {
                (lo, Some(hi)) => Some(GuidanceInterval::new(lo, hi)?),
                (_, None) => {
                    return Err(CliError::Usage(format!(
                        "--guidance-interval '{text}': expected LO,HI"
                    )));
                }
            },
            None => None,
        };
        let threshold = match (&args.threshold, args.clip) {
            (Some(text), _) => {
                let (p, max) = pair("--threshold", text)?;
                Some(Threshold::dynamic(p, max.unwrap_or(1.0))?)
            }
            (None, Some(c)) => Some(Threshold::clip(c)?),
            (None, None) => None,
        };
        Ok(Self {
            class: args.class,
            scale: args.guidance.unwrap_or(1.0),
            interval,
            rescale: args.guidance_rescale.unwrap_or(0.0),
            threshold,
        })
    }

    /// Samples `model` on `backend` with these corrections wrapped around
    /// it: classifier-free guidance toward the class, then thresholding of
    /// the (guided) data estimate, as Imagen orders them.
    fn sample<B: Backend>(
        &self,
        backend: &B,
        model: &dyn Denoiser<B>,
        schedule: &diffuse_schedules::Builtin,
        spec: &SampleSpec,
    ) -> CliResult<(Array2<f32>, diffuse_core::SampleReport)> {
        let labels: Vec<Option<u32>>;
        let guided;
        let thresholded;
        let mut model = model;
        if let Some(class) = self.class {
            labels = vec![Some(class); spec.n];
            let mut cfg = ClassifierFree::new(model, Conditioning::Class(&labels), self.scale)?
                .rescale(self.rescale)?;
            if let Some(interval) = self.interval {
                cfg = cfg.interval(interval);
            }
            guided = cfg;
            model = &guided;
        }
        if let Some(threshold) = self.threshold {
            thresholded = Thresholded::new(model, threshold)?;
            model = &thresholded;
        }
        Ok(sample_on(backend, model, schedule, spec)?)
    }
}

/// Samples the exact mixture denoiser on CUDA device `ordinal`: the same
/// solver loop as on the CPU, with the mixture kernel in it. A failure the
/// kernel recorded on the device (a non-finite state or output) is reported
/// in preference to its consequence (non-finite samples).
fn sample_gmm_cuda(
    ordinal: usize,
    mixture: &GaussianMixture,
    param: Arc<dyn diffuse_core::Parameterization>,
    schedule: &diffuse_schedules::Builtin,
    spec: &SampleSpec,
    guidance: &Guidance,
) -> CliResult<(Array2<f32>, diffuse_core::SampleReport)> {
    if guidance.class.is_some() {
        return Err(CliError::Usage(
            "--class: class-conditional mixtures run on the CPU only for now (the mixture \
             kernel has no labels); use --device cpu"
                .into(),
        ));
    }
    let gpu = diffuse_cuda::CudaBackend::new(ordinal)?;
    let model = diffuse_cuda::CudaGmmDenoiser::new(&gpu, mixture.isotropic(), param)?;
    let result = guidance.sample(&gpu, &model, schedule, spec);
    model.check(&gpu)?;
    result
}

pub fn run(args: &SampleArgs) -> CliResult<()> {
    for path in std::iter::once(&args.out).chain(args.plot.as_ref()) {
        if !args.force && path.exists() {
            return Err(CliError::Exists(path.clone()));
        }
    }
    let spec = SampleSpec {
        solver: args.solver.clone(),
        steps: args.steps as usize,
        n: args.n as usize,
        seed: args.seed,
        grid: args.grid.clone(),
        eta: args.eta,
        noise: args.noise.map(|n| match n {
            crate::cli::NoiseArg::Philox => diffuse_solvers::NoiseKind::Philox,
            crate::cli::NoiseArg::Brownian => diffuse_solvers::NoiseKind::BrownianTree,
        }),
    };
    if let (Device::Cuda(_), Some(_)) = (args.device, &args.model) {
        return Err(CliError::Usage(format!(
            "--device {}: trained networks run on the CPU only for now (their GPU path, on \
             cuBLAS, is not written yet); use --device cpu, or --denoiser gmm:FILE.json on the GPU",
            args.device
        )));
    }
    let (x, report, sw) = match (&args.model, &args.denoiser) {
        (Some(path), _) => {
            let model = TrainedModel::load(path)?;
            let (x, report) = model.sample(&spec)?;
            let dataset = model.config.resolve()?.dataset;
            let sw = score(dataset, &x)?;
            (x, report, Some(sw))
        }
        (None, Some(spec_str)) => {
            let file = spec_str.strip_prefix("gmm:").ok_or_else(|| {
                CliError::Usage(format!("--denoiser '{spec_str}': expected gmm:FILE.json"))
            })?;
            let mixture = GaussianMixture::from_path(file)?;
            if mixture.dim() != 2 {
                return Err(CliError::Usage(format!(
                    "{file}: the mixture is {}-dimensional; sample writes [n, 2]",
                    mixture.dim()
                )));
            }
            let schedule = schedule_by_name(args.schedule.as_deref().unwrap_or("cosine"))?;
            let param: Arc<dyn diffuse_core::Parameterization> =
                Arc::from(diffuse_param::by_name("x0")?);
            let guidance = Guidance::from_args(args)?;
            let (x, report) = match args.device {
                Device::Cpu => guidance.sample(
                    &diffuse_core::CpuBackend::new(),
                    &GmmDenoiser::new(mixture, param),
                    &schedule,
                    &spec,
                )?,
                Device::Cuda(ordinal) => {
                    sample_gmm_cuda(ordinal, &mixture, param, &schedule, &spec, &guidance)?
                }
            };
            (x, report, None)
        }
        (None, None) => {
            return Err(CliError::Usage(
                "give --model FILE or --denoiser gmm:FILE.json".into(),
            ));
        }
    };
    write_file(&args.out, args.force, |w| {
        x.write_npy(w).map_err(|e| CliError::Npy(e.to_string()))
    })?;
    if let Some(path) = &args.plot {
        let title = format!(
            "{} · {} steps · NFE {}",
            args.solver, report.steps, report.nfe
        );
        let png = ScatterGrid::single(Panel::new(title, points(&x))).render_png()?;
        write_png(path, args.force, &png)?;
    }
    let summary = Summary {
        solver: args.solver.clone(),
        steps: report.steps,
        nfe: report.nfe,
        n: x.nrows(),
        out: args.out.display().to_string(),
        sw,
        plot: args.plot.as_ref().map(|p| p.display().to_string()),
    };
    print_result(args.format, &summary, |w: &mut dyn Write| {
        write!(
            w,
            "{} samples with {} ({} steps, NFE {}) → {}",
            summary.n, summary.solver, summary.steps, summary.nfe, summary.out
        )?;
        if let Some(sw) = summary.sw {
            write!(w, "; sliced Wasserstein to held-out data {sw:.4}")?;
        }
        writeln!(w)
    })
}

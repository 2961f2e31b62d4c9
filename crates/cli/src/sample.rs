//! `diffuse sample`: samples from a trained model or from the exact
//! denoiser of a Gaussian mixture, written as float32 .npy `[n, 2]`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use diffuse_nets::{GaussianMixture, GmmDenoiser};
use diffuse_train::{SampleSpec, TrainedModel, sample_on, sample_with, schedule_by_name, score};
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
) -> CliResult<(Array2<f32>, diffuse_core::SampleReport)> {
    let gpu = diffuse_cuda::CudaBackend::new(ordinal)?;
    let model = diffuse_cuda::CudaGmmDenoiser::new(
        &gpu,
        mixture.weights(),
        mixture.means(),
        mixture.stds(),
        param,
    )?;
    let result = sample_on(&gpu, &model, schedule, spec);
    model.check(&gpu)?;
    Ok(result?)
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
            let (x, report) = match args.device {
                Device::Cpu => sample_with(&GmmDenoiser::new(mixture, param), &schedule, &spec)?,
                Device::Cuda(ordinal) => {
                    sample_gmm_cuda(ordinal, &mixture, param, &schedule, &spec)?
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

//! `diffuse noise`: the public noise stream as a file or JSON.

use std::io::Write;

use ndarray_npy::WriteNpyExt;
use serde::Serialize;

use diffuse_core::{Backend, CpuBackend, NoiseStream};

use crate::cli::{NoiseArgs, NoiseFormat};
use crate::error::{CliError, CliResult};
use crate::output::write_file;

/// Most elements `diffuse noise` writes (8 GiB of f32).
const MAX_ELEMENTS: usize = 1 << 31;

#[derive(Serialize)]
struct NoiseJson<'a> {
    shape: &'a [usize],
    data: &'a [f32],
}

pub fn run(args: NoiseArgs) -> CliResult<()> {
    let format = match (args.format, &args.out) {
        (Some(f), _) => f,
        (None, Some(_)) => NoiseFormat::Npy,
        (None, None) => {
            return Err(CliError::Usage(
                "give --out FILE.npy, or --format json to print".into(),
            ));
        }
    };
    if format == NoiseFormat::Npy && args.out.is_none() {
        return Err(CliError::Usage("--format npy needs --out FILE.npy".into()));
    }
    let n = diffuse_core::backend::check_shape(&args.shape.0)?;
    if n > MAX_ELEMENTS {
        return Err(CliError::Usage(format!(
            "--shape {:?} has {n} elements; at most {MAX_ELEMENTS} are written",
            args.shape.0
        )));
    }
    let cpu = CpuBackend::new();
    let mut z = cpu.zeros(&args.shape.0)?;
    cpu.fill_noise(
        NoiseStream::new(args.seed, args.stream),
        args.offset,
        &mut z,
    )?;
    match (format, &args.out) {
        (NoiseFormat::Npy, Some(path)) => {
            let array = z.into_array();
            write_file(path, args.force, |w| {
                array.write_npy(w).map_err(|e| CliError::Npy(e.to_string()))
            })
        }
        (NoiseFormat::Json, Some(path)) => write_file(path, args.force, |w| {
            let json = NoiseJson {
                shape: &args.shape.0,
                data: z.as_slice(),
            };
            serde_json::to_writer(&mut *w, &json)?;
            writeln!(w).map_err(|e| CliError::Io {
                path: path.clone(),
                source: e,
            })
        }),
        (NoiseFormat::Json, None) => {
            let json = NoiseJson {
                shape: &args.shape.0,
                data: z.as_slice(),
            };
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            serde_json::to_writer(&mut out, &json)?;
            writeln!(out)
                .and_then(|()| out.flush())
                .map_err(|e| CliError::Io {
                    path: "<stdout>".into(),
                    source: e,
                })
        }
        (NoiseFormat::Npy, None) => unreachable!("checked above"),
    }
}

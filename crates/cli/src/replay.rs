//! `diffuse replay CASE.json`: reproduce a recorded diffusers or
//! k-diffusion run (conformance format) and print its error, or write the
//! result.

use diffuse_diffusers::parse_python_json;
use diffuse_diffusers::replay::{final_error, replay};
use serde::Serialize;

use crate::cli::ReplayArgs;
use crate::error::{CliError, CliResult};
use crate::output::write_file;

#[derive(Serialize)]
struct Out<'a> {
    timesteps: &'a [f64],
    sigmas: &'a [f64],
    x: &'a [Vec<f64>],
    nfe: usize,
}

pub fn run(args: &ReplayArgs) -> CliResult<()> {
    let text = std::fs::read_to_string(&args.case).map_err(|source| CliError::Io {
        path: args.case.clone(),
        source,
    })?;
    let case = parse_python_json(&text)
        .map_err(|e| CliError::Usage(format!("{}: {e}", args.case.display())))?;
    let r = replay(&case)?;
    let out = Out {
        timesteps: &r.timesteps,
        sigmas: &r.sigmas,
        x: &r.x,
        nfe: r.nfe,
    };
    match &args.out {
        Some(path) => write_file(path, args.force, |w| {
            serde_json::to_writer(&mut *w, &out)?;
            writeln!(w).map_err(|source| CliError::Io {
                path: path.clone(),
                source,
            })
        }),
        None => {
            if case.get("x_final").is_none() {
                return Err(CliError::Usage(format!(
                    "{} has no x_final to compare with; pass --out FILE to keep the result",
                    args.case.display()
                )));
            }
            let err = final_error(&case, &r)?;
            let want_nfe = case.get("num_model_evals").and_then(|v| v.as_u64());
            println!(
                "{}: solver {}, nfe {}{}, max |x − x_final| / max(1, |x_final|) = {err:.3e}",
                args.case.display(),
                r.solver,
                r.nfe,
                want_nfe.map_or(String::new(), |n| format!(" (recorded {n})")),
            );
            Ok(())
        }
    }
}

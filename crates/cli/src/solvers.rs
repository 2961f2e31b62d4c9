//! `diffuse solvers`: every solver and sampler by canonical name, with its
//! order, model evaluations per step and whether it draws noise.

use std::io::Write;

use diffuse_solvers::{by_name, deterministic_names, stochastic_names};
use serde::Serialize;

use crate::cli::SolversArgs;
use crate::error::CliResult;
use crate::output::print_result;

#[derive(Serialize)]
struct Entry {
    name: String,
    order: usize,
    nfe_per_step: usize,
    stochastic: bool,
}

pub fn run(args: &SolversArgs) -> CliResult<()> {
    let mut entries = Vec::new();
    for name in deterministic_names().into_iter().chain(stochastic_names()) {
        let method = by_name(name)?;
        entries.push(Entry {
            name: name.to_string(),
            order: method.order(),
            nfe_per_step: method.nfe_per_step(),
            stochastic: method.stochastic(),
        });
    }
    print_result(args.format, &entries, |out| table(out, &entries))
}

fn table(out: &mut dyn Write, entries: &[Entry]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:>5} {:>12} {:>10}",
        "solver", "order", "nfe/step", "stochastic"
    )?;
    for e in entries {
        writeln!(
            out,
            "{:<20} {:>5} {:>12} {:>10}",
            e.name,
            e.order,
            e.nfe_per_step,
            if e.stochastic { "yes" } else { "no" }
        )?;
    }
    Ok(())
}

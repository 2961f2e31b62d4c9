//! `diffuse`: the command line of the diffuse toolkit.
//!
//! Subcommands: `noise` writes the public noise stream, `bench step`
//! measures the fused step on this machine, `schedule` prints the inference
//! grid of a diffusers scheduler config or a built-in schedule, `replay`
//! reproduces a recorded diffusers / k-diffusion run, `orders` measures the
//! solvers' convergence orders, `train` trains a denoiser on 2-D data,
//! `sample` samples a trained model or a Gaussian mixture, `likelihood`
//! measures the bits/dim of data under a Gaussian mixture, `demo` (also
//! what `diffuse` with no arguments runs) trains, samples and scores in
//! about a minute. Errors are one line on stderr
//! and a non-zero exit status.

mod bench;
mod cli;
mod demo;
mod device;
mod error;
mod likelihood;
mod noise;
mod orders;
mod output;
mod plot;
mod replay;
mod sample;
mod schedule;
mod solvers;
mod train;

use clap::Parser;
use clap::error::ErrorKind;

fn main() {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                // clap's message, up to its usage section, on one line.
                let text = e.render().to_string();
                let line: Vec<&str> = text
                    .lines()
                    .take_while(|l| !l.trim().is_empty())
                    .map(str::trim)
                    .collect();
                eprintln!("{} (see `diffuse --help`)", line.join(" "));
                std::process::exit(2);
            }
        },
    };
    if let Err(e) = cli::run(args) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

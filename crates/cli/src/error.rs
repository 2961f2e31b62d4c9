//! The command line's errors: each prints as one line.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Core(#[from] diffuse_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} exists; pass --force to replace it")]
    Exists(PathBuf),
    #[error("{0}")]
    Usage(String),
    #[error("writing .npy: {0}")]
    Npy(String),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Train(#[from] diffuse_train::TrainError),
    #[error("plot: {0}")]
    Plot(#[from] crate::plot::PlotError),
}

pub type CliResult<T> = Result<T, CliError>;

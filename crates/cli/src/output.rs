//! Writing result files without losing what a user wrote: a temporary file
//! in the target directory, renamed into place only when complete, and never
//! over an existing file unless `--force` was given.

use std::io::Write;
use std::path::Path;

use crate::error::{CliError, CliResult};

/// Writes `path` atomically with `write`.
pub fn write_file(
    path: &Path,
    force: bool,
    write: impl FnOnce(&mut dyn Write) -> CliResult<()>,
) -> CliResult<()> {
    if !force && path.exists() {
        return Err(CliError::Exists(path.to_path_buf()));
    }
    let io = |source| CliError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".diffuse-");
    // A result file is an ordinary file (0644 before the umask), not the
    // owner-only 0600 of a temporary file.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        write(&mut w)?;
        w.flush().map_err(io)?;
    }
    if force {
        tmp.persist(path).map_err(|e| io(e.error))?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| {
            if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                CliError::Exists(path.to_path_buf())
            } else {
                io(e.error)
            }
        })?;
    }
    Ok(())
}

/// Prints a command's result on stdout: one JSON line, or the text that
/// `text` writes.
pub fn print_result<T: serde::Serialize>(
    format: crate::cli::Format,
    value: &T,
    text: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> CliResult<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let io = |source| CliError::Io {
        path: "<stdout>".into(),
        source,
    };
    match format {
        crate::cli::Format::Json => {
            serde_json::to_writer(&mut out, value)?;
            writeln!(out).map_err(io)
        }
        crate::cli::Format::Text => text(&mut out).map_err(io),
    }
}

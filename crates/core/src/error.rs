//! The one error type of diffuse-core, shared by the component crates.

/// Everything that can go wrong in diffuse's components. Bad input always
/// gives one of these, never a panic or a silent NaN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Tensors whose shapes should agree do not.
    #[error("shape mismatch in {op}: expected {expected:?}, found {found:?}")]
    ShapeMismatch {
        /// The operation that found the mismatch.
        op: &'static str,
        /// The shape it needed.
        expected: Vec<usize>,
        /// The shape it got.
        found: Vec<usize>,
    },
    /// A shape that no tensor can have.
    #[error("invalid shape {shape:?}: {reason}")]
    InvalidShape {
        /// The shape given.
        shape: Vec<usize>,
        /// Why it is invalid.
        reason: String,
    },
    /// A fused-step plan that is inconsistent or does not fit its call.
    #[error("invalid lincomb plan: {0}")]
    InvalidPlan(String),
    /// An argument or configuration value out of its domain.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument or configuration key.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A quantity is mathematically undefined where it was asked for (for
    /// example ε-prediction at zero signal-to-noise ratio).
    #[error("{what} is undefined {at}")]
    Undefined {
        /// The quantity.
        what: &'static str,
        /// Where (for example "at SNR = 0").
        at: String,
    },
    /// An infinite or NaN value where only finite ones are allowed.
    #[error("non-finite value in {0}")]
    NonFinite(String),
    /// An allocation failed.
    #[error("out of memory: cannot allocate {bytes} bytes")]
    OutOfMemory {
        /// The size of the failed request.
        bytes: usize,
    },
    /// A backend (device, driver, compiler) failed.
    #[error("backend {backend}: {message}")]
    Backend {
        /// The backend's name.
        backend: String,
        /// What failed.
        message: String,
    },
    /// A feature not available in this build or on this backend.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Reading or writing a file failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `Result` with diffuse's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

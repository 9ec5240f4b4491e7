//! The engine's error type. Every message names what is wrong and where (file and line when
//! there is one), so the CLI can print it as one line and the service can return it as a 4xx.

use std::path::Path;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed line in an input file.
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },

    /// A problem with a whole file (missing, unreadable, wrong format, too large).
    #[error("{path}: {message}")]
    File { path: String, message: String },

    /// Input that is well-formed but unusable (empty dataset, mismatched spec, bad parameter).
    #[error("{0}")]
    Invalid(String),

    /// A configuration setting outside its range, named by its path in the purification config
    /// (`unlearn.lr`), so a front end can point at the flag or field that sets it.
    #[error("{path} {requirement}")]
    Setting { path: String, requirement: String },

    /// A model weights file that does not match its spec or is unsafe to load.
    #[error("model {path}: {message}")]
    Weights { path: String, message: String },

    /// The job was cancelled between epochs.
    #[error("cancelled")]
    Cancelled,

    /// An error raised inside libtorch (shape mismatch, CUDA out of memory, ...).
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    pub fn parse(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Error::Parse { path: path.display().to_string(), line, message: message.into() }
    }

    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Error::File { path: path.display().to_string(), message: message.into() }
    }

    pub fn io(path: &Path, err: std::io::Error) -> Self {
        Error::file(path, err.to_string())
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Error::Invalid(message.into())
    }

    /// `path` must satisfy `requirement` ("must be at least 1, got 0").
    pub fn setting(path: &str, requirement: impl Into<String>) -> Self {
        Error::Setting { path: path.to_string(), requirement: requirement.into() }
    }

    pub fn weights(path: &Path, message: impl Into<String>) -> Self {
        Error::Weights { path: path.display().to_string(), message: message.into() }
    }

    /// Whether the failure comes from the input (never worth retrying) rather than from the
    /// machine (out of memory, I/O) or a cancellation.
    pub fn is_input_error(&self) -> bool {
        matches!(self, Error::Parse { .. } | Error::Invalid(_) | Error::Setting { .. } | Error::Weights { .. })
            || matches!(self, Error::File { .. })
    }
}

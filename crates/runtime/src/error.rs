//! The error type of every driver.

use std::io;
use std::path::PathBuf;

/// Why a driver operation failed. Messages name ids, programs and paths, never environment values
/// or file contents.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The instance id cannot be used as a directory name.
    #[error(
        "invalid instance id {0:?}: use 1-128 characters from A-Z, a-z, 0-9, '.', '_' and '-'"
    )]
    InvalidId(String),
    /// A spec file name is not a single path component.
    #[error("invalid file name {0:?}: use 1-128 characters from A-Z, a-z, 0-9, '.', '_' and '-'")]
    InvalidFileName(String),
    /// `start` was called for an instance that is starting or running.
    #[error("instance {0} is already running")]
    AlreadyRunning(String),
    /// `remove` was called for an instance that is starting or running.
    #[error("instance {0} is still running: stop it first")]
    StillRunning(String),
    /// The program could not be launched (missing, not executable, …).
    #[error("cannot start {program}: {source}", program = .program.display())]
    Spawn {
        /// The program of the spec.
        program: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// A file or directory operation of the driver failed.
    #[error("cannot {action} {path}: {source}", path = .path.display())]
    Io {
        /// What the driver was doing ("write", "create directory", …).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's reason.
        source: io::Error,
    },
    /// The user an instance runs as is missing, is root, or cannot reach or run something.
    #[error("{0}")]
    User(String),
    /// The runtime's API (a Kubernetes API server) refused or failed a request. The text names
    /// the request and the object, never file contents.
    #[error("{0}")]
    Api(String),
    /// A signal could not be delivered to an instance's process.
    #[error("cannot signal process {pid} of instance {id}: {source}")]
    Signal {
        /// The instance.
        id: String,
        /// Its process id.
        pid: u32,
        /// The operating system's reason.
        source: io::Error,
    },
}

impl RuntimeError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |source| RuntimeError::Io {
            action,
            path,
            source,
        }
    }
}

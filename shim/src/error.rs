//! The shim's domain error and its one mapping to gRPC codes (the codes
//! containerd's shim returns, because berthd and its clients branch on them).

use berth_snapshotter::MountError;

use crate::runtime::RuntimeError;
use crate::stdio::StdioError;

/// Why a shim operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such process, or it already exited
    #[error("{0}")]
    NotFound(String),
    /// the container or exec id exists already
    #[error("{0}")]
    AlreadyExists(String),
    /// not allowed in the process's current state
    #[error("{0}")]
    FailedPrecondition(String),
    /// a malformed request field
    #[error("{0}")]
    InvalidArgument(String),
    /// the OCI runtime failed
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// stdio setup failed
    #[error(transparent)]
    Stdio(#[from] StdioError),
    /// mounting or unmounting the rootfs failed
    #[error("rootfs: {0}")]
    Mount(#[from] MountError),
    /// a file in the bundle
    #[error("{context}: {source}")]
    Io {
        /// what was being done
        context: String,
        /// why it failed
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps an io error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }
}

/// Result of shim operations.
pub type Result<T> = std::result::Result<T, Error>;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        use tonic::Code;
        let code = match &e {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::Runtime(RuntimeError::Gone { .. }) => Code::NotFound,
            Error::Runtime(RuntimeError::Spawn { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Code::FailedPrecondition
            }
            Error::Stdio(StdioError::Uri { .. }) => Code::InvalidArgument,
            Error::Stdio(StdioError::Open { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Code::InvalidArgument
            }
            Error::Mount(MountError::UnsupportedKind(_) | MountError::Invalid(_)) => {
                Code::InvalidArgument
            }
            Error::Runtime(_) => Code::Unknown,
            _ => Code::Internal,
        };
        tonic::Status::new(code, e.to_string())
    }
}

//! Why a volume call failed.

use berth_api::ErrorKind;

/// A failure of berthd's volumes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such volume
    #[error("{0}")]
    NotFound(String),
    /// a malformed request; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// not allowed now (in use)
    #[error("{0}")]
    FailedPrecondition(String),
    /// metadata
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// the volume's directory
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// where
        path: std::path::PathBuf,
        /// why
        source: std::io::Error,
    },
    /// a bug
    #[error("internal: {0}")]
    Internal(String),
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.into())
    }
}

impl Error {
    /// The kind of failure, for the status the adapter answers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Store(e) => e.kind(),
            Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An I/O failure on `path`.
    pub(crate) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    }
}

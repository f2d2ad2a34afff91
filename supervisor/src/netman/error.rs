//! Why a network call failed.

use berth_api::ErrorKind;

/// A failure of berthd's networks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such network
    #[error("{0}")]
    NotFound(String),
    /// a network of that name (or bridge) exists
    #[error("{0}")]
    AlreadyExists(String),
    /// a malformed request; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// not allowed now (in use, built in)
    #[error("{0}")]
    FailedPrecondition(String),
    /// the CNI module failed
    #[error(transparent)]
    Cni(#[from] crate::network::Error),
    /// metadata
    #[error(transparent)]
    Store(#[from] crate::store::Error),
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
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Cni(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

//! The crate's error type and its coarse kind (berth-api's shared
//! [`ErrorKind`]), which callers map to gRPC codes. Keys, paths and other
//! values from a request or a layer are echoed shortened
//! (`berth_api::echo`), never whole.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use berth_api::echo::{Echo, EchoBytes};

use crate::mount::MountError;

/// What kind of failure an [`Error`] is: the kinds every Berth crate
/// shares, which the supervisor maps to the gRPC codes containerd returns.
pub use berth_api::ErrorKind;

/// Every failure of the snapshotters and of layer apply/diff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// unknown key in a namespace
    #[error("snapshot {} not found in namespace {namespace:?}", Echo(key))]
    NotFound {
        /// namespace
        namespace: String,
        /// key
        key: String,
    },
    /// key/name already used in the namespace
    #[error("snapshot {} already exists in namespace {namespace:?}", Echo(key))]
    AlreadyExists {
        /// namespace
        namespace: String,
        /// key
        key: String,
    },
    /// state does not allow the operation
    #[error("{0}")]
    FailedPrecondition(String),
    /// malformed request or refused layer content
    #[error("{0}")]
    InvalidArgument(String),
    /// filesystem error on a path
    #[error("{op} {}: {source}", EchoBytes(path.as_os_str().as_bytes()))]
    Io {
        /// what we were doing
        op: &'static str,
        /// on which path
        path: PathBuf,
        /// why
        source: io::Error,
    },
    /// metadata store failure
    #[error("metadata store: {0}")]
    Store(String),
    /// mount or unmount failure
    #[error(transparent)]
    Mount(#[from] MountError),
    /// a staged apply met an entry that depends on the layers below (a
    /// parent directory the layer does not list, a hard link to a lower
    /// file): apply it again once the parent is known
    #[error("layer needs its lower layers: {0}")]
    NeedsLowers(String),
    /// other internal failure
    #[error("{0}")]
    Internal(String),
}

impl Error {
    /// The coarse kind, for mapping to gRPC status codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::AlreadyExists { .. } => ErrorKind::AlreadyExists,
            Error::FailedPrecondition(_) | Error::NeedsLowers(_) => ErrorKind::FailedPrecondition,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Mount(MountError::Invalid(_) | MountError::UnsupportedKind(_)) => {
                ErrorKind::InvalidArgument
            }
            Error::Io { .. } | Error::Store(_) | Error::Mount(_) | Error::Internal(_) => {
                ErrorKind::Internal
            }
        }
    }

    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

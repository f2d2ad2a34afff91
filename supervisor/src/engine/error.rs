//! Why an engine call failed, and which kind of failure it is.

use std::path::PathBuf;

use berth_api::ErrorKind;

/// A failure of the container workflow.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such container (or image, with `--pull never`)
    #[error("{0}")]
    NotFound(String),
    /// the name is taken
    #[error("{0}")]
    AlreadyExists(String),
    /// a malformed request; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// not allowed in the container's state (or the host's: a port taken)
    #[error("{0}")]
    FailedPrecondition(String),
    /// the image pull failed
    #[error("pull {reference}: {message}")]
    Pull {
        /// what was pulled
        reference: String,
        /// its kind
        kind: ErrorKind,
        /// what the registry module said
        message: String,
    },
    /// a task verb failed
    #[error(transparent)]
    Tasks(#[from] crate::tasks::Error),
    /// a containerd container, lease or image record failed
    #[error(transparent)]
    Containers(#[from] crate::records::Error),
    /// a snapshot call failed
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
    /// reading or unpacking the image failed
    #[error(transparent)]
    Unpack(#[from] crate::images::unpack::Error),
    /// a network failed
    #[error(transparent)]
    Network(#[from] crate::netman::Error),
    /// a volume failed
    #[error(transparent)]
    Volume(#[from] crate::volumes::Error),
    /// the CNI module failed (network namespaces)
    #[error(transparent)]
    Cni(#[from] crate::network::Error),
    /// metadata
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a file of the container
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// a bug
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The kind of failure, for the status the adapter answers.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Pull { kind, .. } => *kind,
            Error::Tasks(e) => e.kind(),
            Error::Containers(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
            Error::Unpack(e) => e.kind(),
            Error::Network(e) => e.kind(),
            Error::Cni(e) => e.kind(),
            Error::Volume(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// An I/O failure on `path`.
    pub(super) fn io(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Io { what, path, source }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.into())
    }
}

/// Runs blocking work on tokio's blocking pool.
pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Error> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
}

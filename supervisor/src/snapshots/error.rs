//! Why a snapshot call failed, and which kind of failure it is.

/// Why a snapshot call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the request names no snapshotter (containerd's message)
    #[error("snapshotter argument missing")]
    Missing,
    /// the request names a snapshotter we do not serve
    #[error("snapshotter: {0:?} is not loaded (known: overlayfs, native)")]
    Unknown(String),
    /// the request is malformed; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// the snapshotter refused or failed
    #[error(transparent)]
    Snapshot(#[from] berth_snapshotter::Error),
    /// lease bookkeeping failed
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a filter string was refused
    #[error(transparent)]
    Filter(#[from] crate::filters::Error),
    /// a blocking task panicked or was cancelled
    #[error("snapshot task failed: {0}")]
    Join(String),
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        use berth_api::ErrorKind as K;
        match self {
            Error::Missing | Error::Unknown(_) | Error::InvalidArgument(_) => K::InvalidArgument,
            Error::Snapshot(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Filter(e) => e.kind(),
            Error::Join(_) => K::Internal,
        }
    }
}

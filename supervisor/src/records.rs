//! What the record services (namespaces, leases, containers, images) can
//! fail with: their records are metadata, a `sync` delete waits for a
//! collection, a namespace asks the snapshotters, and a record can be
//! refused in its current state.

/// Why a record service call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the metadata store refused or failed
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a collection asked for with `sync` failed
    #[error(transparent)]
    Gc(#[from] crate::gc::Error),
    /// the snapshotters could not be asked
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
    /// not allowed in the record's current state
    #[error("{0}")]
    FailedPrecondition(String),
}

impl From<crate::filters::Error> for Error {
    fn from(e: crate::filters::Error) -> Self {
        Error::Store(e.into())
    }
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Store(e) => e.kind(),
            Error::Gc(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
            Error::FailedPrecondition(_) => berth_api::ErrorKind::FailedPrecondition,
        }
    }
}

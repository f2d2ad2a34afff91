//! What can go wrong in the content store, and which kind each failure is
//! (the code containerd returns).

use std::path::PathBuf;

use berth_api::Digest;

/// A content store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the namespace does not record this digest
    #[error("content digest {0}: not found")]
    NotFound(Digest),
    /// no ingest with this ref in the namespace
    #[error("ingest ref {0:?}: not found")]
    IngestNotFound(String),
    /// the namespace already records this digest
    #[error("content {0}: already exists")]
    AlreadyExists(Digest),
    /// another writer holds the ref (containerd: Unavailable)
    #[error("ref {reference} locked for {held_ms}ms")]
    Locked {
        /// the ingest ref
        reference: String,
        /// for how long it has been held
        held_ms: u128,
    },
    /// the request is malformed; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// size or digest check failed at commit, or a similar state conflict
    #[error("{0}")]
    FailedPrecondition(String),
    /// a write at an offset other than the ingest's current one
    #[error("{0}")]
    OutOfRange(String),
    /// a filesystem step failed
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the caller's reader failed
    #[error("reading source: {0}")]
    Reader(String),
    /// the metadata store failed or refused
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a blocking task died
    #[error("blocking task: {0}")]
    Task(String),
}

impl Error {
    /// The kind of failure, for the code containerd answers (a held ref is
    /// Unavailable, a write at the wrong offset OutOfRange).
    pub fn kind(&self) -> berth_api::ErrorKind {
        use berth_api::ErrorKind as K;
        match self {
            Error::NotFound(_) | Error::IngestNotFound(_) => K::NotFound,
            Error::AlreadyExists(_) => K::AlreadyExists,
            Error::Locked { .. } => K::Unavailable,
            Error::InvalidArgument(_) => K::InvalidArgument,
            Error::FailedPrecondition(_) => K::FailedPrecondition,
            Error::OutOfRange(_) => K::OutOfRange,
            Error::Store(e) => e.kind(),
            Error::Io { .. } | Error::Reader(_) | Error::Task(_) => K::Internal,
        }
    }
}

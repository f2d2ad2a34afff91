//! Why a task operation failed, and which kind of failure it is.

use std::path::PathBuf;

use berth_api::ErrorKind;

use super::process::Refusal;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such task or process
    #[error("{0}")]
    NotFound(String),
    /// the task or process exists
    #[error("{0}")]
    AlreadyExists(String),
    /// a malformed request; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// not allowed now (e.g. an unknown runtime, a missing binary, a
    /// process in the wrong state)
    #[error("{0}")]
    FailedPrecondition(String),
    /// not supported by berthd
    #[error("{0}")]
    Unimplemented(String),
    /// a process did not end in the time given
    #[error("{0}")]
    DeadlineExceeded(String),
    /// the shim could not be started or reached
    #[error("shim: {0}")]
    Launch(String),
    /// the shim refused or failed a call (its kind and words are kept)
    #[error("{message}")]
    Shim {
        /// what the shim's code says
        kind: ErrorKind,
        /// what the shim said
        message: String,
    },
    /// the task's shim died; the task is stopped (137)
    #[error("task {0:?}: its shim died; the task is stopped")]
    ShimDied(String),
    /// a bundle file
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// metadata
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a filter string was refused
    #[error(transparent)]
    Filter(#[from] crate::filters::Error),
    /// a bug
    #[error("internal: {0}")]
    Internal(String),
}

/// The error for a verb the known state of task `id`'s init process
/// refuses (the shim's words and codes).
pub(super) fn refused(id: &str, r: Refusal) -> Error {
    match r {
        Refusal::Finished => Error::NotFound(format!("process {id:?} already finished")),
        Refusal::NotCreated => {
            Error::FailedPrecondition(format!("process {id:?} is not in created state"))
        }
    }
}

impl Error {
    /// The kind of failure, for the code containerd answers; a shim's
    /// refusal keeps the shim's code.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) | Error::ShimDied(_) => ErrorKind::NotFound,
            Error::AlreadyExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::Unimplemented(_) => ErrorKind::Unimplemented,
            Error::DeadlineExceeded(_) => ErrorKind::DeadlineExceeded,
            Error::Shim { kind, .. } => *kind,
            Error::Store(e) => e.kind(),
            Error::Filter(e) => e.kind(),
            Error::Launch(_) | Error::Io { .. } | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

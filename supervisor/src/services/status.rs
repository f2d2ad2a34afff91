//! The one place domain errors become gRPC statuses, with the codes
//! containerd returns (its clients branch on them).

use tonic::{Code, Status};

use crate::store;

impl From<store::Error> for Status {
    fn from(e: store::Error) -> Self {
        use store::Error as E;
        let code = match &e {
            E::NotFound { .. } => Code::NotFound,
            E::AlreadyExists { .. } => Code::AlreadyExists,
            E::InvalidArgument(_) => Code::InvalidArgument,
            E::FailedPrecondition(_) => Code::FailedPrecondition,
            E::Db(_) | E::Codec(_) | E::SchemaTooNew { .. } => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "metadata failure");
        }
        Status::new(code, e.to_string())
    }
}

/// A snapshotter error as the status containerd returns for it.
pub fn snapshotter(e: berth_snapshotter::Error) -> Status {
    {
        use berth_snapshotter::ErrorKind as K;
        let code = match e.kind() {
            K::NotFound => Code::NotFound,
            K::AlreadyExists => Code::AlreadyExists,
            K::FailedPrecondition => Code::FailedPrecondition,
            K::InvalidArgument => Code::InvalidArgument,
            K::Internal => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "snapshotter failure");
        }
        Status::new(code, e.to_string())
    }
}

impl From<crate::snapshots::Error> for Status {
    fn from(e: crate::snapshots::Error) -> Self {
        use crate::snapshots::Error as E;
        match e {
            E::Unknown(_) => Status::invalid_argument(e.to_string()),
            E::Snapshot(e) => snapshotter(e),
            E::Store(e) => e.into(),
            E::Join(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<crate::gc::Error> for Status {
    fn from(e: crate::gc::Error) -> Self {
        tracing::error!(error = %e, "garbage collection failed");
        Status::internal(e.to_string())
    }
}

impl From<crate::content::Error> for Status {
    fn from(e: crate::content::Error) -> Self {
        use crate::content::Error as E;
        let code = match &e {
            E::NotFound(_) | E::IngestNotFound(_) => Code::NotFound,
            E::AlreadyExists(_) => Code::AlreadyExists,
            E::Locked { .. } => Code::Unavailable,
            E::InvalidArgument(_) => Code::InvalidArgument,
            E::FailedPrecondition(_) => Code::FailedPrecondition,
            E::OutOfRange(_) => Code::OutOfRange,
            E::Store(inner) => return store_error_ref(inner, &e),
            E::Io { .. } | E::Reader(_) | E::Task(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "content store failure");
        }
        Status::new(code, e.to_string())
    }
}

/// The code a wrapped metadata error maps to, with the outer message.
fn store_error_ref(inner: &store::Error, outer: &crate::content::Error) -> Status {
    use store::Error as E;
    let code = match inner {
        E::NotFound { .. } => Code::NotFound,
        E::AlreadyExists { .. } => Code::AlreadyExists,
        E::InvalidArgument(_) => Code::InvalidArgument,
        E::FailedPrecondition(_) => Code::FailedPrecondition,
        E::Db(_) | E::Codec(_) | E::SchemaTooNew { .. } => {
            tracing::error!(error = %outer, "metadata failure");
            Code::Internal
        }
    };
    Status::new(code, outer.to_string())
}

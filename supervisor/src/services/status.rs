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
    let kind = e.kind();
    if kind.is_internal() {
        tracing::error!(error = %e, "snapshotter failure");
    }
    berth_api::to_status(kind, e.to_string())
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

impl From<crate::images::layers::Error> for Status {
    fn from(e: crate::images::layers::Error) -> Self {
        use crate::images::layers::Error as E;
        match e {
            E::DigestMismatch { .. } | E::DiffIdMismatch { .. } => {
                Status::failed_precondition(e.to_string())
            }
            E::Content(c) => c.into(),
            E::Apply { ref source, .. } => berth_api::to_status(source.kind(), e.to_string()),
            E::Io { .. } | E::Join(_) => {
                tracing::error!(error = %e, "layer failure");
                Status::internal(e.to_string())
            }
        }
    }
}

impl From<crate::images::unpack::Error> for Status {
    fn from(e: crate::images::unpack::Error) -> Self {
        use crate::images::unpack::Error as E;
        match e {
            E::Invalid(_) => Status::invalid_argument(e.to_string()),
            E::Layer(e) => e.into(),
            E::Content(e) => e.into(),
            E::Snapshots(e) => e.into(),
            E::Join(_) => Status::internal(e.to_string()),
        }
    }
}

impl From<crate::images::import::Error> for Status {
    fn from(e: crate::images::import::Error) -> Self {
        use crate::images::archive::Error as A;
        use crate::images::import::Error as E;
        match e {
            E::Invalid(_) | E::Archive(A::Tar(_)) => Status::invalid_argument(e.to_string()),
            E::Archive(A::Content { ref source, .. }) => {
                let code = Status::from(clone_content_kind(source)).code();
                Status::new(code, e.to_string())
            }
            E::Archive(A::Store(e)) | E::Store(e) => e.into(),
            E::Unpack(e) => e.into(),
            E::Content(e) => e.into(),
            E::Join(_) => Status::internal(e.to_string()),
        }
    }
}

/// A content error of the same kind (only the kind matters for the code).
fn clone_content_kind(e: &crate::content::Error) -> crate::content::Error {
    use crate::content::Error as C;
    match e {
        C::NotFound(d) => C::NotFound(d.clone()),
        C::AlreadyExists(d) => C::AlreadyExists(d.clone()),
        C::InvalidArgument(m) => C::InvalidArgument(m.clone()),
        C::FailedPrecondition(m) => C::FailedPrecondition(m.clone()),
        _ => C::Task(e.to_string()),
    }
}

impl From<crate::images::export::Error> for Status {
    fn from(e: crate::images::export::Error) -> Self {
        use crate::images::export::Error as E;
        match e {
            E::Store(e) => e.into(),
            E::Unpack(e) => e.into(),
            E::Write(_) => Status::unavailable(e.to_string()),
        }
    }
}

impl From<&crate::registry::Error> for Status {
    fn from(e: &crate::registry::Error) -> Self {
        use crate::content::Error as C;
        use crate::registry::Error as E;
        let code = match e {
            E::InvalidArgument(_) => Code::InvalidArgument,
            E::Unauthenticated { .. } => Code::Unauthenticated,
            E::Denied { .. } => Code::PermissionDenied,
            E::NotFound(_) | E::NoPlatform { .. } => Code::NotFound,
            E::ManifestTooLarge { .. } | E::BadManifest(_) | E::Mismatch { .. } => {
                Code::FailedPrecondition
            }
            E::Registry { .. } => Code::Unavailable,
            E::Unpack { .. } => Code::FailedPrecondition,
            E::Content(c) => match c {
                C::NotFound(_) | C::IngestNotFound(_) => Code::NotFound,
                C::AlreadyExists(_) => Code::AlreadyExists,
                C::Locked { .. } => Code::Unavailable,
                C::InvalidArgument(_) => Code::InvalidArgument,
                C::FailedPrecondition(_) => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            E::Store(s) => match s {
                store::Error::NotFound { .. } => Code::NotFound,
                store::Error::AlreadyExists { .. } => Code::AlreadyExists,
                store::Error::InvalidArgument(_) => Code::InvalidArgument,
                store::Error::FailedPrecondition(_) => Code::FailedPrecondition,
                _ => Code::Internal,
            },
            E::Task(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(error = %e, "registry transfer failure");
        }
        Status::new(code, e.to_string())
    }
}

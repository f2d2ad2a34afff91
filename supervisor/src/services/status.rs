//! The one place domain errors become gRPC statuses: every domain error
//! says which kind it is (`kind()`), and berth-api's `to_status` gives the
//! code containerd returns for that kind (its clients branch on them).

use berth_api::ErrorKind;
use tonic::Status;

/// The status for an error of `kind`; failures of berthd itself are
/// logged here, once.
fn status(kind: ErrorKind, e: &dyn std::fmt::Display) -> Status {
    if kind.is_internal() {
        tracing::error!(error = %e, "internal failure");
    }
    berth_api::to_status(kind, e.to_string())
}

macro_rules! statuses {
    ($($ty:ty),* $(,)?) => {$(
        impl From<$ty> for Status {
            fn from(e: $ty) -> Self {
                status(e.kind(), &e)
            }
        }
    )*};
}

statuses!(
    crate::store::Error,
    crate::content::Error,
    crate::snapshots::Error,
    crate::gc::Error,
    crate::events::Error,
    crate::filters::Error,
    crate::records::Error,
    crate::images::layers::Error,
    crate::images::import::Error,
    crate::images::export::Error,
    crate::registry::Error,
    crate::tasks::Error,
    crate::engine::Error,
    crate::netman::Error,
    crate::volumes::Error,
);

impl From<&crate::registry::Error> for Status {
    fn from(e: &crate::registry::Error) -> Self {
        status(e.kind(), e)
    }
}

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

//! The error kinds every crate shares, modelled on containerd's `errdefs`,
//! and the one map from a kind to a gRPC status.
//!
//! Domain errors in every crate say which kind they are (`kind()`); an
//! adapter turns a kind and a message into a [`tonic::Status`] with
//! [`to_status`] and nothing else, so each kind has the code containerd's
//! clients branch on, everywhere. A status coming back from a peer (the
//! shim) is turned into a kind with [`ErrorKind::from_code`] and keeps its
//! code when it is passed on.

use tonic::{Code, Status};

/// What kind of failure an error is (containerd's errdefs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// the object does not exist
    NotFound,
    /// the name or id is taken
    AlreadyExists,
    /// the request itself is malformed; the message names the field
    InvalidArgument,
    /// not allowed in the object's current state
    FailedPrecondition,
    /// busy or unreachable for now; the caller may retry
    Unavailable,
    /// not supported by this server
    Unimplemented,
    /// credentials missing or refused
    Unauthenticated,
    /// credentials valid but not allowed
    PermissionDenied,
    /// an offset or size outside what exists
    OutOfRange,
    /// the caller cancelled
    Canceled,
    /// a deadline passed
    DeadlineExceeded,
    /// a limit was reached
    ResourceExhausted,
    /// a conflicting change won
    Aborted,
    /// bytes were lost or corrupted
    DataLoss,
    /// a failure of the server itself: I/O, metadata, a bug
    Internal,
    /// nothing more is known
    Unknown,
}

impl ErrorKind {
    /// The gRPC code containerd answers for this kind.
    pub const fn code(self) -> Code {
        match self {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::AlreadyExists => Code::AlreadyExists,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Unimplemented => Code::Unimplemented,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::OutOfRange => Code::OutOfRange,
            ErrorKind::Canceled => Code::Cancelled,
            ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::Aborted => Code::Aborted,
            ErrorKind::DataLoss => Code::DataLoss,
            ErrorKind::Internal => Code::Internal,
            ErrorKind::Unknown => Code::Unknown,
        }
    }

    /// The kind of a status a peer answered (`Ok` has none: Unknown).
    pub const fn from_code(code: Code) -> Self {
        match code {
            Code::NotFound => ErrorKind::NotFound,
            Code::AlreadyExists => ErrorKind::AlreadyExists,
            Code::InvalidArgument => ErrorKind::InvalidArgument,
            Code::FailedPrecondition => ErrorKind::FailedPrecondition,
            Code::Unavailable => ErrorKind::Unavailable,
            Code::Unimplemented => ErrorKind::Unimplemented,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::OutOfRange => ErrorKind::OutOfRange,
            Code::Cancelled => ErrorKind::Canceled,
            Code::DeadlineExceeded => ErrorKind::DeadlineExceeded,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::Aborted => ErrorKind::Aborted,
            Code::DataLoss => ErrorKind::DataLoss,
            Code::Internal => ErrorKind::Internal,
            Code::Unknown | Code::Ok => ErrorKind::Unknown,
        }
    }

    /// True for failures of the server itself (worth an error log line).
    pub const fn is_internal(self) -> bool {
        matches!(self, ErrorKind::Internal | ErrorKind::Unknown)
    }
}

/// The status a client gets for an error of `kind` saying `message`.
pub fn to_status(kind: ErrorKind, message: impl Into<String>) -> Status {
    Status::new(kind.code(), message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table containerd's clients rely on: each kind, its code, and
    /// back again.
    #[test]
    fn every_kind_has_containerds_code_and_round_trips() {
        let table = [
            (ErrorKind::NotFound, Code::NotFound),
            (ErrorKind::AlreadyExists, Code::AlreadyExists),
            (ErrorKind::InvalidArgument, Code::InvalidArgument),
            (ErrorKind::FailedPrecondition, Code::FailedPrecondition),
            (ErrorKind::Unavailable, Code::Unavailable),
            (ErrorKind::Unimplemented, Code::Unimplemented),
            (ErrorKind::Unauthenticated, Code::Unauthenticated),
            (ErrorKind::PermissionDenied, Code::PermissionDenied),
            (ErrorKind::OutOfRange, Code::OutOfRange),
            (ErrorKind::Canceled, Code::Cancelled),
            (ErrorKind::DeadlineExceeded, Code::DeadlineExceeded),
            (ErrorKind::ResourceExhausted, Code::ResourceExhausted),
            (ErrorKind::Aborted, Code::Aborted),
            (ErrorKind::DataLoss, Code::DataLoss),
            (ErrorKind::Internal, Code::Internal),
            (ErrorKind::Unknown, Code::Unknown),
        ];
        for (kind, code) in table {
            assert_eq!(kind.code(), code, "{kind:?}");
            assert_eq!(ErrorKind::from_code(code), kind, "{code:?}");
            let s = to_status(kind, format!("{kind:?} happened"));
            assert_eq!(s.code(), code);
            assert_eq!(s.message(), format!("{kind:?} happened"));
        }
        assert_eq!(ErrorKind::from_code(Code::Ok), ErrorKind::Unknown);
        assert!(ErrorKind::Internal.is_internal());
        assert!(!ErrorKind::NotFound.is_internal());
    }
}

//! The one error type of berthctl. Its `Display` is the whole line printed
//! after `berthctl: `: what failed, then why, then the gRPC code.

use std::fmt;

/// Everything a command can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon could not be reached.
    #[error("cannot connect to berthd at {address}: {reason}")]
    Connect {
        /// the socket path
        address: String,
        /// the cause, with its source chain
        reason: String,
    },
    /// A call reached the daemon and was refused.
    #[error("{what}: {} ({})", status_message(.status), CodeName(.status.code()))]
    Rpc {
        /// what we asked for, e.g. `delete namespace "x"`
        what: String,
        /// the daemon's answer
        status: tonic::Status,
    },
    /// The input on the command line was refused before any call.
    #[error("{0}")]
    Input(String),
    /// A local read or write failed (stdin, stdout, a file).
    #[error("{what}: {source}")]
    Io {
        /// what we were doing
        what: String,
        /// the cause
        source: std::io::Error,
    },
    /// The daemon answered something we cannot make sense of.
    #[error("{0}")]
    Protocol(String),
    /// Some of several independent operations failed; each was reported.
    #[error("{failed} of {total} operations failed")]
    Partial {
        /// how many failed
        failed: usize,
        /// how many were tried
        total: usize,
    },
}

/// Result alias for berthctl.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// True for a write to a closed pipe (`berthctl ... | head`), which is
    /// not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Self::Io { source, .. } if source.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// The gRPC code, when the daemon refused the call.
    pub fn code(&self) -> Option<tonic::Code> {
        match self {
            Self::Rpc { status, .. } => Some(status.code()),
            _ => None,
        }
    }
}

/// The status message on one line; transport failures carry the cause in
/// their source chain rather than the message.
fn status_message(status: &tonic::Status) -> String {
    let mut msg = status.message().to_string();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            if !msg.is_empty() {
                msg.push_str(": ");
            }
            msg.push_str(&s_msg);
        }
        source = s.source();
    }
    if msg.is_empty() {
        msg = match status.code() {
            tonic::Code::Unimplemented => "this berthd does not serve that call".into(),
            _ => "no message".into(),
        };
    }
    msg.replace('\n', " ")
}

/// A gRPC code spelled as containerd's docs and tonic's Debug spell it
/// (`NotFound`, `InvalidArgument`, ...).
struct CodeName(tonic::Code);

impl fmt::Display for CodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Adds "what failed" to a refused call.
pub trait RpcContext<T> {
    /// Wraps a refused call's status with `what`.
    fn context(self, what: impl Into<String>) -> Result<T>;
    /// Like [`RpcContext::context`], with `what` computed only on failure.
    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T>;
}

impl<T> RpcContext<T> for std::result::Result<T, tonic::Status> {
    fn context(self, what: impl Into<String>) -> Result<T> {
        self.map_err(|status| Error::Rpc {
            what: what.into(),
            status,
        })
    }

    fn with_context<S: Into<String>>(self, what: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|status| Error::Rpc {
            what: what().into(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rpc_error_is_one_line_with_code() {
        let e: Result<()> = Err(tonic::Status::not_found("namespace \"x\": not found\nmore"))
            .context("delete namespace \"x\"");
        let line = e.unwrap_err().to_string();
        assert_eq!(
            line,
            "delete namespace \"x\": namespace \"x\": not found more (NotFound)"
        );
    }
}

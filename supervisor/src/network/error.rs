//! What can go wrong in the network module, each error with its shared
//! [`ErrorKind`], which the adapters (the CRI and berth's networks
//! service) turn into a gRPC status.

use std::io;
use std::path::PathBuf;

/// The shared error kinds (containerd's errdefs); `berth_api::to_status`
/// turns one into the gRPC code the adapters answer.
pub use berth_api::ErrorKind;

/// A failure of the network module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no valid network config in the conf dir (the CRI's NetworkReady=false)
    #[error("cni config not initialized: no valid network config in {dir}{detail}")]
    NotInitialized {
        /// the conf dir scanned
        dir: PathBuf,
        /// why the files there were refused, if any were found
        detail: String,
    },
    /// no config of this network name in the conf dir, and nothing cached
    #[error("network {name:?}: not found in {dir}")]
    NetworkNotFound {
        /// the network name asked for
        name: String,
        /// the conf dir scanned
        dir: PathBuf,
    },
    /// a config file (or bytes) that cannot be used
    #[error("cni config {source_name}: {reason}")]
    InvalidConfig {
        /// the file (or "<bytes>")
        source_name: String,
        /// what is wrong with it
        reason: String,
    },
    /// a plugin named by the config is in none of the bin dirs
    #[error("cni plugin {plugin:?} not found in {dirs:?}")]
    PluginNotFound {
        /// the plugin type
        plugin: String,
        /// the dirs searched
        dirs: Vec<PathBuf>,
    },
    /// a plugin ran and reported an error in the CNI error format
    #[error(
        "cni plugin {plugin} failed ({command}): {msg} (code {code}){}",
        details_suffix(details)
    )]
    Plugin {
        /// the plugin type
        plugin: String,
        /// ADD, CHECK or DEL
        command: &'static str,
        /// the CNI error code (1-99 well known, 100+ plugin-specific)
        code: u32,
        /// the plugin's message
        msg: String,
        /// the plugin's details, may be empty
        details: String,
    },
    /// a plugin could not be run, died, or answered something unreadable
    #[error("cni plugin {plugin} ({command}): {reason}")]
    PluginExec {
        /// the plugin type
        plugin: String,
        /// ADD, CHECK or DEL
        command: &'static str,
        /// what went wrong
        reason: String,
    },
    /// a plugin did not finish in time and was killed
    #[error("cni plugin {plugin} ({command}): timed out after {after:?}")]
    Timeout {
        /// the plugin type
        plugin: String,
        /// ADD, CHECK or DEL
        command: &'static str,
        /// the limit
        after: std::time::Duration,
    },
    /// the request is malformed; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// CHECK on an attachment with no cached result, or the like
    #[error("{0}")]
    FailedPrecondition(String),
    /// no cached attachment for this container and interface
    #[error("network {network:?}: no attachment of container {container_id:?} on {ifname:?}")]
    AttachmentNotFound {
        /// the network name
        network: String,
        /// the container ID
        container_id: String,
        /// the interface name
        ifname: String,
    },
    /// a network namespace path that does not exist or is not one
    #[error("network namespace {0}: not found")]
    NetnsNotFound(PathBuf),
    /// a network namespace of that name is already mounted
    #[error("network namespace {0}: already exists")]
    NetnsExists(PathBuf),
    /// a filesystem step failed
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: io::Error,
    },
    /// a system call failed
    #[error("{what}: {source}")]
    Sys {
        /// what was being done
        what: String,
        /// the cause
        source: io::Error,
    },
    /// a blocking task or helper thread died
    #[error("blocking task: {0}")]
    Task(String),
}

fn details_suffix(details: &str) -> String {
    if details.is_empty() {
        String::new()
    } else {
        format!(": {details}")
    }
}

impl Error {
    /// The coarse kind, for mapping to protocol codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotInitialized { .. } | Error::PluginNotFound { .. } => {
                ErrorKind::FailedPrecondition
            }
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::NetworkNotFound { .. }
            | Error::AttachmentNotFound { .. }
            | Error::NetnsNotFound(_) => ErrorKind::NotFound,
            Error::NetnsExists(_) => ErrorKind::AlreadyExists,
            Error::InvalidConfig { .. } | Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::Plugin { code, .. } => match code {
                // incompatible version, unsupported field, invalid
                // environment, undecodable input, invalid network config
                1 | 2 | 4 | 6 | 7 => ErrorKind::InvalidArgument,
                3 => ErrorKind::NotFound,
                11 => ErrorKind::Unavailable,
                _ => ErrorKind::Internal,
            },
            Error::Timeout { .. } => ErrorKind::DeadlineExceeded,
            Error::PluginExec { .. } | Error::Io { .. } | Error::Sys { .. } | Error::Task(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// Whether a DEL may treat this plugin failure as "already gone", as
    /// containerd does on top of libcni: CNI code 3 (container unknown) or
    /// a message saying something was not found.
    pub fn is_gone(&self) -> bool {
        match self {
            Error::Plugin {
                code, msg, details, ..
            } => *code == 3 || mentions_not_found(msg) || mentions_not_found(details),
            Error::PluginExec { reason, .. } => mentions_not_found(reason),
            _ => false,
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            what,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn sys(what: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Sys {
            what: what.into(),
            source: source.into(),
        }
    }
}

fn mentions_not_found(text: &str) -> bool {
    let text = text.to_ascii_lowercase();
    text.contains("not found") || text.contains("no such file or directory")
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Task(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(code: u32, msg: &str) -> Error {
        Error::Plugin {
            plugin: "bridge".into(),
            command: "DEL",
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    #[test]
    fn plugin_codes_map_to_kinds() {
        assert_eq!(plugin(7, "bad").kind(), ErrorKind::InvalidArgument);
        assert_eq!(plugin(3, "gone").kind(), ErrorKind::NotFound);
        assert_eq!(plugin(11, "busy").kind(), ErrorKind::Unavailable);
        assert_eq!(plugin(999, "x").kind(), ErrorKind::Internal);
    }

    #[test]
    fn gone_is_code_3_or_not_found_text() {
        assert!(plugin(3, "anything").is_gone());
        assert!(plugin(999, "Link eth0 Not Found").is_gone());
        assert!(!plugin(5, "permission denied").is_gone());
        assert!(!Error::InvalidArgument("not found".into()).is_gone());
    }

    #[test]
    fn messages_name_what_failed() {
        let e = Error::PluginNotFound {
            plugin: "nosuch".into(),
            dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
        };
        let text = e.to_string();
        assert!(
            text.contains("\"nosuch\"") && text.contains("/opt/cni/bin"),
            "{text}"
        );
        let e = Error::Plugin {
            plugin: "bridge".into(),
            command: "ADD",
            code: 7,
            msg: "bad bridge".into(),
            details: "no name".into(),
        };
        assert_eq!(
            e.to_string(),
            "cni plugin bridge failed (ADD): bad bridge (code 7): no name"
        );
    }
}

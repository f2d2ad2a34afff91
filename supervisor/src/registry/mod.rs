//! Pull and push of images over the OCI distribution API, done by berthd
//! itself so thin clients (berthctl, the CRI endpoint) never move bytes.
//!
//! - [`source`]: the pull side, our own GETs over reqwest and rustls
//!   through every hosts.toml endpoint in order (headers, override_path,
//!   fallback to the next endpoint; anonymous, basic and bearer-token auth).
//! - [`remote`]: the push side (the `oci-client` crate; plain HTTP for
//!   hosts the config lists or when a call asks for it).
//! - [`fetch`]: one blob streamed into the content store through a stable
//!   ingest ref, so an interrupted pull resumes where it stopped.
//! - [`pull`] / [`push`]: the walks over manifests and indexes.
//! - [`inflight`]: concurrent pulls of one image share one download.
//!
//! Credentials come with each call and live only as long as it does: they
//! are never logged (their `Debug` is redacted) and never stored.

pub mod challenge;
pub mod fetch;
pub mod hosts;
pub mod inflight;
pub mod progress;
pub mod pull;
pub mod push;
pub mod remote;
pub mod source;

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_api::oci::DocumentError;
use berth_api::Digest;

pub use progress::{BlobKind, BlobProgress, BlobState, Phase, Progress};

/// Registry settings from berthd's config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Hosts (`host[:port]`) reached over plain HTTP.
    pub insecure: Vec<String>,
    /// Extra CA certificate (PEM) trusted per host, on top of the system roots.
    pub ca_files: BTreeMap<String, PathBuf>,
    /// containerd's `hosts.toml` directory (`registry_config_path`): where
    /// each registry host is really reached.
    pub hosts_dir: Option<PathBuf>,
}

impl Options {
    /// The registry settings of `config`.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            insecure: config.insecure_registries.clone(),
            ca_files: config.registry_ca_files.clone(),
            hosts_dir: Some(config.registry_config_path.clone()),
        }
    }
}

/// Credentials for one call. `Debug` never shows the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name for basic auth (or for the token service).
    pub username: String,
    /// Its password.
    pub password: String,
    /// A bearer token used as is (instead of user and password).
    pub token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .field(
                "token",
                &if self.token.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish()
    }
}

impl Credentials {
    /// A one-way fingerprint, so pulls with different credentials never
    /// share a download (and the secret is not kept as a map key).
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        for part in [&self.username, &self.password, &self.token] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        format!("{:x}", h.finalize())
    }
}

/// Why a pull or push failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the request is malformed; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// the registry wants credentials, or refused the ones given
    #[error("registry {registry}: authentication failed (missing or wrong credentials)")]
    Unauthenticated {
        /// the registry host
        registry: String,
    },
    /// the credentials are valid but not allowed to do this
    #[error("registry {registry}: access denied: {detail}")]
    Denied {
        /// the registry host
        registry: String,
        /// what the registry said
        detail: String,
    },
    /// the reference, or a blob it needs, does not exist
    #[error("{0}: not found")]
    NotFound(String),
    /// no index entry serves the wanted platform
    #[error("{reference}: no manifest for platform {platform}")]
    NoPlatform {
        /// what was pulled
        reference: String,
        /// the platform asked for
        platform: String,
    },
    /// a manifest or index refused (too large, malformed)
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// a manifest we cannot use
    #[error("bad manifest: {0}")]
    BadManifest(String),
    /// bytes from the registry do not match their digest or size
    #[error("blob {digest}: {detail}; nothing was stored")]
    Mismatch {
        /// the blob
        digest: String,
        /// what did not match
        detail: String,
    },
    /// the registry could not be reached or answered with an error
    #[error("registry {registry}: {detail}")]
    Registry {
        /// the registry host
        registry: String,
        /// the error chain
        detail: String,
    },
    /// the content store failed
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// the metadata store failed
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// recording the image failed
    #[error(transparent)]
    Images(#[from] crate::images::service::Error),
    /// unpacking a layer failed
    #[error("unpacking {digest}: {source}")]
    Unpack {
        /// the layer
        digest: Digest,
        /// why
        source: crate::images::unpack::Error,
    },
    /// the pull task ended without a result
    #[error("pull task: {0}")]
    Task(String),
}

impl Error {
    /// The kind of failure, for the code containerd answers. A layer that
    /// cannot be unpacked is whatever the unpack says (a hostile layer is
    /// InvalidArgument, as when the same layer is imported).
    pub fn kind(&self) -> berth_api::ErrorKind {
        use berth_api::ErrorKind as K;
        match self {
            Error::InvalidArgument(_) => K::InvalidArgument,
            Error::Unauthenticated { .. } => K::Unauthenticated,
            Error::Denied { .. } => K::PermissionDenied,
            Error::NotFound(_) | Error::NoPlatform { .. } => K::NotFound,
            Error::Document(_) | Error::BadManifest(_) | Error::Mismatch { .. } => {
                K::FailedPrecondition
            }
            Error::Registry { .. } => K::Unavailable,
            Error::Content(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Images(e) => e.kind(),
            Error::Unpack { source, .. } => source.kind(),
            Error::Task(_) => K::Internal,
        }
    }
}

/// Result alias for registry calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_show_their_secret() {
        let c = Credentials {
            username: "alice".into(),
            password: "hunter2".into(),
            token: "tok-123".into(),
        };
        let shown = format!("{c:?}");
        assert!(shown.contains("alice"), "{shown}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
        // Fingerprints tell credentials apart without holding them.
        let other = Credentials {
            password: "hunter3".into(),
            ..c.clone()
        };
        assert_ne!(c.fingerprint(), other.fingerprint());
        assert_eq!(c.fingerprint(), c.clone().fingerprint());
        assert!(!c.fingerprint().contains("hunter2"));
        // Field boundaries count: ("ab", "c") is not ("a", "bc").
        let a = Credentials {
            username: "ab".into(),
            password: "c".into(),
            ..Credentials::default()
        };
        let b = Credentials {
            username: "a".into(),
            password: "bc".into(),
            ..Credentials::default()
        };
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}

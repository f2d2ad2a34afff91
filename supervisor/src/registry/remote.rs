//! One push session with one registry repository, over the `oci-client`
//! crate (pulls go through [`super::source`]).
//!
//! A [`Remote`] is made per call: `oci-client` caches credentials and
//! tokens per client, so a fresh client per call keeps one caller's
//! credentials away from every other call. The secret goes into the
//! client and nowhere else (no log line, no metadata).

use std::sync::Once;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use super::hosts::{self, Endpoint};
use super::{Credentials, Error, Options, Result};

/// A byte stream of one blob, as the registry sends it.
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

/// A registry repository reached with one caller's credentials.
pub struct Remote {
    client: Client,
    /// The reference on the host really reached (a mirror's, from
    /// hosts.toml, or the one asked for).
    reference: Reference,
    /// The registry host the caller named.
    origin: String,
    auth: RegistryAuth,
}

/// What a session is for: the hosts.toml capability an endpoint needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// resolve and pull
    Pull,
    /// push
    Push,
}

/// `r` on registry host `host` instead of its own.
fn on_host(r: &Reference, host: &str) -> Reference {
    let (host, repo) = (host.to_string(), r.repository().to_string());
    match (r.tag(), r.digest()) {
        (Some(t), Some(d)) => Reference::with_tag_and_digest(host, repo, t.into(), d.into()),
        (None, Some(d)) => Reference::with_digest(host, repo, d.into()),
        (t, None) => Reference::with_tag(host, repo, t.unwrap_or("latest").into()),
    }
}

/// The hosts.toml endpoint for `registry` and `purpose`: the first entry
/// with the capabilities it needs (mirrors come before the server). None
/// without a hosts.toml for the registry (nor a `_default` one).
fn endpoint(opts: &Options, registry: &str, purpose: Purpose) -> Result<Option<Endpoint>> {
    let Some(dir) = &opts.hosts_dir else {
        return Ok(None);
    };
    let Some(list) = hosts::load(dir, registry)
        .map_err(|e| Error::InvalidArgument(format!("registry hosts for {registry}: {e}")))?
    else {
        return Ok(None);
    };
    let fits = |e: &Endpoint| match purpose {
        Purpose::Pull => e.capabilities.pull && e.capabilities.resolve,
        Purpose::Push => e.capabilities.push,
    };
    let found = list.into_iter().find(fits);
    if found.is_none() {
        return Err(Error::InvalidArgument(format!(
            "registry hosts for {registry}: no host may be used to {}",
            if purpose == Purpose::Pull {
                "pull"
            } else {
                "push"
            }
        )));
    }
    Ok(found)
}

/// rustls needs a process-wide crypto provider; we use ring.
pub(super) fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Parses an image reference (`host[:port]/repo[:tag][@digest]`; a bare
/// `repo` means Docker Hub, as docker and containerd read it).
pub fn parse_reference(s: &str) -> Result<Reference> {
    if s.is_empty() {
        return Err(Error::InvalidArgument("reference: required".into()));
    }
    let bad = |e: &dyn std::fmt::Display| {
        Error::InvalidArgument(format!("reference {}: {e}", berth_api::echo::Echo(s)))
    };
    let r = s.parse::<Reference>().map_err(|e| bad(&e))?;
    // The parser takes some references whose full form it refuses
    // (`UPPER/case` becomes `docker.io/UPPER/case:latest`, and repository
    // names must be lowercase): refuse those too, as containerd does.
    r.whole().parse::<Reference>().map_err(|e| bad(&e))?;
    Ok(r)
}

impl Remote {
    /// A session for `reference`, for `purpose`. Where the registry has a
    /// hosts.toml under `opts.hosts_dir`, its first endpoint fit for the
    /// purpose is reached instead, with that entry's scheme, `skip_verify`
    /// and CA files (a push sends no hosts.toml headers and ignores
    /// `override_path`: oci-client has no place for them; pulls do, see
    /// [`super::source`]). Else plain HTTP when
    /// `plain_http` or when the host is listed in `opts.insecure`, else TLS
    /// with the system roots plus the host's CA file from `opts.ca_files`.
    pub fn new(
        reference: Reference,
        creds: &Credentials,
        plain_http: bool,
        opts: &Options,
        purpose: Purpose,
    ) -> Result<Self> {
        install_crypto();
        let origin = reference.registry().to_string();
        let ep = endpoint(opts, &origin, purpose)?;
        let reference = match &ep {
            Some(e) if e.host != origin => {
                tracing::debug!(
                    registry = origin,
                    host = e.host,
                    "registry reached through hosts.toml"
                );
                on_host(&reference, &e.host)
            }
            _ => reference,
        };
        let host = reference.registry().to_string();
        let insecure = plain_http
            || opts.insecure.contains(&host)
            || ep.as_ref().is_some_and(Endpoint::is_plain_http);
        let mut config = ClientConfig {
            protocol: if insecure {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            // We resolve indexes ourselves (platform variants, size limit).
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            user_agent: concat!("berthd/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        };
        let mut cas: Vec<&std::path::Path> = opts
            .ca_files
            .get(&host)
            .map(|p| p.as_path())
            .into_iter()
            .collect();
        if let Some(e) = &ep {
            config.accept_invalid_certificates = e.skip_verify;
            cas.extend(e.ca.iter().map(|p| p.as_path()));
        }
        for path in cas {
            let data = std::fs::read(path).map_err(|e| {
                Error::InvalidArgument(format!("CA file {} for {host}: {e}", path.display()))
            })?;
            config.extra_root_certificates.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            });
        }
        let client = Client::try_from(config).map_err(|e| Error::Registry {
            registry: host.clone(),
            detail: format!("client setup: {e}"),
        })?;
        let auth = if !creds.token.is_empty() {
            RegistryAuth::Bearer(creds.token.clone())
        } else if !creds.username.is_empty() {
            RegistryAuth::Basic(creds.username.clone(), creds.password.clone())
        } else {
            RegistryAuth::Anonymous
        };
        Ok(Self {
            client,
            reference,
            origin,
            auth,
        })
    }

    /// The reference this session serves.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// The registry host as the caller's reference names it (not the
    /// mirror reached).
    pub fn host(&self) -> &str {
        &self.origin
    }

    /// Authenticates for `op` (answers a bearer challenge with the
    /// credentials; basic auth needs no round trip).
    pub async fn login(&self, op: RegistryOperation) -> Result<()> {
        self.client
            .auth(&self.reference, &self.auth, op)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, "authenticating"))
    }

    /// Whether the repository holds blob `digest`.
    pub async fn has_blob(&self, digest: &str) -> Result<bool> {
        self.client
            .store_auth_if_needed(self.reference.resolve_registry(), &self.auth)
            .await;
        self.client
            .blob_exists(&self.reference, digest)
            .await
            .map_err(|e| self.error(e, &format!("blob {digest}")))
    }

    /// Uploads a blob from `stream`; the registry checks `digest`.
    pub async fn push_blob(&self, digest: &str, size: u64, stream: ByteStream) -> Result<()> {
        let stream = stream.map(|r| r.map_err(OciDistributionError::from));
        self.client
            .push_blob_stream(&self.reference, stream, digest, Some(size))
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &format!("uploading blob {digest}")))
    }

    /// Uploads a manifest under `tag_or_digest` (None: the reference's own
    /// tag or digest).
    pub async fn push_manifest(
        &self,
        body: Bytes,
        media_type: &str,
        tag_or_digest: Option<&str>,
    ) -> Result<()> {
        let target = match tag_or_digest {
            Some(d) if d.contains(':') => self.reference.clone_with_digest(d.to_string()),
            Some(t) => Reference::with_tag(
                self.reference.registry().to_string(),
                self.reference.repository().to_string(),
                t.to_string(),
            ),
            None => self.reference.clone(),
        };
        let ct = media_type
            .parse()
            .map_err(|_| Error::BadManifest(format!("media type {media_type:?}")))?;
        self.client
            .push_manifest_raw(&target, body, ct)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, &format!("uploading manifest {}", target.whole())))
    }

    /// Maps an `oci-client` error to ours, with the registry's words.
    fn error(&self, e: OciDistributionError, what: &str) -> Error {
        let registry = self.host().to_string();
        use OciDistributionError as O;
        match e {
            O::UnauthorizedError { .. } | O::AuthenticationFailure(_) => {
                Error::Unauthenticated { registry }
            }
            O::RegistryError { envelope, .. } => {
                let codes: Vec<_> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized))
                {
                    Error::Unauthenticated { registry }
                } else if codes.iter().any(|c| matches!(c, OciErrorCode::Denied)) {
                    Error::Denied {
                        registry,
                        detail: format!("{what}: {envelope}"),
                    }
                } else if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::BlobUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::NotFound
                    )
                }) {
                    Error::NotFound(format!("{}: {what}", self.reference.whole()))
                } else {
                    Error::Registry {
                        registry,
                        detail: format!("{what}: {envelope}"),
                    }
                }
            }
            O::ServerError { code: 401, .. } => Error::Unauthenticated { registry },
            O::ServerError {
                code: 403, message, ..
            } => Error::Denied {
                registry,
                detail: format!("{what}: {message}"),
            },
            O::ServerError { code: 404, .. } | O::ImageManifestNotFoundError(_) => {
                Error::NotFound(format!("{}: {what}", self.reference.whole()))
            }
            O::RequestError(ref r) if r.status().is_some_and(|s| s.as_u16() == 401) => {
                Error::Unauthenticated { registry }
            }
            O::RequestError(ref r) if r.status().is_some_and(|s| s.as_u16() == 403) => {
                Error::Denied {
                    registry,
                    detail: what.to_string(),
                }
            }
            O::DigestError(d) => Error::Mismatch {
                digest: what.to_string(),
                detail: d.to_string(),
            },
            other => Error::Registry {
                registry,
                detail: format!("{what}: {:#}", anyhow::Error::from(other)),
            },
        }
    }
}

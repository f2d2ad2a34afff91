//! The image a container runs: its reference expanded (one function for
//! every caller), pulled by the policy, and resolved to the platform's
//! manifest, its config and the chain ID of its top layer, unpacked when
//! it is not yet.

use std::time::Duration;

use berth_api::oci::{chain_ids, Document, ImageConfig, Platform};
use berth_api::Digest;

use super::model::PullPolicy;
use super::{Deps, Error, Result};
use crate::images::unpack::read_doc;
use crate::registry::{self, Credentials, Phase, Progress};

/// Docker's short names: `busybox` is `docker.io/library/busybox:latest`,
/// `me/app:1` is `docker.io/me/app:1`; a reference naming a registry
/// (`host:port/...`, `localhost/...`) gains `:latest` only when it has no
/// tag or digest. The one place a container's image name is expanded.
pub fn normalise_reference(reference: &str) -> String {
    crate::images::import::normalise_docker_ref(reference)
}

/// An image resolved for a container.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// The image record's name.
    pub(super) name: String,
    /// Its target's digest.
    pub(super) digest: String,
    /// The platform's config.
    pub(super) config: ImageConfig,
    /// The top layer's chain ID (the snapshot a container's rootfs sits on).
    pub(super) chain_id: String,
}

/// How a pull is made.
pub(super) struct PullArgs<'a> {
    pub(super) policy: PullPolicy,
    pub(super) credentials: Credentials,
    pub(super) plain_http: bool,
    pub(super) platform: &'a Platform,
    pub(super) snapshotter: &'a str,
    pub(super) on_progress: &'a (dyn Fn(&Progress) + Send + Sync),
}

/// Makes sure image `name` (expanded) is present by `args.policy`, pulling
/// it (with progress) when needed; then resolves it.
pub(super) async fn ensure(
    deps: &Deps,
    ns: &str,
    name: &str,
    args: &PullArgs<'_>,
) -> Result<Resolved> {
    let present = match deps.images.get(ns, name) {
        Ok(_) => true,
        Err(e) if e.kind() == berth_api::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    let pull = match args.policy {
        PullPolicy::Always => true,
        PullPolicy::Missing => !present,
        PullPolicy::Never if !present => {
            return Err(Error::NotFound(format!(
                "image {name:?}: not present, and the pull policy is never"
            )))
        }
        PullPolicy::Never => false,
    };
    if pull {
        self::pull(deps, ns, name, args).await?;
    }
    resolve(deps, ns, name, args.platform, args.snapshotter).await
}

/// Pulls `name` through the registry module, reporting its progress.
async fn pull(deps: &Deps, ns: &str, name: &str, args: &PullArgs<'_>) -> Result<()> {
    let req = registry::pull::Request {
        reference: name.to_string(),
        platform: args.platform.clone(),
        credentials: args.credentials.clone(),
        plain_http: args.plain_http,
        snapshotter: args.snapshotter.to_string(),
        unpack: true,
        labels: Default::default(),
    };
    let (mut rx, _joined) = deps.transfers.pull(ns, req);
    loop {
        let snap = rx.borrow_and_update().clone();
        (args.on_progress)(&snap);
        if let Some(e) = &snap.error {
            return Err(Error::Pull {
                reference: name.to_string(),
                kind: e.kind(),
                message: e.to_string(),
            });
        }
        if snap.phase == Phase::Done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if rx.changed().await.is_err() {
            let last = rx.borrow().clone();
            (args.on_progress)(&last);
            if let Some(e) = &last.error {
                return Err(Error::Pull {
                    reference: name.to_string(),
                    kind: e.kind(),
                    message: e.to_string(),
                });
            }
            return Ok(());
        }
    }
}

/// Resolves a present image to the platform's config and top chain ID,
/// unpacking its layers into `snapshotter` when they are not.
pub(super) async fn resolve(
    deps: &Deps,
    ns: &str,
    name: &str,
    platform: &Platform,
    snapshotter: &str,
) -> Result<Resolved> {
    let img = deps.images.get(ns, name)?;
    let target: Digest = img
        .target
        .digest
        .parse()
        .map_err(|e| Error::InvalidArgument(format!("image {name:?}: target digest: {e}")))?;
    let doc = read_doc(&deps.content, ns, &target).await?;
    let manifest = match Document::parse(&doc, Some(&img.target.media_type))
        .map_err(|e| Error::InvalidArgument(format!("image {name:?}: {e}")))?
    {
        (_, Document::Manifest(_)) => target.clone(),
        (_, Document::Index(idx)) => {
            idx.select(platform)
                .map(|d| d.digest.clone())
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "image {name:?}: no manifest for platform {platform}"
                    ))
                })?
        }
    };
    let mdoc = read_doc(&deps.content, ns, &manifest).await?;
    let Document::Manifest(m) = Document::parse(&mdoc, None)
        .map_err(|e| Error::InvalidArgument(format!("image {name:?}: {e}")))?
        .1
    else {
        return Err(Error::InvalidArgument(format!(
            "image {name:?}: {manifest} is not an image manifest"
        )));
    };
    let cfg_bytes = read_doc(&deps.content, ns, &m.config.digest).await?;
    let config: ImageConfig = serde_json::from_slice(&cfg_bytes).map_err(|e| {
        Error::InvalidArgument(format!("image {name:?}: config {}: {e}", m.config.digest))
    })?;
    let chain = chain_ids(&config.rootfs.diff_ids)
        .pop()
        .ok_or_else(|| {
            Error::InvalidArgument(format!("image {name:?}: its config lists no layers"))
        })?
        .to_string();
    if !deps.snapshots.exists(ns, snapshotter, &chain).await? {
        unpack(deps, ns, &manifest, snapshotter).await?;
    }
    Ok(Resolved {
        name: img.name,
        digest: img.target.digest,
        config,
        chain_id: chain,
    })
}

/// Unpacks a present image's layers under a short-lived lease (the
/// image's config then roots them).
async fn unpack(deps: &Deps, ns: &str, manifest: &Digest, snapshotter: &str) -> Result<()> {
    let lease = format!("berth.unpack.{}", super::names::new_id());
    let mut labels = crate::store::labels::Labels::new();
    let expiry = std::time::SystemTime::now() + Duration::from_secs(3600);
    labels.insert(
        berth_api::lease::EXPIRE_LABEL.to_string(),
        berth_api::lease::format_rfc3339(expiry),
    );
    deps.leases.create(ns, &lease, labels).await?;
    let r = deps
        .unpacker
        .unpack(ns, &lease, manifest, snapshotter)
        .await;
    let _ = deps.leases.delete(ns, &lease, false).await;
    r?;
    Ok(())
}

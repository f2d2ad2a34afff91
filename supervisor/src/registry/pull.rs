//! A whole pull: resolve the reference, choose the platform, fetch config
//! and layers (in parallel, bounded), unpack layers in order as they
//! arrive, then commit the manifest and index (children first, so a
//! manifest is never present without what it names) and record the image.
//!
//! Everything written is held by a pull lease until the image record roots
//! it; the lease expires by itself if berthd dies half way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_api::Digest;
use futures::future::BoxFuture;

use super::fetch::{self, Outcome};
use super::manifest::{self, Descriptor, Parsed, Platform, MAX_MANIFEST_SIZE};
use super::progress::{BlobKind, BlobState, Finished, Phase, Reporter};
use super::remote::{self, Remote};
use super::{Credentials, Error, Options, Result};
use crate::content::ContentStore;
use crate::store::labels::Labels;
use crate::store::Store;

/// Layers downloaded at the same time.
pub const MAX_PARALLEL: usize = 4;

/// How long a pull's lease outlives a berthd that died half way.
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Applies layers into snapshots: the seam to the images module.
pub trait LayerUnpacker: Send + Sync {
    /// Applies `layer` (present in the content store of `ns`) on top of
    /// the committed snapshot `parent` (a chain ID; None for the base)
    /// into the committed snapshot `chain_id` of `snapshotter`, holding
    /// what it makes in `lease`. Done already (the snapshot exists): Ok
    /// without work.
    #[allow(clippy::too_many_arguments)]
    fn apply<'a>(
        &'a self,
        ns: &'a str,
        lease: &'a str,
        snapshotter: &'a str,
        parent: Option<&'a str>,
        chain_id: &'a str,
        layer: &'a Descriptor,
        diff_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// What a pull needs from the daemon.
#[derive(Clone)]
pub struct Deps {
    /// The content store.
    pub content: ContentStore,
    /// The metadata store (leases, image records).
    pub store: Store,
    /// Registry settings.
    pub options: Options,
    /// Unpacks layers; None: pulls only fetch.
    pub unpacker: Option<Arc<dyn LayerUnpacker>>,
    /// Snapshotter used when a request names none.
    pub default_snapshotter: String,
    /// The daemon's services, for image events and the GC guard (None in
    /// unit tests).
    pub context: Option<crate::services::Context>,
}

/// One pull, as a caller asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `host[:port]/repo[:tag][@digest]`.
    pub reference: String,
    /// Platform wanted from an index.
    pub platform: Platform,
    /// Credentials for this call only.
    pub credentials: Credentials,
    /// Plain HTTP for this registry.
    pub plain_http: bool,
    /// Snapshotter to unpack into (empty: the default).
    pub snapshotter: String,
    /// Unpack the layers into snapshots.
    pub unpack: bool,
    /// Labels of the image record.
    pub labels: Labels,
}

/// containerd's chain IDs (the images module's computation), as strings.
pub fn chain_ids(diff_ids: &[String]) -> Result<Vec<String>> {
    let parsed = diff_ids
        .iter()
        .map(|d| {
            d.parse::<Digest>()
                .map_err(|e| Error::BadManifest(format!("diff ID {d:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(crate::images::oci::chain_ids(&parsed)
        .into_iter()
        .map(|c| c.to_string())
        .collect())
}

fn source_labels(remote: &Remote) -> Labels {
    let mut l = Labels::new();
    l.insert(
        format!("containerd.io/distribution.source.{}", remote.host()),
        remote.reference().repository().to_string(),
    );
    l
}

/// Index or manifest, by media type.
pub fn kind_of(media_type: &str) -> BlobKind {
    match media_type {
        manifest::OCI_INDEX | manifest::DOCKER_LIST => BlobKind::Index,
        _ => BlobKind::Manifest,
    }
}

/// Runs one pull in `ns`, reporting to `progress` (not finished here: the
/// caller reports the result).
pub async fn pull(deps: &Deps, ns: &str, req: &Request, progress: &Reporter) -> Result<Finished> {
    let reference = remote::parse_reference(&req.reference)?;
    let name = reference.whole();
    if let (true, Some(ctx)) = (req.unpack, &deps.context) {
        ctx.snapshotters
            .resolve(&req.snapshotter)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    }
    let remote = Arc::new(Remote::new(
        reference,
        &req.credentials,
        req.plain_http,
        &deps.options,
    )?);
    tracing::info!(namespace = ns, reference = %name, platform = %manifest::platform_string(&req.platform), "pull started");

    let lease = format!("berth-pull-{}", uuid::Uuid::new_v4().simple());
    let mut lease_labels = Labels::new();
    lease_labels.insert(
        "containerd.io/gc.expire".into(),
        crate::images::import::format_rfc3339(SystemTime::now() + LEASE_EXPIRY),
    );
    crate::store::leases::create(&deps.store, ns, &lease, lease_labels).await?;
    let cs = deps.content.with_lease(Some(lease.clone()));
    let result = pull_leased(deps, &cs, ns, &lease, req, &remote, &name, progress).await;
    if let Err(e) = crate::store::leases::delete(&deps.store, ns, &lease).await {
        tracing::warn!(namespace = ns, lease, error = %e, "removing pull lease");
    }
    match &result {
        Ok(f) => tracing::info!(namespace = ns, reference = %name, digest = %f.digest, "pull done"),
        Err(e) => tracing::warn!(namespace = ns, reference = %name, error = %e, "pull failed"),
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn pull_leased(
    deps: &Deps,
    cs: &ContentStore,
    ns: &str,
    lease: &str,
    req: &Request,
    remote: &Arc<Remote>,
    name: &str,
    progress: &Reporter,
) -> Result<Finished> {
    let source = source_labels(remote);
    // 1. The reference's own manifest or index.
    let (top_bytes, top_digest) = remote.manifest(None).await?;
    let (top_type, top) = manifest::parse(&top_bytes, None)?;
    progress.add(
        &top_digest.to_string(),
        &top_type,
        kind_of(&top_type),
        top_bytes.len() as u64,
    );
    progress.state(&top_digest.to_string(), BlobState::Done);

    // 2. The platform's manifest.
    let (m_bytes, m_digest, config, layers, index_entry) = match top {
        Parsed::Manifest { config, layers } => {
            (top_bytes.clone(), top_digest.clone(), config, layers, None)
        }
        Parsed::Index { manifests } => {
            let entry = manifest::select(&manifests, &req.platform)
                .ok_or_else(|| Error::NoPlatform {
                    reference: name.to_string(),
                    platform: manifest::platform_string(&req.platform),
                })?
                .clone();
            if entry.size as u64 > MAX_MANIFEST_SIZE {
                return Err(Error::ManifestTooLarge {
                    size: entry.size as u64,
                    limit: MAX_MANIFEST_SIZE,
                });
            }
            let (bytes, digest) = remote.manifest(Some(&entry.digest)).await?;
            if digest.to_string() != entry.digest || bytes.len() as i64 != entry.size {
                return Err(Error::Mismatch {
                    digest: entry.digest.clone(),
                    detail: format!("registry served {} ({} bytes)", digest, bytes.len()),
                });
            }
            let (mt, parsed) = manifest::parse(&bytes, Some(&entry.media_type))?;
            let Parsed::Manifest { config, layers } = parsed else {
                return Err(Error::BadManifest(format!(
                    "index entry {} is not an image manifest",
                    entry.digest
                )));
            };
            progress.add(&entry.digest, &mt, BlobKind::Manifest, bytes.len() as u64);
            progress.state(&entry.digest, BlobState::Done);
            (bytes, digest, config, layers, Some(entry))
        }
    };

    // 3. Config, then layers in parallel; unpacked in order as they land.
    progress.add(
        &config.digest,
        &config.media_type,
        BlobKind::Config,
        config.size as u64,
    );
    for l in &layers {
        progress.add(&l.digest, &l.media_type, BlobKind::Layer, l.size as u64);
    }
    progress.phase(Phase::Transferring);
    fetch::fetch(remote, cs, ns, &config, "config", source.clone(), progress).await?;
    let diff_ids = read_diff_ids(cs, ns, &config, layers.len()).await?;
    let chains = chain_ids(&diff_ids)?;

    let sem = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL));
    let mut handles = Vec::with_capacity(layers.len());
    for l in layers.clone() {
        let (remote, cs, ns, source, progress, sem) = (
            remote.clone(),
            cs.clone(),
            ns.to_string(),
            source.clone(),
            progress.clone(),
            sem.clone(),
        );
        handles.push(tokio::spawn(async move {
            let _permit = sem
                .acquire_owned()
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
            fetch::fetch(&remote, &cs, &ns, &l, "layer", source, &progress).await
        }));
    }
    let abort_all =
        |hs: &[tokio::task::JoinHandle<Result<Outcome>>]| hs.iter().for_each(|h| h.abort());
    let snapshotter = if req.snapshotter.is_empty() {
        deps.default_snapshotter.clone()
    } else {
        req.snapshotter.clone()
    };
    let unpacker = deps.unpacker.as_ref().filter(|_| req.unpack);
    for (i, l) in layers.iter().enumerate() {
        let joined = match (&mut handles[i]).await {
            Ok(r) => r,
            Err(e) => Err(Error::Task(e.to_string())),
        };
        if let Err(e) = joined {
            progress.state(&l.digest, BlobState::Failed);
            abort_all(&handles);
            return Err(e);
        }
        if let Some(u) = unpacker {
            progress.phase(Phase::Unpacking);
            progress.state(&l.digest, BlobState::Unpacking);
            let parent = i.checked_sub(1).map(|p| chains[p].as_str());
            if let Err(detail) = u
                .apply(ns, lease, &snapshotter, parent, &chains[i], l, &diff_ids[i])
                .await
            {
                progress.state(&l.digest, BlobState::Failed);
                abort_all(&handles);
                return Err(Error::Unpack {
                    digest: l.digest.clone(),
                    detail,
                });
            }
            progress.state(&l.digest, BlobState::Unpacked);
        }
    }

    // 4. Parents last, with the labels that root their children for GC.
    let mut config_labels = source.clone();
    if unpacker.is_some() {
        if let Some(top) = chains.last() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{snapshotter}"),
                top.clone(),
            );
        }
    }
    let config_digest: Digest = config
        .digest
        .parse()
        .map_err(|e| Error::BadManifest(format!("config digest: {e}")))?;
    fetch::add_labels(cs, ns, &config_digest, config_labels).await?;
    let mut m_labels = source.clone();
    m_labels.insert(
        "containerd.io/gc.ref.content.config".into(),
        config.digest.clone(),
    );
    for (i, l) in layers.iter().enumerate() {
        m_labels.insert(
            format!("containerd.io/gc.ref.content.l.{i}"),
            l.digest.clone(),
        );
    }
    fetch::store_bytes(cs, ns, &m_digest, m_bytes.clone(), m_labels).await?;
    if let Some(entry) = &index_entry {
        let mut i_labels = source.clone();
        i_labels.insert(
            "containerd.io/gc.ref.content.m.0".into(),
            entry.digest.clone(),
        );
        fetch::store_bytes(cs, ns, &top_digest, top_bytes.clone(), i_labels).await?;
    }

    // 5. The image record roots it all.
    let target = crate::store::images::Target {
        media_type: top_type.clone(),
        digest: top_digest.to_string(),
        size: top_bytes.len() as i64,
        annotations: Default::default(),
    };
    record_image(deps, ns, name, target, req.labels.clone()).await?;
    Ok(Finished {
        name: name.to_string(),
        digest: top_digest.to_string(),
        media_type: top_type,
        size: top_bytes.len() as u64,
        manifest_digest: m_digest.to_string(),
        platform: index_entry
            .and_then(|e| e.platform)
            .map(|p| manifest::platform_string(&p))
            .unwrap_or_default(),
        chain_id: if unpacker.is_some() {
            chains.last().cloned().unwrap_or_default()
        } else {
            String::new()
        },
    })
}

/// Creates the image record, or points an existing one at `target`, and
/// publishes the image event.
async fn record_image(
    deps: &Deps,
    ns: &str,
    name: &str,
    target: crate::store::images::Target,
    labels: Labels,
) -> Result<()> {
    use crate::store::images;
    let img = images::Image {
        name: name.to_string(),
        labels,
        target,
        created_at: SystemTime::now(),
        updated_at: SystemTime::now(),
    };
    let _hold = match &deps.context {
        Some(ctx) => Some(ctx.gc.hold().await),
        None => None,
    };
    match images::create(&deps.store, ns, img.clone()).await {
        Ok(img) => {
            if let Some(ctx) = &deps.context {
                crate::images::events::created(ctx, ns, &img).await;
            }
            Ok(())
        }
        Err(crate::store::Error::AlreadyExists { .. }) => {
            let img = images::update(&deps.store, ns, img, &["target".to_string()]).await?;
            if let Some(ctx) = &deps.context {
                crate::images::events::updated(ctx, ns, &img).await;
            }
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The config's `rootfs.diff_ids`, one per layer.
async fn read_diff_ids(
    cs: &ContentStore,
    ns: &str,
    config: &Descriptor,
    layers: usize,
) -> Result<Vec<String>> {
    if config.size as u64 > MAX_MANIFEST_SIZE {
        return Err(Error::BadManifest(format!(
            "config {} of {} bytes is larger than {MAX_MANIFEST_SIZE}",
            config.digest, config.size
        )));
    }
    let digest: Digest = config
        .digest
        .parse()
        .map_err(|e| Error::BadManifest(format!("config digest: {e}")))?;
    let (cs2, ns2) = (cs.clone(), ns.to_string());
    let bytes = tokio::task::spawn_blocking(move || -> Result<Vec<u8>> {
        use std::io::Read as _;
        let mut f = cs2.open_blob(&ns2, &digest)?;
        let mut v = Vec::new();
        f.read_to_end(&mut v)
            .map_err(|e| Error::BadManifest(format!("reading config: {e}")))?;
        Ok(v)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    #[derive(serde::Deserialize)]
    struct Rootfs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        rootfs: Option<Rootfs>,
    }
    let c: Config = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadManifest(format!("config {}: {e}", config.digest)))?;
    let ids = c.rootfs.map(|r| r.diff_ids).unwrap_or_default();
    if ids.len() != layers {
        return Err(Error::BadManifest(format!(
            "config lists {} diff IDs for {layers} layers",
            ids.len()
        )));
    }
    for d in &ids {
        d.parse::<Digest>()
            .map_err(|e| Error::BadManifest(format!("diff ID {d:?}: {e}")))?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_containerd() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let c = chain_ids(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(c[0], a);
        use sha2::{Digest as _, Sha256};
        let want = format!("sha256:{:x}", Sha256::digest(format!("{a} {b}").as_bytes()));
        assert_eq!(c[1], want);
        assert!(chain_ids(&["nope".to_string()]).is_err());
    }

    #[test]
    fn rfc3339_formats_utc() {
        use crate::images::import::format_rfc3339;
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(format_rfc3339(t), "2023-11-14T22:13:20Z");
        assert_eq!(
            format_rfc3339(SystemTime::UNIX_EPOCH),
            "1970-01-01T00:00:00Z"
        );
    }
}

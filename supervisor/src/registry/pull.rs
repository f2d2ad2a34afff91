//! A whole pull: resolve the reference, choose the platform, fetch config
//! and layers (in parallel, bounded), unpack layers in order as they
//! arrive, then commit the manifest and index (children first, so a
//! manifest is never present without what it names) and record the image.
//!
//! Everything written is held by a pull lease until the image record roots
//! it; the lease expires by itself if berthd dies half way.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_api::oci::{self, chain_ids, Descriptor, Document, ImageConfig, Platform};
use berth_api::oci::{DocumentError, MAX_DOCUMENT_SIZE};
use berth_api::Digest;

use super::fetch::{self, Outcome};
use super::progress::{BlobKind, BlobState, Finished, Phase, Reporter};
use super::remote;
use super::source::Source;
use super::{Credentials, Error, Options, Result};
use crate::content::ContentStore;
use crate::images::{Images, Unpacker};
use crate::metrics::PullReport;
use crate::store::labels::Labels;
use crate::store::Store;

/// Layers downloaded at the same time.
pub const MAX_PARALLEL: usize = 4;

/// How long a pull's lease outlives a berthd that died half way.
/// The id prefix of a pull's lease; berthd deletes leftovers at start-up
/// (a pull never outlives the daemon that ran it).
pub const LEASE_PREFIX: &str = "berth-pull-";

const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// What a pull (and a push) needs from the daemon.
#[derive(Clone)]
pub struct Deps {
    /// The content store.
    pub content: ContentStore,
    /// The metadata store (the pull's lease, image records for a push).
    pub store: Store,
    /// Registry settings.
    pub options: Options,
    /// Records the pulled image (and publishes its event).
    pub images: Images,
    /// Unpacks layers as they land.
    pub unpacker: Unpacker,
    /// Where pulls count the bytes they download.
    pub metrics: PullReport,
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

fn source_labels(remote: &Source) -> Labels {
    let mut l = Labels::new();
    l.insert(
        format!("containerd.io/distribution.source.{}", remote.host()),
        remote.reference().repository().to_string(),
    );
    l
}

/// Index or manifest, by media type.
pub fn kind_of(media_type: &str) -> BlobKind {
    if oci::is_index(media_type) {
        BlobKind::Index
    } else {
        BlobKind::Manifest
    }
}

/// Runs one pull in `ns`, reporting to `progress` (not finished here: the
/// caller reports the result).
pub async fn pull(deps: &Deps, ns: &str, req: &Request, progress: &Reporter) -> Result<Finished> {
    let reference = remote::parse_reference(&req.reference)?;
    let name = reference.whole();
    let snapshotter = match req.unpack {
        true => deps
            .unpacker
            .resolve(&req.snapshotter)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?,
        false => String::new(),
    };
    let remote = Arc::new(Source::new(
        reference,
        &req.credentials,
        req.plain_http,
        &deps.options,
    )?);
    tracing::info!(namespace = ns, reference = %name, platform = %req.platform, "pull started");

    let lease = format!("{LEASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let lease_labels = crate::store::leases::expiring_at(SystemTime::now() + LEASE_EXPIRY);
    crate::store::leases::create(&deps.store, ns, &lease, lease_labels).await?;
    let cs = deps.content.with_lease(Some(lease.clone()));
    let leased = Leased {
        deps,
        cs: &cs,
        ns,
        lease: &lease,
        snapshotter: &snapshotter,
    };
    let result = leased.pull(req, &remote, &name, progress).await;
    if let Err(e) = crate::store::leases::delete(&deps.store, ns, &lease).await {
        tracing::warn!(namespace = ns, lease, error = %e, "removing pull lease");
    }
    deps.metrics.finished(result.is_ok());
    match &result {
        Ok(f) => tracing::info!(namespace = ns, reference = %name, digest = %f.digest, "pull done"),
        Err(e) => tracing::warn!(namespace = ns, reference = %name, error = %e, "pull failed"),
    }
    result
}

/// One pull under its lease.
struct Leased<'a> {
    deps: &'a Deps,
    /// the content store, adding what it writes to the lease
    cs: &'a ContentStore,
    ns: &'a str,
    lease: &'a str,
    /// where layers are unpacked ("" when they are not)
    snapshotter: &'a str,
}

impl Leased<'_> {
    async fn pull(
        &self,
        req: &Request,
        remote: &Arc<Source>,
        name: &str,
        progress: &Reporter,
    ) -> Result<Finished> {
        let (deps, cs, ns) = (self.deps, self.cs, self.ns);
        let source = source_labels(remote);
        // 1. The reference's own manifest or index.
        let (top_bytes, top_digest) = remote.manifest(None).await?;
        deps.metrics.bytes(top_bytes.len() as u64);
        let (top_type, top) = Document::parse(&top_bytes, None)?;
        progress.add(
            &top_digest.to_string(),
            &top_type,
            kind_of(&top_type),
            top_bytes.len() as u64,
        );
        progress.state(&top_digest.to_string(), BlobState::Done);

        // 2. The platform's manifest.
        let (m_bytes, m_digest, config, layers, index_entry) = match top {
            Document::Manifest(m) => (
                top_bytes.clone(),
                top_digest.clone(),
                m.config,
                m.layers,
                None,
            ),
            Document::Index(index) => {
                let entry = index
                    .select(&req.platform)
                    .ok_or_else(|| Error::NoPlatform {
                        reference: name.to_string(),
                        platform: req.platform.to_string(),
                    })?
                    .clone();
                if entry.size as u64 > MAX_DOCUMENT_SIZE {
                    return Err(DocumentError::TooLarge {
                        size: entry.size as u64,
                        limit: MAX_DOCUMENT_SIZE,
                    }
                    .into());
                }
                let (bytes, digest) = remote.manifest(Some(&entry.digest.to_string())).await?;
                deps.metrics.bytes(bytes.len() as u64);
                if digest != entry.digest || bytes.len() as i64 != entry.size {
                    return Err(Error::Mismatch {
                        digest: entry.digest.to_string(),
                        detail: format!("registry served {} ({} bytes)", digest, bytes.len()),
                    });
                }
                let (mt, parsed) = Document::parse(&bytes, Some(&entry.media_type))?;
                let Document::Manifest(m) = parsed else {
                    return Err(Error::BadManifest(format!(
                        "index entry {} is not an image manifest",
                        entry.digest
                    )));
                };
                let d = entry.digest.to_string();
                progress.add(&d, &mt, BlobKind::Manifest, bytes.len() as u64);
                progress.state(&d, BlobState::Done);
                (bytes, digest, m.config, m.layers, Some(entry))
            }
        };

        // Too many layers to mount: refused before any is fetched.
        crate::images::unpack::check_layer_count(&format!("manifest {m_digest}"), layers.len())
            .map_err(Error::InvalidArgument)?;

        // 3. Config, then layers in parallel; unpacked in order as they land.
        progress.add(
            &config.digest.to_string(),
            &config.media_type,
            BlobKind::Config,
            config.size as u64,
        );
        for l in &layers {
            let d = l.digest.to_string();
            progress.add(&d, &l.media_type, BlobKind::Layer, l.size as u64);
        }
        progress.phase(Phase::Transferring);
        let got = fetch::fetch(remote, cs, ns, &config, "config", source.clone(), progress).await?;
        downloaded(&deps.metrics, &config, got);
        let diff_ids = read_diff_ids(cs, ns, &config, layers.len()).await?;
        let chains = chain_ids(&diff_ids);

        let sem = Arc::new(tokio::sync::Semaphore::new(MAX_PARALLEL));
        let mut handles = Vec::with_capacity(layers.len());
        for l in layers.clone() {
            let (remote, cs, ns, source, progress, sem, report) = (
                remote.clone(),
                cs.clone(),
                ns.to_string(),
                source.clone(),
                progress.clone(),
                sem.clone(),
                deps.metrics.clone(),
            );
            handles.push(tokio::spawn(async move {
                let _permit = sem
                    .acquire_owned()
                    .await
                    .map_err(|e| Error::Task(e.to_string()))?;
                let got = fetch::fetch(&remote, &cs, &ns, &l, "layer", source, &progress).await?;
                downloaded(&report, &l, got);
                Ok(got)
            }));
        }
        let abort_all =
            |hs: &[tokio::task::JoinHandle<Result<Outcome>>]| hs.iter().for_each(|h| h.abort());
        let unpack = req.unpack;
        for (i, l) in layers.iter().enumerate() {
            let d = l.digest.to_string();
            let joined = match (&mut handles[i]).await {
                Ok(r) => r,
                Err(e) => Err(Error::Task(e.to_string())),
            };
            if let Err(e) = joined {
                progress.state(&d, BlobState::Failed);
                abort_all(&handles);
                return Err(e);
            }
            if unpack {
                progress.phase(Phase::Unpacking);
                progress.state(&d, BlobState::Unpacking);
                let parent = i.checked_sub(1).map(|p| &chains[p]);
                let unpacked = deps
                    .unpacker
                    .unpack_layer(
                        ns,
                        self.lease,
                        self.snapshotter,
                        parent,
                        &chains[i],
                        l,
                        &diff_ids[i],
                    )
                    .await;
                if let Err(source) = unpacked {
                    progress.state(&d, BlobState::Failed);
                    abort_all(&handles);
                    return Err(Error::Unpack {
                        digest: l.digest.clone(),
                        source,
                    });
                }
                progress.state(&d, BlobState::Unpacked);
            }
        }

        // 4. Parents last, with the labels that root their children for GC.
        let mut config_labels = source.clone();
        if unpack {
            if let Some(top) = chains.last() {
                config_labels.insert(
                    format!("containerd.io/gc.ref.snapshot.{}", self.snapshotter),
                    top.to_string(),
                );
            }
        }
        fetch::add_labels(cs, ns, &config.digest, config_labels).await?;
        let mut m_labels = source.clone();
        m_labels.insert(
            "containerd.io/gc.ref.content.config".into(),
            config.digest.to_string(),
        );
        for (i, l) in layers.iter().enumerate() {
            m_labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.to_string(),
            );
        }
        fetch::store_bytes(cs, ns, &m_digest, m_bytes.clone(), m_labels).await?;
        if let Some(entry) = &index_entry {
            let mut i_labels = source.clone();
            i_labels.insert(
                "containerd.io/gc.ref.content.m.0".into(),
                entry.digest.to_string(),
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
        deps.images
            .save(ns, name, target, req.labels.clone())
            .await?;
        Ok(Finished {
            name: name.to_string(),
            digest: top_digest.to_string(),
            media_type: top_type,
            size: top_bytes.len() as u64,
            manifest_digest: m_digest.to_string(),
            platform: index_entry
                .and_then(|e| e.platform)
                .map(|p| p.to_string())
                .unwrap_or_default(),
            chain_id: match (unpack, chains.last()) {
                (true, Some(top)) => top.to_string(),
                _ => String::new(),
            },
        })
    }
}

/// Counts the bytes a fetch downloaded (none for a blob already present;
/// only the rest of a resumed one).
fn downloaded(report: &PullReport, desc: &Descriptor, got: Outcome) {
    if let Outcome::Fetched { resumed_from } = got {
        report.bytes(
            u64::try_from(desc.size)
                .unwrap_or(0)
                .saturating_sub(resumed_from),
        );
    }
}

/// The config's `rootfs.diff_ids`, one per layer.
async fn read_diff_ids(
    cs: &ContentStore,
    ns: &str,
    config: &Descriptor,
    layers: usize,
) -> Result<Vec<Digest>> {
    if config.size as u64 > MAX_DOCUMENT_SIZE {
        return Err(Error::BadManifest(format!(
            "config {} of {} bytes is larger than {MAX_DOCUMENT_SIZE}",
            config.digest, config.size
        )));
    }
    let digest = config.digest.clone();
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
    let c: ImageConfig = serde_json::from_slice(&bytes)
        .map_err(|e| Error::BadManifest(format!("config {}: {e}", config.digest)))?;
    let ids = c.rootfs.diff_ids;
    if ids.len() != layers {
        return Err(Error::BadManifest(format!(
            "config lists {} diff IDs for {layers} layers",
            ids.len()
        )));
    }
    Ok(ids)
}

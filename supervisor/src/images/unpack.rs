//! Unpack: a manifest's layers, in order, into committed snapshots named by
//! chain ID, as containerd does (so `ctr` sees the image as unpacked).
//!
//! Every snapshot and label step holds a GC guard and first adds what it
//! creates to the caller's lease; see [`crate::gc`] for why that is enough.
//! Snapshots are made through [`Snapshots`], so an unpack publishes the
//! same `/snapshot/*` events as a client's unpack does.

use futures::StreamExt as _;

use berth_api::oci::{chain_ids, Descriptor, ImageConfig, Manifest};
use berth_api::Digest;

use super::layers::{self, UNCOMPRESSED_LABEL};
use crate::content::ContentStore;
use crate::gc::Gc;
use crate::snapshots::{NewSnapshot, Snapshots};
use crate::store::labels::Labels;

/// Why an unpack failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// a manifest or config is unusable
    #[error("{0}")]
    Invalid(String),
    /// a layer failed
    #[error(transparent)]
    Layer(#[from] layers::Error),
    /// the content store failed
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// a snapshotter failed
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
    /// a blocking task died
    #[error("unpack task failed: {0}")]
    Join(String),
}

impl Error {
    /// The kind of failure: a hostile or malformed layer is the caller's
    /// InvalidArgument whether it was imported or pulled.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Invalid(_) => berth_api::ErrorKind::InvalidArgument,
            Error::Layer(e) => e.kind(),
            Error::Content(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
            Error::Join(_) => berth_api::ErrorKind::Internal,
        }
    }
}

/// Unpacks layers into committed snapshots named by chain ID. Cheap to
/// clone.
#[derive(Clone)]
pub struct Unpacker {
    content: ContentStore,
    snapshots: Snapshots,
    gc: Gc,
}

/// Most layers an image may have: a container on it mounts one lower
/// directory per layer, and overlayfs stacks at most 500
/// (`OVL_MAX_STACK`, [`berth_snapshotter::MAX_LAYERS`]). Import, pull and
/// unpack refuse a deeper image before they fetch or unpack any layer.
pub const MAX_IMAGE_LAYERS: usize = berth_snapshotter::MAX_LAYERS;

/// Refuses an image manifest (`what`) of more than [`MAX_IMAGE_LAYERS`]
/// layers; the message is for the caller's InvalidArgument.
pub fn check_layer_count(what: &str, layers: usize) -> Result<(), String> {
    if layers > MAX_IMAGE_LAYERS {
        return Err(format!(
            "{what} has {layers} layers: an image may have at most {MAX_IMAGE_LAYERS} (overlayfs stacks no more lower directories)"
        ));
    }
    Ok(())
}

/// Largest manifest/config/index document read into memory.
const MAX_DOC: u64 = 8 << 20;

/// Reads a small JSON document blob of `ns`, verified against its digest
/// (a document gone bad on disk is DataLoss, never parsed).
pub async fn read_doc(cs: &ContentStore, ns: &str, digest: &Digest) -> Result<Vec<u8>, Error> {
    let (cs, ns, d) = (cs.clone(), ns.to_string(), digest.clone());
    tokio::task::spawn_blocking(move || Ok(cs.read_verified(&ns, &d, MAX_DOC)?))
        .await
        .map_err(|e| Error::Join(e.to_string()))?
}

/// Parses a digest string from a document, naming it in the error.
pub fn digest(what: &str, s: &str) -> Result<Digest, Error> {
    s.parse()
        .map_err(|e| Error::Invalid(format!("{what} {s:?}: {e}")))
}

impl Unpacker {
    /// An unpacker reading blobs from `content` into `snapshots`.
    pub fn new(content: ContentStore, snapshots: Snapshots, gc: Gc) -> Self {
        Self {
            content,
            snapshots,
            gc,
        }
    }

    /// The canonical name of snapshotter `name`; "" is the configured
    /// default (berthd's own import and pull, like containerd's Transfer
    /// service, unpack into the default when none is named).
    pub fn resolve(&self, name: &str) -> Result<String, Error> {
        Ok(self.snapshots.resolve(self.or_default(name))?.0)
    }

    fn or_default<'a>(&'a self, name: &'a str) -> &'a str {
        if name.is_empty() {
            self.snapshots.default_name()
        } else {
            name
        }
    }

    /// Sets one label on a content blob, under a GC guard.
    pub async fn set_label(
        &self,
        ns: &str,
        digest: &Digest,
        key: &str,
        value: &str,
    ) -> Result<(), Error> {
        let mut info = self.content.info(ns, digest)?;
        info.labels = Labels::from([(key.to_string(), value.to_string())]);
        let _hold = self.gc.hold().await;
        self.content
            .update(ns, info, &[format!("labels.{key}")])
            .await?;
        Ok(())
    }

    /// Unpacks the image manifest `manifest` of `ns` into `snapshotter`,
    /// holding everything it makes in `lease`. Returns the top chain ID.
    /// Layers already unpacked (their chain ID exists) are skipped. On
    /// failure the extraction snapshot is removed and nothing is committed
    /// for that layer.
    pub async fn unpack(
        &self,
        ns: &str,
        lease: &str,
        manifest: &Digest,
        snapshotter: &str,
    ) -> Result<Digest, Error> {
        let (sn_name, backend) = self.snapshots.resolve(self.or_default(snapshotter))?;
        let m: Manifest = serde_json::from_slice(&read_doc(&self.content, ns, manifest).await?)
            .map_err(|e| Error::Invalid(format!("manifest {manifest}: {e}")))?;
        check_layer_count(&format!("manifest {manifest}"), m.layers.len())
            .map_err(Error::Invalid)?;
        let config_digest = m.config.digest.clone();
        let config: ImageConfig =
            serde_json::from_slice(&read_doc(&self.content, ns, &config_digest).await?)
                .map_err(|e| Error::Invalid(format!("config {config_digest}: {e}")))?;
        let diff_ids = config.rootfs.diff_ids;
        if diff_ids.len() != m.layers.len() {
            return Err(Error::Invalid(format!(
                "manifest {manifest} has {} layers but its config lists {} diff IDs",
                m.layers.len(),
                diff_ids.len()
            )));
        }
        if diff_ids.is_empty() {
            return Err(Error::Invalid(format!("manifest {manifest} has no layers")));
        }
        let chains = chain_ids(&diff_ids);
        // Native snapshots copy their parent: one layer after the other there.
        let overlay = backend == berth_snapshotter::Backend::Overlay;
        let mut jobs = Vec::new();
        let mut parent_missing = false;
        for (i, layer) in m.layers.iter().enumerate() {
            let chain = chains[i].to_string();
            let missing = !self.chain_present(ns, lease, &sn_name, &chain).await?;
            if missing {
                jobs.push(Job {
                    blob: layer.digest.clone(),
                    media_type: layer.media_type.clone(),
                    diff_id: diff_ids[i].clone(),
                    chain,
                    parent: (i > 0).then(|| chains[i - 1].to_string()),
                    // On overlayfs a layer whose parent is still to be
                    // unpacked is written at once into a parentless snapshot
                    // and stacked when its turn comes.
                    staged: parent_missing && overlay,
                });
            }
            parent_missing = missing;
        }
        let sn = sn_name.as_str();
        let mut queued = jobs.iter();
        let mut done = futures::stream::FuturesOrdered::new();
        let parallel = if overlay { parallel_layers() } else { 1 };
        for job in queued.by_ref().take(parallel) {
            done.push_back(self.spawn_prepare(ns, lease, sn, job));
        }
        // In layer order: each job's parent is committed before it is stacked.
        let mut failed = None;
        for job in &jobs {
            let Some(prepared) = done.next().await else {
                break;
            };
            if failed.is_none() {
                if let Some(next) = queued.next() {
                    done.push_back(self.spawn_prepare(ns, lease, sn, next));
                }
            }
            let r = match (prepared, failed.is_some()) {
                (Prepared::Staged(Ok((key, _))), true) => {
                    self.remove_extract(ns, sn, &key).await;
                    Ok(())
                }
                (_, true) => Ok(()),
                (Prepared::Done(r), false) => r,
                (Prepared::Staged(Ok((key, applied))), false) => {
                    self.finish_staged(ns, lease, sn, job, key, applied).await
                }
                (Prepared::Staged(Err(e)), false) => Err(e),
            };
            if let Err(e) = r {
                failed = Some(e);
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        for (i, layer) in m.layers.iter().enumerate() {
            self.set_label(
                ns,
                &layer.digest,
                UNCOMPRESSED_LABEL,
                &diff_ids[i].to_string(),
            )
            .await?;
        }
        let top = chains[chains.len() - 1].clone();
        let key = format!("containerd.io/gc.ref.snapshot.{sn_name}");
        self.set_label(ns, &config_digest, &key, &top.to_string())
            .await?;
        Ok(top)
    }

    /// Unpacks one pulled layer: applies `layer` (present in the content
    /// store) onto the committed snapshot `parent` (None for the base) and
    /// commits it as `chain` of `snapshotter`, holding what it makes in
    /// `lease`, unless that chain exists already; then labels the blob
    /// with its diff ID. Nothing is committed when it fails.
    #[allow(clippy::too_many_arguments)]
    pub async fn unpack_layer(
        &self,
        ns: &str,
        lease: &str,
        snapshotter: &str,
        parent: Option<&Digest>,
        chain: &Digest,
        layer: &Descriptor,
        diff_id: &Digest,
    ) -> Result<(), Error> {
        let sn = self.resolve(snapshotter)?;
        let chain = chain.to_string();
        if !self.chain_present(ns, lease, &sn, &chain).await? {
            let job = Job {
                blob: layer.digest.clone(),
                media_type: layer.media_type.clone(),
                diff_id: diff_id.clone(),
                chain,
                parent: parent.map(Digest::to_string),
                staged: false,
            };
            self.apply_one(ns, lease, &sn, &job).await?;
        }
        self.set_label(ns, &layer.digest, UNCOMPRESSED_LABEL, &diff_id.to_string())
            .await
    }

    /// Adds the snapshot `chain` of `sn` to `lease` (under a GC guard,
    /// before anything may create it) and says whether it exists already.
    async fn chain_present(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        chain: &str,
    ) -> Result<bool, Error> {
        self.snapshots.lease(ns, lease, sn, chain).await?;
        Ok(self.snapshots.exists(ns, sn, chain).await?)
    }
}

/// One layer to unpack.
#[derive(Clone)]
struct Job {
    blob: Digest,
    media_type: String,
    diff_id: Digest,
    chain: String,
    parent: Option<String>,
    /// written before its parent exists (see [`Unpacker::stage_one`])
    staged: bool,
}

/// A job's first half: applied and committed, or staged.
enum Prepared {
    Done(Result<(), Error>),
    /// the staged extraction snapshot and how its apply went
    Staged(Result<(String, Result<berth_snapshotter::Applied, layers::Error>), Error>),
}

/// Layers applied at once: each apply already keeps two threads busy
/// (decompression, file writes).
fn parallel_layers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

fn ref_label(chain: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("containerd.io/snapshot.ref".to_string(), chain.to_string())])
}

impl Unpacker {
    /// Runs [`Unpacker::prepare`] as a task of its own. A job takes the
    /// collector's read guard (snapshot and content steps) across awaits;
    /// as a future merely queued in this unpack it would be polled only
    /// while the unpack awaits the queue, so a guard it held would stay
    /// held while the unpack awaited a guard of its own behind a waiting
    /// collection: every writer stopped (issue 19 item 2). A task is
    /// polled whatever its spawner awaits, so every guard is released.
    fn spawn_prepare(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        job: &Job,
    ) -> impl std::future::Future<Output = Prepared> {
        let this = self.clone();
        let (ns, lease, sn, job) = (
            ns.to_string(),
            lease.to_string(),
            sn.to_string(),
            job.clone(),
        );
        let task = tokio::spawn(async move { this.prepare(&ns, &lease, &sn, &job).await });
        async move {
            task.await
                .unwrap_or_else(|e| Prepared::Done(Err(Error::Join(e.to_string()))))
        }
    }

    /// Applies a job, or stages it.
    async fn prepare(&self, ns: &str, lease: &str, sn: &str, job: &Job) -> Prepared {
        if job.staged {
            Prepared::Staged(self.stage_one(ns, lease, sn, job).await)
        } else {
            Prepared::Done(self.apply_one(ns, lease, sn, job).await)
        }
    }

    /// Prepares, leased, the extraction snapshot for `job` on `parent`.
    async fn prepare_extract(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        job: &Job,
        parent: Option<String>,
    ) -> Result<(String, Vec<berth_snapshotter::Mount>), Error> {
        let key = format!("extract-{} {}", uuid::Uuid::new_v4().simple(), job.chain);
        let new = NewSnapshot {
            snapshotter: sn.to_string(),
            key: key.clone(),
            parent: parent.unwrap_or_default(),
            labels: ref_label(&job.chain),
        };
        let mounts = self.snapshots.prepare(ns, Some(lease), new).await?;
        Ok((key, mounts))
    }

    async fn remove_extract(&self, ns: &str, sn: &str, key: &str) {
        if let Err(e) = self.snapshots.remove(ns, sn, key).await {
            tracing::warn!(key = %key, error = %e, "extraction snapshot not removed");
        }
    }

    /// Checks the diff ID and commits `key` as the job's chain; removes
    /// `key` unless committed (also when another import committed the
    /// chain first).
    async fn commit_extract(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        job: &Job,
        key: &str,
        applied: Result<berth_snapshotter::Applied, layers::Error>,
    ) -> Result<(), Error> {
        let result = async {
            let applied = applied?;
            if applied.diff_id != job.diff_id {
                return Err(Error::Layer(layers::Error::DiffIdMismatch {
                    layer: job.blob.clone(),
                    expected: job.diff_id.clone(),
                    actual: applied.diff_id,
                }));
            }
            match self
                .snapshots
                .commit(ns, Some(lease), sn, &job.chain, key, ref_label(&job.chain))
                .await
            {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == berth_api::ErrorKind::AlreadyExists => {
                    // Another import committed the same chain meanwhile.
                    Ok(false)
                }
                Err(e) => Err(e.into()),
            }
        }
        .await;
        if !matches!(result, Ok(true)) {
            self.remove_extract(ns, sn, key).await;
        }
        result.map(|_| ())
    }

    /// Prepares an extraction snapshot on the job's parent, applies the
    /// layer, checks its diff ID and commits it; removes the snapshot on
    /// failure.
    async fn apply_one(&self, ns: &str, lease: &str, sn: &str, job: &Job) -> Result<(), Error> {
        let t = std::time::Instant::now();
        let (key, mounts) = self
            .prepare_extract(ns, lease, sn, job, job.parent.clone())
            .await?;
        let applied =
            layers::apply_blob(&self.content, ns, &job.blob, &job.media_type, mounts).await;
        let applied_ms = t.elapsed().as_millis();
        let r = self.commit_extract(ns, lease, sn, job, &key, applied).await;
        tracing::debug!(layer = %job.blob, applied_ms, total_ms = t.elapsed().as_millis(), "layer unpacked");
        r
    }

    /// Writes the layer into a parentless extraction snapshot (its parent
    /// may not exist yet); [`Unpacker::finish_staged`] stacks and commits it.
    async fn stage_one(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        job: &Job,
    ) -> Result<(String, Result<berth_snapshotter::Applied, layers::Error>), Error> {
        let (key, mounts) = self.prepare_extract(ns, lease, sn, job, None).await?;
        let Some(upper) = mounts.first().map(|m| std::path::PathBuf::from(&m.source)) else {
            self.remove_extract(ns, sn, &key).await;
            return Err(Error::Invalid("extraction snapshot without a mount".into()));
        };
        let t = std::time::Instant::now();
        let applied =
            layers::apply_blob_staged(&self.content, ns, &job.blob, &job.media_type, upper).await;
        tracing::debug!(layer = %job.blob, applied_ms = t.elapsed().as_millis(), ok = applied.is_ok(), "layer staged");
        Ok((key, applied))
    }

    /// Stacks a staged layer on its (now committed) parent and commits it;
    /// a layer that turned out to need its lowers is applied again the
    /// usual way.
    async fn finish_staged(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        job: &Job,
        key: String,
        applied: Result<berth_snapshotter::Applied, layers::Error>,
    ) -> Result<(), Error> {
        if applied.as_ref().is_err_and(layers::needs_lowers) {
            tracing::debug!(layer = %job.blob, "staged apply needs the lower layers; applying in order");
            self.remove_extract(ns, sn, &key).await;
            return self.apply_one(ns, lease, sn, job).await;
        }
        if applied.is_ok() {
            let parent = job.parent.clone().unwrap_or_default();
            if let Err(e) = self.snapshots.rebase(ns, sn, &key, &parent).await {
                self.remove_extract(ns, sn, &key).await;
                return Err(e.into());
            }
        }
        self.commit_extract(ns, lease, sn, job, &key, applied).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use berth_api::events::{Event as _, SnapshotCommit, SnapshotPrepare};
    use berth_api::oci::{Descriptor, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
    use prost::Message as _;

    use super::*;
    use crate::events::{Envelope, Events, Subscription};
    use crate::filters::Filter;
    use crate::snapshots::Snapshotters;
    use crate::store::Store;

    const NS: &str = "default";

    /// An uncompressed layer holding one file.
    fn layer(name: &str, body: &[u8]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        tar.append_data(&mut h, name, body).unwrap();
        tar.into_inner().unwrap()
    }

    async fn store_blob(content: &ContentStore, bytes: &[u8]) -> Digest {
        let d = Digest::of(bytes);
        let cursor = std::io::Cursor::new(bytes.to_vec());
        content
            .ingest_from_reader(NS, cursor, &d, Some(bytes.len() as u64), Labels::new())
            .await
            .unwrap();
        d
    }

    async fn next(sub: &mut Subscription) -> std::sync::Arc<Envelope> {
        tokio::time::timeout(Duration::from_secs(5), sub.recv())
            .await
            .expect("an event within 5 s")
            .expect("the bus is open")
    }

    /// berthd's own unpack (import) and layer-by-layer unpack (pull) make
    /// their snapshots through the snapshots service, so they publish the
    /// same `/snapshot/prepare` and `/snapshot/commit` events a client's
    /// unpack does, in order, naming the extraction key and the chain.
    #[tokio::test]
    async fn own_unpack_publishes_snapshot_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let content = ContentStore::open(dir.path(), store.clone()).unwrap();
        let backends = Snapshotters::open(dir.path(), "native").unwrap();
        let gc = Gc::new(crate::gc::Deps {
            store: store.clone(),
            content: content.clone(),
            snapshotters: backends.handles(),
        });
        let events = Events::new();
        let mut sub = events.subscribe(Filter::parse(&["topic~=\"^/snapshot/\""]).unwrap());
        let snapshots = Snapshots::new(
            backends,
            crate::snapshots::Deps {
                store: store.clone(),
                gc: gc.clone(),
                events: events.clone(),
            },
        );
        let unpacker = Unpacker::new(content.clone(), snapshots.clone(), gc);
        crate::store::leases::create(&store, NS, "l", Labels::new())
            .await
            .unwrap();

        // An image of one layer, unpacked whole (as an import does).
        let base = layer("hello", b"hi");
        let base_digest = store_blob(&content, &base).await;
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{base_digest}"]}}}}"#
        );
        let config_digest = store_blob(&content, config.as_bytes()).await;
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.into(),
            config: Descriptor::new(OCI_CONFIG, config_digest, config.len() as i64),
            layers: vec![Descriptor::new(
                OCI_LAYER,
                base_digest.clone(),
                base.len() as i64,
            )],
            annotations: Default::default(),
        };
        let manifest_digest = store_blob(&content, &serde_json::to_vec(&manifest).unwrap()).await;
        let top = unpacker
            .unpack(NS, "l", &manifest_digest, "native")
            .await
            .unwrap();
        assert_eq!(top, base_digest, "one layer: the chain ID is its diff ID");

        let prepared = next(&mut sub).await;
        assert_eq!(prepared.topic, SnapshotPrepare::TOPIC);
        assert_eq!(prepared.event.type_url, SnapshotPrepare::TYPE_URL);
        assert_eq!(prepared.namespace, NS);
        let p = SnapshotPrepare::decode(prepared.event.value.as_slice()).unwrap();
        assert!(p.key.starts_with("extract-"), "{p:?}");
        assert_eq!(p.parent, "");
        let committed = next(&mut sub).await;
        assert_eq!(committed.topic, SnapshotCommit::TOPIC);
        let c = SnapshotCommit::decode(committed.event.value.as_slice()).unwrap();
        assert_eq!((c.key.as_str(), c.name), (p.key.as_str(), top.to_string()));
        assert!(snapshots
            .exists(NS, "native", &top.to_string())
            .await
            .unwrap());

        // A second layer on top, one at a time (as a pull does).
        let upper = layer("world", b"there");
        let upper_digest = store_blob(&content, &upper).await;
        let chain =
            berth_api::oci::chain_ids(&[base_digest.clone(), upper_digest.clone()])[1].clone();
        let desc = Descriptor::new(OCI_LAYER, upper_digest.clone(), upper.len() as i64);
        unpacker
            .unpack_layer(NS, "l", "native", Some(&top), &chain, &desc, &upper_digest)
            .await
            .unwrap();
        let p = SnapshotPrepare::decode(next(&mut sub).await.event.value.as_slice()).unwrap();
        assert_eq!(p.parent, top.to_string());
        let committed = next(&mut sub).await;
        assert_eq!(committed.topic, SnapshotCommit::TOPIC);
        let c = SnapshotCommit::decode(committed.event.value.as_slice()).unwrap();
        assert_eq!((c.key, c.name), (p.key, chain.to_string()));

        // Unpacking what is there already makes nothing and says nothing.
        unpacker
            .unpack(NS, "l", &manifest_digest, "native")
            .await
            .unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(200), sub.recv())
                .await
                .is_err(),
            "no event for an unpack that made nothing"
        );
    }
}

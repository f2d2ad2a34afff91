//! Unpack: a manifest's layers, in order, into committed snapshots named by
//! chain ID, as containerd does (so `ctr` sees the image as unpacked).
//!
//! Every snapshot and label step holds a GC guard and first adds what it
//! creates to the caller's lease; see [`crate::gc`] for why that is enough.

use std::io::Read;

use futures::StreamExt as _;

use berth_api::Digest;

use super::layers::{self, UNCOMPRESSED_LABEL};
use super::oci::{chain_ids, Config, Manifest};
use crate::content::ContentStore;
use crate::services::Context;
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

/// Largest manifest/config/index document read into memory.
const MAX_DOC: u64 = 8 << 20;

/// Reads a small JSON document blob of `ns`.
pub async fn read_doc(cs: &ContentStore, ns: &str, digest: &Digest) -> Result<Vec<u8>, Error> {
    let f = cs.open_blob(ns, digest)?;
    let d = digest.clone();
    tokio::task::spawn_blocking(move || {
        let mut buf = Vec::new();
        f.take(MAX_DOC + 1)
            .read_to_end(&mut buf)
            .map_err(|e| Error::Invalid(format!("reading {d}: {e}")))?;
        if buf.len() as u64 > MAX_DOC {
            return Err(Error::Invalid(format!(
                "{d}: document larger than {MAX_DOC} bytes"
            )));
        }
        Ok(buf)
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))?
}

/// Parses a digest string from a document, naming it in the error.
pub fn digest(what: &str, s: &str) -> Result<Digest, Error> {
    s.parse()
        .map_err(|e| Error::Invalid(format!("{what} {s:?}: {e}")))
}

/// Sets one label on a content blob, under a GC guard.
pub async fn set_label(
    ctx: &Context,
    ns: &str,
    digest: &Digest,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    let mut info = ctx.content.info(ns, digest)?;
    info.labels = Labels::from([(key.to_string(), value.to_string())]);
    let _hold = ctx.gc.hold().await;
    ctx.content
        .update(ns, info, &[format!("labels.{key}")])
        .await?;
    Ok(())
}

/// Unpacks the image manifest `manifest` of `ns` into `snapshotter`,
/// holding everything it makes in `lease`. Returns the top chain ID. Layers
/// already unpacked (their chain ID exists) are skipped. On failure the
/// extraction snapshot is removed and nothing is committed for that layer.
pub async fn unpack(
    ctx: &Context,
    ns: &str,
    lease: &str,
    manifest: &Digest,
    snapshotter: &str,
) -> Result<Digest, Error> {
    let (sn_name, _) = ctx.snapshotters.resolve(snapshotter)?;
    let m: Manifest = serde_json::from_slice(&read_doc(&ctx.content, ns, manifest).await?)
        .map_err(|e| Error::Invalid(format!("manifest {manifest}: {e}")))?;
    let config_digest = digest("config digest", &m.config.digest)?;
    let config: Config = serde_json::from_slice(&read_doc(&ctx.content, ns, &config_digest).await?)
        .map_err(|e| Error::Invalid(format!("config {config_digest}: {e}")))?;
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| digest("config rootfs.diff_ids entry", d))
        .collect::<Result<Vec<_>, _>>()?;
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
    let (_, backend) = ctx.snapshotters.resolve(&sn_name)?;
    // Native snapshots copy their parent: one layer after the other there.
    let overlay = backend.backend() == berth_snapshotter::Backend::Overlay;
    let mut jobs = Vec::new();
    let mut parent_missing = false;
    for (i, layer) in m.layers.iter().enumerate() {
        let chain = chains[i].to_string();
        let missing = !chain_present(ctx, ns, lease, &sn_name, &chain).await?;
        if missing {
            jobs.push(Job {
                blob: digest("layer digest", &layer.digest)?,
                media_type: layer.media_type.clone(),
                diff_id: diff_ids[i].clone(),
                chain,
                parent: (i > 0).then(|| chains[i - 1].to_string()),
                // On overlayfs a layer whose parent is still to be unpacked
                // is written at once into a parentless snapshot and stacked
                // when its turn comes.
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
        done.push_back(prepare(ctx, ns, lease, sn, job));
    }
    // In layer order: each job's parent is committed before it is stacked.
    let mut failed = None;
    for job in &jobs {
        let Some(prepared) = done.next().await else {
            break;
        };
        if failed.is_none() {
            if let Some(next) = queued.next() {
                done.push_back(prepare(ctx, ns, lease, sn, next));
            }
        }
        let r = match (prepared, failed.is_some()) {
            (Prepared::Staged(Ok((key, _))), true) => {
                remove_extract(ctx, ns, sn, &key).await;
                Ok(())
            }
            (_, true) => Ok(()),
            (Prepared::Done(r), false) => r,
            (Prepared::Staged(Ok((key, applied))), false) => {
                finish_staged(ctx, ns, lease, sn, job, key, applied).await
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
        let blob = digest("layer digest", &layer.digest)?;
        set_label(ctx, ns, &blob, UNCOMPRESSED_LABEL, &diff_ids[i].to_string()).await?;
    }
    let top = chains[chains.len() - 1].clone();
    let key = format!("containerd.io/gc.ref.snapshot.{sn_name}");
    set_label(ctx, ns, &config_digest, &key, &top.to_string()).await?;
    Ok(top)
}

/// Adds the snapshot `chain` of `sn` to `lease` (under a GC guard, before
/// anything may create it) and says whether it exists already.
pub(crate) async fn chain_present(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    chain: &str,
) -> Result<bool, Error> {
    {
        let _hold = ctx.gc.hold().await;
        ctx.snapshotters
            .lease(&ctx.store, ns, Some(lease), sn, chain)
            .await?;
    }
    let (ns2, c2) = (ns.to_string(), chain.to_string());
    Ok(ctx
        .snapshotters
        .run(sn, move |s| match s.stat(&ns2, &c2) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == berth_snapshotter::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await?)
}

/// Applies the layer `blob` onto the committed snapshot `parent` (None for
/// the base) and commits it as `chain` in snapshotter `sn`, holding what it
/// makes in `lease`; nothing is committed when it fails. For unpackers that
/// take layers one at a time (pulls, as layers land).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn extract_layer(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    blob: &Digest,
    media_type: &str,
    diff_id: &Digest,
    chain: &str,
    parent: Option<&str>,
) -> Result<(), Error> {
    let job = Job {
        blob: blob.clone(),
        media_type: media_type.to_string(),
        diff_id: diff_id.clone(),
        chain: chain.to_string(),
        parent: parent.map(str::to_string),
        staged: false,
    };
    apply_one(ctx, ns, lease, sn, &job).await
}

/// One layer to unpack.
struct Job {
    blob: Digest,
    media_type: String,
    diff_id: Digest,
    chain: String,
    parent: Option<String>,
    /// written before its parent exists (see [`stage_one`])
    staged: bool,
}

/// A job's first half: applied and committed, or staged.
enum Prepared {
    Done(Result<(), Error>),
    /// the staged extraction snapshot and how its apply went
    Staged(Result<(String, Result<berth_snapshotter::Applied, layers::Error>), Error>),
}

/// Applies a job, or stages it.
async fn prepare(ctx: &Context, ns: &str, lease: &str, sn: &str, job: &Job) -> Prepared {
    if job.staged {
        Prepared::Staged(stage_one(ctx, ns, lease, sn, job).await)
    } else {
        Prepared::Done(apply_one(ctx, ns, lease, sn, job).await)
    }
}

/// Layers applied at once: each apply already keeps two threads busy
/// (decompression, file writes).
fn parallel_layers() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Prepares, leased, the extraction snapshot for `job` on `parent`.
async fn prepare_extract(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    job: &Job,
    parent: Option<String>,
) -> Result<(String, Vec<berth_snapshotter::Mount>), Error> {
    let key = format!("extract-{} {}", uuid::Uuid::new_v4().simple(), job.chain);
    let _hold = ctx.gc.hold().await;
    ctx.snapshotters
        .lease(&ctx.store, ns, Some(lease), sn, &key)
        .await?;
    let (ns2, k2, l2) = (ns.to_string(), key.clone(), ref_label(&job.chain));
    let mounts = ctx
        .snapshotters
        .run(sn, move |s| s.prepare(&ns2, &k2, parent.as_deref(), l2))
        .await?;
    Ok((key, mounts))
}

fn ref_label(chain: &str) -> std::collections::HashMap<String, String> {
    std::collections::HashMap::from([("containerd.io/snapshot.ref".to_string(), chain.to_string())])
}

async fn remove_extract(ctx: &Context, ns: &str, sn: &str, key: &str) {
    let (ns2, k2) = (ns.to_string(), key.to_string());
    if let Err(e) = ctx.snapshotters.run(sn, move |s| s.remove(&ns2, &k2)).await {
        tracing::warn!(key = %key, error = %e, "extraction snapshot not removed");
    }
}

/// Checks the diff ID and commits `key` as the job's chain; removes `key`
/// unless committed (also when another import committed the chain first).
async fn commit_extract(
    ctx: &Context,
    ns: &str,
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
        let _hold = ctx.gc.hold().await;
        let (ns2, k2, c2, l2) = (
            ns.to_string(),
            key.to_string(),
            job.chain.clone(),
            ref_label(&job.chain),
        );
        match ctx
            .snapshotters
            .run(sn, move |s| s.commit(&ns2, &c2, &k2, l2))
            .await
        {
            Ok(()) => Ok(true),
            Err(crate::snapshots::Error::Snapshot(e))
                if e.kind() == berth_snapshotter::ErrorKind::AlreadyExists =>
            {
                // Another import committed the same chain meanwhile.
                Ok(false)
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    if !matches!(result, Ok(true)) {
        remove_extract(ctx, ns, sn, key).await;
    }
    result.map(|_| ())
}

/// Prepares an extraction snapshot on the job's parent, applies the layer,
/// checks its diff ID and commits it; removes the snapshot on failure.
async fn apply_one(ctx: &Context, ns: &str, lease: &str, sn: &str, job: &Job) -> Result<(), Error> {
    let t = std::time::Instant::now();
    let (key, mounts) = prepare_extract(ctx, ns, lease, sn, job, job.parent.clone()).await?;
    let applied = layers::apply_blob(&ctx.content, ns, &job.blob, &job.media_type, mounts).await;
    let applied_ms = t.elapsed().as_millis();
    let r = commit_extract(ctx, ns, sn, job, &key, applied).await;
    tracing::debug!(layer = %job.blob, applied_ms, total_ms = t.elapsed().as_millis(), "layer unpacked");
    r
}

/// Writes the layer into a parentless extraction snapshot (its parent may
/// not exist yet); [`finish_staged`] stacks and commits it.
async fn stage_one(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    job: &Job,
) -> Result<(String, Result<berth_snapshotter::Applied, layers::Error>), Error> {
    let (key, mounts) = prepare_extract(ctx, ns, lease, sn, job, None).await?;
    let Some(upper) = mounts.first().map(|m| std::path::PathBuf::from(&m.source)) else {
        remove_extract(ctx, ns, sn, &key).await;
        return Err(Error::Invalid("extraction snapshot without a mount".into()));
    };
    let t = std::time::Instant::now();
    let applied =
        layers::apply_blob_staged(&ctx.content, ns, &job.blob, &job.media_type, upper).await;
    tracing::debug!(layer = %job.blob, applied_ms = t.elapsed().as_millis(), ok = applied.is_ok(), "layer staged");
    Ok((key, applied))
}

/// Stacks a staged layer on its (now committed) parent and commits it; a
/// layer that turned out to need its lowers is applied again the usual way.
async fn finish_staged(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    job: &Job,
    key: String,
    applied: Result<berth_snapshotter::Applied, layers::Error>,
) -> Result<(), Error> {
    if applied.as_ref().is_err_and(layers::needs_lowers) {
        tracing::debug!(layer = %job.blob, "staged apply needs the lower layers; applying in order");
        remove_extract(ctx, ns, sn, &key).await;
        return apply_one(ctx, ns, lease, sn, job).await;
    }
    if applied.is_ok() {
        let parent = job.parent.clone().unwrap_or_default();
        let (ns2, k2) = (ns.to_string(), key.clone());
        let hold = ctx.gc.hold().await;
        let rebased = ctx
            .snapshotters
            .run(sn, move |s| s.rebase(&ns2, &k2, &parent))
            .await;
        drop(hold);
        if let Err(e) = rebased {
            remove_extract(ctx, ns, sn, &key).await;
            return Err(e.into());
        }
    }
    commit_extract(ctx, ns, sn, job, &key, applied).await
}

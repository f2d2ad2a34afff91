//! Unpack: a manifest's layers, in order, into committed snapshots named by
//! chain ID, as containerd does (so `ctr` sees the image as unpacked).
//!
//! Every snapshot and label step holds a GC guard and first adds what it
//! creates to the caller's lease; see [`crate::gc`] for why that is enough.

use std::collections::BTreeMap;
use std::io::Read;

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
    let lease_some = Some(lease);
    for (i, layer) in m.layers.iter().enumerate() {
        let chain = chains[i].to_string();
        let parent = (i > 0).then(|| chains[i - 1].to_string());
        let blob = digest("layer digest", &layer.digest)?;
        {
            let _hold = ctx.gc.hold().await;
            ctx.snapshotters
                .lease(&ctx.store, ns, lease_some, &sn_name, &chain)
                .await?;
        }
        let (ns2, c2) = (ns.to_string(), chain.clone());
        let exists = ctx
            .snapshotters
            .run(&sn_name, move |s| match s.stat(&ns2, &c2) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == berth_snapshotter::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            })
            .await?;
        if !exists {
            apply_one(
                ctx,
                ns,
                lease,
                &sn_name,
                &blob,
                &layer.media_type,
                &diff_ids[i],
                &chain,
                parent,
            )
            .await?;
        }
        set_label(ctx, ns, &blob, UNCOMPRESSED_LABEL, &diff_ids[i].to_string()).await?;
    }
    let top = chains[chains.len() - 1].clone();
    let key = format!("containerd.io/gc.ref.snapshot.{sn_name}");
    set_label(ctx, ns, &config_digest, &key, &top.to_string()).await?;
    Ok(top)
}

/// Prepares an extraction snapshot, applies one layer, checks its diff ID
/// and commits it as `chain`; removes the extraction snapshot on failure.
#[allow(clippy::too_many_arguments)]
async fn apply_one(
    ctx: &Context,
    ns: &str,
    lease: &str,
    sn: &str,
    blob: &Digest,
    media_type: &str,
    diff_id: &Digest,
    chain: &str,
    parent: Option<String>,
) -> Result<(), Error> {
    let key = format!("extract-{} {chain}", uuid::Uuid::new_v4().simple());
    let labels: std::collections::HashMap<String, String> =
        BTreeMap::from([("containerd.io/snapshot.ref".to_string(), chain.to_string())])
            .into_iter()
            .collect();
    let mounts = {
        let _hold = ctx.gc.hold().await;
        ctx.snapshotters
            .lease(&ctx.store, ns, Some(lease), sn, &key)
            .await?;
        let (ns2, k2, l2) = (ns.to_string(), key.clone(), labels.clone());
        ctx.snapshotters
            .run(sn, move |s| s.prepare(&ns2, &k2, parent.as_deref(), l2))
            .await?
    };
    let result = async {
        let applied = layers::apply_blob(&ctx.content, ns, blob, media_type, mounts).await?;
        if applied.diff_id != *diff_id {
            return Err(Error::Layer(layers::Error::DiffIdMismatch {
                layer: blob.clone(),
                expected: diff_id.clone(),
                actual: applied.diff_id,
            }));
        }
        let _hold = ctx.gc.hold().await;
        let (ns2, k2, c2) = (ns.to_string(), key.clone(), chain.to_string());
        let r = ctx
            .snapshotters
            .run(sn, move |s| s.commit(&ns2, &c2, &k2, labels))
            .await;
        match r {
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
        let (ns2, k2) = (ns.to_string(), key.clone());
        if let Err(e) = ctx.snapshotters.run(sn, move |s| s.remove(&ns2, &k2)).await {
            tracing::warn!(key = %key, error = %e, "extraction snapshot not removed");
        }
    }
    result.map(|_| ())
}

//! The layer unpacker pulls use: each layer, as soon as it and the ones
//! below it are present, applied into the committed snapshot named by its
//! chain ID, with the images module's building blocks (its streaming
//! `layers::apply_blob`, its labels, the snapshotters' lease bookkeeping and
//! the GC guard), exactly as `images::unpack` does for a whole manifest.

use std::collections::HashMap;
use std::sync::Arc;

use berth_api::Digest;
use futures::future::BoxFuture;

use super::manifest::Descriptor;
use super::pull::LayerUnpacker;
use crate::images::layers::{self, UNCOMPRESSED_LABEL};
use crate::images::unpack::set_label;
use crate::services::Context;

/// The unpacker over `ctx`'s snapshotters.
pub fn unpacker(ctx: &Context) -> Option<Arc<dyn LayerUnpacker>> {
    Some(Arc::new(Unpacker { ctx: ctx.clone() }))
}

struct Unpacker {
    ctx: Context,
}

fn parse(what: &str, s: &str) -> Result<Digest, String> {
    s.parse().map_err(|e| format!("{what} {s:?}: {e}"))
}

impl Unpacker {
    #[allow(clippy::too_many_arguments)]
    async fn apply_layer(
        &self,
        ns: &str,
        lease: &str,
        snapshotter: &str,
        parent: Option<&str>,
        chain: &str,
        layer: &Descriptor,
        diff_id: &str,
    ) -> Result<(), String> {
        let ctx = &self.ctx;
        let (sn, _) = ctx
            .snapshotters
            .resolve(snapshotter)
            .map_err(|e| e.to_string())?;
        let blob = parse("layer digest", &layer.digest)?;
        let diff = parse("diff ID", diff_id)?;
        {
            let _hold = ctx.gc.hold().await;
            ctx.snapshotters
                .lease(&ctx.store, ns, Some(lease), &sn, chain)
                .await
                .map_err(|e| e.to_string())?;
        }
        let (ns2, c2) = (ns.to_string(), chain.to_string());
        let exists = ctx
            .snapshotters
            .run(&sn, move |s| match s.stat(&ns2, &c2) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == berth_snapshotter::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            })
            .await
            .map_err(|e| e.to_string())?;
        if !exists {
            self.extract(
                ns,
                lease,
                &sn,
                &blob,
                &layer.media_type,
                &diff,
                chain,
                parent,
            )
            .await?;
        }
        set_label(ctx, ns, &blob, UNCOMPRESSED_LABEL, diff_id)
            .await
            .map_err(|e| e.to_string())
    }

    /// Prepares an extraction snapshot, applies the layer, checks its diff
    /// ID and commits it as `chain`; removes the extraction snapshot when
    /// anything fails (nothing is committed then).
    #[allow(clippy::too_many_arguments)]
    async fn extract(
        &self,
        ns: &str,
        lease: &str,
        sn: &str,
        blob: &Digest,
        media_type: &str,
        diff_id: &Digest,
        chain: &str,
        parent: Option<&str>,
    ) -> Result<(), String> {
        let ctx = &self.ctx;
        let key = format!("extract-{} {chain}", uuid::Uuid::new_v4().simple());
        let labels: HashMap<String, String> =
            HashMap::from([("containerd.io/snapshot.ref".to_string(), chain.to_string())]);
        let mounts = {
            let _hold = ctx.gc.hold().await;
            ctx.snapshotters
                .lease(&ctx.store, ns, Some(lease), sn, &key)
                .await
                .map_err(|e| e.to_string())?;
            let (ns2, k2, l2, p2) = (
                ns.to_string(),
                key.clone(),
                labels.clone(),
                parent.map(str::to_string),
            );
            ctx.snapshotters
                .run(sn, move |s| s.prepare(&ns2, &k2, p2.as_deref(), l2))
                .await
                .map_err(|e| e.to_string())?
        };
        let result = async {
            let applied = layers::apply_blob(&ctx.content, ns, blob, media_type, mounts)
                .await
                .map_err(|e| e.to_string())?;
            if applied.diff_id != *diff_id {
                return Err(format!(
                    "diff ID {} does not match the config's {diff_id}",
                    applied.diff_id
                ));
            }
            let _hold = ctx.gc.hold().await;
            let (ns2, k2, c2) = (ns.to_string(), key.clone(), chain.to_string());
            match ctx
                .snapshotters
                .run(sn, move |s| s.commit(&ns2, &c2, &k2, labels))
                .await
            {
                Ok(()) => Ok(true),
                // Another pull or import committed the same chain meanwhile.
                Err(crate::snapshots::Error::Snapshot(e))
                    if e.kind() == berth_snapshotter::ErrorKind::AlreadyExists =>
                {
                    Ok(false)
                }
                Err(e) => Err(e.to_string()),
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
}

impl LayerUnpacker for Unpacker {
    fn apply<'a>(
        &'a self,
        ns: &'a str,
        lease: &'a str,
        snapshotter: &'a str,
        parent: Option<&'a str>,
        chain_id: &'a str,
        layer: &'a Descriptor,
        diff_id: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(self.apply_layer(ns, lease, snapshotter, parent, chain_id, layer, diff_id))
    }
}

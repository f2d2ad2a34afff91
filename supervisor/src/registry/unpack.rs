//! The layer unpacker pulls use: each layer, as soon as it and the ones
//! below it are present, applied into the committed snapshot named by its
//! chain ID by `images::unpack::extract_layer` (the same steps, lease
//! bookkeeping and GC guard as an import's unpack).

use std::sync::Arc;

use berth_api::Digest;
use futures::future::BoxFuture;

use super::manifest::Descriptor;
use super::pull::LayerUnpacker;
use crate::images::layers::UNCOMPRESSED_LABEL;
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
        let exists = crate::images::unpack::chain_present(ctx, ns, lease, &sn, chain)
            .await
            .map_err(|e| e.to_string())?;
        if !exists {
            crate::images::unpack::extract_layer(
                ctx,
                ns,
                lease,
                &sn,
                &blob,
                &layer.media_type,
                &diff,
                chain,
                parent,
            )
            .await
            .map_err(|e| e.to_string())?;
        }
        set_label(ctx, ns, &blob, UNCOMPRESSED_LABEL, diff_id)
            .await
            .map_err(|e| e.to_string())
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

//! What collection reads from its neighbours: content records and the
//! snapshots container records name; and the one removal it asks the
//! content store for.

use super::{Deps, Error, Node};
use crate::store::labels::Labels;

/// Every content record of every namespace: (namespace, digest, labels).
pub(super) async fn content(deps: &Deps) -> Result<Vec<(String, String, Labels)>, Error> {
    let content = deps.content.clone();
    let all = tokio::task::spawn_blocking(move || content.list_all())
        .await
        .map_err(|e| Error::Join(e.to_string()))??;
    Ok(all
        .into_iter()
        .map(|(ns, i)| (ns, i.digest.to_string(), i.labels))
        .collect())
}

/// Removes the content record `digest` of `ns`; when no namespace holds
/// the blob any more its file is moved to the trash. None when the
/// record was already gone; else the trashed file, if any, to delete
/// after the collection releases its guard.
pub(super) async fn delete_content(
    deps: &Deps,
    ns: &str,
    digest: &str,
) -> Result<Option<Option<std::path::PathBuf>>, Error> {
    let Ok(d) = digest.parse::<berth_api::Digest>() else {
        return Ok(None);
    };
    match deps.content.detach(ns, &d).await {
        Ok(trashed) => Ok(Some(trashed)),
        Err(crate::content::Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The snapshots container records name.
pub(super) fn container_roots(deps: &Deps) -> Result<Vec<Node>, Error> {
    let mut out = Vec::new();
    for ns in crate::store::namespaces::list(&deps.store)? {
        for c in crate::store::containers::list(&deps.store, &ns.name)? {
            if !c.snapshotter.is_empty() && !c.snapshot_key.is_empty() {
                out.push(Node::snapshot(&ns.name, &c.snapshotter, &c.snapshot_key));
            }
            out.extend(super::mark::label_refs(&ns.name, &c.labels));
        }
    }
    Ok(out)
}

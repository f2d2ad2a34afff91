//! Engine records in the metadata store: tree `berth.containers`, key
//! `ns/id`, JSON; every write flushed before it returns.

use super::model::Record;
use super::Result;
use crate::store::{ns_key, Store};

const TREE: &str = "berth.containers";

/// Writes a record, durably.
pub(super) async fn put(store: &Store, ns: &str, rec: &Record) -> Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(crate::store::Error::from)?;
    store.tree(TREE)?.insert(ns_key(ns, &rec.id), bytes)?;
    store.flush().await?;
    Ok(())
}

/// Deletes a record, durably.
pub(super) async fn delete(store: &Store, ns: &str, id: &str) -> Result<()> {
    store.tree(TREE)?.remove(ns_key(ns, id))?;
    store.flush().await?;
    Ok(())
}

/// Every record, as (namespace, record); unreadable ones are logged and
/// skipped.
pub(super) fn all(store: &Store) -> Result<Vec<(String, Record)>> {
    let mut out = Vec::new();
    for kv in store.tree(TREE)?.iter() {
        let (k, v) = kv?;
        let key = String::from_utf8_lossy(&k).into_owned();
        let Some((ns, _)) = key.split_once('/') else {
            continue;
        };
        match serde_json::from_slice::<Record>(&v) {
            Ok(r) => out.push((ns.to_string(), r)),
            Err(e) => tracing::warn!(key, error = %e, "unreadable container record skipped"),
        }
    }
    Ok(out)
}

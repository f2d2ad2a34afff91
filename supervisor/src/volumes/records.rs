//! Volume records in the metadata store (tree `berth.volumes`, keyed by
//! name; JSON), flushed before a write returns.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::store::Store;

const TREE: &str = "berth.volumes";

/// One volume as berthd keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeRecord {
    /// Its name (also its directory under `ROOT/volumes`).
    pub name: String,
    /// `local`.
    pub driver: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: SystemTime,
    /// Made for an image's VOLUME or a `-v /path` without a name.
    pub anonymous: bool,
    /// The containers using it, as `namespace/id`.
    pub users: BTreeSet<String>,
}

/// A volume name: Docker's rule, 1-128 of `[A-Za-z0-9_.-]` starting with a
/// letter or digit, at least two characters (it is a directory name).
pub(super) fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() >= 2
        && name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "volume name {name:?}: 2-128 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// The record of `name`, if any.
pub(super) fn get(store: &Store, name: &str) -> Result<Option<VolumeRecord>> {
    let raw = store.tree(TREE)?.get(name.as_bytes())?;
    raw.map(|b| serde_json::from_slice(&b).map_err(|e| Error::Internal(e.to_string())))
        .transpose()
}

/// Every record, by name.
pub(super) fn all(store: &Store) -> Result<Vec<VolumeRecord>> {
    let mut out = Vec::new();
    for kv in store.tree(TREE)?.iter() {
        let (_, v) = kv?;
        match serde_json::from_slice(&v) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "unreadable volume record skipped"),
        }
    }
    Ok(out)
}

/// Writes a record, durably.
pub(super) async fn put(store: &Store, rec: &VolumeRecord) -> Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(|e| Error::Internal(e.to_string()))?;
    store.room_for(bytes.len() as u64)?;
    store.tree(TREE)?.insert(rec.name.as_bytes(), bytes)?;
    store.flush().await?;
    Ok(())
}

/// Deletes a record, durably.
pub(super) async fn delete(store: &Store, name: &str) -> Result<()> {
    store.tree(TREE)?.remove(name.as_bytes())?;
    store.flush().await?;
    Ok(())
}

//! Content records: which digests a namespace holds, with their size,
//! times and labels. The blobs themselves live on disk, shared by every
//! namespace (see `crate::content`); a digest is visible in a namespace only
//! while a record for it exists here.
//!
//! Keys are `"{ns}/{digest}"` in the tree `content`. Callers flush.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode, ns_key, ns_prefix};
use super::labels::Labels;
use super::{Result, Store};

const TREE: &str = "content";

/// What a namespace knows about one blob.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Size in bytes.
    pub size: u64,
    /// When it was committed in this namespace.
    pub created_at: SystemTime,
    /// When its labels last changed.
    pub updated_at: SystemTime,
    /// Labels (GC references, user labels).
    pub labels: Labels,
}

/// The record of `digest` in `ns`, if any.
pub fn get(store: &Store, ns: &str, digest: &str) -> Result<Option<Record>> {
    match store.tree(TREE)?.get(ns_key(ns, digest))? {
        Some(raw) => Ok(Some(decode(&raw)?)),
        None => Ok(None),
    }
}

/// Inserts a record unless one exists; true when inserted.
pub fn insert_new(store: &Store, ns: &str, digest: &str, rec: &Record) -> Result<bool> {
    let prev = store.tree(TREE)?.compare_and_swap(
        ns_key(ns, digest),
        None::<&[u8]>,
        Some(encode(store, rec)?),
    )?;
    Ok(prev.is_ok())
}

/// Replaces the record of `digest` in `ns` through `f`, atomically; None
/// when there is no record. `f` may refuse the change with an error.
pub fn update(
    store: &Store,
    ns: &str,
    digest: &str,
    f: impl Fn(&mut Record) -> Result<()>,
) -> Result<Option<Record>> {
    let tree = store.tree(TREE)?;
    let key = ns_key(ns, digest);
    loop {
        let Some(raw) = tree.get(&key)? else {
            return Ok(None);
        };
        let mut rec: Record = decode(&raw)?;
        f(&mut rec)?;
        let swapped = tree.compare_and_swap(&key, Some(raw), Some(encode(store, &rec)?))?;
        if swapped.is_ok() {
            return Ok(Some(rec));
        }
        // Lost a race with another writer: read again and reapply.
    }
}

/// Removes the record; true when there was one.
pub fn remove(store: &Store, ns: &str, digest: &str) -> Result<bool> {
    store.room_for(0)?;
    Ok(store.tree(TREE)?.remove(ns_key(ns, digest))?.is_some())
}

/// Every record of a namespace, as (digest, record), ordered by digest.
pub fn list(store: &Store, ns: &str) -> Result<Vec<(String, Record)>> {
    codec::scan(store, TREE, &ns_prefix(ns))
}

/// Every record of every namespace, as (namespace, digest, record).
pub fn list_all(store: &Store) -> Result<Vec<(String, String, Record)>> {
    codec::scan_all(store, TREE)
}

/// True when any namespace records `digest`.
pub fn referenced(store: &Store, digest: &str) -> Result<bool> {
    for k in store.tree(TREE)?.iter().keys() {
        let k = k?;
        if k.len() > digest.len()
            && k.ends_with(digest.as_bytes())
            && k[k.len() - digest.len() - 1] == b'/'
        {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(size: u64) -> Record {
        let now = SystemTime::now();
        Record {
            size,
            created_at: now,
            updated_at: now,
            labels: Labels::new(),
        }
    }

    #[test]
    fn records_per_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(insert_new(&store, "a", "sha256:1", &rec(1)).unwrap());
        assert!(!insert_new(&store, "a", "sha256:1", &rec(2)).unwrap());
        assert!(insert_new(&store, "b", "sha256:1", &rec(1)).unwrap());
        assert!(insert_new(&store, "b", "sha256:2", &rec(5)).unwrap());
        assert_eq!(get(&store, "a", "sha256:1").unwrap().unwrap().size, 1);
        assert!(get(&store, "a", "sha256:2").unwrap().is_none());
        assert_eq!(list(&store, "b").unwrap().len(), 2);
        assert_eq!(list_all(&store).unwrap().len(), 3);
        let up = update(&store, "a", "sha256:1", |r| {
            r.labels.insert("k".into(), "v".into());
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(up.labels.get("k").map(String::as_str), Some("v"));
        assert!(update(&store, "a", "sha256:9", |_| Ok(()))
            .unwrap()
            .is_none());
        assert!(remove(&store, "a", "sha256:1").unwrap());
        assert!(referenced(&store, "sha256:1").unwrap());
        assert!(remove(&store, "b", "sha256:1").unwrap());
        assert!(!referenced(&store, "sha256:1").unwrap());
        assert!(!remove(&store, "b", "sha256:1").unwrap());
        assert_eq!(
            store.namespace_in_use("b").unwrap().as_deref(),
            Some("content")
        );
    }
}

//! Namespace records: a name and its labels.

use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode};
use super::labels::{self, Labels};
use super::{Error, Result, Store};

const TREE: &str = "namespaces";

/// One namespace.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Namespace {
    /// Its name (a containerd identifier).
    pub name: String,
    /// Free-form labels.
    pub labels: Labels,
}

fn check_name(name: &str) -> Result<()> {
    berth_api::identifiers::validate("namespace", name)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Creates a namespace; AlreadyExists if it is there.
pub async fn create(store: &Store, ns: Namespace) -> Result<Namespace> {
    check_name(&ns.name)?;
    labels::validate(&ns.labels)?;
    let tree = store.tree(TREE)?;
    let prev =
        tree.compare_and_swap(ns.name.as_bytes(), None::<&[u8]>, Some(encode(store, &ns)?))?;
    if prev.is_err() {
        return Err(Error::AlreadyExists {
            kind: "namespace",
            id: ns.name,
        });
    }
    store.flush().await?;
    Ok(ns)
}

/// Makes sure `name` exists; namespaced writes call this, as containerd
/// creates a namespace on first use.
pub async fn ensure(store: &Store, name: &str) -> Result<()> {
    check_name(name)?;
    let tree = store.tree(TREE)?;
    if tree.contains_key(name)? {
        return Ok(());
    }
    let ns = Namespace {
        name: name.to_string(),
        labels: Labels::new(),
    };
    // Losing the race to another creator is fine.
    let _ = tree.compare_and_swap(name.as_bytes(), None::<&[u8]>, Some(encode(store, &ns)?))?;
    Ok(())
}

/// Reads one namespace.
pub fn get(store: &Store, name: &str) -> Result<Namespace> {
    check_name(name)?;
    codec::get(store, TREE, name.as_bytes(), "namespace", name)
}

/// Every namespace, by name.
pub fn list(store: &Store) -> Result<Vec<Namespace>> {
    Ok(codec::scan(store, TREE, b"")?
        .into_iter()
        .map(|(_, n)| n)
        .collect())
}

/// Updates labels under a field mask (only `labels` paths are allowed).
///
/// A namespace that does not exist yet is created with those labels, as
/// containerd's label writes create it (`ctr namespaces label new k=v`);
/// the name must still be a valid identifier, and a refused mask or label
/// creates nothing.
pub async fn update(store: &Store, ns: Namespace, paths: &[String]) -> Result<Namespace> {
    check_name(&ns.name)?;
    let tree = store.tree(TREE)?;
    let updated = tree.transaction(|t| {
        let mut cur: Namespace = match t.get(ns.name.as_bytes())? {
            Some(raw) => decode(&raw).map_err(abort)?,
            None => Namespace {
                name: ns.name.clone(),
                labels: Labels::new(),
            },
        };
        labels::apply_mask(&mut cur.labels, &ns.labels, paths, &[]).map_err(abort)?;
        t.insert(ns.name.as_bytes(), encode(store, &cur).map_err(abort)?)?;
        Ok(cur)
    })?;
    store.flush().await?;
    Ok(updated)
}

/// Deletes a namespace; FailedPrecondition while anything still lives in it.
/// `snapshots_in_use` says whether any snapshotter holds snapshots for it.
pub async fn delete(store: &Store, name: &str, snapshots_in_use: bool) -> Result<()> {
    check_name(name)?;
    if let Some(kind) = store.namespace_in_use(name)? {
        return Err(Error::FailedPrecondition(format!(
            "namespace {name:?} must be empty, but it still has {kind}"
        )));
    }
    if snapshots_in_use {
        return Err(Error::FailedPrecondition(format!(
            "namespace {name:?} must be empty, but it still has snapshots"
        )));
    }
    store.room_for(0)?;
    let removed = store.tree(TREE)?.remove(name)?;
    if removed.is_none() {
        return Err(Error::NotFound {
            kind: "namespace",
            id: name.into(),
        });
    }
    store.flush().await?;
    Ok(())
}

pub(super) fn abort(e: Error) -> sled::transaction::ConflictableTransactionError<Error> {
    sled::transaction::ConflictableTransactionError::Abort(e)
}

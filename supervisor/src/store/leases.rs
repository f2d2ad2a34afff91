//! Lease records and the resources they hold. Garbage collection treats
//! everything a live lease holds as a root.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::codec::{self, encode, id_of, ns_key, ns_prefix};
use super::labels::{self, Labels};
use super::{Error, Result, Store};

const TREE: &str = "leases";
const RESOURCES: &str = "lease_resources";

/// Label holding a lease's expiry time (RFC 3339).
pub use berth_api::lease::EXPIRE_LABEL;

/// One lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    /// Its id (a containerd identifier).
    pub id: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Labels, among them the optional expiry.
    pub labels: Labels,
}

impl Lease {
    /// When the lease expires: None without an expiry label, `Err` with
    /// the label's value when it is not an RFC 3339 time.
    pub fn expiry(&self) -> Option<std::result::Result<SystemTime, &str>> {
        let v = self.labels.get(EXPIRE_LABEL)?;
        Some(berth_api::lease::parse_rfc3339(v).ok_or(v.as_str()))
    }
}

/// The labels of a lease that expires at `at` (berthd's own leases, so
/// what they hold goes if berthd dies before it drops them).
pub fn expiring_at(at: SystemTime) -> Labels {
    Labels::from([(
        EXPIRE_LABEL.to_string(),
        berth_api::lease::format_rfc3339(at),
    )])
}

/// A resource held by a lease: `content`, `ingests` or `snapshots/<name>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct Resource {
    /// The resource's id (a digest, an ingest ref or a snapshot key).
    pub id: String,
    /// Its kind.
    pub kind: String,
}

/// Longest lease id accepted (a path's length: `ctr images mount` uses
/// its mount target as the lease id).
pub const MAX_ID_LEN: usize = 4096;

/// containerd refuses only an empty lease id (ctr's own random ids,
/// `<nanos>-<base64>`, break the identifier rules, and `ctr images mount
/// IMAGE /tmp/x` uses the path `/tmp/x`), so we ask little more: non-empty,
/// at most [`MAX_ID_LEN`] bytes, no NUL. A lease id is only ever a key in
/// the metadata store (`ns/id`, and `ns/id\0...` for its resources: the
/// namespace has no `/` and the id no NUL, so keys cannot collide), never
/// a path.
fn check_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ID_LEN || id.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "lease id {:?}: must be 1-{MAX_ID_LEN} bytes without NUL",
            id.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

fn check_resource(r: &Resource) -> Result<()> {
    let known = r.kind == "content"
        || r.kind == "ingests"
        || r.kind
            .strip_prefix("snapshots/")
            .is_some_and(|s| !s.is_empty() && !s.contains('/'));
    if !known {
        return Err(Error::InvalidArgument(format!(
            "resource type: unsupported resource type {:?}",
            r.kind
        )));
    }
    if r.id.is_empty() || r.id.contains('\0') {
        return Err(Error::InvalidArgument(
            "resource id: must not be empty or hold NUL".into(),
        ));
    }
    Ok(())
}

/// Creates a lease; AlreadyExists if the id is taken.
pub async fn create(store: &Store, ns: &str, id: &str, labels: Labels) -> Result<Lease> {
    check_id(id)?;
    labels::validate(&labels)?;
    super::namespaces::ensure(store, ns).await?;
    let lease = Lease {
        id: id.to_string(),
        created_at: SystemTime::now(),
        labels,
    };
    let prev = store.tree(TREE)?.compare_and_swap(
        ns_key(ns, id),
        None::<&[u8]>,
        Some(encode(store, &lease)?),
    )?;
    if prev.is_err() {
        return Err(Error::AlreadyExists {
            kind: "lease",
            id: id.into(),
        });
    }
    store.flush().await?;
    Ok(lease)
}

/// Deletes a lease and its resource list; what it held becomes collectable.
pub async fn delete(store: &Store, ns: &str, id: &str) -> Result<()> {
    check_id(id)?;
    store.room_for(0)?;
    if store.tree(TREE)?.remove(ns_key(ns, id))?.is_none() {
        return Err(Error::NotFound {
            kind: "lease",
            id: id.into(),
        });
    }
    let res = store.tree(RESOURCES)?;
    let prefix = resource_prefix(ns, id);
    for k in res.scan_prefix(&prefix).keys() {
        res.remove(k?)?;
    }
    store.flush().await?;
    Ok(())
}

/// Deletes every lease, in any namespace, whose id starts with one of
/// `prefixes`; returns the (namespace, id) of each. For start-up, to drop
/// the leases of berthd's own imports and pulls a crash interrupted.
pub async fn delete_with_prefix(store: &Store, prefixes: &[&str]) -> Result<Vec<(String, String)>> {
    let mut gone = Vec::new();
    for (ns, lease) in list_all(store)? {
        if !prefixes.iter().any(|p| lease.id.starts_with(p)) {
            continue;
        }
        match delete(store, &ns, &lease.id).await {
            Ok(()) => gone.push((ns, lease.id)),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(gone)
}

/// Reads one lease.
pub fn get(store: &Store, ns: &str, id: &str) -> Result<Lease> {
    check_id(id)?;
    codec::get(store, TREE, &ns_key(ns, id), "lease", id)
}

/// Every lease of a namespace.
pub fn list(store: &Store, ns: &str) -> Result<Vec<Lease>> {
    Ok(codec::scan(store, TREE, &ns_prefix(ns))?
        .into_iter()
        .map(|(_, l)| l)
        .collect())
}

/// Every namespace that holds leases, with its leases (for GC).
pub fn list_all(store: &Store) -> Result<Vec<(String, Lease)>> {
    Ok(codec::scan_all(store, TREE)?
        .into_iter()
        .map(|(ns, _, l)| (ns, l))
        .collect())
}

fn resource_prefix(ns: &str, lease: &str) -> Vec<u8> {
    let mut k = ns_key(ns, lease);
    k.push(0);
    k
}

fn resource_key(ns: &str, lease: &str, r: &Resource) -> Vec<u8> {
    let mut k = resource_prefix(ns, lease);
    k.extend_from_slice(r.kind.as_bytes());
    k.push(0);
    k.extend_from_slice(r.id.as_bytes());
    k
}

/// Adds a resource to a lease (idempotent); NotFound if the lease is gone.
pub async fn add_resource(store: &Store, ns: &str, lease: &str, r: Resource) -> Result<()> {
    check_resource(&r)?;
    get(store, ns, lease)?;
    store.room_for(0)?;
    store
        .tree(RESOURCES)?
        .insert(resource_key(ns, lease, &r), &[])?;
    store.flush().await?;
    Ok(())
}

/// Removes a resource from a lease.
pub async fn delete_resource(store: &Store, ns: &str, lease: &str, r: Resource) -> Result<()> {
    check_resource(&r)?;
    get(store, ns, lease)?;
    store.room_for(0)?;
    store.tree(RESOURCES)?.remove(resource_key(ns, lease, &r))?;
    store.flush().await?;
    Ok(())
}

/// The resources a lease holds.
pub fn resources(store: &Store, ns: &str, lease: &str) -> Result<Vec<Resource>> {
    get(store, ns, lease)?;
    let prefix = resource_prefix(ns, lease);
    let mut out = Vec::new();
    for k in store.tree(RESOURCES)?.scan_prefix(&prefix).keys() {
        let k = k?;
        let rest = &k[prefix.len()..];
        let mut parts = rest.splitn(2, |b| *b == 0);
        let kind = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        let id = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
        out.push(Resource { id, kind });
    }
    Ok(out)
}

/// The id part of a lease key, for callers scanning the tree.
pub fn lease_id(key: &[u8], ns: &str) -> String {
    id_of(key, ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lease_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let l = create(&store, "ns1", "l1", Labels::new()).await.unwrap();
        assert_eq!(l.id, "l1");
        assert!(matches!(
            create(&store, "ns1", "l1", Labels::new()).await,
            Err(Error::AlreadyExists { .. })
        ));
        for bad in ["", "a\0b", &"l".repeat(MAX_ID_LEN + 1)] {
            assert!(matches!(
                create(&store, "ns1", bad, Labels::new()).await,
                Err(Error::InvalidArgument(_))
            ));
        }
        let r = Resource {
            id: "sha256:abc".into(),
            kind: "content".into(),
        };
        add_resource(&store, "ns1", "l1", r.clone()).await.unwrap();
        let snap = Resource {
            id: "k".into(),
            kind: "snapshots/overlayfs".into(),
        };
        add_resource(&store, "ns1", "l1", snap.clone())
            .await
            .unwrap();
        let bad = Resource {
            id: "k".into(),
            kind: "bogus".into(),
        };
        assert!(add_resource(&store, "ns1", "l1", bad).await.is_err());
        let mut got = resources(&store, "ns1", "l1").unwrap();
        got.sort();
        assert_eq!(got, vec![snap, r.clone()]);
        delete_resource(&store, "ns1", "l1", r).await.unwrap();
        assert_eq!(resources(&store, "ns1", "l1").unwrap().len(), 1);
        assert_eq!(list(&store, "ns1").unwrap().len(), 1);
        assert_eq!(list(&store, "ns2").unwrap().len(), 0);
        // A path, as `ctr images mount` uses, is a fine lease id, and
        // another lease's resources stay its own.
        create(&store, "ns1", "/tmp/x", Labels::new())
            .await
            .unwrap();
        create(&store, "ns1", "l1/x", Labels::new()).await.unwrap();
        assert!(resources(&store, "ns1", "l1/x").unwrap().is_empty());
        assert_eq!(resources(&store, "ns1", "l1").unwrap().len(), 1);
        assert_eq!(list(&store, "ns1").unwrap().len(), 3);
        delete(&store, "ns1", "l1").await.unwrap();
        assert!(matches!(
            delete(&store, "ns1", "l1").await,
            Err(Error::NotFound { .. })
        ));
        assert!(matches!(
            resources(&store, "ns1", "l1"),
            Err(Error::NotFound { .. })
        ));
    }
}

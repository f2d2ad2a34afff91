//! Container records, with containerd's validation and update rules
//! (metadata/containers.go): a container needs an id, a runtime name and a
//! spec; a snapshot key needs a snapshotter; the snapshotter and runtime
//! name never change.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::codec::{self, decode, encode, ns_key, ns_prefix};
use super::labels::{self, Labels};
use super::namespaces::abort;
use super::{Error, Result, Store};

const TREE: &str = "containers";

/// A `google.protobuf.Any` as stored (value hex-encoded in JSON).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AnyRec {
    /// The type URL.
    pub type_url: String,
    /// The encoded value.
    #[serde(with = "hex_bytes")]
    pub value: Vec<u8>,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

impl From<prost_types::Any> for AnyRec {
    fn from(a: prost_types::Any) -> Self {
        Self {
            type_url: a.type_url,
            value: a.value,
        }
    }
}

impl From<AnyRec> for prost_types::Any {
    fn from(a: AnyRec) -> Self {
        Self {
            type_url: a.type_url,
            value: a.value,
        }
    }
}

/// Which runtime runs a container's task.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Runtime {
    /// e.g. `io.containerd.runc.v2`.
    pub name: String,
    /// Runtime options (e.g. `containerd.runc.v1.Options`).
    pub options: Option<AnyRec>,
}

/// One container record.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Container {
    /// Its id (a containerd identifier).
    pub id: String,
    /// Labels.
    pub labels: Labels,
    /// The image reference it was made from (not validated).
    pub image: String,
    /// Its runtime.
    pub runtime: Runtime,
    /// The OCI spec (JSON in an Any).
    pub spec: Option<AnyRec>,
    /// Snapshotter of its rootfs snapshot.
    pub snapshotter: String,
    /// Key of its rootfs snapshot.
    pub snapshot_key: String,
    /// Creation time.
    pub created_at: SystemTime,
    /// Last update time.
    pub updated_at: SystemTime,
    /// Client extensions.
    pub extensions: BTreeMap<String, AnyRec>,
    /// Sandbox id (not on the v1.6 wire; kept for newer clients).
    #[serde(default)]
    pub sandbox: String,
}

/// Checks a container as containerd does; messages name the field.
pub fn validate(c: &Container) -> Result<()> {
    berth_api::identifiers::validate("container.ID", &c.id)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    if c.extensions.keys().any(|k| k.is_empty()) {
        return Err(Error::InvalidArgument(
            "container.Extensions: keys must not be zero-length".into(),
        ));
    }
    labels::validate(&c.labels)?;
    if c.runtime.name.is_empty() {
        return Err(Error::InvalidArgument(
            "container.Runtime.Name must be set".into(),
        ));
    }
    if c.spec.is_none() {
        return Err(Error::InvalidArgument("container.Spec must be set".into()));
    }
    if !c.snapshot_key.is_empty() && c.snapshotter.is_empty() {
        return Err(Error::InvalidArgument(
            "container.Snapshotter must be set if container.SnapshotKey is set".into(),
        ));
    }
    Ok(())
}

fn not_found(id: &str) -> Error {
    Error::NotFound {
        kind: "container",
        id: id.into(),
    }
}

/// Creates a container; AlreadyExists if the id is taken. Sets both times.
pub async fn create(store: &Store, ns: &str, mut c: Container) -> Result<Container> {
    validate(&c)?;
    super::namespaces::ensure(store, ns).await?;
    let now = SystemTime::now();
    c.created_at = now;
    c.updated_at = now;
    let prev = store.tree(TREE)?.compare_and_swap(
        ns_key(ns, &c.id),
        None::<&[u8]>,
        Some(encode(store, &c)?),
    )?;
    if prev.is_err() {
        return Err(Error::AlreadyExists {
            kind: "container",
            id: c.id,
        });
    }
    store.flush().await?;
    Ok(c)
}

/// Reads one container.
pub fn get(store: &Store, ns: &str, id: &str) -> Result<Container> {
    berth_api::identifiers::validate("id", id)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    codec::get(store, TREE, &ns_key(ns, id), "container", id)
}

/// Every container of a namespace, by id.
pub fn list(store: &Store, ns: &str) -> Result<Vec<Container>> {
    Ok(codec::scan(store, TREE, &ns_prefix(ns))?
        .into_iter()
        .map(|(_, c)| c)
        .collect())
}

/// Applies `paths` of `c` to the stored record (containerd's rules: no
/// paths means labels, spec, extensions, image and snapshotkey, and then the
/// snapshotter and runtime name must be unchanged). Returns the new record.
pub async fn update(store: &Store, ns: &str, c: Container, paths: &[String]) -> Result<Container> {
    if c.id.is_empty() {
        return Err(Error::InvalidArgument(
            "container.ID: must specify a container id".into(),
        ));
    }
    let tree = store.tree(TREE)?;
    let key = ns_key(ns, &c.id);
    let updated = tree.transaction(|t| {
        let raw = t.get(&key)?.ok_or_else(|| abort(not_found(&c.id)))?;
        let mut cur: Container = decode(&raw).map_err(abort)?;
        apply(&mut cur, &c, paths).map_err(abort)?;
        t.insert(key.as_slice(), encode(store, &cur).map_err(abort)?)?;
        Ok(cur)
    })?;
    store.flush().await?;
    Ok(updated)
}

fn apply(cur: &mut Container, c: &Container, paths: &[String]) -> Result<()> {
    let full;
    let paths = if paths.is_empty() {
        if cur.snapshotter != c.snapshotter {
            return Err(Error::InvalidArgument(
                "container.Snapshotter field is immutable".into(),
            ));
        }
        if cur.runtime.name != c.runtime.name {
            return Err(Error::InvalidArgument(
                "container.Runtime.Name field is immutable".into(),
            ));
        }
        full = ["labels", "spec", "extensions", "image", "snapshotkey"].map(String::from);
        &full[..]
    } else {
        paths
    };
    for path in paths {
        if path.starts_with("labels.") {
            labels::apply_mask(&mut cur.labels, &c.labels, std::slice::from_ref(path), &[])?;
            continue;
        }
        if let Some(key) = path.strip_prefix("extensions.") {
            match c.extensions.get(key) {
                Some(v) => cur.extensions.insert(key.to_string(), v.clone()),
                None => cur.extensions.remove(key),
            };
            continue;
        }
        match path.as_str() {
            "labels" => cur.labels = c.labels.clone(),
            "spec" => cur.spec = c.spec.clone(),
            "extensions" => cur.extensions = c.extensions.clone(),
            "image" => cur.image = c.image.clone(),
            "snapshotkey" => cur.snapshot_key = c.snapshot_key.clone(),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "update_mask: cannot update {other:?} field on container {:?}",
                    c.id
                )))
            }
        }
    }
    validate(cur).map_err(|e| Error::InvalidArgument(format!("update failed validation: {e}")))?;
    cur.updated_at = SystemTime::now();
    Ok(())
}

/// Deletes a container record (the caller checks that no task exists).
pub async fn delete(store: &Store, ns: &str, id: &str) -> Result<()> {
    berth_api::identifiers::validate("id", id)
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    store.room_for(0)?;
    if store.tree(TREE)?.remove(ns_key(ns, id))?.is_none() {
        return Err(not_found(id));
    }
    store.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests_support {
    use super::*;

    pub(super) fn container(id: &str) -> Container {
        Container {
            id: id.into(),
            labels: Labels::new(),
            image: "img".into(),
            runtime: Runtime {
                name: "io.containerd.runc.v2".into(),
                options: None,
            },
            spec: Some(AnyRec {
                type_url: "x".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: "k".into(),
            created_at: SystemTime::UNIX_EPOCH,
            updated_at: SystemTime::UNIX_EPOCH,
            extensions: BTreeMap::new(),
            sandbox: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tests_support::container;
    use super::*;

    #[tokio::test]
    async fn lifecycle_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let c = create(&store, "ns", container("c1")).await.unwrap();
        assert!(c.created_at > SystemTime::UNIX_EPOCH);
        assert!(matches!(
            create(&store, "ns", container("c1")).await,
            Err(Error::AlreadyExists { .. })
        ));
        let mut bad = container("c2");
        bad.spec = None;
        let e = create(&store, "ns", bad).await.unwrap_err();
        assert!(e.to_string().contains("Spec"), "{e}");
        let mut bad = container("c2");
        bad.snapshotter.clear();
        assert!(create(&store, "ns", bad).await.is_err());
        let e = create(&store, "ns", container("a/b")).await.unwrap_err();
        assert!(e.to_string().contains("container.ID"), "{e}");

        let mut upd = container("c1");
        upd.labels.insert("a".into(), "1".into());
        upd.image = "other".into();
        let got = update(&store, "ns", upd.clone(), &["labels.a".into()])
            .await
            .unwrap();
        assert_eq!(got.labels.get("a").map(String::as_str), Some("1"));
        assert_eq!(got.image, "img", "image not in the mask");
        let got = update(&store, "ns", upd.clone(), &[]).await.unwrap();
        assert_eq!(got.image, "other");
        assert!(got.updated_at >= got.created_at);
        upd.snapshotter = "native".into();
        let e = update(&store, "ns", upd.clone(), &[]).await.unwrap_err();
        assert!(e.to_string().contains("immutable"), "{e}");
        let e = update(&store, "ns", upd, &["snapshotter".into()])
            .await
            .unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));

        assert_eq!(list(&store, "ns").unwrap().len(), 1);
        assert_eq!(list(&store, "other").unwrap().len(), 0);
        delete(&store, "ns", "c1").await.unwrap();
        assert!(matches!(
            get(&store, "ns", "c1"),
            Err(Error::NotFound { .. })
        ));
    }
}

#[cfg(test)]
mod concurrency {
    use super::tests_support::container;
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fifty_concurrent_creates_finish() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let jobs: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { create(&store, "ns", container(&format!("c{i}"))).await })
            })
            .collect();
        let all = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            futures::future::join_all(jobs),
        )
        .await
        .expect("concurrent creates must not hang");
        assert!(all.into_iter().all(|r| r.unwrap().is_ok()));
        assert_eq!(list(&store, "ns").unwrap().len(), 50);
    }
}

//! The CRI's in-memory stores of pods and containers (containerd's
//! sandbox and container stores): lookup by full id or unique id prefix,
//! a name registrar so two pods (or containers) never share a name, and
//! [`load`] to rebuild both from the metadata store at start-up.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use super::metadata::{self, ContainerMetadata, Record, SandboxMetadata};
use crate::store::containers::Container;

/// Why a lookup or a reservation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// no object has this id (or id prefix)
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// pod sandbox or container
        kind: &'static str,
        /// the id asked for
        id: String,
    },
    /// the prefix fits more than one object
    #[error("{kind} id prefix {id:?} is ambiguous")]
    Ambiguous {
        /// pod sandbox or container
        kind: &'static str,
        /// the prefix
        id: String,
    },
    /// another object holds the name
    #[error("name {name:?} is reserved for {kind} {holder:?}")]
    NameReserved {
        /// pod sandbox or container
        kind: &'static str,
        /// the name
        name: String,
        /// the id holding it
        holder: String,
    },
}

struct Inner<T> {
    by_id: BTreeMap<String, Arc<T>>,
    names: HashMap<String, String>,
}

/// Objects of one kind by id, with their names reserved.
pub struct Index<T> {
    kind: &'static str,
    inner: RwLock<Inner<T>>,
}

impl<T> Index<T> {
    /// An empty index of `kind` (used in messages).
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            inner: RwLock::new(Inner {
                by_id: BTreeMap::new(),
                names: HashMap::new(),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner<T>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner<T>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserves `name` for `id` (again for the same id is fine).
    pub fn reserve(&self, name: &str, id: &str) -> Result<(), Error> {
        let mut g = self.write();
        match g.names.get(name) {
            Some(holder) if holder != id => Err(Error::NameReserved {
                kind: self.kind,
                name: name.into(),
                holder: holder.clone(),
            }),
            _ => {
                g.names.insert(name.into(), id.into());
                Ok(())
            }
        }
    }

    /// Frees `name` if `id` holds it.
    pub fn release(&self, name: &str, id: &str) {
        let mut g = self.write();
        if g.names.get(name).is_some_and(|h| h == id) {
            g.names.remove(name);
        }
    }

    /// Adds or replaces the object `id`.
    pub fn put(&self, id: &str, value: T) -> Arc<T> {
        let v = Arc::new(value);
        self.write().by_id.insert(id.into(), v.clone());
        v
    }

    /// The object with id `id`, or the only one whose id starts with it.
    pub fn get(&self, id: &str) -> Result<Arc<T>, Error> {
        let not_found = || Error::NotFound {
            kind: self.kind,
            id: id.into(),
        };
        if id.is_empty() {
            return Err(not_found());
        }
        let g = self.read();
        if let Some(v) = g.by_id.get(id) {
            return Ok(v.clone());
        }
        let mut hits = g
            .by_id
            .range(id.to_string()..)
            .take_while(|(k, _)| k.starts_with(id));
        match (hits.next(), hits.next()) {
            (Some((_, v)), None) => Ok(v.clone()),
            (Some(_), Some(_)) => Err(Error::Ambiguous {
                kind: self.kind,
                id: id.into(),
            }),
            _ => Err(not_found()),
        }
    }

    /// Changes the object `id` (exact) by `f` under the lock, so two
    /// changes never undo each other; the new value, or None if unknown.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut T)) -> Option<Arc<T>>
    where
        T: Clone,
    {
        let mut g = self.write();
        let cur = g.by_id.get_mut(id)?;
        let mut next = (**cur).clone();
        f(&mut next);
        *cur = Arc::new(next);
        Some(cur.clone())
    }

    /// Removes `id`, returning it if it was there.
    pub fn remove(&self, id: &str) -> Option<Arc<T>> {
        self.write().by_id.remove(id)
    }

    /// Every object, by id.
    pub fn list(&self) -> Vec<Arc<T>> {
        self.read().by_id.values().cloned().collect()
    }
}

/// Pods and containers known to the CRI.
pub struct Stores {
    /// Pod sandboxes.
    pub sandboxes: Index<SandboxMetadata>,
    /// CRI containers.
    pub containers: Index<ContainerMetadata>,
}

impl Default for Stores {
    fn default() -> Self {
        Self {
            sandboxes: Index::new("pod sandbox"),
            containers: Index::new("container"),
        }
    }
}

/// Rebuilds the stores from the container records of the `k8s.io`
/// namespace. A CRI record whose metadata does not decode is logged and
/// left out (as containerd does); records of other clients are ignored.
pub fn load(records: Vec<Container>) -> Stores {
    let stores = Stores::default();
    for rec in records {
        match metadata::decode(&rec) {
            Ok(Record::Sandbox(m)) => {
                if let Err(e) = stores.sandboxes.reserve(&m.name, &m.id) {
                    tracing::warn!(id = %m.id, error = %e, "pod sandbox name clash at load");
                }
                stores.sandboxes.put(&m.id.clone(), m);
            }
            Ok(Record::Container(m)) => {
                if let Err(e) = stores.containers.reserve(&m.name, &m.id) {
                    tracing::warn!(id = %m.id, error = %e, "container name clash at load");
                }
                stores.containers.put(&m.id.clone(), m);
            }
            Ok(Record::Other) => {}
            Err(e) => tracing::warn!(id = %rec.id, error = %e, "skipping unreadable CRI record"),
        }
    }
    stores
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::metadata::{container_record, sandbox_record};
    use k8s_cri::v1 as cri;

    #[test]
    fn ids_prefixes_and_names() {
        let ix: Index<u32> = Index::new("container");
        ix.put("abc123", 1);
        ix.put("abd456", 2);
        assert_eq!(*ix.get("abc123").unwrap(), 1);
        assert_eq!(*ix.get("abd").unwrap(), 2);
        assert!(matches!(ix.get("ab"), Err(Error::Ambiguous { .. })));
        assert!(matches!(ix.get("zz"), Err(Error::NotFound { .. })));
        assert!(matches!(ix.get(""), Err(Error::NotFound { .. })));
        ix.reserve("web", "abc123").unwrap();
        ix.reserve("web", "abc123").unwrap();
        let e = ix.reserve("web", "abd456").unwrap_err();
        assert!(e.to_string().contains("abc123"), "{e}");
        ix.release("web", "abd456");
        assert!(
            ix.reserve("web", "abd456").is_err(),
            "only the holder releases"
        );
        ix.release("web", "abc123");
        ix.reserve("web", "abd456").unwrap();
        assert_eq!(*ix.update("abd456", |v| *v += 40).unwrap(), 42);
        assert_eq!(*ix.get("abd456").unwrap(), 42);
        assert!(ix.update("abd", |_| {}).is_none(), "exact ids only");
        assert_eq!(*ix.remove("abc123").unwrap(), 1);
        assert_eq!(ix.list().len(), 1);
    }

    #[tokio::test]
    async fn load_rebuilds_from_k8s_io_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).unwrap();
        let sb = crate::cri::metadata::tests::sandbox_meta("pod1", "web");
        crate::store::containers::create(
            &store,
            "k8s.io",
            sandbox_record(&sb, b"{}".to_vec(), "pause"),
        )
        .await
        .unwrap();
        let cm = ContainerMetadata {
            id: "ctr1".into(),
            name: "app_web".into(),
            sandbox_id: "pod1".into(),
            config: cri::ContainerConfig::default(),
            image_id: "sha256:1".into(),
            image_ref: "busybox".into(),
            log_path: String::new(),
            created_at: 1,
            snapshotter: "overlayfs".into(),
            started_at: 0,
            oom_killed: false,
        };
        crate::store::containers::create(
            &store,
            "k8s.io",
            container_record(&cm, b"{}".to_vec(), "overlayfs"),
        )
        .await
        .unwrap();
        // A record of another client in k8s.io, and one in another namespace.
        let mut other = sandbox_record(&sb, b"{}".to_vec(), "x");
        other.id = "plain".into();
        other.labels.clear();
        crate::store::containers::create(&store, "k8s.io", other.clone())
            .await
            .unwrap();
        other.id = "elsewhere".into();
        crate::store::containers::create(&store, "default", other)
            .await
            .unwrap();

        let s = load(crate::store::containers::list(&store, "k8s.io").unwrap());
        assert_eq!(*s.sandboxes.get("pod1").unwrap(), sb);
        assert_eq!(*s.containers.get("ctr1").unwrap(), cm);
        assert_eq!(s.sandboxes.list().len(), 1);
        assert!(
            s.sandboxes.reserve(&sb.name, "another").is_err(),
            "names come back reserved"
        );
    }
}

//! The snapshotters berthd serves, by the names containerd clients send
//! (`overlayfs`, `native`), each rooted at
//! `<root>/io.containerd.snapshotter.v1.<name>/` as containerd lays it out.
//!
//! The snapshotters themselves (berth-snapshotter) are blocking; every call
//! here runs on `spawn_blocking`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use berth_snapshotter::{Backend, Snapshotter};

use super::error::Error;

/// Every snapshotter, by name. Cheap to clone.
#[derive(Clone)]
pub struct Snapshotters {
    by_name: Arc<BTreeMap<String, Arc<Snapshotter>>>,
    default: String,
}

impl std::fmt::Debug for Snapshotters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotters")
            .field("names", &self.by_name.keys().collect::<Vec<_>>())
            .field("default", &self.default)
            .finish()
    }
}

impl Snapshotters {
    /// Opens `overlayfs` and `native` under `root`; `default` is used when a
    /// request names none (it must be one of them).
    pub fn open(root: &Path, default: &str) -> Result<Self, Error> {
        let mut by_name = BTreeMap::new();
        for backend in [Backend::Overlay, Backend::Native] {
            let dir = root.join(format!("io.containerd.snapshotter.v1.{}", backend.name()));
            let sn = Snapshotter::open(&dir, backend)?;
            // Directories a crash left without a record.
            let removed = sn.cleanup()?;
            if removed > 0 {
                tracing::info!(
                    snapshotter = backend.name(),
                    removed,
                    "removed leftover snapshot directories"
                );
            }
            by_name.insert(backend.name().to_string(), Arc::new(sn));
        }
        if !by_name.contains_key(default) {
            return Err(Error::Unknown(default.to_string()));
        }
        Ok(Self {
            by_name: Arc::new(by_name),
            default: default.to_string(),
        })
    }

    /// The configured default: what berthd's own image calls (import,
    /// pull, CRI) use when their caller names no snapshotter.
    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Names of every snapshotter.
    pub fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// Resolves a request's snapshotter name. An empty name is refused
    /// ([`Error::Missing`]), as containerd's snapshots service does: a
    /// client of the Snapshots API always names its snapshotter.
    pub fn resolve(&self, name: &str) -> Result<(String, Arc<Snapshotter>), Error> {
        if name.is_empty() {
            return Err(Error::Missing);
        }
        let sn = self
            .by_name
            .get(name)
            .ok_or_else(|| Error::Unknown(name.to_string()))?;
        Ok((name.to_string(), sn.clone()))
    }

    /// Runs `f` on snapshotter `name` on the blocking pool.
    pub async fn run<T, F>(&self, name: &str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Snapshotter) -> Result<T, berth_snapshotter::Error> + Send + 'static,
    {
        let (_, sn) = self.resolve(name)?;
        tokio::task::spawn_blocking(move || f(&sn))
            .await
            .map_err(|e| Error::Join(e.to_string()))?
            .map_err(Error::from)
    }

    /// Every snapshotter by name, for garbage collection.
    pub fn handles(&self) -> BTreeMap<String, Arc<Snapshotter>> {
        (*self.by_name).clone()
    }

    /// Whether any snapshotter holds a snapshot in `ns`.
    pub async fn namespace_has_snapshots(&self, ns: &str) -> Result<bool, Error> {
        for name in self.names() {
            let ns = ns.to_string();
            if !self.run(&name, move |s| s.list(&ns)).await?.is_empty() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn resolves_names_and_reports_namespaces() {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotters::open(dir.path(), "overlayfs").unwrap();
        assert!(matches!(s.resolve(""), Err(Error::Missing)));
        assert_eq!(s.default_name(), "overlayfs");
        assert_eq!(s.resolve("native").unwrap().0, "native");
        assert!(matches!(s.resolve("zfs"), Err(Error::Unknown(_))));
        assert!(Snapshotters::open(&dir.path().join("x"), "btrfs").is_err());
        assert!(dir
            .path()
            .join("io.containerd.snapshotter.v1.overlayfs")
            .is_dir());
        assert!(!s.namespace_has_snapshots("ns1").await.unwrap());
        s.run("native", |sn| {
            sn.prepare("ns1", "k", None, Default::default())
        })
        .await
        .unwrap();
        assert!(s.namespace_has_snapshots("ns1").await.unwrap());
        assert!(!s.namespace_has_snapshots("ns2").await.unwrap());
    }
}

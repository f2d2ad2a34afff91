//! Snapshots in containerd's "metadata snapshotter" role: every call that
//! creates, commits or removes a snapshot goes through [`Snapshots`], which
//! adds what it creates to the caller's lease under the GC guard before it
//! exists (see [`crate::gc`]), calls the snapshotter on the blocking pool,
//! publishes `/snapshot/prepare`, `/snapshot/commit` and `/snapshot/remove`,
//! and schedules a collection after a removal. The Snapshots gRPC service
//! and berthd's own unpack (import, pull) take the same path, so a layer
//! unpacked by berthd is announced like one a client unpacked.
//!
//! A snapshotter is chosen by name; an empty one is InvalidArgument
//! ("snapshotter argument missing", as containerd answers). berthd's own
//! image work (import, pull, CRI) names the configured default
//! ([`Snapshots::default_name`]) when its caller names none.

mod backends;
mod error;

use std::collections::HashMap;

use berth_api::events::{SnapshotCommit, SnapshotPrepare, SnapshotRemove};
use berth_snapshotter::{Backend, Info, Kind, Mount, Usage};

pub use backends::Snapshotters;
pub use error::Error;

use crate::events::Events;
use crate::filters::{label_field, Fields, Filter};
use crate::gc::Gc;
use crate::store::leases::{self, Resource};
use crate::store::Store;

/// Result of a snapshot call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the snapshots service needs besides its snapshotters.
#[derive(Clone)]
pub struct Deps {
    /// Leases and namespaces.
    pub store: Store,
    /// The collector: its guard, and the trigger after a removal.
    pub gc: Gc,
    /// Where snapshot events go.
    pub events: Events,
}

/// A snapshot to prepare or view.
#[derive(Debug, Clone, Default)]
pub struct NewSnapshot {
    /// Snapshotter name.
    pub snapshotter: String,
    /// The new snapshot's key.
    pub key: String,
    /// The committed parent ("" = none).
    pub parent: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
}

/// The snapshots service. Cheap to clone.
#[derive(Clone)]
pub struct Snapshots {
    backends: Snapshotters,
    deps: Deps,
}

/// The lease resource kind of snapshots of `snapshotter`.
fn lease_kind(snapshotter: &str) -> String {
    format!("snapshots/{snapshotter}")
}

fn check_labels(labels: &HashMap<String, String>) -> Result<()> {
    let labels = labels.clone().into_iter().collect();
    Ok(crate::store::labels::validate(&labels)?)
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::View => "view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

/// The fields a snapshot List filters on.
struct Filterable<'a>(&'a Info, std::collections::BTreeMap<String, String>);

impl Fields for Filterable<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let one = path.len() == 1;
        match path.first()?.as_str() {
            "name" if one => Some(self.0.name.clone()),
            // Always present, as containerd's adaptor has it: `parent==""`
            // selects the snapshots without one.
            "parent" if one => Some(self.0.parent.clone().unwrap_or_default()),
            "kind" if one => Some(kind_name(self.0.kind).to_string()),
            "labels" => label_field(&self.1, &path[1..]),
            _ => None,
        }
    }
}

impl Snapshots {
    /// The service over `backends`.
    pub fn new(backends: Snapshotters, deps: Deps) -> Self {
        Self { backends, deps }
    }

    /// The snapshotters by name (for collection and introspection).
    pub fn backends(&self) -> &Snapshotters {
        &self.backends
    }

    /// Whether the disk has room for a snapshotter write: each snapshotter
    /// keeps its records in a sled database under berthd's root, which a
    /// failed write would wedge for good (see [`crate::store`]).
    fn room(&self) -> Result<()> {
        Ok(self.deps.store.room_for(0)?)
    }

    /// The configured default snapshotter's name.
    pub fn default_name(&self) -> &str {
        self.backends.default_name()
    }

    /// Resolves a snapshotter name to its canonical name and kind;
    /// InvalidArgument for an empty one or one we do not serve.
    pub fn resolve(&self, name: &str) -> Result<(String, Backend)> {
        let (name, sn) = self.backends.resolve(name)?;
        Ok((name, sn.backend()))
    }

    /// Prepares an active snapshot (writable) and returns its mounts.
    pub async fn prepare(
        &self,
        ns: &str,
        lease: Option<&str>,
        new: NewSnapshot,
    ) -> Result<Vec<Mount>> {
        self.create(ns, lease, new, Kind::Active).await
    }

    /// Makes a read-only view of a committed snapshot and returns its mounts.
    pub async fn view(
        &self,
        ns: &str,
        lease: Option<&str>,
        new: NewSnapshot,
    ) -> Result<Vec<Mount>> {
        self.create(ns, lease, new, Kind::View).await
    }

    async fn create(
        &self,
        ns: &str,
        lease: Option<&str>,
        new: NewSnapshot,
        kind: Kind,
    ) -> Result<Vec<Mount>> {
        let NewSnapshot {
            snapshotter,
            key,
            parent,
            labels,
        } = new;
        check_labels(&labels)?;
        let (name, _) = self.backends.resolve(&snapshotter)?;
        self.room()?;
        crate::store::namespaces::ensure(&self.deps.store, ns).await?;
        let _hold = self.deps.gc.hold().await;
        self.lease_locked(ns, lease, &name, &key).await?;
        let event = SnapshotPrepare {
            key: key.clone(),
            parent: parent.clone(),
        };
        let parent = (!parent.is_empty()).then_some(parent);
        let ns2 = ns.to_string();
        let mounts = self
            .backends
            .run(&name, move |s| match kind {
                Kind::View => s.view(&ns2, &key, parent.as_deref(), labels),
                _ => s.prepare(&ns2, &key, parent.as_deref(), labels),
            })
            .await?;
        self.deps.events.publish(ns, &event);
        Ok(mounts)
    }

    /// Commits the active snapshot `key` as `name` (held by `lease`).
    pub async fn commit(
        &self,
        ns: &str,
        lease: Option<&str>,
        snapshotter: &str,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        check_labels(&labels)?;
        let (sn, _) = self.backends.resolve(snapshotter)?;
        self.room()?;
        let _hold = self.deps.gc.hold().await;
        self.lease_locked(ns, lease, &sn, name).await?;
        let event = SnapshotCommit {
            key: key.to_string(),
            name: name.to_string(),
        };
        let (ns2, name, key) = (ns.to_string(), name.to_string(), key.to_string());
        self.backends
            .run(&sn, move |s| s.commit(&ns2, &name, &key, labels))
            .await?;
        self.deps.events.publish(ns, &event);
        Ok(())
    }

    /// Removes a snapshot (it must have no children) and schedules a
    /// collection for what it held.
    pub async fn remove(&self, ns: &str, snapshotter: &str, key: &str) -> Result<()> {
        let event = SnapshotRemove {
            key: key.to_string(),
        };
        self.room()?;
        {
            let _hold = self.deps.gc.hold().await;
            let (ns2, key) = (ns.to_string(), key.to_string());
            self.backends
                .run(snapshotter, move |s| s.remove(&ns2, &key))
                .await?;
        }
        self.deps.events.publish(ns, &event);
        self.deps.gc.schedule();
        Ok(())
    }

    /// Stacks the parentless active snapshot `key` onto the committed
    /// `parent` (berthd's parallel unpack; see the snapshotter's `rebase`).
    pub async fn rebase(&self, ns: &str, snapshotter: &str, key: &str, parent: &str) -> Result<()> {
        self.room()?;
        let _hold = self.deps.gc.hold().await;
        let (ns2, key, parent) = (ns.to_string(), key.to_string(), parent.to_string());
        self.backends
            .run(snapshotter, move |s| s.rebase(&ns2, &key, &parent))
            .await?;
        Ok(())
    }

    /// Adds snapshot `key` of `snapshotter` to `lease`, under the GC guard,
    /// before anything may create it (berthd's unpack: a chain that may
    /// exist already).
    pub async fn lease(&self, ns: &str, lease: &str, snapshotter: &str, key: &str) -> Result<()> {
        let _hold = self.deps.gc.hold().await;
        self.lease_locked(ns, Some(lease), snapshotter, key).await
    }

    /// Adds `key` to `lease` (when given); the caller holds the GC guard.
    async fn lease_locked(
        &self,
        ns: &str,
        lease: Option<&str>,
        snapshotter: &str,
        key: &str,
    ) -> Result<()> {
        if let Some(lease) = lease {
            let r = Resource {
                id: key.to_string(),
                kind: lease_kind(snapshotter),
            };
            leases::add_resource(&self.deps.store, ns, lease, r).await?;
        }
        Ok(())
    }

    /// Whether snapshot `key` exists.
    pub async fn exists(&self, ns: &str, snapshotter: &str, key: &str) -> Result<bool> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.backends
            .run(snapshotter, move |s| match s.stat(&ns, &key) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == berth_api::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e),
            })
            .await
    }

    /// The mounts of an active snapshot or view.
    pub async fn mounts(&self, ns: &str, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.backends
            .run(snapshotter, move |s| s.mounts(&ns, &key))
            .await
    }

    /// One snapshot's info.
    pub async fn stat(&self, ns: &str, snapshotter: &str, key: &str) -> Result<Info> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.backends
            .run(snapshotter, move |s| s.stat(&ns, &key))
            .await
    }

    /// Updates a snapshot's labels under a field mask.
    pub async fn update(
        &self,
        ns: &str,
        snapshotter: &str,
        name: String,
        labels: HashMap<String, String>,
        paths: Vec<String>,
    ) -> Result<Info> {
        check_labels(&labels)?;
        self.room()?;
        let now = std::time::SystemTime::now();
        let info = Info {
            name,
            parent: None,
            kind: Kind::Committed,
            labels,
            created_at: now,
            updated_at: now,
        };
        let _hold = self.deps.gc.hold().await;
        let ns = ns.to_string();
        self.backends
            .run(snapshotter, move |s| s.update(&ns, info, &paths))
            .await
    }

    /// The snapshots of `ns` that `filters` match.
    pub async fn list(&self, ns: &str, snapshotter: &str, filters: &[String]) -> Result<Vec<Info>> {
        let filter = Filter::parse(filters)?;
        let ns = ns.to_string();
        let all = self.backends.run(snapshotter, move |s| s.list(&ns)).await?;
        Ok(all
            .into_iter()
            .filter(|i| {
                let labels = i.labels.clone().into_iter().collect();
                filter.matches(&Filterable(i, labels))
            })
            .collect())
    }

    /// Disk usage of one snapshot.
    pub async fn usage(&self, ns: &str, snapshotter: &str, key: &str) -> Result<Usage> {
        let (ns, key) = (ns.to_string(), key.to_string());
        self.backends
            .run(snapshotter, move |s| s.usage(&ns, &key))
            .await
    }

    /// Removes directories no snapshot record owns; returns how many.
    pub async fn cleanup(&self, snapshotter: &str) -> Result<usize> {
        self.backends.run(snapshotter, |s| s.cleanup()).await
    }

    /// Whether any snapshotter holds a snapshot in `ns`.
    pub async fn namespace_has_snapshots(&self, ns: &str) -> Result<bool> {
        self.backends.namespace_has_snapshots(ns).await
    }
}

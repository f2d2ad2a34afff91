//! containerd-style snapshotters: `overlayfs` (default) and `native`.
//!
//! Every call takes a namespace; keys are unique per namespace and parents
//! resolve in the same namespace. Metadata lives in sled at
//! `<root>/metadata.db`, flushed before each mutating call returns; snapshot
//! directories are `<root>/snapshots/<id>/{fs,work}`.
//!
//! Crash safety: a snapshot's directory is built under a temporary name,
//! renamed to its numeric id, and only then is the record inserted; removal
//! deletes the record first. A crash can therefore leave a directory without
//! a record (removed by [`Snapshotter::cleanup`]) but never a record without
//! its directory.
//!
//! All calls are blocking; async callers run them on `spawn_blocking`.

mod ops;
mod store;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mount::Mount;
use store::{check_key, check_namespace, snap_key, snap_prefix, Record};

/// Most lower layers a snapshot may stack: overlayfs's own limit
/// (`OVL_MAX_STACK`), so an image may have at most 500 layers and a
/// container's snapshot on it mounts at most 500 lower directories. A
/// parent whose chain is deeper than this is refused (InvalidArgument) by
/// `prepare`, `view` and `rebase`, on both backends, so an image behaves
/// the same on each; callers refuse deeper images up front with this
/// figure.
pub const MAX_LAYERS: usize = 500;

/// Which snapshotter implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Layers stacked with overlayfs; a snapshot stores only its changes.
    Overlay,
    /// Every snapshot is a full copy of its parent; no overlay needed.
    Native,
}

impl Backend {
    /// The name containerd clients send (`overlayfs`, `native`).
    pub fn name(self) -> &'static str {
        match self {
            Backend::Overlay => "overlayfs",
            Backend::Native => "native",
        }
    }

    /// Parses a containerd snapshotter name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "overlayfs" => Some(Backend::Overlay),
            "native" => Some(Backend::Native),
            _ => None,
        }
    }
}

/// Kind of snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// read-only, from `view`
    View,
    /// writable, from `prepare`
    Active,
    /// immutable, from `commit`; can be a parent
    Committed,
}

/// What `stat`/`list` return about a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// key (active/view) or name (committed)
    pub name: String,
    /// parent's name, if any
    pub parent: Option<String>,
    /// kind
    pub kind: Kind,
    /// user labels
    pub labels: HashMap<String, String>,
    /// creation time
    pub created_at: SystemTime,
    /// last update time
    pub updated_at: SystemTime,
}

/// Disk usage of one snapshot (its own layer only for overlayfs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// bytes in allocated blocks
    pub size: u64,
    /// inode count
    pub inodes: u64,
}

/// One snapshotter instance over a root directory.
pub struct Snapshotter {
    root: PathBuf,
    backend: Backend,
    db: sled::Db,
    /// Serialises metadata mutations (and directory renames) of this instance.
    lock: Mutex<()>,
    /// Temporary directories being built, which `cleanup` must leave alone.
    building: Mutex<HashSet<PathBuf>>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("root", &self.root)
            .field("backend", &self.backend)
            .finish()
    }
}

impl Snapshotter {
    /// Opens (creating if needed) a snapshotter rooted at `root`.
    pub fn open(root: &Path, backend: Backend) -> Result<Self> {
        let snaps = root.join("snapshots");
        std::fs::create_dir_all(&snaps).map_err(|e| Error::io("mkdir", &snaps, e))?;
        let db = sled::Config::new()
            .path(root.join("metadata.db"))
            .flush_every_ms(None)
            .open()?;
        Ok(Self {
            root: root.to_owned(),
            backend,
            db,
            lock: Mutex::new(()),
            building: Mutex::new(HashSet::new()),
        })
    }

    /// The implementation in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    fn dir_of(&self, id: u64) -> PathBuf {
        self.snapshots_dir().join(id.to_string())
    }

    fn fs_of(&self, id: u64) -> PathBuf {
        self.dir_of(id).join("fs")
    }

    fn get(&self, ns: &str, key: &str) -> Result<Record> {
        check_namespace(ns)?;
        check_key("key", key)?;
        match self.db.get(snap_key(ns, key))? {
            Some(v) => Record::decode(&v),
            None => Err(Error::NotFound {
                namespace: ns.to_owned(),
                key: key.to_owned(),
            }),
        }
    }

    /// Ids of `rec`'s ancestors, nearest first.
    fn parent_ids(&self, ns: &str, rec: &Record) -> Result<Vec<u64>> {
        let mut ids = Vec::new();
        let mut next = rec.parent.clone();
        while let Some(p) = next {
            let r = self.get(ns, &p)?;
            ids.push(r.id);
            next = r.parent;
        }
        Ok(ids)
    }

    /// Information about `key`. NotFound if unknown.
    pub fn stat(&self, ns: &str, key: &str) -> Result<Info> {
        Ok(self.get(ns, key)?.info(key))
    }

    /// Every snapshot of the namespace (the caller filters).
    pub fn list(&self, ns: &str) -> Result<Vec<Info>> {
        check_namespace(ns)?;
        let prefix = snap_prefix(ns);
        let mut out = Vec::new();
        for kv in self.db.scan_prefix(&prefix) {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            out.push(Record::decode(&v)?.info(&name));
        }
        Ok(out)
    }

    /// Disk usage: measured at commit for committed snapshots, walked now
    /// for active ones and views.
    pub fn usage(&self, ns: &str, key: &str) -> Result<Usage> {
        let rec = self.get(ns, key)?;
        if let (Kind::Committed, Some(size), Some(inodes)) = (rec.kind, rec.size, rec.inodes) {
            return Ok(Usage { size, inodes });
        }
        let (size, inodes) = crate::fsutil::disk_usage(&self.fs_of(rec.id))?;
        Ok(Usage { size, inodes })
    }

    /// The mounts that make `key` (active or view) usable; the caller
    /// performs them. FailedPrecondition for a committed snapshot.
    pub fn mounts(&self, ns: &str, key: &str) -> Result<Vec<Mount>> {
        let rec = self.get(ns, key)?;
        if rec.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {} is committed; only active snapshots and views have mounts",
                berth_api::echo::Echo(key)
            )));
        }
        let parents = self.parent_ids(ns, &rec)?;
        Ok(self.mount_specs(&rec, &parents))
    }

    fn mount_specs(&self, rec: &Record, parents: &[u64]) -> Vec<Mount> {
        let path = |p: PathBuf| p.to_string_lossy().into_owned();
        let bind = |src: PathBuf, ro: bool| Mount {
            kind: "bind".into(),
            source: path(src),
            target: String::new(),
            options: vec!["rbind".into(), if ro { "ro" } else { "rw" }.into()],
        };
        let ro = rec.kind == Kind::View;
        if self.backend == Backend::Native {
            return vec![bind(self.fs_of(rec.id), ro)];
        }
        let lowers = parents
            .iter()
            .map(|id| path(self.fs_of(*id)))
            .collect::<Vec<_>>()
            .join(":");
        match (rec.kind, parents.len()) {
            (_, 0) => vec![bind(self.fs_of(rec.id), ro)],
            (Kind::View, 1) => vec![bind(self.fs_of(parents[0]), true)],
            (Kind::View, _) => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec!["index=off".into(), format!("lowerdir={lowers}")],
            }],
            _ => vec![Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options: vec![
                    "index=off".into(),
                    format!("workdir={}", path(self.dir_of(rec.id).join("work"))),
                    format!("upperdir={}", path(self.fs_of(rec.id))),
                    format!("lowerdir={lowers}"),
                ],
            }],
        }
    }
}

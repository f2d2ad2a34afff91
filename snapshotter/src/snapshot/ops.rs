//! Mutating operations: prepare, view, commit, remove, update, cleanup.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use berth_api::echo::Echo;

use super::store::{check_key, check_namespace, child_key, child_prefix, now_ns, snap_key, Record};
use super::{Backend, Info, Kind, Snapshotter, MAX_LAYERS};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::mount::Mount;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Removes a half-built temporary directory unless disarmed.
struct Building<'a> {
    s: &'a Snapshotter,
    path: PathBuf,
    armed: bool,
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = fs::remove_dir_all(&self.path);
        }
        if let Ok(mut b) = self.s.building.lock() {
            b.remove(&self.path);
        }
    }
}

impl Snapshotter {
    fn guard(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.lock
            .lock()
            .map_err(|_| Error::Internal("snapshotter lock poisoned".into()))
    }

    fn exists(&self, ns: &str, key: &str) -> Result<bool> {
        Ok(self.db.contains_key(snap_key(ns, key))?)
    }

    /// Gives the upper dir `fsdir` the owner and mode of the root of
    /// snapshot `parent_id` (overlay: the upper root decides the merged
    /// root's).
    fn inherit_root(&self, parent_id: u64, fsdir: &std::path::Path) -> Result<()> {
        let pfs = self.fs_of(parent_id);
        let m = fs::metadata(&pfs).map_err(|e| Error::io("stat", &pfs, e))?;
        std::os::unix::fs::lchown(fsdir, Some(m.uid()), Some(m.gid()))
            .map_err(|e| Error::io("chown", fsdir, e))?;
        fs::set_permissions(fsdir, fs::Permissions::from_mode(m.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", fsdir, e))
    }

    /// The committed snapshot `parent`, refusing one whose chain is more
    /// than [`MAX_LAYERS`] snapshots deep (a child would mount more lower
    /// directories than overlayfs stacks).
    fn committed_parent(&self, ns: &str, parent: &str) -> Result<Record> {
        check_key("parent", parent)?;
        let rec = self.get(ns, parent)?;
        if rec.kind != Kind::Committed {
            return Err(Error::InvalidArgument(format!(
                "parent {} is not a committed snapshot",
                Echo(parent)
            )));
        }
        let depth = 1 + self.parent_ids(ns, &rec)?.len();
        if depth > MAX_LAYERS {
            return Err(Error::InvalidArgument(format!(
                "parent {} is {depth} layers deep: a snapshot may stack at most {MAX_LAYERS} lower layers",
                Echo(parent)
            )));
        }
        Ok(rec)
    }

    /// Creates an active (writable) snapshot `key` on top of the committed
    /// `parent` (None or "" for an empty one) and returns its mounts.
    /// AlreadyExists if `key` is taken, NotFound if `parent` is unknown,
    /// InvalidArgument if it is not committed. Durable once it returns.
    pub fn prepare(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(ns, key, parent, labels, Kind::Active)
    }

    /// Like [`Snapshotter::prepare`] but read-only (a view).
    pub fn view(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: HashMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(ns, key, parent, labels, Kind::View)
    }

    fn create(
        &self,
        ns: &str,
        key: &str,
        parent: Option<&str>,
        labels: HashMap<String, String>,
        kind: Kind,
    ) -> Result<Vec<Mount>> {
        check_namespace(ns)?;
        check_key("key", key)?;
        let parent = parent.filter(|p| !p.is_empty());
        let already = || Error::AlreadyExists {
            namespace: ns.to_owned(),
            key: key.to_owned(),
        };
        if self.exists(ns, key)? {
            return Err(already());
        }
        let parent_rec = parent.map(|p| self.committed_parent(ns, p)).transpose()?;

        // Build the directory under a temporary name.
        let tmp = self.snapshots_dir().join(format!(
            "new-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        self.building
            .lock()
            .map_err(|_| Error::Internal("building set poisoned".into()))?
            .insert(tmp.clone());
        let mut building = Building {
            s: self,
            path: tmp.clone(),
            armed: true,
        };
        let fsdir = tmp.join("fs");
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp)
            .map_err(|e| Error::io("mkdir", &tmp, e))?;
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&fsdir)
            .map_err(|e| Error::io("mkdir", &fsdir, e))?;
        match (self.backend, &parent_rec) {
            (Backend::Overlay, p) => {
                let work = tmp.join("work");
                fs::DirBuilder::new()
                    .mode(0o711)
                    .create(&work)
                    .map_err(|e| Error::io("mkdir", &work, e))?;
                if let Some(p) = p {
                    self.inherit_root(p.id, &fsdir)?;
                }
            }
            (Backend::Native, Some(p)) => fsutil::copy_tree(&self.fs_of(p.id), &fsdir)?,
            (Backend::Native, None) => {}
        }

        let _g = self.guard()?;
        if self.exists(ns, key)? {
            return Err(already());
        }
        if let Some(p) = parent {
            let again = self.committed_parent(ns, p)?;
            if Some(again.id) != parent_rec.as_ref().map(|r| r.id) {
                return Err(Error::FailedPrecondition(format!(
                    "parent {} changed while preparing {}",
                    Echo(p),
                    Echo(key)
                )));
            }
        }
        // Ids are persisted lazily by sled, so after a crash an id may come
        // back whose directory (without a record) is still on disk: skip it.
        let mut id = self.db.generate_id()? + 1;
        while fs::symlink_metadata(self.dir_of(id)).is_ok() {
            id = self.db.generate_id()? + 1;
        }
        let dir = self.dir_of(id);
        fs::rename(&tmp, &dir).map_err(|e| Error::io("rename", &dir, e))?;
        building.armed = false;
        let now = now_ns();
        let rec = Record {
            id,
            kind,
            parent: parent.map(str::to_owned),
            labels: labels.into_iter().collect(),
            created_ns: now,
            updated_ns: now,
            size: None,
            inodes: None,
        };
        let write = || -> Result<()> {
            fsutil::fsync_dir(&self.snapshots_dir())?;
            let mut batch = sled::Batch::default();
            batch.insert(snap_key(ns, key), rec.encode()?);
            if let Some(p) = parent {
                batch.insert(child_key(ns, p, key), &[][..]);
            }
            self.db.apply_batch(batch)?;
            self.db.flush()?;
            Ok(())
        };
        if let Err(e) = write() {
            let _ = fs::remove_dir_all(&dir);
            return Err(e);
        }
        let parents = self.parent_ids(ns, &rec)?;
        Ok(self.mount_specs(&rec, &parents))
    }

    /// Stacks the active snapshot `key`, prepared without a parent, on the
    /// committed `parent` (overlayfs only: the upper dir does not depend on
    /// its lowers, so layers can be written before their parents exist; see
    /// [`crate::apply_layer_staged`]). The upper dir's root takes the
    /// parent's owner and mode, as [`Snapshotter::prepare`] would have given
    /// it. Returns the new mounts. Durable once it returns.
    pub fn rebase(&self, ns: &str, key: &str, parent: &str) -> Result<Vec<Mount>> {
        check_namespace(ns)?;
        if self.backend != Backend::Overlay {
            return Err(Error::FailedPrecondition(format!(
                "rebase needs the overlayfs snapshotter, not {}",
                self.backend.name()
            )));
        }
        // Nothing is built before the guard (unlike prepare), so the
        // checks are made once, under it.
        let _g = self.guard()?;
        let mut rec = self.get(ns, key)?;
        if rec.kind != Kind::Active || rec.parent.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {} is not an active snapshot without a parent",
                Echo(key)
            )));
        }
        let prec = self.committed_parent(ns, parent)?;
        self.inherit_root(prec.id, &self.fs_of(rec.id))?;
        rec.parent = Some(parent.to_owned());
        rec.updated_ns = now_ns();
        let mut batch = sled::Batch::default();
        batch.insert(snap_key(ns, key), rec.encode()?);
        batch.insert(child_key(ns, parent, key), &[][..]);
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        let parents = self.parent_ids(ns, &rec)?;
        Ok(self.mount_specs(&rec, &parents))
    }

    /// Commits the active snapshot `key` as the committed snapshot `name`
    /// (with `labels`). NotFound if `key` is unknown, FailedPrecondition if
    /// it is not active, AlreadyExists if `name` is taken. The snapshot's
    /// files must already be durable (apply syncs them). Durable once it
    /// returns.
    pub fn commit(
        &self,
        ns: &str,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        check_namespace(ns)?;
        check_key("name", name)?;
        let rec = self.get(ns, key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {} is not active",
                Echo(key)
            )));
        }
        if self.exists(ns, name)? {
            return Err(Error::AlreadyExists {
                namespace: ns.to_owned(),
                key: name.to_owned(),
            });
        }
        let (size, inodes) = fsutil::disk_usage(&self.fs_of(rec.id))?;
        let _g = self.guard()?;
        let rec = self.get(ns, key)?;
        if rec.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {} is not active",
                Echo(key)
            )));
        }
        if self.exists(ns, name)? {
            return Err(Error::AlreadyExists {
                namespace: ns.to_owned(),
                key: name.to_owned(),
            });
        }
        let now = now_ns();
        let new = Record {
            id: rec.id,
            kind: Kind::Committed,
            parent: rec.parent.clone(),
            labels: labels.into_iter().collect(),
            created_ns: now,
            updated_ns: now,
            size: Some(size),
            inodes: Some(inodes),
        };
        let mut batch = sled::Batch::default();
        batch.remove(snap_key(ns, key));
        batch.insert(snap_key(ns, name), new.encode()?);
        if let Some(p) = &rec.parent {
            batch.remove(child_key(ns, p, key));
            batch.insert(child_key(ns, p, name), &[][..]);
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Removes `key` and its directory. NotFound if unknown,
    /// FailedPrecondition if it has children. The record is gone (durably)
    /// before the directory is deleted.
    pub fn remove(&self, ns: &str, key: &str) -> Result<()> {
        let gone = self.detach(ns, key)?;
        if let Err(e) = fs::remove_dir_all(&gone) {
            tracing::warn!(path = %gone.display(), error = %e, "snapshot dir left for cleanup");
        }
        Ok(())
    }

    /// Removes `key`'s record (durably) and moves its directory aside, as
    /// [`remove`](Self::remove) does, but leaves deleting the directory
    /// to the caller: returns its path. Cheap whatever the snapshot's
    /// size, so a collector can detach under its lock and delete the
    /// trees after releasing it. A directory never deleted (a crash) goes
    /// with the next [`cleanup`](Self::cleanup), as it has no record.
    pub fn detach(&self, ns: &str, key: &str) -> Result<PathBuf> {
        let g = self.guard()?;
        let rec = self.get(ns, key)?;
        if self.db.scan_prefix(child_prefix(ns, key)).next().is_some() {
            return Err(Error::FailedPrecondition(format!(
                "cannot remove snapshot {}: it has children",
                Echo(key)
            )));
        }
        let mut batch = sled::Batch::default();
        batch.remove(snap_key(ns, key));
        if let Some(p) = &rec.parent {
            batch.remove(child_key(ns, p, key));
        }
        self.db.apply_batch(batch)?;
        self.db.flush()?;
        let dir = self.dir_of(rec.id);
        let gone = self.snapshots_dir().join(format!("rm-{}", rec.id));
        let renamed = fs::rename(&dir, &gone);
        drop(g);
        Ok(if renamed.is_ok() { gone } else { dir })
    }

    /// Updates labels of `info.name`. `fieldpaths` empty or `labels`
    /// replaces all labels; `labels.K` sets K from `info.labels` or deletes
    /// it when absent there. Any other path is InvalidArgument.
    pub fn update(&self, ns: &str, info: Info, fieldpaths: &[String]) -> Result<Info> {
        let _g = self.guard()?;
        let mut rec = self.get(ns, &info.name)?;
        if fieldpaths.is_empty() {
            rec.labels = info.labels.clone().into_iter().collect();
        }
        for fp in fieldpaths {
            if fp == "labels" {
                rec.labels = info.labels.clone().into_iter().collect::<BTreeMap<_, _>>();
            } else if let Some(k) = fp.strip_prefix("labels.") {
                match info.labels.get(k) {
                    Some(v) => {
                        rec.labels.insert(k.to_owned(), v.clone());
                    }
                    None => {
                        rec.labels.remove(k);
                    }
                }
            } else {
                return Err(Error::InvalidArgument(format!(
                    "cannot update field {} of snapshot {}: only labels are updatable",
                    Echo(fp),
                    Echo(&info.name)
                )));
            }
        }
        rec.updated_ns = now_ns();
        self.db.insert(snap_key(ns, &info.name), rec.encode()?)?;
        self.db.flush()?;
        Ok(rec.info(&info.name))
    }

    /// Removes every directory under `<root>/snapshots` that has no record
    /// (leftovers of crashes and of failed removals). Returns how many.
    pub fn cleanup(&self) -> Result<usize> {
        let _g = self.guard()?;
        let mut ids = HashSet::new();
        for kv in self.db.scan_prefix(b"s\0") {
            let (_, v) = kv?;
            ids.insert(Record::decode(&v)?.id);
        }
        let building = self
            .building
            .lock()
            .map_err(|_| Error::Internal("building set poisoned".into()))?
            .clone();
        let dir = self.snapshots_dir();
        let mut removed = 0;
        for ent in fs::read_dir(&dir).map_err(|e| Error::io("readdir", &dir, e))? {
            let ent = ent.map_err(|e| Error::io("readdir", &dir, e))?;
            let path = ent.path();
            let keep = ent
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| ids.contains(&id));
            if keep || building.contains(&path) {
                continue;
            }
            tracing::info!(path = %path.display(), "cleanup: removing snapshot dir without record");
            fs::remove_dir_all(&path).map_err(|e| Error::io("remove", &path, e))?;
            removed += 1;
        }
        Ok(removed)
    }
}

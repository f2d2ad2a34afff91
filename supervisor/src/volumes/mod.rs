//! Named volumes owned by berthd (Docker's `local` driver): a record in the
//! metadata store (tree `berth.volumes`) and a directory
//! `ROOT/volumes/NAME/_data` that containers bind-mount.
//!
//! # Contract
//!
//! - The record is the truth: it is written (and flushed) after the
//!   directory exists and deleted before the directory goes, so a crash
//!   leaves at worst a directory without a record, which a later create of
//!   the same name empties first. A volume never holds stale data.
//! - A volume records its users (`namespace/container-id`); it cannot be
//!   removed (or pruned) while it has one. Users are added when a container
//!   is created and dropped when it is removed; after berthd restarts the
//!   engine hands over the containers it still has and any other user is
//!   forgotten ([`Volumes::retain_users`]).
//! - Volumes are the host's, shared by every namespace, like networks. The
//!   garbage collector does not know them: only `remove`, `prune` and the
//!   removal of a container with its anonymous volumes delete one.
//! - Calls on one volume are serialised by its own lock; nothing holds two.

mod error;
mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use error::Error;
pub use records::VolumeRecord;

use crate::store::Store;

/// Result alias of the volumes.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The only driver.
pub const LOCAL: &str = "local";

/// A volume a container is to use, and whether this call made it.
#[derive(Debug, Clone)]
pub struct Acquired {
    /// The volume (its users include the caller).
    pub volume: VolumeRecord,
    /// Its directory, to bind-mount.
    pub path: PathBuf,
    /// Made by this call (so empty): the caller copies the image's content
    /// in (Docker's copy-up).
    pub fresh: bool,
}

/// berthd's volumes. Cheap to clone.
#[derive(Clone)]
pub struct Volumes {
    inner: Arc<Inner>,
}

struct Inner {
    /// `ROOT/volumes`.
    dir: PathBuf,
    store: Store,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Volumes {
    /// The volumes kept in `store`, with their data under `dir`
    /// (`ROOT/volumes`).
    pub fn new(dir: PathBuf, store: Store) -> Self {
        Volumes {
            inner: Arc::new(Inner {
                dir,
                store,
                locks: Mutex::new(HashMap::new()),
            }),
        }
    }

    fn lock_of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.inner.locks.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(locks.entry(name.to_string()).or_default())
    }

    /// The directory containers mount for volume `name`.
    pub fn data_path(&self, name: &str) -> PathBuf {
        self.inner.dir.join(name).join("_data")
    }

    /// Creates volume `name` (empty: a generated one) with `labels`; a
    /// volume of that name is returned as it is. Durable once this returns.
    pub async fn create(
        &self,
        name: &str,
        driver: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<VolumeRecord> {
        if !matches!(driver, "" | LOCAL) {
            return Err(Error::InvalidArgument(format!(
                "volume driver {driver:?}: only \"local\" is served"
            )));
        }
        let name = if name.is_empty() {
            new_name()
        } else {
            name.to_string()
        };
        records::validate_name(&name)?;
        let lock = self.lock_of(&name);
        let _g = lock.lock().await;
        if let Some(r) = records::get(&self.inner.store, &name)? {
            return Ok(r);
        }
        self.make(&name, labels, false, BTreeSet::new()).await
    }

    /// Makes the directory (emptying one a crash left) and the record.
    async fn make(
        &self,
        name: &str,
        labels: BTreeMap<String, String>,
        anonymous: bool,
        users: BTreeSet<String>,
    ) -> Result<VolumeRecord> {
        let top = self.inner.dir.join(name);
        let data = self.data_path(name);
        tokio::task::spawn_blocking(move || -> Result<()> {
            if top.exists() {
                std::fs::remove_dir_all(&top)
                    .map_err(Error::io("remove stale volume dir", &top))?;
            }
            std::fs::create_dir_all(&data).map_err(Error::io("create volume dir", &data))?;
            sync_dir(top.parent().unwrap_or(Path::new("/")));
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))??;
        let rec = VolumeRecord {
            name: name.to_string(),
            driver: LOCAL.into(),
            labels,
            created_at: SystemTime::now(),
            anonymous,
            users,
        };
        records::put(&self.inner.store, &rec).await?;
        tracing::info!(volume = name, anonymous, "volume created");
        Ok(rec)
    }

    /// Every volume, by name.
    pub async fn list(&self) -> Result<Vec<VolumeRecord>> {
        records::all(&self.inner.store)
    }

    /// Volume `name`.
    pub async fn get(&self, name: &str) -> Result<VolumeRecord> {
        records::get(&self.inner.store, name)?
            .ok_or_else(|| Error::NotFound(format!("no such volume: {name}")))
    }

    /// Removes volume `name` and its data; refused while a container uses
    /// it.
    pub async fn remove(&self, name: &str) -> Result<String> {
        let lock = self.lock_of(name);
        let _g = lock.lock().await;
        let rec = self.get(name).await?;
        if !rec.users.is_empty() {
            return Err(Error::FailedPrecondition(format!(
                "volume {name} is in use by container {}: remove the container first",
                rec.users
                    .iter()
                    .next()
                    .map(String::as_str)
                    .unwrap_or_default()
            )));
        }
        self.destroy(name).await?;
        Ok(name.to_string())
    }

    /// Deletes the record, then the directory (the caller holds the lock).
    async fn destroy(&self, name: &str) -> Result<()> {
        records::delete(&self.inner.store, name).await?;
        let top = self.inner.dir.join(name);
        tokio::task::spawn_blocking(move || std::fs::remove_dir_all(&top))
            .await
            .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
            .or_else(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .map_err(Error::io("remove volume dir", &self.inner.dir.join(name)))?;
        tracing::info!(volume = name, "volume removed");
        Ok(())
    }

    /// Removes every volume no container uses (and, with filters, whose
    /// labels match `label=K[=V]`); the names removed.
    pub async fn prune(&self, filters: &[String]) -> Result<Vec<String>> {
        let mut labels = Vec::new();
        for f in filters {
            match f.split_once('=') {
                Some(("label", v)) => labels.push(v.to_string()),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "volume prune filter {f:?}: label=KEY[=VALUE]"
                    )))
                }
            }
        }
        let mut removed = Vec::new();
        for rec in self.list().await? {
            if !label_match(&rec, &labels) {
                continue;
            }
            let lock = self.lock_of(&rec.name);
            let _g = lock.lock().await;
            match records::get(&self.inner.store, &rec.name)? {
                Some(r) if r.users.is_empty() => {}
                _ => continue,
            }
            self.destroy(&rec.name).await?;
            removed.push(rec.name);
        }
        Ok(removed)
    }

    /// Volume `name` (empty: a new anonymous one) for container `user`
    /// (`namespace/id`): made when missing, the user recorded. Durable
    /// once this returns.
    pub async fn acquire(&self, name: &str, user: &str) -> Result<Acquired> {
        let (name, anonymous) = if name.is_empty() {
            (new_name(), true)
        } else {
            (name.to_string(), false)
        };
        records::validate_name(&name)?;
        let lock = self.lock_of(&name);
        let _g = lock.lock().await;
        let users: BTreeSet<String> = [user.to_string()].into();
        let (volume, fresh) = match records::get(&self.inner.store, &name)? {
            Some(mut r) => {
                if r.users.insert(user.to_string()) {
                    records::put(&self.inner.store, &r).await?;
                }
                (r, false)
            }
            None => (
                self.make(&name, BTreeMap::new(), anonymous, users).await?,
                true,
            ),
        };
        Ok(Acquired {
            path: self.data_path(&name),
            volume,
            fresh,
        })
    }

    /// Drops container `user` from every volume; with `anonymous`, its
    /// anonymous volumes nobody else uses are removed too. The names
    /// removed.
    pub async fn release(&self, user: &str, anonymous: bool) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for rec in self.list().await? {
            if !rec.users.contains(user) {
                continue;
            }
            let lock = self.lock_of(&rec.name);
            let _g = lock.lock().await;
            let Some(mut r) = records::get(&self.inner.store, &rec.name)? else {
                continue;
            };
            r.users.remove(user);
            if anonymous && r.anonymous && r.users.is_empty() {
                self.destroy(&r.name).await?;
                removed.push(r.name);
            } else {
                records::put(&self.inner.store, &r).await?;
            }
        }
        Ok(removed)
    }

    /// Forgets every user not in `live` (containers removed while berthd
    /// was down, or by a crash between their removal and the release).
    pub async fn retain_users(&self, live: &BTreeSet<String>) -> Result<()> {
        for rec in self.list().await? {
            if rec.users.iter().all(|u| live.contains(u)) {
                continue;
            }
            let lock = self.lock_of(&rec.name);
            let _g = lock.lock().await;
            if let Some(mut r) = records::get(&self.inner.store, &rec.name)? {
                r.users.retain(|u| live.contains(u));
                records::put(&self.inner.store, &r).await?;
                tracing::info!(volume = %r.name, "volume: users of removed containers forgotten");
            }
        }
        Ok(())
    }
}

/// Whether `rec` carries every `KEY[=VALUE]` of `labels`.
pub fn label_match(rec: &VolumeRecord, labels: &[String]) -> bool {
    labels.iter().all(|l| match l.split_once('=') {
        Some((k, v)) => rec.labels.get(k).is_some_and(|x| x == v),
        None => rec.labels.contains_key(l.as_str()),
    })
}

/// A generated name: 64 hex digits, as Docker's anonymous volumes.
fn new_name() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Makes a directory entry durable (best effort).
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vols() -> (tempfile::TempDir, Volumes) {
        let t = tempfile::tempdir().unwrap();
        let store = Store::open(t.path()).unwrap();
        let v = Volumes::new(t.path().join("volumes"), store);
        (t, v)
    }

    #[tokio::test]
    async fn users_guard_removal_and_anonymous_go_with_their_container() {
        let (_t, v) = vols();
        let a = v.acquire("data", "ns/c1").await.unwrap();
        assert!(a.fresh && a.path.is_dir());
        assert!(!v.acquire("data", "ns/c2").await.unwrap().fresh);
        let err = v.remove("data").await.unwrap_err();
        assert_eq!(err.kind(), berth_api::ErrorKind::FailedPrecondition);
        let anon = v.acquire("", "ns/c1").await.unwrap();
        assert!(anon.volume.anonymous);
        assert_eq!(
            v.release("ns/c1", true).await.unwrap(),
            vec![anon.volume.name.clone()]
        );
        assert!(!anon.path.exists());
        assert_eq!(v.get("data").await.unwrap().users.len(), 1);
        v.retain_users(&BTreeSet::new()).await.unwrap();
        assert_eq!(v.prune(&[]).await.unwrap(), vec!["data".to_string()]);
        assert_eq!(
            v.get("data").await.unwrap_err().kind(),
            berth_api::ErrorKind::NotFound
        );
    }

    #[tokio::test]
    async fn names_are_checked_and_create_is_idempotent() {
        let (_t, v) = vols();
        for bad in ["", "a", "../x", "a/b", "-x"] {
            if bad.is_empty() {
                continue;
            }
            assert_eq!(
                v.create(bad, "", BTreeMap::new()).await.unwrap_err().kind(),
                berth_api::ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
        let labels: BTreeMap<_, _> = [("k".to_string(), "v".to_string())].into();
        let a = v.create("vol1", "local", labels.clone()).await.unwrap();
        let b = v.create("vol1", "", BTreeMap::new()).await.unwrap();
        assert_eq!(a, b);
        assert_eq!(b.labels, labels);
        assert!(v.create("", "nfs", BTreeMap::new()).await.is_err());
    }
}

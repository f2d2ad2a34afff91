//! The content-addressed blob store, with containerd's semantics.
//!
//! Layout under `<root>/content/`:
//!
//! ```text
//! blobs/sha256/<hex>        committed blobs, read-only, shared by all namespaces
//! ingest/<key>/             one in-progress write, key = sha256(ns + "/" + ref)
//!     data ref ns total expected startedat
//! trash/<hex>-<n>           blobs a collection took, deleted after it
//!                           released its guard (emptied at start-up)
//! ```
//!
//! Which namespace holds which digest is metadata (`store::content`): a blob
//! is visible in a namespace only while that namespace records it, and the
//! file is removed when the last namespace deletes its record.
//!
//! Crash safety: a blob file appears only by renaming a verified, fsync'd
//! ingest file into place, so `blobs/` never holds wrong bytes, even after a
//! kill -9 at any point. A commit is acknowledged only once the rename, the
//! directory fsync and the metadata flush are done. An interrupted ingest
//! stays on disk: `status`/`list_statuses` report it and a new writer resumes
//! it (re-hashing what is there), or `abort` removes it.
//!
//! Leases: a store obtained with [`ContentStore::with_lease`] adds what it
//! writes (the ingest while it lasts, then the committed digest) to that
//! lease, as containerd does for calls carrying `containerd-lease`.

mod error;
mod ingest;
mod locks;
mod orphans;
mod status;
mod verify;
mod writer;

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use berth_api::Digest;

pub use error::Error;
pub use ingest::{validate_ref, MAX_REF_LEN};
pub use status::IngestStatus;
pub use verify::{corruption, Corrupt, VerifiedBlob};
pub use writer::Writer;

use crate::filters::{self, label_field, Fields};
use crate::store::content as records;
use crate::store::labels::{self, Labels};
use crate::store::leases::{self, Resource};
use crate::store::Store;

/// Result alias for content calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a namespace knows about a committed blob.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// The blob's digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// When it was committed in this namespace.
    pub created_at: SystemTime,
    /// When its labels last changed.
    pub updated_at: SystemTime,
    /// Its labels.
    pub labels: Labels,
}

impl Fields for Info {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "digest" if path.len() == 1 => Some(self.digest.to_string()),
            "size" if path.len() == 1 => Some(self.size.to_string()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

impl Info {
    fn from_record(digest: Digest, r: records::Record) -> Self {
        Self {
            digest,
            size: r.size,
            created_at: r.created_at,
            updated_at: r.updated_at,
            labels: r.labels,
        }
    }
}

/// Number of digest lock stripes; commits and deletes of one digest are
/// serialised, different digests rarely contend.
const STRIPES: usize = 64;

/// Tells apart the trash names of one digest taken more than once.
static TRASH_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Inner {
    root: PathBuf,
    store: Store,
    digest_locks: Vec<tokio::sync::Mutex<()>>,
    ingest_locks: locks::Locks,
    /// The collector's guard (see `crate::gc`): recording a blob and adding
    /// it to a lease happen under its read side, so a collection never sees
    /// a blob recorded but not yet leased.
    gc_guard: Arc<tokio::sync::RwLock<()>>,
}

/// The content store. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct ContentStore {
    inner: Arc<Inner>,
    lease: Option<String>,
}

pub(crate) fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.to_path_buf();
    move |source| Error::Io { what, path, source }
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Task(e.to_string()))?
}

impl ContentStore {
    /// Opens the store under `<root>/content`, creating its directories, and
    /// clears what a crash may have left half made: ingests that never got
    /// their metadata, the store's own import ingests, and blob files no
    /// namespace records (see `orphans`).
    pub fn open(root: &Path, store: Store) -> Result<Self> {
        let root = root.join("content");
        // Blobs a collection moved aside but did not get to unlink.
        let trash = root.join("trash");
        if trash.exists() {
            fs::remove_dir_all(&trash).map_err(io("emptying", &trash))?;
        }
        for dir in [root.join("blobs/sha256"), root.join("ingest"), trash] {
            fs::create_dir_all(&dir).map_err(io("creating directory", &dir))?;
        }
        ingest::clean_partial(&root.join("ingest"))?;
        let cs = Self {
            inner: Arc::new(Inner {
                root,
                store,
                digest_locks: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
                ingest_locks: locks::Locks::default(),
                gc_guard: Arc::default(),
            }),
            lease: None,
        };
        cs.remove_stale_import_ingests()?;
        cs.remove_orphan_blobs()?;
        Ok(cs)
    }

    /// The same store, adding what it writes to `lease` (None: no lease).
    pub fn with_lease(&self, lease: Option<String>) -> Self {
        Self {
            inner: self.inner.clone(),
            lease: lease.filter(|l| !l.is_empty()),
        }
    }

    /// The lease this handle adds resources to.
    pub fn lease(&self) -> Option<&str> {
        self.lease.as_deref()
    }

    /// The guard garbage collection takes exclusively for a run; this store
    /// takes its read side around each record-and-lease step, before any
    /// digest lock. Never call into this store while holding its read side
    /// (a waiting collection blocks new readers).
    pub fn gc_guard(&self) -> Arc<tokio::sync::RwLock<()>> {
        self.inner.gc_guard.clone()
    }

    /// When `ns` records `digest`, adds it to the lease and returns true,
    /// atomically with respect to garbage collection: the blob the caller
    /// is told exists stays until the lease goes.
    pub async fn lease_if_present(&self, ns: &str, digest: &Digest) -> Result<bool> {
        let _gc = self.inner.gc_guard.read().await;
        if self.info(ns, digest).is_err() {
            return Ok(false);
        }
        self.add_lease_resource(ns, "content", &digest.to_string())
            .await?;
        Ok(true)
    }

    /// Adds `digest` to this handle's lease under the collector's guard,
    /// before its bytes are written, so a collection never sees it
    /// unprotected (see `crate::gc`). Without a lease: nothing to do.
    pub async fn lease_digest(&self, ns: &str, digest: &Digest) -> Result<()> {
        let _gc = self.inner.gc_guard.read().await;
        self.add_lease_resource(ns, "content", &digest.to_string())
            .await
    }

    /// Where the blob of `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.inner.root.join("blobs/sha256").join(digest.hex())
    }

    pub(crate) fn ingest_root(&self) -> PathBuf {
        self.inner.root.join("ingest")
    }

    pub(crate) fn store(&self) -> &Store {
        &self.inner.store
    }

    pub(crate) fn digest_lock(&self, digest: &Digest) -> &tokio::sync::Mutex<()> {
        let b = digest.hex().as_bytes();
        let idx = (usize::from(b[0]) * 31 + usize::from(b[1])) % STRIPES;
        &self.inner.digest_locks[idx]
    }

    /// The info of `digest` in `ns`; NotFound unless `ns` records it.
    pub fn info(&self, ns: &str, digest: &Digest) -> Result<Info> {
        let rec = records::get(&self.inner.store, ns, &digest.to_string())?
            .ok_or_else(|| Error::NotFound(digest.clone()))?;
        Ok(Info::from_record(digest.clone(), rec))
    }

    /// Updates labels under a field mask (`labels`, `labels.KEY`; no paths
    /// replaces all labels); any other path is InvalidArgument. Durable once
    /// this returns.
    pub async fn update(&self, ns: &str, info: Info, paths: &[String]) -> Result<Info> {
        labels::validate(&info.labels)?;
        let rec = records::update(&self.inner.store, ns, &info.digest.to_string(), |r| {
            labels::apply_mask(&mut r.labels, &info.labels, paths, &[])?;
            r.updated_at = SystemTime::now();
            Ok(())
        })?
        .ok_or_else(|| Error::NotFound(info.digest.clone()))?;
        self.inner.store.flush().await?;
        Ok(Info::from_record(info.digest, rec))
    }

    /// Every blob recorded in `ns`.
    pub fn list(&self, ns: &str) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        for (d, rec) in records::list(&self.inner.store, ns)? {
            match d.parse::<Digest>() {
                Ok(d) => out.push(Info::from_record(d, rec)),
                Err(e) => tracing::warn!(namespace = ns, error = %e, "skipping bad content key"),
            }
        }
        Ok(out)
    }

    /// The blobs recorded in `ns` that containerd `filters` match.
    pub fn list_matching(&self, ns: &str, filters: &[String]) -> Result<Vec<Info>> {
        filters::select(filters, self.list(ns)?).map_err(|e| Error::InvalidArgument(e.to_string()))
    }

    /// Every (namespace, blob) record, for garbage collection.
    pub fn list_all(&self) -> Result<Vec<(String, Info)>> {
        let mut out = Vec::new();
        for (ns, d, rec) in records::list_all(&self.inner.store)? {
            if let Ok(d) = d.parse::<Digest>() {
                out.push((ns, Info::from_record(d, rec)));
            }
        }
        Ok(out)
    }

    /// Deletes the record of `digest` in `ns` (NotFound if there is none),
    /// and the blob file once no namespace records it. Durable once this
    /// returns.
    pub async fn delete(&self, ns: &str, digest: &Digest) -> Result<()> {
        if let Some(path) = self.detach(ns, digest).await? {
            blocking(move || match fs::remove_file(&path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("removing blob", &path)(e)),
            })
            .await?;
            tracing::debug!(digest = %digest, "blob removed");
        }
        Ok(())
    }

    /// Deletes the record as [`delete`](Self::delete) does but, when no
    /// namespace records the blob any more, only moves its file into
    /// `trash/` and returns that path for the caller to remove: a rename,
    /// cheap whatever the size, so a collection holds its guard for
    /// milliseconds and unlinks after releasing it. A new commit of the
    /// same digest then lands in `blobs/` untouched by that unlink.
    pub async fn detach(&self, ns: &str, digest: &Digest) -> Result<Option<PathBuf>> {
        let _guard = self.digest_lock(digest).lock().await;
        let key = digest.to_string();
        if !records::remove(&self.inner.store, ns, &key)? {
            return Err(Error::NotFound(digest.clone()));
        }
        if let Some(lease) = &self.lease {
            let r = Resource {
                id: key.clone(),
                kind: "content".into(),
            };
            match leases::delete_resource(&self.inner.store, ns, lease, r).await {
                Ok(()) | Err(crate::store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        // The record's removal must be durable before the bytes go.
        self.inner.store.flush().await?;
        if records::referenced(&self.inner.store, &key)? {
            return Ok(None);
        }
        let path = self.blob_path(digest);
        let trash = self.inner.root.join("trash").join(format!(
            "{}-{}",
            digest.hex(),
            TRASH_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        blocking(move || match fs::rename(&path, &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("moving blob to trash", &path)(e)),
        })
        .await
    }

    /// Opens the blob of `digest` for reading; NotFound unless `ns` records
    /// it. Blocking (one open call).
    pub fn open_blob(&self, ns: &str, digest: &Digest) -> Result<File> {
        self.info(ns, digest)?;
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(digest.clone()),
            _ => io("opening blob", &path)(e),
        })
    }

    /// Streams `reader` into a new blob of `ns`: verifies the digest (and
    /// size when given), commits durably and records it with `labels`.
    /// When the blob already exists in the store it is recorded without
    /// reading `reader`; when `ns` already records it, its info is returned.
    /// For importers: never fails with AlreadyExists.
    pub async fn ingest_from_reader<R: Read + Send + 'static>(
        &self,
        ns: &str,
        mut reader: R,
        expected: &Digest,
        expected_size: Option<u64>,
        labels: Labels,
    ) -> Result<Info> {
        labels::validate(&labels)?;
        if self.lease_if_present(ns, expected).await? {
            return self.info(ns, expected);
        }
        if let Some(info) = self
            .record_existing(ns, expected, expected_size, labels.clone())
            .await?
        {
            return Ok(info);
        }
        let reference = format!(
            "{}{}-{}",
            orphans::IMPORT_REF_PREFIX,
            expected,
            uuid::Uuid::new_v4().simple()
        );
        let mut w = self
            .writer(
                ns,
                &reference,
                expected_size.unwrap_or(0),
                Some(expected.clone()),
            )
            .await?;
        let result = async {
            loop {
                let (r, buf) = blocking(move || {
                    let mut buf = vec![0u8; 1 << 20];
                    let mut filled = 0;
                    while filled < buf.len() {
                        let n = reader
                            .read(&mut buf[filled..])
                            .map_err(|e| Error::Reader(e.to_string()))?;
                        if n == 0 {
                            break;
                        }
                        filled += n;
                    }
                    buf.truncate(filled);
                    Ok((reader, buf))
                })
                .await?;
                reader = r;
                if buf.is_empty() {
                    break;
                }
                w.write(buf).await?;
            }
            Ok::<_, Error>(())
        }
        .await;
        if let Err(e) = result {
            drop(w);
            let _ = self.abort(ns, &reference).await;
            return Err(e);
        }
        match w.commit(expected_size, Some(expected), labels).await {
            Ok(info) => Ok(info),
            Err(Error::AlreadyExists(_)) => self.info(ns, expected),
            Err(e) => {
                let _ = self.abort(ns, &reference).await;
                Err(e)
            }
        }
    }

    /// Records an existing blob file in `ns` (after checking its size
    /// against `expected_size`); None when there is no such file.
    async fn record_existing(
        &self,
        ns: &str,
        digest: &Digest,
        expected_size: Option<u64>,
        labels: Labels,
    ) -> Result<Option<Info>> {
        let _gc = self.inner.gc_guard.read().await;
        let _guard = self.digest_lock(digest).lock().await;
        let path = self.blob_path(digest);
        let size = match fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading blob metadata", &path)(e)),
        };
        if expected_size.is_some_and(|s| s != size) {
            return Err(Error::FailedPrecondition(format!(
                "unexpected commit size {size}, expected {}",
                expected_size.unwrap_or_default()
            )));
        }
        let info = self.record(ns, digest, size, labels).await?;
        Ok(Some(info))
    }

    /// Records a present blob in `ns`, adds it to the lease and flushes.
    /// AlreadyExists when `ns` records it already. Caller holds the read
    /// side of the collector's guard, then the digest lock (always in that
    /// order: a collection holds the write side while it deletes, which
    /// takes digest locks).
    pub(crate) async fn record(
        &self,
        ns: &str,
        digest: &Digest,
        size: u64,
        labels: Labels,
    ) -> Result<Info> {
        let now = SystemTime::now();
        let rec = records::Record {
            size,
            created_at: now,
            updated_at: now,
            labels,
        };
        crate::store::namespaces::ensure(&self.inner.store, ns).await?;
        if !records::insert_new(&self.inner.store, ns, &digest.to_string(), &rec)? {
            return Err(Error::AlreadyExists(digest.clone()));
        }
        self.add_lease_resource(ns, "content", &digest.to_string())
            .await?;
        self.inner.store.flush().await?;
        Ok(Info::from_record(digest.clone(), rec))
    }

    /// Adds a resource to this handle's lease, if it has one.
    pub(crate) async fn add_lease_resource(&self, ns: &str, kind: &str, id: &str) -> Result<()> {
        if let Some(lease) = &self.lease {
            let r = Resource {
                id: id.to_string(),
                kind: kind.to_string(),
            };
            leases::add_resource(&self.inner.store, ns, lease, r).await?;
        }
        Ok(())
    }

    /// Removes a resource from this handle's lease, if it has one (a lease
    /// that is gone is not an error).
    pub(crate) async fn remove_lease_resource(&self, ns: &str, kind: &str, id: &str) -> Result<()> {
        if let Some(lease) = &self.lease {
            let r = Resource {
                id: id.to_string(),
                kind: kind.to_string(),
            };
            match leases::delete_resource(&self.inner.store, ns, lease, r).await {
                Ok(()) | Err(crate::store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

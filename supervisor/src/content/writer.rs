//! The single writer of one ingest: append (hashing as it goes), truncate,
//! and commit into the blob store.

use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::SystemTime;

use berth_api::Digest;
use sha2::{Digest as _, Sha256};

use super::locks::LockGuard;
use super::status::{nanos, IngestStatus};
use super::{blocking, io, ContentStore, Error, Info, Result};
use crate::store::labels::{self, Labels};

/// The open data file and the hash of everything in it.
pub(crate) struct State {
    pub(crate) file: File,
    pub(crate) hasher: Sha256,
    pub(crate) offset: u64,
}

/// The only writer of an ingest while it lives; dropping it keeps the
/// ingest on disk for a later writer to resume.
pub struct Writer {
    cs: ContentStore,
    ns: String,
    dir: PathBuf,
    /// None while a blocking call holds it, or after one failed.
    state: Option<State>,
    status: IngestStatus,
    _lock: LockGuard,
}

impl Writer {
    pub(crate) fn new(
        cs: ContentStore,
        ns: String,
        dir: PathBuf,
        state: State,
        status: IngestStatus,
        lock: LockGuard,
    ) -> Self {
        Self {
            cs,
            ns,
            dir,
            state: Some(state),
            status,
            _lock: lock,
        }
    }

    fn take(&mut self) -> Result<State> {
        self.state.take().ok_or_else(|| {
            Error::FailedPrecondition(format!(
                "ingest {:?}: writer is unusable after an earlier failure",
                self.status.reference
            ))
        })
    }

    /// The ingest's ref.
    pub fn reference(&self) -> &str {
        &self.status.reference
    }

    /// Where the next write lands: the bytes written so far.
    pub fn offset(&self) -> u64 {
        self.status.offset
    }

    /// The current status (offset, total, times).
    pub fn status(&self) -> IngestStatus {
        self.status.clone()
    }

    /// The digest of the bytes written so far.
    pub fn digest(&self) -> Digest {
        match &self.state {
            Some(s) => Digest::from_hasher(s.hasher.clone()),
            None => Digest::of(b""),
        }
    }

    /// Records a new expected total (0 leaves it as is).
    pub fn set_total(&mut self, total: u64) {
        if total > 0 {
            self.status.total = total;
        }
    }

    /// Appends `data` at the current offset, hashing it as it goes. Not
    /// durable until [`commit`](Self::commit).
    pub async fn write(&mut self, data: Vec<u8>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        // Refused before a byte is written, so the ingest stays whole and
        // resumable once space is freed.
        self.cs
            .store()
            .room_for_content(&self.dir, data.len() as u64)?;
        let mut st = self.take()?;
        let path = self.dir.join("data");
        let st = blocking(move || {
            st.file
                .write_all(&data)
                .map_err(io("writing ingest data", &path))?;
            st.hasher.update(&data);
            st.offset += data.len() as u64;
            Ok(st)
        })
        .await?;
        self.status.offset = st.offset;
        self.status.updated_at = SystemTime::now();
        self.state = Some(st);
        Ok(())
    }

    /// Empties the ingest, as a write at offset 0 asks.
    pub async fn truncate(&mut self) -> Result<()> {
        let mut st = self.take()?;
        let path = self.dir.join("data");
        let st = blocking(move || {
            st.file.set_len(0).map_err(io("truncating", &path))?;
            st.file
                .seek(SeekFrom::Start(0))
                .map_err(io("seeking", &path))?;
            st.hasher = Sha256::new();
            st.offset = 0;
            Ok(st)
        })
        .await?;
        self.status.offset = 0;
        self.status.updated_at = SystemTime::now();
        self.state = Some(st);
        Ok(())
    }

    /// Closes the writer, keeping the ingest for a later one: records the
    /// time of the last write (`updatedat`) before the lock is released,
    /// so the next writer's status reports it. Dropping a writer without
    /// closing it leaves the data's mtime as the only record.
    pub async fn close(self) {
        let path = self.dir.join("updatedat");
        let at = nanos(self.status.updated_at).to_string();
        let reference = self.status.reference.clone();
        let written = blocking(move || fs::write(&path, at).map_err(io("writing", &path))).await;
        if let Err(e) = written {
            // Aborted meanwhile, or the disk failed: the status falls
            // back to the data's mtime.
            tracing::debug!(reference, error = %e, "ingest update time not recorded");
        }
        drop(self);
    }

    /// Commits the ingest as a blob of this namespace, with `labels`.
    ///
    /// Checks the size (when `size` is given and non-zero) and the digest
    /// (against `expected`, else the one given at creation): a mismatch is
    /// FailedPrecondition "unexpected commit size/digest", nothing is
    /// stored and the ingest stays for an abort. Otherwise: fsync the data,
    /// rename it into `blobs/` (or drop it when that blob exists already),
    /// fsync the directory, record it in the namespace and flush; durable
    /// once this returns. AlreadyExists when the namespace recorded the
    /// digest already (the ingest is removed all the same).
    pub async fn commit(
        mut self,
        size: Option<u64>,
        expected: Option<&Digest>,
        labels: Labels,
    ) -> Result<Info> {
        labels::validate(&labels)?;
        let st = self.take()?;
        let offset = st.offset;
        if let Some(size) = size.filter(|s| *s > 0) {
            if size != offset {
                return Err(Error::FailedPrecondition(format!(
                    "unexpected commit size {offset}, expected {size}"
                )));
            }
        }
        let actual = Digest::from_hasher(st.hasher.clone());
        if let Some(exp) = expected.or(self.status.expected.as_ref()) {
            if *exp != actual {
                return Err(Error::FailedPrecondition(format!(
                    "unexpected commit digest {actual}, expected {exp}"
                )));
            }
        }

        let cs = self.cs.clone();
        // Collector's guard first, then the digest lock (see `record`).
        let gc_guard = cs.gc_guard();
        let _gc = gc_guard.read().await;
        let _guard = cs.digest_lock(&actual).lock().await;
        let target = cs.blob_path(&actual);
        let dir = self.dir.clone();
        let reference = self.status.reference.clone();
        blocking(move || {
            let data = dir.join("data");
            let file = st.file;
            file.sync_all().map_err(io("syncing ingest data", &data))?;
            drop(file);
            if target.exists() {
                // Same bytes are already there (we just verified the digest).
                let _ = fs::remove_dir_all(&dir);
                return Ok(());
            }
            match fs::rename(&data, &target) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(Error::IngestNotFound(reference));
                }
                Err(e) => return Err(io("renaming ingest into blobs", &target)(e)),
            }
            let _ = fs::set_permissions(&target, fs::Permissions::from_mode(0o444));
            if let Some(parent) = target.parent() {
                File::open(parent)
                    .and_then(|d| d.sync_all())
                    .map_err(io("syncing", parent))?;
            }
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(path = %dir.display(), error = %e, "leaving committed ingest directory behind");
            }
            Ok(())
        })
        .await?;

        let reference = self.status.reference.clone();
        let result = cs.record(&self.ns, &actual, offset, labels).await;
        if matches!(result, Err(Error::AlreadyExists(_))) {
            cs.add_lease_resource(&self.ns, "content", &actual.to_string())
                .await?;
        }
        cs.remove_lease_resource(&self.ns, "ingests", &reference)
            .await?;
        let info = result?;
        tracing::debug!(namespace = %self.ns, reference, digest = %actual, size = offset, "content committed");
        Ok(info)
    }
}

//! Ingests: in-progress writes on disk, their locks, status and abort.
//!
//! An ingest lives in `ingest/<sha256(ns + "/" + ref)>/` with the files
//! `data` (the bytes so far), `ref`, `ns`, `startedat` and `updatedat`
//! (unix nanoseconds; the second rewritten when a writer closes, as
//! containerd does: a file's mtime is too coarse to report the time of the
//! last write), and, when known at creation, `total` and `expected`. The directory is
//! made complete under a temporary name and renamed into place, so after a
//! crash every ingest directory is either whole or absent (partial leftovers
//! are removed at open). Data is not fsync'd per write; commit fsyncs it.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_api::Digest;
use sha2::{Digest as _, Sha256};

use super::writer::{State, Writer};
use super::{blocking, io, ContentStore, Error, Result};
use crate::filters::{Fields, Filter};

/// Longest accepted ingest ref, in bytes. containerd sets no limit; refs
/// made by its clients (`layer-<digest>`, `<image name>@<digest>`) stay well
/// under this, and the on-disk name is a hash, so this only bounds memory.
pub const MAX_REF_LEN: usize = 1024;

/// Checks an ingest ref: not empty, at most [`MAX_REF_LEN`] bytes, no NUL
/// or other control characters. Unlike object ids, refs may hold `/` and
/// `..` (clients use image names in them); they never become paths.
pub fn validate_ref(reference: &str) -> Result<()> {
    if reference.is_empty() {
        return Err(Error::InvalidArgument("ref: must not be empty".into()));
    }
    if reference.len() > MAX_REF_LEN {
        return Err(Error::InvalidArgument(format!(
            "ref: longer than {MAX_REF_LEN} bytes ({})",
            reference.len()
        )));
    }
    if reference.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(
            "ref: must not contain NUL or control characters".into(),
        ));
    }
    Ok(())
}

fn validate_ns(ns: &str) -> Result<()> {
    berth_api::identifiers::validate("namespace", ns)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// The state of one ingest, as Status and ListStatuses report it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    /// The client's ref.
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// Expected total size (0: unknown).
    pub total: u64,
    /// Expected digest, when given at creation.
    pub expected: Option<Digest>,
    /// When the ingest began.
    pub started_at: SystemTime,
    /// When data was last written.
    pub updated_at: SystemTime,
}

impl Fields for IngestStatus {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "ref" if path.len() == 1 => Some(self.reference.clone()),
            _ => None,
        }
    }
}

/// How often [`ContentStore::writer`] tries a held ingest lock.
const LOCK_TRIES: u32 = 10;

/// In-process writer locks: one writer per ingest at a time.
#[derive(Default)]
pub(crate) struct Locks {
    held: Mutex<HashMap<String, Instant>>,
}

/// Releases an ingest lock when dropped.
pub(crate) struct LockGuard {
    cs: ContentStore,
    key: String,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Ok(mut held) = self.cs.inner.ingest_locks.held.lock() {
            held.remove(&self.key);
        }
    }
}

fn ingest_key(ns: &str, reference: &str) -> String {
    let mut h = Sha256::new();
    h.update(ns.as_bytes());
    h.update(b"/");
    h.update(reference.as_bytes());
    hex::encode(h.finalize())
}

pub(crate) fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

fn from_nanos(s: &str) -> Option<SystemTime> {
    let n: u128 = s.trim().parse().ok()?;
    let secs = u64::try_from(n / 1_000_000_000).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, (n % 1_000_000_000) as u32))
}

fn read_opt(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// Reads an ingest directory: its namespace and status; None when it is
/// gone or incomplete.
fn read_status(dir: &Path) -> Result<Option<(String, IngestStatus)>> {
    let data = dir.join("data");
    let meta = match fs::metadata(&data) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("reading ingest data metadata", &data)(e)),
    };
    let (Some(reference), Some(ns)) = (read_opt(&dir.join("ref"))?, read_opt(&dir.join("ns"))?)
    else {
        return Ok(None);
    };
    let started_at = read_opt(&dir.join("startedat"))?
        .and_then(|s| from_nanos(&s))
        .unwrap_or(UNIX_EPOCH);
    // The time a writer recorded at close; the data's mtime only when it
    // is later (a writer that never closed, e.g. berthd was killed).
    let recorded = read_opt(&dir.join("updatedat"))?.and_then(|s| from_nanos(&s));
    let modified = meta.modified().ok();
    let updated_at = recorded.max(modified).unwrap_or(started_at);
    let total = read_opt(&dir.join("total"))?
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let expected = read_opt(&dir.join("expected"))?.and_then(|s| s.trim().parse().ok());
    Ok(Some((
        ns,
        IngestStatus {
            reference,
            offset: meta.len(),
            total,
            expected,
            started_at,
            updated_at,
        },
    )))
}

/// Removes what a crash left half made: temporary directories and ingest
/// directories without data or ref (a commit that died after its rename).
pub(crate) fn clean_partial(ingest_root: &Path) -> Result<()> {
    let entries = fs::read_dir(ingest_root).map_err(io("listing", ingest_root))?;
    for entry in entries {
        let entry = entry.map_err(io("listing", ingest_root))?;
        let path = entry.path();
        let partial = entry.file_name().to_string_lossy().starts_with(".tmp-")
            || !path.join("data").exists()
            || !path.join("ref").exists()
            || !path.join("ns").exists();
        if partial {
            tracing::info!(path = %path.display(), "removing incomplete ingest");
            fs::remove_dir_all(&path).map_err(io("removing incomplete ingest", &path))?;
        }
    }
    Ok(())
}

/// Creates a complete, empty ingest directory at `dir`.
fn create_ingest(
    root: &Path,
    dir: &Path,
    ns: &str,
    reference: &str,
    total: u64,
    expected: Option<&Digest>,
    started_at: SystemTime,
) -> Result<()> {
    let tmp = root.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    fs::create_dir(&tmp).map_err(io("creating ingest", &tmp))?;
    let result = (|| {
        let write = |name: &str, v: &str| {
            let p = tmp.join(name);
            fs::write(&p, v).map_err(io("writing", &p))
        };
        write("ref", reference)?;
        write("ns", ns)?;
        write("startedat", &nanos(started_at).to_string())?;
        write("updatedat", &nanos(started_at).to_string())?;
        if total > 0 {
            write("total", &total.to_string())?;
        }
        if let Some(d) = expected {
            write("expected", &d.to_string())?;
        }
        write("data", "")?;
        if dir.exists() {
            fs::remove_dir_all(dir).map_err(io("removing stale ingest", dir))?;
        }
        fs::rename(&tmp, dir).map_err(io("renaming ingest into place", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

/// Opens the ingest's data for appending and re-hashes what is there.
fn resume(dir: &Path) -> Result<State> {
    let data = dir.join("data");
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&data)
        .map_err(io("opening ingest data", &data))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io("re-hashing ingest", &data))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        offset += n as u64;
    }
    file.seek(SeekFrom::Start(offset))
        .map_err(io("seeking ingest", &data))?;
    Ok(State {
        file,
        hasher,
        offset,
    })
}

impl ContentStore {
    fn ingest_dir(&self, ns: &str, reference: &str) -> PathBuf {
        self.ingest_root().join(ingest_key(ns, reference))
    }

    /// Takes the ingest's writer lock, retrying a held one for a short
    /// while as containerd does ([`LOCK_TRIES`] tries, each after a random
    /// pause below 2^try ms, about half a second in all): a client that
    /// closes a writer and reopens the ref at once races the server's
    /// release of the old writer (its stream ends after the client moved
    /// on) and must not see a spurious Unavailable. A writer that stays
    /// open still answers [`Error::Locked`].
    async fn lock_ingest(&self, ns: &str, reference: &str) -> Result<LockGuard> {
        let mut tries = 0;
        loop {
            match self.try_lock_ingest(ns, reference) {
                Err(Error::Locked { .. }) if tries + 1 < LOCK_TRIES => {
                    let ms = uuid::Uuid::new_v4().as_u128() % (1u128 << tries);
                    tokio::time::sleep(Duration::from_millis(ms as u64)).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }

    fn try_lock_ingest(&self, ns: &str, reference: &str) -> Result<LockGuard> {
        let key = ingest_key(ns, reference);
        let mut held = self
            .inner
            .ingest_locks
            .held
            .lock()
            .map_err(|_| Error::Task("ingest lock table poisoned".into()))?;
        if let Some(since) = held.get(&key) {
            return Err(Error::Locked {
                reference: reference.to_string(),
                held_ms: since.elapsed().as_millis(),
            });
        }
        held.insert(key.clone(), Instant::now());
        Ok(LockGuard {
            cs: self.clone(),
            key,
        })
    }

    /// Begins or resumes the ingest `reference` in `ns` and returns its
    /// only writer (a second one gets [`Error::Locked`] until this one is
    /// dropped or committed). `total` (0: unknown) and `expected` are
    /// remembered for Status. Resuming re-hashes the data already there;
    /// a resumed ingest whose recorded total differs from a non-zero
    /// `total` starts over. AlreadyExists when `expected` is already
    /// recorded in `ns` (it is then added to the lease).
    pub async fn writer(
        &self,
        ns: &str,
        reference: &str,
        total: u64,
        expected: Option<Digest>,
    ) -> Result<Writer> {
        validate_ns(ns)?;
        validate_ref(reference)?;
        if let Some(d) = &expected {
            if self.lease_if_present(ns, d).await? {
                return Err(Error::AlreadyExists(d.clone()));
            }
        }
        let lock = self.lock_ingest(ns, reference).await?;
        self.add_lease_resource(ns, "ingests", reference).await?;
        crate::store::namespaces::ensure(self.store(), ns).await?;
        let dir = self.ingest_dir(ns, reference);
        let root = self.ingest_root();
        let (ns2, ref2) = (ns.to_string(), reference.to_string());
        let (state, status) = blocking(move || {
            if let Some((found_ns, st)) = read_status(&dir)? {
                let same = found_ns == ns2 && st.reference == ref2;
                let total_ok = total == 0 || st.total == 0 || total == st.total;
                if same && total_ok {
                    let state = resume(&dir)?;
                    let status = IngestStatus {
                        offset: state.offset,
                        total: if st.total > 0 { st.total } else { total },
                        ..st
                    };
                    return Ok((state, status));
                }
                tracing::info!(reference = %ref2, "ingest does not match the new writer; starting over");
            }
            let now = SystemTime::now();
            create_ingest(&root, &dir, &ns2, &ref2, total, expected.as_ref(), now)?;
            let state = resume(&dir)?;
            let status = IngestStatus {
                reference: ref2,
                offset: 0,
                total,
                expected,
                started_at: now,
                updated_at: now,
            };
            Ok((state, status))
        })
        .await?;
        tracing::debug!(
            namespace = ns,
            reference,
            offset = status.offset,
            "ingest writer opened"
        );
        Ok(Writer::new(
            self.clone(),
            ns.to_string(),
            self.ingest_dir(ns, reference),
            state,
            status,
            lock,
        ))
    }

    /// The status of ingest `reference` in `ns`; IngestNotFound if none.
    pub async fn status(&self, ns: &str, reference: &str) -> Result<IngestStatus> {
        validate_ns(ns)?;
        validate_ref(reference)?;
        let dir = self.ingest_dir(ns, reference);
        let (ns2, ref2) = (ns.to_string(), reference.to_string());
        blocking(move || match read_status(&dir)? {
            Some((found, st)) if found == ns2 && st.reference == ref2 => Ok(st),
            _ => Err(Error::IngestNotFound(ref2)),
        })
        .await
    }

    /// Every ingest of `ns` matching containerd filters on `ref`.
    pub async fn list_statuses(&self, ns: &str, filters: &[String]) -> Result<Vec<IngestStatus>> {
        validate_ns(ns)?;
        let filter = Filter::parse(filters).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let root = self.ingest_root();
        let ns = ns.to_string();
        let all = blocking(move || {
            let mut out = Vec::new();
            let entries = fs::read_dir(&root).map_err(io("listing", &root))?;
            for entry in entries {
                let entry = entry.map_err(io("listing", &root))?;
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                // An ingest may vanish (commit, abort) while we list it.
                if let Ok(Some((found, st))) = read_status(&entry.path()) {
                    if found == ns {
                        out.push(st);
                    }
                }
            }
            Ok(out)
        })
        .await?;
        let mut out: Vec<_> = all.into_iter().filter(|s| filter.matches(s)).collect();
        out.sort_by(|a, b| a.reference.cmp(&b.reference));
        Ok(out)
    }

    /// Removes ingest `reference` of `ns` and its data; IngestNotFound if
    /// there is none. Like containerd, this works even while a writer is
    /// active (its commit then fails).
    pub async fn abort(&self, ns: &str, reference: &str) -> Result<()> {
        validate_ns(ns)?;
        validate_ref(reference)?;
        let dir = self.ingest_dir(ns, reference);
        let (ns2, ref2) = (ns.to_string(), reference.to_string());
        blocking(move || match read_status(&dir)? {
            Some((found, st)) if found == ns2 && st.reference == ref2 => {
                fs::remove_dir_all(&dir).map_err(io("removing ingest", &dir))
            }
            _ => Err(Error::IngestNotFound(ref2)),
        })
        .await?;
        self.remove_lease_resource(ns, "ingests", reference).await?;
        tracing::debug!(namespace = ns, reference, "ingest aborted");
        Ok(())
    }
}

/// Opens a file for read-only use; shared by tests.
#[cfg(test)]
pub(crate) fn read_all(path: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    v
}

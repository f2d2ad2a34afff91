//! Metadata in sled, one module per kind of record.
//!
//! Records are JSON values in one tree per kind; namespaced records are keyed
//! `"{namespace}/{id}"` (namespaces cannot contain `/`). Every mutating call
//! flushes before it returns, so what a client was told is durable.
//!
//! # A full disk
//!
//! sled (0.34) does not survive a failed log write: the error is kept as
//! the database's global error for good, writers waiting on the failed
//! buffer may never wake, and only a new instance (after every handle of
//! the old one is dropped and its file lock released) works again. So
//! berthd never lets sled meet ENOSPC through its own writes: a record is
//! written (or removed: sled logs a removal too) only when the
//! filesystem has room for it twice over plus [`META_HEADROOM`]
//! ([`Store::room_for`]); the snapshots service asks the same before
//! each snapshotter write (its own sled database lives under the same
//! root), and blob writes stop
//! [`CONTENT_RESERVE`] short of full ([`Store::room_for_content`]). Each
//! refusal is ResourceExhausted naming the free and needed bytes, nothing
//! is half-written, and the next write after space is freed succeeds.

mod codec;
pub mod containers;
pub mod content;
pub mod images;
pub mod labels;
pub mod leases;
pub mod namespaces;

use std::path::Path;

pub use codec::{ns_key, ns_prefix};

/// The layout version written in the `meta` tree; bump it with a migration.
pub const SCHEMA_VERSION: u32 = 1;
const SCHEMA_KEY: &[u8] = b"schema_version";

/// What can go wrong with metadata; [`Error::kind`] says which code
/// containerd answers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such record
    #[error("{kind} {id:?}: not found")]
    NotFound {
        /// record kind
        kind: &'static str,
        /// its id
        id: String,
    },
    /// a record with this id exists
    #[error("{kind} {id:?}: already exists")]
    AlreadyExists {
        /// record kind
        kind: &'static str,
        /// its id
        id: String,
    },
    /// the request is malformed; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// the record exists but is not in a state that allows the call
    #[error("{0}")]
    FailedPrecondition(String),
    /// the database failed
    #[error("metadata database: {0}")]
    Db(#[from] sled::Error),
    /// a record could not be (de)serialised
    #[error("metadata record encoding: {0}")]
    Codec(#[from] serde_json::Error),
    /// the filesystem lacks room for a write (checked before writing)
    #[error("disk full: {needed} bytes needed, {free} free under {path}{why}")]
    DiskFull {
        /// bytes the write needs, its margin included
        needed: u64,
        /// bytes free for berthd
        free: u64,
        /// the directory checked
        path: String,
        /// what the margin is for
        why: &'static str,
    },
    /// the database holds a newer layout than this berthd understands
    #[error("metadata schema version {found} is newer than supported version {SCHEMA_VERSION}")]
    SchemaTooNew {
        /// version found on disk
        found: u32,
    },
}

impl Error {
    /// The kind of failure, for the code containerd answers.
    pub fn kind(&self) -> berth_api::ErrorKind {
        use berth_api::ErrorKind as K;
        match self {
            Error::NotFound { .. } => K::NotFound,
            Error::AlreadyExists { .. } => K::AlreadyExists,
            Error::InvalidArgument(_) => K::InvalidArgument,
            Error::FailedPrecondition(_) => K::FailedPrecondition,
            Error::Db(sled::Error::Io(e)) if is_disk_full(e) => K::ResourceExhausted,
            Error::DiskFull { .. } => K::ResourceExhausted,
            Error::Db(_) | Error::Codec(_) | Error::SchemaTooNew { .. } => K::Internal,
        }
    }
}

#[cfg(test)]
mod kind_tests {
    use super::*;

    #[test]
    fn a_full_disk_is_resource_exhausted() {
        let full = || std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(
            Error::Db(sled::Error::Io(full())).kind(),
            berth_api::ErrorKind::ResourceExhausted
        );
        let c = crate::content::Error::Io {
            what: "writing",
            path: "/x".into(),
            source: full(),
        };
        assert_eq!(c.kind(), berth_api::ErrorKind::ResourceExhausted);
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            Error::Db(sled::Error::Io(other)).kind(),
            berth_api::ErrorKind::Internal
        );
    }
}

/// Whether an I/O error means the disk (or the quota) is full: such a
/// failure is ResourceExhausted, which tells the caller to retry once
/// space is freed, not a server bug.
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A List's filter that cannot be parsed is a malformed request.
impl From<crate::filters::Error> for Error {
    fn from(e: crate::filters::Error) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<sled::transaction::TransactionError<Error>> for Error {
    fn from(e: sled::transaction::TransactionError<Error>) -> Self {
        match e {
            sled::transaction::TransactionError::Abort(e) => e,
            sled::transaction::TransactionError::Storage(e) => Error::Db(e),
        }
    }
}

/// Creates `dir` (mode 0700) or narrows an existing one to 0700.
fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)))
        .map_err(|e| Error::Db(sled::Error::Io(e)))
}

/// Result alias for store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Free bytes a metadata write needs beyond twice its record (sled's log
/// segments are 512 KiB; a new one may be started at any write).
pub const META_HEADROOM: u64 = 1 << 20;

/// Free bytes blob writes leave for the metadata (and for deletes, which
/// sled also logs), so a disk filled with blobs never fails a record.
pub const CONTENT_RESERVE: u64 = 8 << 20;

/// Bytes free to unprivileged writers on the filesystem holding `path`.
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let s = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(s.blocks_available() * s.fragment_size())
}

/// The open metadata database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    path: std::sync::Arc<std::path::PathBuf>,
}

impl Store {
    /// Opens (or creates) the database under `root` and checks its schema.
    pub fn open(root: &Path) -> Result<Self> {
        // Container specs (environment secrets) live in here: root only,
        // also for a database an older berthd made world-readable.
        let path = root.join("metadata.db");
        private_dir(&path)?;
        let db = sled::Config::new()
            .path(&path)
            .mode(sled::Mode::HighThroughput)
            .open()?;
        let meta = db.open_tree("meta")?;
        match meta.get(SCHEMA_KEY)? {
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())?;
            }
            Some(v) => {
                let found = u32::from_be_bytes(v.as_ref().try_into().unwrap_or([0xff; 4]));
                if found > SCHEMA_VERSION {
                    return Err(Error::SchemaTooNew { found });
                }
                // Older layouts would be migrated here, one step per version.
            }
        }
        db.flush()?;
        Ok(Self {
            db,
            path: std::sync::Arc::new(path),
        })
    }

    fn check_room(&self, dir: &Path, needed: u64, why: &'static str) -> Result<()> {
        // A filesystem we cannot ask is left to the write itself.
        let Ok(free) = free_bytes(dir) else {
            return Ok(());
        };
        if free < needed {
            return Err(Error::DiskFull {
                needed,
                free,
                path: dir.display().to_string(),
                why,
            });
        }
        Ok(())
    }

    /// Whether the database's filesystem has room for a record of
    /// `bytes`: twice that plus [`META_HEADROOM`] free, else
    /// [`Error::DiskFull`] (ResourceExhausted) before sled is touched.
    pub fn room_for(&self, bytes: u64) -> Result<()> {
        let needed = bytes.saturating_mul(2).saturating_add(META_HEADROOM);
        self.check_room(&self.path, needed, "")
    }

    /// Whether `dir` (in the content store) has room for `bytes` more of
    /// a blob while leaving [`CONTENT_RESERVE`] free for the metadata;
    /// [`Error::DiskFull`] otherwise.
    pub fn room_for_content(&self, dir: &Path, bytes: u64) -> Result<()> {
        let needed = bytes.saturating_add(CONTENT_RESERVE);
        self.check_room(dir, needed, " (berthd keeps 8 MiB free for its metadata)")
    }

    /// A named tree (one per record kind).
    pub fn tree(&self, name: &str) -> Result<sled::Tree> {
        Ok(self.db.open_tree(name)?)
    }

    /// Makes everything written so far durable.
    ///
    /// On a blocking thread: sled's `flush_async` blocks the polling
    /// thread, and enough concurrent callers stall every runtime worker
    /// (50 parallel container creates hung berthd).
    pub async fn flush(&self) -> Result<()> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| Error::Db(sled::Error::ReportableBug(format!("flush task: {e}"))))??;
        Ok(())
    }

    /// True when any namespaced tree holds a record of `ns`. Used to refuse
    /// deleting a namespace that still has content, images, containers or
    /// leases (snapshots are asked separately).
    pub fn namespace_in_use(&self, ns: &str) -> Result<Option<String>> {
        for name in self.db.tree_names() {
            let name = String::from_utf8_lossy(&name).into_owned();
            if !namespaced_tree(&name) {
                continue;
            }
            if self
                .tree(&name)?
                .scan_prefix(ns_prefix(ns))
                .next()
                .is_some()
            {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }
}

/// Trees whose keys start with a namespace.
fn namespaced_tree(name: &str) -> bool {
    matches!(name, "content" | "images" | "containers" | "leases")
}

//! Metadata in sled, one module per kind of record.
//!
//! Records are JSON values in one tree per kind; namespaced records are keyed
//! `"{namespace}/{id}"` (namespaces cannot contain `/`). Every mutating call
//! flushes before it returns, so what a client was told is durable.

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
            Error::Db(_) | Error::Codec(_) | Error::SchemaTooNew { .. } => K::Internal,
        }
    }
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

/// Result alias for store calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The open metadata database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
}

impl Store {
    /// Opens (or creates) the database under `root` and checks its schema.
    pub fn open(root: &Path) -> Result<Self> {
        let db = sled::Config::new()
            .path(root.join("metadata.db"))
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
        Ok(Self { db })
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

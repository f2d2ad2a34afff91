//! In-process ingest writer locks: one writer per ingest at a time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use super::{ContentStore, Error, Result};

/// The held ingest locks, by ingest key, with when each was taken.
#[derive(Default)]
pub(crate) struct Locks {
    held: Mutex<HashMap<String, Instant>>,
}

impl Locks {
    /// Takes the lock on the ingest `key` (its directory name) for the
    /// client's `reference`; [`Error::Locked`], with how long it has been
    /// held, while another writer has it.
    pub(crate) fn try_lock(
        &self,
        cs: &ContentStore,
        key: String,
        reference: &str,
    ) -> Result<LockGuard> {
        let mut held = self
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
            cs: cs.clone(),
            key,
        })
    }
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

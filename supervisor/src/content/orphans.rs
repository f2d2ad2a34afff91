//! Orphans: blob files no namespace records, and ingests nobody can resume.
//!
//! A commit renames the verified blob into `blobs/` and then writes its
//! record; a kill -9 between the two leaves a file that no namespace
//! records and that `delete` therefore never removes. Like containerd's
//! content collector, which walks the blob store, berthd walks `blobs/` at
//! start-up and in every collection, and removes each file without a
//! record. A later import of the same digest writes it again.
//!
//! Why this never removes a blob being committed: the rename and the
//! record happen under the read side of the collector's guard (see
//! `Writer::commit` and `record_existing`), and a walk runs either before
//! the store serves anyone (start-up) or under the guard's write side (a
//! collection). `delete` may remove the same file at the same time; a file
//! already gone is not an error on either side.
//!
//! Ingests made by [`ContentStore::ingest_from_reader`] carry a ref with a
//! fresh uuid (`berth-import-...`): after a crash nobody can resume them, so
//! they go at start-up too. Clients' ingests stay, resumable, as in
//! containerd.

use std::collections::HashSet;
use std::fs;

use super::{io, records, ContentStore, Result};

/// The ref prefix of the store's own one-shot ingests.
pub(crate) const IMPORT_REF_PREFIX: &str = "berth-import-";

impl ContentStore {
    /// Removes every blob file that no namespace records and returns how
    /// many went. Blocking. The caller holds the write side of the
    /// collector's guard, or the store is not yet serving (see the module
    /// docs). Names that are not 64 hex characters are left alone.
    pub fn remove_orphan_blobs(&self) -> Result<usize> {
        let recorded: HashSet<String> = records::list_all(self.store())?
            .into_iter()
            .filter_map(|(_, d, _)| d.strip_prefix("sha256:").map(str::to_string))
            .collect();
        let dir = self.inner.root.join("blobs/sha256");
        let mut removed = 0;
        for entry in fs::read_dir(&dir).map_err(io("listing", &dir))? {
            let entry = entry.map_err(io("listing", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_digest = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
            if !is_digest || recorded.contains(&name) {
                continue;
            }
            let path = entry.path();
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed += 1;
                    tracing::info!(digest = %format!("sha256:{name}"), "removed blob no namespace records");
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("removing orphan blob", &path)(e)),
            }
        }
        Ok(removed)
    }

    /// Removes the store's own one-shot ingests (refs starting
    /// `berth-import-`) a crash left; returns how many. Blocking; only
    /// before the store serves anyone.
    pub(crate) fn remove_stale_import_ingests(&self) -> Result<usize> {
        let root = self.ingest_root();
        let mut removed = 0;
        for entry in fs::read_dir(&root).map_err(io("listing", &root))? {
            let entry = entry.map_err(io("listing", &root))?;
            let path = entry.path();
            let Ok(reference) = fs::read_to_string(path.join("ref")) else {
                continue;
            };
            if !reference.starts_with(IMPORT_REF_PREFIX) {
                continue;
            }
            fs::remove_dir_all(&path).map_err(io("removing stale import ingest", &path))?;
            tracing::info!(reference, "removed import ingest a crash left");
            removed += 1;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::labels::Labels;
    use crate::store::Store;
    use berth_api::Digest;

    fn put_file(cs: &ContentStore, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let p = cs.inner.root.join("blobs/sha256").join(name);
        fs::write(&p, bytes).unwrap();
        p
    }

    #[tokio::test]
    async fn start_up_removes_unrecorded_blobs_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cs = ContentStore::open(dir.path(), store.clone()).unwrap();
        let kept = b"recorded".to_vec();
        let kd = Digest::of(&kept);
        cs.ingest_from_reader(
            "ns",
            std::io::Cursor::new(kept.clone()),
            &kd,
            None,
            Labels::new(),
        )
        .await
        .unwrap();
        // What a kill -9 between rename and record leaves.
        let orphan = b"renamed, never recorded".to_vec();
        let od = Digest::of(&orphan);
        let orphan_path = put_file(&cs, od.hex(), &orphan);
        let stray = put_file(&cs, "not-a-digest", b"x");
        drop(cs);

        let cs = ContentStore::open(dir.path(), store).unwrap();
        assert!(!orphan_path.exists(), "orphan removed at start-up");
        assert!(cs.blob_path(&kd).exists(), "recorded blob kept");
        assert!(stray.exists(), "names that are no digest are left alone");
        assert_eq!(cs.info("ns", &kd).unwrap().size, kept.len() as u64);
        // And the digest can be written again.
        cs.ingest_from_reader(
            "ns",
            std::io::Cursor::new(orphan.clone()),
            &od,
            None,
            Labels::new(),
        )
        .await
        .unwrap();
        assert!(cs.blob_path(&od).exists());
        assert_eq!(cs.remove_orphan_blobs().unwrap(), 0);
    }

    #[tokio::test]
    async fn start_up_removes_own_import_ingests_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cs = ContentStore::open(dir.path(), store.clone()).unwrap();
        let mut mine = cs
            .writer("ns", "berth-import-sha256:ab-1234", 0, None)
            .await
            .unwrap();
        mine.write(b"half".to_vec()).await.unwrap();
        let mut theirs = cs.writer("ns", "client-ref", 0, None).await.unwrap();
        theirs.write(b"half".to_vec()).await.unwrap();
        drop((mine, theirs));
        drop(cs);
        let cs = ContentStore::open(dir.path(), store).unwrap();
        let refs: Vec<String> = cs
            .list_statuses("ns", &[])
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.reference)
            .collect();
        assert_eq!(refs, vec!["client-ref".to_string()]);
    }
}

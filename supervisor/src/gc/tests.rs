//! Collections over a real store without snapshotters.

use std::collections::BTreeMap;

use berth_api::Digest;

use super::{Deps, Gc};
use crate::content::ContentStore;
use crate::store::labels::Labels;
use crate::store::Store;

/// A blob file without a record (a crash between a commit's rename and
/// its record) goes with the next collection; recorded blobs stay.
#[tokio::test]
async fn collection_removes_unrecorded_blob_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let content = ContentStore::open(dir.path(), store.clone()).unwrap();
    let gc = Gc::new(Deps {
        store,
        content: content.clone(),
        snapshotters: BTreeMap::new(),
    });
    let kept = b"kept by its root label".to_vec();
    let kd = Digest::of(&kept);
    let labels = Labels::from([(super::ROOT_LABEL.to_string(), "1".to_string())]);
    content
        .ingest_from_reader("ns", std::io::Cursor::new(kept), &kd, None, labels)
        .await
        .unwrap();
    let orphan = b"never recorded".to_vec();
    let od = Digest::of(&orphan);
    std::fs::write(content.blob_path(&od), &orphan).unwrap();

    let stats = gc.run().await.unwrap();
    assert_eq!(stats.orphans, 1, "{stats:?}");
    assert_eq!(stats.content, 0, "{stats:?}");
    assert!(!content.blob_path(&od).exists());
    assert!(content.blob_path(&kd).exists());
    assert_eq!(gc.run().await.unwrap().orphans, 0);
}

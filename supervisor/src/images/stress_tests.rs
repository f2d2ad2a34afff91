//! Concurrency stress of the domain (issue 19, item 2): berthd's parallel
//! unpack of a many-layer image, a `ctr run --rm` style prepare/remove loop
//! and back-to-back garbage collections at once, bounded in time. Before
//! the fix, a queued collection plus a guard held by an unpolled unpack
//! future stopped every writer for good within seconds.

use std::time::{Duration, Instant};

use berth_api::oci::{Descriptor, Manifest, OCI_CONFIG, OCI_LAYER, OCI_MANIFEST};
use berth_api::Digest;

use super::unpack::Unpacker;
use crate::content::ContentStore;
use crate::events::Events;
use crate::gc::Gc;
use crate::snapshots::{NewSnapshot, Snapshots, Snapshotters};
use crate::store::labels::Labels;
use crate::store::{leases, Store};

const NS: &str = "default";

/// An uncompressed layer holding one file.
fn layer(i: usize) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    let body = format!("layer {i}\n");
    h.set_size(body.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, format!("f{i}"), body.as_bytes())
        .unwrap();
    tar.into_inner().unwrap()
}

async fn store_blob(content: &ContentStore, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let cursor = std::io::Cursor::new(bytes.to_vec());
    content
        .ingest_from_reader(NS, cursor, &d, Some(bytes.len() as u64), Labels::new())
        .await
        .unwrap();
    d
}

struct World {
    _dir: tempfile::TempDir,
    store: Store,
    content: ContentStore,
    snapshots: Snapshots,
    gc: Gc,
    unpacker: Unpacker,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let content = ContentStore::open(dir.path(), store.clone()).unwrap();
    let backends = Snapshotters::open(dir.path(), "overlayfs").unwrap();
    let gc = Gc::new(crate::gc::Deps {
        store: store.clone(),
        content: content.clone(),
        snapshotters: backends.handles(),
    });
    let snapshots = Snapshots::new(
        backends,
        crate::snapshots::Deps {
            store: store.clone(),
            gc: gc.clone(),
            events: Events::new(),
        },
    );
    let unpacker = Unpacker::new(content.clone(), snapshots.clone(), gc.clone());
    World {
        _dir: dir,
        store,
        content,
        snapshots,
        gc,
        unpacker,
    }
}

/// An image of `n` one-file layers, its blobs kept by the gc.root label.
async fn image(w: &World, n: usize) -> Digest {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n {
        let bytes = layer(i);
        let d = store_blob(&w.content, &bytes).await;
        diff_ids.push(d.to_string());
        layers.push(Descriptor::new(OCI_LAYER, d, bytes.len() as i64));
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_digest = store_blob(&w.content, config.as_bytes()).await;
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        config: Descriptor::new(OCI_CONFIG, config_digest, config.len() as i64),
        layers,
        annotations: Default::default(),
    };
    let m = store_blob(&w.content, &serde_json::to_vec(&manifest).unwrap()).await;
    // Keep every blob across collections: only snapshots come and go.
    for info in w.content.list(NS).unwrap() {
        let mut i = info.clone();
        i.labels = Labels::from([(crate::gc::mark::ROOT_LABEL.to_string(), "1".to_string())]);
        w.content
            .update(NS, i, &[format!("labels.{}", crate::gc::mark::ROOT_LABEL)])
            .await
            .unwrap();
    }
    m
}

/// Unpacks a 40-layer image over and over (each time into a new lease that
/// is then dropped, so the next collection removes the chains), while one
/// task prepares and removes a container snapshot in a loop and another
/// runs collections back to back. Everything must keep moving: each loop
/// makes progress and the whole run ends within its bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root"]
async fn unpack_run_and_gc_at_once_never_stop() {
    let w = world();
    let manifest = image(&w, 40).await;
    let stop_at = Instant::now() + Duration::from_secs(20);

    let unpacks = {
        let (store, unpacker, gc) = (w.store.clone(), w.unpacker.clone(), w.gc.clone());
        let manifest = manifest.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                let lease = format!("unpack-{n}");
                leases::create(&store, NS, &lease, Labels::new())
                    .await
                    .unwrap();
                unpacker
                    .unpack(NS, &lease, &manifest, "overlayfs")
                    .await
                    .unwrap();
                leases::delete(&store, NS, &lease).await.unwrap();
                gc.schedule();
                n += 1;
            }
            n
        })
    };
    let runs = {
        let (store, snapshots) = (w.store.clone(), w.snapshots.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                let key = format!("run-{n}");
                leases::create(&store, NS, &key, Labels::new())
                    .await
                    .unwrap();
                let new = NewSnapshot {
                    snapshotter: "overlayfs".into(),
                    key: key.clone(),
                    ..Default::default()
                };
                snapshots.prepare(NS, Some(&key), new).await.unwrap();
                snapshots.remove(NS, "overlayfs", &key).await.unwrap();
                leases::delete(&store, NS, &key).await.unwrap();
                n += 1;
            }
            n
        })
    };
    let collections = {
        let gc = w.gc.clone();
        tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < stop_at {
                gc.run().await.unwrap();
                n += 1;
            }
            n
        })
    };
    let all = async { (unpacks.await, runs.await, collections.await) };
    let (u, r, c) = tokio::time::timeout(Duration::from_secs(90), all)
        .await
        .expect("unpack, run and gc loops all finish (a stop here is the deadlock)");
    let (u, r, c) = (u.unwrap(), r.unwrap(), c.unwrap());
    eprintln!("unpacks {u}, runs {r}, collections {c}");
    assert!(u >= 1 && r >= 1 && c >= 1, "every loop made progress");
}

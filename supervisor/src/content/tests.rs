use super::*;
use crate::store::leases as lease_store;

fn setup() -> (tempfile::TempDir, ContentStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let cs = ContentStore::open(dir.path(), store).unwrap();
    (dir, cs)
}

fn blobs(cs: &ContentStore) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(cs.inner.root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

async fn put(cs: &ContentStore, ns: &str, r: &str, data: &[u8]) -> Result<Info> {
    let mut w = cs.writer(ns, r, data.len() as u64, None).await?;
    w.write(data.to_vec()).await?;
    w.commit(
        Some(data.len() as u64),
        Some(&Digest::of(data)),
        Labels::new(),
    )
    .await
}

#[tokio::test]
async fn write_commit_read_delete() {
    let (_d, cs) = setup();
    let data = b"hello world".repeat(1000);
    let dg = Digest::of(&data);
    let info = put(&cs, "ns1", "r1", &data).await.unwrap();
    assert_eq!(info.digest, dg);
    assert_eq!(info.size, data.len() as u64);
    assert_eq!(ingest::read_all(&cs.blob_path(&dg)), data);
    assert_eq!(cs.info("ns1", &dg).unwrap().size, data.len() as u64);
    // Not visible in another namespace.
    assert!(matches!(cs.info("ns2", &dg), Err(Error::NotFound(_))));
    assert!(matches!(cs.open_blob("ns2", &dg), Err(Error::NotFound(_))));
    assert!(cs.open_blob("ns1", &dg).is_ok());
    // The ingest is gone.
    assert!(cs.list_statuses("ns1", &[]).await.unwrap().is_empty());
    assert!(matches!(
        cs.status("ns1", "r1").await,
        Err(Error::IngestNotFound(_))
    ));
    // Committing the same digest again in the same namespace.
    assert!(matches!(
        put(&cs, "ns1", "r2", &data).await,
        Err(Error::AlreadyExists(_))
    ));
    // Expected digest known up front: refused before anything is written.
    assert!(matches!(
        cs.writer("ns1", "r3", 0, Some(dg.clone())).await,
        Err(Error::AlreadyExists(_))
    ));
    // A second namespace writes the same bytes: one blob file, two records.
    put(&cs, "ns2", "r1", &data).await.unwrap();
    assert_eq!(blobs(&cs), vec![dg.hex().to_string()]);
    assert_eq!(cs.list_all().unwrap().len(), 2);
    cs.delete("ns1", &dg).await.unwrap();
    assert!(cs.blob_path(&dg).exists(), "ns2 still records it");
    assert!(matches!(
        cs.delete("ns1", &dg).await,
        Err(Error::NotFound(_))
    ));
    cs.delete("ns2", &dg).await.unwrap();
    assert!(!cs.blob_path(&dg).exists());
}

#[tokio::test]
async fn wrong_digest_or_size_is_refused_and_ingest_kept() {
    let (_d, cs) = setup();
    let data = vec![7u8; 4096];
    let wrong = Digest::of(b"other");
    let mut w = cs.writer("ns", "bad", 0, None).await.unwrap();
    w.write(data.clone()).await.unwrap();
    let err = w
        .commit(None, Some(&wrong), Labels::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::FailedPrecondition(ref m) if m.contains("unexpected commit digest"))
    );
    assert!(blobs(&cs).is_empty());
    assert!(cs.list("ns").unwrap().is_empty());
    let st = cs.list_statuses("ns", &[]).await.unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].offset, 4096);
    // Size mismatch.
    let w = cs.writer("ns", "bad", 0, None).await.unwrap();
    assert_eq!(w.offset(), 4096);
    let err = w.commit(Some(10), None, Labels::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::FailedPrecondition(ref m) if m.contains("unexpected commit size"))
    );
    cs.abort("ns", "bad").await.unwrap();
    assert!(cs.list_statuses("ns", &[]).await.unwrap().is_empty());
    assert!(matches!(
        cs.abort("ns", "bad").await,
        Err(Error::IngestNotFound(_))
    ));
    assert_eq!(fs::read_dir(cs.ingest_root()).unwrap().count(), 0);
}

#[tokio::test]
async fn resume_after_drop_and_lock() {
    let (_d, cs) = setup();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let dg = Digest::of(&data);
    let mut w = cs
        .writer("ns", "res", data.len() as u64, Some(dg.clone()))
        .await
        .unwrap();
    assert!(matches!(
        cs.writer("ns", "res", 0, None).await,
        Err(Error::Locked { .. })
    ));
    // The same ref in another namespace is another ingest.
    drop(cs.writer("other", "res", 0, None).await.unwrap());
    w.write(data[..100_000].to_vec()).await.unwrap();
    drop(w);
    let st = cs.status("ns", "res").await.unwrap();
    assert_eq!(st.offset, 100_000);
    assert_eq!(st.total, data.len() as u64);
    assert_eq!(st.expected.as_ref(), Some(&dg));
    let mut w = cs.writer("ns", "res", 0, None).await.unwrap();
    assert_eq!(w.offset(), 100_000);
    assert_eq!(w.digest(), Digest::of(&data[..100_000]));
    w.write(data[100_000..].to_vec()).await.unwrap();
    let info = w.commit(None, None, Labels::new()).await.unwrap();
    assert_eq!(info.digest, dg);
    assert_eq!(ingest::read_all(&cs.blob_path(&dg)), data);
    // Truncate restarts.
    let mut w = cs.writer("ns", "t", 0, None).await.unwrap();
    w.write(b"garbage".to_vec()).await.unwrap();
    w.truncate().await.unwrap();
    w.write(b"good".to_vec()).await.unwrap();
    let info = w.commit(None, None, Labels::new()).await.unwrap();
    assert_eq!(info.digest, Digest::of(b"good"));
}

#[tokio::test]
async fn statuses_filter_and_reopen_survive() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        let cs = ContentStore::open(dir.path(), store).unwrap();
        for r in ["a-1", "a-2", "b-1"] {
            let mut w = cs.writer("ns", r, 0, None).await.unwrap();
            w.write(b"x".to_vec()).await.unwrap();
        }
        // Leftovers a crash might leave.
        fs::create_dir(cs.ingest_root().join(".tmp-dead")).unwrap();
        fs::create_dir(cs.ingest_root().join("halfcommitted")).unwrap();
        let got = cs
            .list_statuses("ns", &["ref~=^a-".to_string()])
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|s| s.reference.as_str()).collect::<Vec<_>>(),
            ["a-1", "a-2"]
        );
        assert!(cs.list_statuses("other", &[]).await.unwrap().is_empty());
        assert!(matches!(
            cs.list_statuses("ns", &["ref==\"".to_string()]).await,
            Err(Error::InvalidArgument(_))
        ));
        cs.store().flush().await.unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let cs = ContentStore::open(dir.path(), store).unwrap();
    assert_eq!(fs::read_dir(cs.ingest_root()).unwrap().count(), 3);
    assert_eq!(cs.list_statuses("ns", &[]).await.unwrap().len(), 3);
    cs.abort("ns", "b-1").await.unwrap();
    assert_eq!(cs.list_statuses("ns", &[]).await.unwrap().len(), 2);
}

#[tokio::test]
async fn update_labels_and_validation() {
    let (_d, cs) = setup();
    let info = put(&cs, "ns", "r", b"abc").await.unwrap();
    let mut l = Labels::new();
    l.insert("a".into(), "1".into());
    l.insert("b".into(), "2".into());
    let up = cs
        .update(
            "ns",
            Info {
                labels: l.clone(),
                ..info.clone()
            },
            &["labels.a".to_string()],
        )
        .await
        .unwrap();
    assert_eq!(up.labels.len(), 1);
    assert_eq!(cs.info("ns", &info.digest).unwrap().labels, up.labels);
    let err = cs
        .update("ns", info.clone(), &["size".to_string()])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("size"));
    let missing = Info {
        digest: Digest::of(b"nope"),
        ..info.clone()
    };
    assert!(matches!(
        cs.update("ns", missing, &[]).await,
        Err(Error::NotFound(_))
    ));
    for bad in ["", "a\0b"] {
        assert!(matches!(
            cs.writer("ns", bad, 0, None).await,
            Err(Error::InvalidArgument(_))
        ));
    }
    let long = "r".repeat(MAX_REF_LEN + 1);
    assert!(matches!(
        cs.writer("ns", &long, 0, None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        cs.writer("a/b", "r", 0, None).await,
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(fs::read_dir(cs.ingest_root()).unwrap().count(), 0);
}

#[tokio::test]
async fn ingest_from_reader_and_leases() {
    let (_d, cs) = setup();
    let data = vec![42u8; 3 << 20];
    let dg = Digest::of(&data);
    lease_store::create(cs.store(), "ns", "l1", Labels::new())
        .await
        .unwrap();
    let leased = cs.with_lease(Some("l1".into()));
    let info = leased
        .ingest_from_reader(
            "ns",
            std::io::Cursor::new(data.clone()),
            &dg,
            Some(data.len() as u64),
            Labels::new(),
        )
        .await
        .unwrap();
    assert_eq!(info.size, data.len() as u64);
    let res = lease_store::resources(cs.store(), "ns", "l1").unwrap();
    assert_eq!(res.len(), 1, "{res:?}");
    assert_eq!(res[0].kind, "content");
    assert_eq!(res[0].id, dg.to_string());
    // Already present in the store: recorded in another namespace without
    // reading (the reader is empty).
    let info2 = cs
        .ingest_from_reader("ns2", std::io::empty(), &dg, None, Labels::new())
        .await
        .unwrap();
    assert_eq!(info2.size, data.len() as u64);
    // Wrong bytes: refused, nothing left behind.
    let err = cs
        .ingest_from_reader(
            "ns3",
            std::io::Cursor::new(b"nope".to_vec()),
            &Digest::of(b"yes"),
            None,
            Labels::new(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::FailedPrecondition(_)));
    assert!(cs.list_statuses("ns3", &[]).await.unwrap().is_empty());
    // A writer under a missing lease is refused before touching disk.
    let ghost = cs.with_lease(Some("ghost".into()));
    assert!(ghost.writer("ns", "g", 0, None).await.is_err());
    assert!(cs.list_statuses("ns", &[]).await.unwrap().is_empty());
    // Ingest lease while writing, content lease after commit.
    let mut w = leased.writer("ns", "lw", 0, None).await.unwrap();
    let kinds = |cs: &ContentStore| {
        let mut v: Vec<String> = lease_store::resources(cs.store(), "ns", "l1")
            .unwrap()
            .into_iter()
            .map(|r| format!("{}:{}", r.kind, r.id))
            .collect();
        v.sort();
        v
    };
    assert!(kinds(&cs).contains(&"ingests:lw".to_string()));
    w.write(b"leased".to_vec()).await.unwrap();
    w.commit(None, None, Labels::new()).await.unwrap();
    let k = kinds(&cs);
    assert!(!k.contains(&"ingests:lw".to_string()));
    assert!(k.contains(&format!("content:{}", Digest::of(b"leased"))));
}

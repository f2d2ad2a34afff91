//! Writes cut short: resumed from the status offset, and kill -9 of
//! berthd during a hundred concurrent ones.

use super::support::*;

#[test]
fn interrupted_write_resumes_from_status_offset() {
    let d = Berthd::start();
    let data = bytes(2, 5 << 20);
    let digest = sha(&data);
    let half = 2 << 20;
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        {
            let mut w = WriteStream::open(&mut c, None).await;
            let st = w.call(stat("resume", data.len(), &digest)).await.unwrap();
            assert_eq!(st.offset, 0);
            let mut off = 0;
            while off < half {
                let r = w
                    .call(write(off, &data[off..off + (1 << 20)]))
                    .await
                    .unwrap();
                off += 1 << 20;
                assert_eq!(r.offset, off as i64);
            }
            // A second writer on the same ref is refused while this one lives.
            let mut other = WriteStream::open(&mut c, None).await;
            let err = other.call(stat("resume", 0, "")).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{err}");
            assert!(err.message().contains("locked"), "{err}");
            // The client goes away without committing.
        }
        drop(c);
        let mut c = client(&d.address()).await;
        let st = c
            .status(req(pb::StatusRequest {
                r#ref: "resume".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.offset, half as i64);
        assert_eq!(st.total, data.len() as i64);
        assert_eq!(st.expected, digest);

        let (mut w, resp) = open_retry(&mut c, "resume", data.len(), &digest).await;
        assert_eq!(resp.offset, half as i64);
        assert_eq!(resp.digest, sha(&data[..half]), "re-hashed on resume");
        // Writing at another offset is refused...
        let err = w.call(write(half + 1, b"x")).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err}");
        // ...and leaves the ingest as it was.
        let (mut w, resp) = open_retry(&mut c, "resume", 0, "").await;
        let mut off = resp.offset as usize;
        assert_eq!(off, half);
        while off < data.len() {
            let end = (off + (1 << 20)).min(data.len());
            w.call(write(off, &data[off..end])).await.unwrap();
            off = end;
        }
        let done = w.call(commit(off, data.len(), &digest)).await.unwrap();
        assert_eq!(done.digest, digest);
        assert_eq!(done.offset, data.len() as i64);

        assert_eq!(read_all(&mut c, &digest, 0, 0).await, data);
        let part = read_all(&mut c, &digest, 1000, 3 << 20).await;
        assert_eq!(part, &data[1000..1000 + (3 << 20)]);
        let tail = read_all(&mut c, &digest, data.len() as i64 - 10, 1 << 30).await;
        assert_eq!(tail, &data[data.len() - 10..]);
        let err = c
            .read(req(pb::ReadContentRequest {
                digest: digest.clone(),
                offset: data.len() as i64 + 1,
                size: 0,
            }))
            .await;
        let err = match err {
            Err(e) => e,
            Ok(s) => s.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(err.code(), Code::OutOfRange);
        let active = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner();
        assert!(active.statuses.is_empty(), "{active:?}");
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert_eq!(assert_blobs_verified(&d), 1);
}

#[test]
fn kill9_during_100_concurrent_writes() {
    let mut d = Berthd::start();
    let sock = d.address();
    let acked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let rt = rt();
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            let (sock, acked) = (sock.clone(), acked.clone());
            rt.spawn(async move {
                // Sizes from 64 KiB to ~3 MiB, so commits spread over time.
                let data = bytes(1000 + i, (64 << 10) + ((i as usize * 31) << 10));
                let digest = sha(&data);
                let mut c = client(&sock).await;
                let mut w = WriteStream::open(&mut c, None).await;
                let r = format!("conc-{i}");
                w.call(stat(&r, data.len(), &digest)).await?;
                let mut off = 0;
                for chunk in data.chunks(256 << 10) {
                    w.call(write(off, chunk)).await?;
                    off += chunk.len();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let done = w.call(commit(off, data.len(), &digest)).await?;
                assert_eq!(done.digest, digest);
                acked.lock().unwrap().insert(digest, data.len());
                Ok::<_, tonic::Status>(())
            })
        })
        .collect();
    // Kill once some, but not all, writes are acknowledged.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    let results: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for h in handles {
            v.push(h.await.unwrap());
        }
        v
    });
    let failed = results.iter().filter(|r| r.is_err()).count();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged, {failed} cut off by kill -9", acked.len());
    assert!(failed > 0, "the kill came too late to test anything");

    d.restart();
    // No blob holds wrong bytes, and every acknowledged one is there.
    let files = assert_blobs_verified(&d);
    assert!(files >= acked.len());
    rt.block_on(async {
        let mut c = client(&d.address()).await;
        for (digest, size) in &acked {
            let info = c
                .info(req(pb::InfoRequest {
                    digest: digest.clone(),
                }))
                .await
                .unwrap_or_else(|e| panic!("acknowledged {digest} lost: {e}"))
                .into_inner()
                .info
                .unwrap();
            assert_eq!(info.size, *size as i64);
            assert_eq!(sha(&read_all(&mut c, digest, 0, 0).await), *digest);
        }
        let left = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .statuses;
        assert!(!left.is_empty(), "interrupted writes leave ingests");
        for s in &left {
            assert!(s.r#ref.starts_with("conc-"), "{s:?}");
            c.abort(req(pb::AbortRequest {
                r#ref: s.r#ref.clone(),
            }))
            .await
            .unwrap();
        }
        let left = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .statuses;
        assert!(left.is_empty());
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
}

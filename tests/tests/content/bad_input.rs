//! Bad refs, digests and labels: the right codes, nothing created.

use super::support::*;

#[test]
fn bad_refs_and_digests_create_nothing() {
    let d = Berthd::start();
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        let unknown = sha(b"never written");
        for bad in ["", "sha256:xyz", "md5:abc", "nocolon"] {
            let e = c
                .info(req(pb::InfoRequest { digest: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
            assert!(e.message().contains("digest"), "{e}");
            let e = c
                .delete(req(pb::DeleteContentRequest { digest: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
        }
        let e = c
            .info(req(pb::InfoRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .delete(req(pb::DeleteContentRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .read(req(pb::ReadContentRequest {
                digest: unknown.clone(),
                offset: 0,
                size: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .update(req(pb::UpdateRequest {
                info: Some(pb::Info {
                    digest: unknown.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        for r in ["nope", "a/../b"] {
            let e = c
                .status(req(pb::StatusRequest { r#ref: r.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound);
            let e = c
                .abort(req(pb::AbortRequest { r#ref: r.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound);
        }
        let long = "r".repeat(2000);
        for bad in ["", "a\0b", long.as_str()] {
            let mut w = WriteStream::open(&mut c, None).await;
            let e = w.call(stat(bad, 0, "")).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e}");
            assert!(e.message().contains("ref"), "{e}");
            let e = c
                .status(req(pb::StatusRequest { r#ref: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        }
        let mut w = WriteStream::open(&mut c, None).await;
        let e = w.call(stat("ok-ref", 0, "sha256:short")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("expected"), "{e}");
        let e = c
            .list(req(pb::ListContentRequest {
                filters: vec!["labels.\"unterminated".into()],
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // No namespace at all.
        let e = c
            .info(Request::new(pb::InfoRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let ns = d.ctr_ok(&["namespaces", "ls", "-q"]);
        assert!(ns.trim().is_empty(), "no namespace created: {ns}");
        assert_eq!(count(&ingest_dir(&d)), 0);
        // Bad labels at commit: refused, nothing stored.
        let mut w = WriteStream::open(&mut c, None).await;
        w.call(stat("labels", 0, "")).await.unwrap();
        let mut m = commit(0, 0, "");
        m.data = b"x".to_vec();
        m.labels.insert(String::new(), "v".into());
        let e = w.call(m).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        c.abort(req(pb::AbortRequest {
            r#ref: "labels".into(),
        }))
        .await
        .unwrap();
    });
    assert_eq!(count(&blob_dir(&d)), 0);
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
}

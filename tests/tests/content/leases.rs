//! A write under a lease: the lease holds the ingest, then the blob.

use super::support::*;

#[test]
fn leased_write_holds_content() {
    let d = Berthd::start();
    rt().block_on(async {
        let ch = channel(&d.address()).await;
        let mut leases = lpb::leases_client::LeasesClient::new(ch.clone());
        leases
            .create(req(lpb::CreateRequest {
                id: "hold".into(),
                labels: Default::default(),
            }))
            .await
            .unwrap();
        let mut c = client(&d.address()).await;
        let data = b"leased bytes".to_vec();
        let digest = sha(&data);
        let mut w = WriteStream::open(&mut c, Some("hold")).await;
        w.call(stat("leased", data.len(), &digest)).await.unwrap();
        let during = leases
            .list_resources(req(lpb::ListResourcesRequest { id: "hold".into() }))
            .await
            .unwrap()
            .into_inner()
            .resources;
        assert!(
            during
                .iter()
                .any(|r| r.r#type == "ingests" && r.id == "leased"),
            "{during:?}"
        );
        w.call(write(0, &data)).await.unwrap();
        w.call(commit(data.len(), data.len(), &digest))
            .await
            .unwrap();
        let after = leases
            .list_resources(req(lpb::ListResourcesRequest { id: "hold".into() }))
            .await
            .unwrap()
            .into_inner()
            .resources;
        assert!(
            after
                .iter()
                .any(|r| r.r#type == "content" && r.id == digest),
            "{after:?}"
        );
        assert!(!after.iter().any(|r| r.r#type == "ingests"), "{after:?}");
        // A lease that does not exist: refused before anything is written.
        let mut w = WriteStream::open(&mut c, Some("ghost")).await;
        let e = w.call(stat("ghost-ref", 0, "")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
}

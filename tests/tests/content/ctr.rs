//! The content store through Debian's `ctr`.

use super::support::*;

#[test]
fn ctr_ingest_ls_get_label_rm_64mib() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let data = bytes(1, 64 << 20);
    let digest = sha(&data);
    let input = d.dir().join("blob.in");
    std::fs::write(&input, &data).unwrap();
    let size = data.len().to_string();
    let out = ctr_with_stdin(
        &d,
        &[
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            "--expected-size",
            &size,
            "big-ref",
        ],
        &input,
    );
    check(out, "ctr content ingest");
    let ls = d.ctr_ok(&["content", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with(&digest))
        .unwrap_or_else(|| panic!("{digest} not listed: {ls}"));
    assert!(line.contains("67.11MB"), "{line}");
    let info = rt().block_on(async {
        let mut c = client(&d.address()).await;
        c.info(req(pb::InfoRequest {
            digest: digest.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
    });
    assert_eq!(info.size, 64 << 20);

    let got = Command::new("ctr")
        .arg("--address")
        .arg(d.address())
        .args(["content", "get", &digest])
        .output()
        .unwrap();
    assert!(got.status.success());
    assert!(got.stdout == data, "ctr content get returned other bytes");

    let labels = d.ctr_ok(&["content", "label", &digest, "team=a", "x=1"]);
    assert!(
        labels.contains("team=a") && labels.contains("x=1"),
        "{labels}"
    );
    d.ctr_ok(&["content", "label", &digest, "x="]);
    let ls = d.ctr_ok(&["content", "ls"]);
    assert!(ls.contains("team=a") && !ls.contains("x=1"), "{ls}");
    let q = d.ctr_ok(&["content", "ls", "-q", "labels.team==a"]);
    assert_eq!(q.trim(), digest);
    assert!(d
        .ctr_ok(&["content", "ls", "-q", "labels.team==b"])
        .trim()
        .is_empty());

    // Ingesting the same digest again: AlreadyExists, which ctr takes as success.
    let out = ctr_with_stdin(
        &d,
        &["content", "ingest", "--expected-digest", &digest, "again"],
        &input,
    );
    check(out, "ctr content ingest (again)");
    assert_eq!(count(&ingest_dir(&d)), 0);

    d.ctr_ok(&["content", "rm", &digest]);
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
    assert_eq!(count(&blob_dir(&d)), 0, "blob removed with its last record");
    let out = d.ctr(&["content", "get", &digest]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn wrong_expected_digest_is_refused_and_abortable() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let data = bytes(3, 1 << 20);
    let wrong = sha(b"something else");
    let input = d.dir().join("blob.in");
    std::fs::write(&input, &data).unwrap();
    let out = ctr_with_stdin(
        &d,
        &[
            "content",
            "ingest",
            "--expected-digest",
            &wrong,
            "wrong-ref",
        ],
        &input,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed precondition") && err.contains("unexpected commit digest"),
        "{err}"
    );
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
    assert_eq!(count(&blob_dir(&d)), 0, "nothing stored");
    let active = d.ctr_ok(&["content", "active"]);
    assert!(active.contains("wrong-ref"), "{active}");
    let filtered = d.ctr_ok(&["content", "active", "ref==other"]);
    assert!(!filtered.contains("wrong-ref"), "{filtered}");

    rt().block_on(async {
        let mut c = client(&d.address()).await;
        c.abort(req(pb::AbortRequest {
            r#ref: "wrong-ref".into(),
        }))
        .await
        .unwrap();
        let again = c
            .abort(req(pb::AbortRequest {
                r#ref: "wrong-ref".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::NotFound);
        // Wrong size: refused the same way.
        let mut w = WriteStream::open(&mut c, None).await;
        w.call(stat("short", 0, "")).await.unwrap();
        w.call(write(0, b"abc")).await.unwrap();
        let err = w.call(commit(3, 4, "")).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("unexpected commit size"), "{err}");
        c.abort(req(pb::AbortRequest {
            r#ref: "short".into(),
        }))
        .await
        .unwrap();
    });
    assert!(!d.ctr_ok(&["content", "active"]).contains("wrong-ref"));
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert_eq!(count(&blob_dir(&d)), 0);
}

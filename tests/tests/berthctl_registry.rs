//! Issue 6 through berthctl: server-side pull (with progress) and push
//! against Debian's docker-registry on 127.0.0.1, anonymous and with
//! htpasswd auth; pulled images run.

use berth_tests::registry::Registry;
use berth_tests::{requires_root, Berthd};

#[test]
#[ignore = "needs root"]
fn berthctl_pull_run_push_pull_back() {
    requires_root(&["ctr", "docker-registry", "skopeo", "runc"]);
    let reg = Registry::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let d = Berthd::start();
    let pulled = d.json(&["images", "pull", &reference, "--plain-http"]);
    assert_eq!(pulled["name"], reference.as_str(), "{pulled}");
    let digest = pulled["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"));
    let ls = d.berthctl_ok(&["images", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == reference), "{ls}");
    let id = format!("r1-{}", std::process::id());
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        &reference,
        &id,
        "echo",
        "pulled-and-ran",
    ]);
    assert_eq!(out, "pulled-and-ran\n");
    let info = d.json(&["images", "inspect", &reference]);
    if let Some(chain) = pulled["chain_id"].as_str().filter(|c| !c.is_empty()) {
        assert_eq!(info["chain_id"], chain);
    }

    // Push under a new name; a second daemon pulls identical digests.
    let copy = reg.reference("copy:1");
    d.berthctl_ok(&["images", "tag", &reference, &copy]);
    let pushed = d.json(&["images", "push", &copy, "--plain-http"]);
    assert_eq!(pushed["digest"], digest.as_str(), "{pushed}");
    let d2 = Berthd::start();
    let again = d2.json(&["images", "pull", &copy, "--plain-http"]);
    assert_eq!(again["digest"], digest.as_str());
    assert_eq!(
        d2.json(&["images", "inspect", &copy])["chain_id"],
        info["chain_id"]
    );

    // An unknown image: one line, non-zero.
    let out = d.berthctl(&["images", "pull", &reg.reference("nope:1"), "--plain-http"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}

#[test]
#[ignore = "needs root"]
fn berthctl_pull_with_htpasswd_auth() {
    requires_root(&["ctr", "docker-registry", "skopeo", "runc"]);
    let reg = Registry::start_with_auth("alice", "s3cret");
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let d = Berthd::start();
    let out = d.berthctl(&[
        "images",
        "pull",
        &reference,
        "--plain-http",
        "--user",
        "alice:Wr0ngPassw0rd",
    ]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("Unauthenticated"), "{err}");
    assert!(
        !err.contains("Wr0ngPassw0rd"),
        "the password must not be echoed: {err}"
    );
    assert_eq!(d.berthctl_ok(&["images", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["content", "ls", "-q"]), "");

    let creds = d.dir().join("creds");
    std::fs::write(&creds, "alice:s3cret\n").unwrap();
    let pulled = d.json(&[
        "images",
        "pull",
        &reference,
        "--plain-http",
        "--user-file",
        creds.to_str().unwrap(),
    ]);
    assert_eq!(pulled["name"], reference.as_str());
    let id = format!("a1-{}", std::process::id());
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        &reference,
        &id,
        "echo",
        "authed",
    ]);
    assert_eq!(out, "authed\n");
}

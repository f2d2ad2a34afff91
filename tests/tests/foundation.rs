//! Issue 2: berthd's start-up, namespaces and leases through Debian's ctr.

use berth_tests::{requires, Berthd};

#[test]
fn ctr_version_and_namespaces() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let v = d.ctr_ok(&["version"]);
    assert!(v.contains("Server:") && v.contains("UUID:"), "{v}");

    d.ctr_ok(&["namespaces", "create", "x", "team=a"]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("x ") && l.contains("team=a")),
        "{ls}"
    );
    d.ctr_ok(&["namespaces", "label", "x", "team=b"]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(ls.contains("team=b"), "{ls}");
    let dup = d.ctr(&["namespaces", "create", "x"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));
    d.ctr_ok(&["namespaces", "rm", "x"]);
    let ls = d.ctr_ok(&["namespaces", "ls", "-q"]);
    assert!(!ls.lines().any(|l| l == "x"), "{ls}");
}

#[test]
fn bad_names_are_invalid_argument_and_create_nothing() {
    requires(&["ctr"]);
    let d = Berthd::start();
    for bad in ["a/b", "..", "-x", &"n".repeat(77)] {
        let out = d.ctr(&["namespaces", "create", "--", bad]);
        assert!(!out.status.success(), "{bad} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("invalid argument") && err.contains("namespace"),
            "{bad}: {err}"
        );
    }
    let out = d.ctr(&["--namespace", "a/b", "leases", "ls"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid argument"));
    let ls = d.ctr_ok(&["namespaces", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "nothing created: {ls}");
}

#[test]
fn leases_via_ctr() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let out = d.ctr_ok(&["leases", "create", "--id", "l1", "a=b"]);
    assert!(out.contains("l1"), "{out}");
    let auto = d.ctr_ok(&["leases", "create"]);
    assert!(!auto.trim().is_empty());
    let ls = d.ctr_ok(&["leases", "ls"]);
    assert!(ls.contains("l1") && ls.contains("a=b"), "{ls}");
    assert!(
        ls.contains("containerd.io/gc.expire"),
        "default expiry label: {ls}"
    );
    d.ctr_ok(&["leases", "rm", "l1"]);
    let ls = d.ctr_ok(&["leases", "ls", "-q"]);
    assert!(!ls.lines().any(|l| l == "l1"), "{ls}");
    let out = d.ctr(&["leases", "rm", "l1"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn second_daemon_on_same_root_refuses_and_sigterm_removes_socket() {
    let mut d = Berthd::start();
    let out = std::process::Command::new(berth_tests::bin("berthd"))
        .arg("--root")
        .arg(d.root())
        .arg("--state")
        .arg(d.state())
        .arg("--address")
        .arg(d.dir().join("other.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("already using root"), "{err}");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(d.address()).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o660);
    let uuid1 = d.ctr_ok(&["version"]);
    let status = d.stop();
    assert!(status.success(), "{status}");
    assert!(!d.address().exists(), "socket removed on stop");
    d.restart();
    let uuid2 = d.ctr_ok(&["version"]);
    let pick = |s: &str| s.lines().find(|l| l.contains("UUID")).map(str::to_owned);
    assert_eq!(pick(&uuid1), pick(&uuid2), "server uuid is stable");
}

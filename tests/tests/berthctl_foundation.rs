//! Issue 2 through berthctl: namespaces, content and leases, in tables and
//! JSON, bad input, and cross-checks with Debian's ctr.

use std::process::{Command, Stdio};

use berth_tests::{requires, Berthd};

#[test]
fn berthctl_version() {
    let d = Berthd::start();
    let t = d.berthctl_ok(&["version"]);
    assert!(t.contains("Client:") && t.contains("Server:"), "{t}");
    let v = d.json(&["version"]);
    assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        v["server"]["version"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{v}"
    );
}

#[test]
fn berthctl_namespaces() {
    requires(&["ctr"]);
    let d = Berthd::start();
    assert_eq!(
        d.berthctl_ok(&["namespaces", "create", "x", "team=a", "tier=1"])
            .trim(),
        "x"
    );
    d.berthctl_ok(&["ns", "create", "y"]);

    let table = d.berthctl_ok(&["namespaces", "ls"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("LABELS"),
        "{table}"
    );
    let x = table
        .lines()
        .find(|l| l.starts_with("x "))
        .expect("x listed");
    assert!(x.ends_with("team=a,tier=1"), "{table}");
    // Columns are aligned: LABELS starts at the same place in every row.
    let col = header.find("LABELS").unwrap();
    assert_eq!(&x[col..], "team=a,tier=1", "{table}");

    d.berthctl_ok(&["namespaces", "label", "x", "team=b", "tier="]);
    let v = d.json(&["namespaces", "ls"]);
    let arr = v.as_array().expect("array");
    let x = arr.iter().find(|n| n["name"] == "x").expect("x in json");
    assert_eq!(x["labels"], serde_json::json!({"team": "b"}), "{v}");
    assert!(arr.iter().any(|n| n["name"] == "y"), "{v}");
    assert_eq!(d.berthctl_ok(&["ns", "ls", "-q"]), "x\ny\n");

    // ctr sees what berthctl made, and the other way round.
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("x ") && l.contains("team=b")),
        "{ls}"
    );
    d.ctr_ok(&["namespaces", "create", "fromctr", "k=v"]);
    let v = d.json(&["namespaces", "ls", "labels.k==v"]);
    assert_eq!(v.as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v[0]["name"], "fromctr");

    let err = d.berthctl_fails(&["namespaces", "create", "x"]);
    assert!(err.contains("AlreadyExists"), "{err}");

    d.berthctl_ok(&["namespaces", "rm", "x", "y", "fromctr"]);
    let ls = d.ctr_ok(&["namespaces", "ls", "-q"]);
    assert!(ls.trim().is_empty(), "all removed: {ls}");
    let err = d.berthctl_fails(&["namespaces", "rm", "x"]);
    assert!(err.contains("NotFound") && err.contains("\"x\""), "{err}");
}

#[test]
fn berthctl_leases() {
    requires(&["ctr"]);
    let d = Berthd::start();
    assert_eq!(
        d.berthctl_ok(&["leases", "create", "--id", "l1", "a=b"])
            .trim(),
        "l1"
    );
    let created = d.json(&["leases", "create", "--expires", "1h"]);
    let auto = created["id"].as_str().expect("id").to_string();
    assert!(!auto.is_empty());
    let expire = created["labels"]["containerd.io/gc.expire"]
        .as_str()
        .expect("expiry label")
        .to_string();
    assert!(expire.ends_with('Z') && expire.contains('T'), "{expire}");

    let v = d.json(&["-n", "default", "leases", "ls"]);
    let arr = v.as_array().unwrap();
    assert_eq!(arr.len(), 2, "{v}");
    let l1 = arr.iter().find(|l| l["id"] == "l1").expect("l1");
    assert_eq!(l1["labels"]["a"], "b");
    assert!(
        l1["created_at"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{v}"
    );

    // Namespaced: another namespace holds none.
    let other = d.json(&["-n", "other", "leases", "ls"]);
    assert_eq!(other, serde_json::json!([]));

    let ctr_ls = d.ctr_ok(&["leases", "ls"]);
    assert!(ctr_ls.contains("l1") && ctr_ls.contains(&auto), "{ctr_ls}");
    let table = d.berthctl_ok(&["leases", "ls"]);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("a=b"), "{table}");

    d.berthctl_ok(&["leases", "rm", "l1", &auto]);
    assert_eq!(d.berthctl_ok(&["leases", "ls", "-q"]), "");
    let err = d.berthctl_fails(&["leases", "rm", "l1"]);
    assert!(err.contains("NotFound"), "{err}");
}

#[test]
fn berthctl_bad_input_is_one_line_and_nonzero() {
    let d = Berthd::start();
    for bad in ["a/b", "..", "-x", &"n".repeat(77)] {
        let err = d.berthctl_fails(&["namespaces", "create", "--", bad]);
        assert!(
            err.contains("InvalidArgument") && err.contains("namespace"),
            "{bad}: {err}"
        );
    }
    let err = d.berthctl_fails(&["-n", "a/b", "leases", "ls"]);
    assert!(err.contains("InvalidArgument"), "{err}");
    // Lease ids follow containerd (only empty is refused; `/` is fine, ctr
    // uses paths), up to a path's length.
    let err = d.berthctl_fails(&["leases", "create", "--id", &"l".repeat(4097)]);
    assert!(err.contains("InvalidArgument"), "{err}");
    let err = d.berthctl_fails(&["namespaces", "create", "z", "novalue"]);
    assert!(err.contains("key=value"), "{err}");
    let err = d.berthctl_fails(&["content", "get", "sha256:nothex"]);
    assert!(err.contains("sha256:nothex"), "{err}");
    // Nothing was created by any of those.
    assert_eq!(d.berthctl_ok(&["namespaces", "ls", "-q"]), "");

    // A daemon that is not there: one line naming the socket.
    let out = Command::new(berth_tests::bin("berthctl"))
        .args(["--address", "/nonexistent/berthd.sock", "version"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("/nonexistent/berthd.sock"), "{err}");

    // A command line that does not parse: clap's whole message (issue 17:
    // the error, its hints and the usage), exit 2.
    let out = d.berthctl(&["namespaces", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: unrecognized subcommand 'frobnicate'") && err.contains("Usage:"),
        "{err}"
    );
}

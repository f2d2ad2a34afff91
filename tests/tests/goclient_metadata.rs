//! Issue 11, items 2, 12 and 13: namespaces, leases and garbage
//! collection as containerd's `ctr` and Go client use them, against a real
//! berthd.
//!
//! Pinned containerd 1.6 behaviours:
//! - Namespaces.Update with a `labels.KEY` mask on a namespace that does
//!   not exist creates it (services/namespaces: each label is a SetLabel,
//!   which creates the namespace's bucket), so `ctr namespaces label new
//!   k=v` works; a mask naming another field is InvalidArgument and
//!   creates nothing;
//! - a lease id is refused only when empty: `ctr images mount IMAGE DIR`
//!   uses the path DIR as its lease id (and snapshot key), and `ctr images
//!   unmount --rm DIR` deletes that lease;
//! - (berth's own log contract) a garbage collection is logged at INFO
//!   only when it removed something, at DEBUG otherwise.

mod goclient_support;

use berth_api::services::namespaces::v1 as pb;
use berth_tests::Berthd;
use goclient_support::{busybox_tar, channel, plain_log, ready, rt, wait_until, BUSYBOX};
use tonic::Code;

#[test]
fn labelling_a_missing_namespace_creates_it() {
    if !ready("labelling_a_missing_namespace_creates_it") {
        return;
    }
    let d = Berthd::start();
    d.ctr_ok(&["namespaces", "label", "fresh", "k=v"]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.split_whitespace().next() == Some("fresh"))
        .unwrap_or_else(|| panic!("fresh not listed:\n{ls}"));
    assert!(line.contains("k=v"), "{line}");
    // Labelling it again updates it as before.
    d.ctr_ok(&["namespaces", "label", "fresh", "k=w", "other=1"]);
    let ls = d.ctr_ok(&["namespaces", "ls"]);
    assert!(ls.contains("k=w") && ls.contains("other=1"), "{ls}");

    // Invalid names are still refused, and nothing is created.
    let out = d.ctr(&["namespaces", "label", "bad/name", "k=v"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("invalid argument") || err.contains("InvalidArgument"),
        "{err}"
    );
    rt().block_on(async {
        let mut c = pb::namespaces_client::NamespacesClient::new(channel(&d.address()).await);
        let update = |name: &str, path: &str| pb::UpdateNamespaceRequest {
            namespace: Some(pb::Namespace {
                name: name.into(),
                labels: [("k".to_string(), "v".to_string())].into(),
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![path.into()],
            }),
        };
        let err = c.update(update("bad/name", "labels.k")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        // A mask naming a field other than labels: refused, nothing made.
        let err = c.update(update("unmade", "name")).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
        let err = c
            .get(pb::GetNamespaceRequest {
                name: "unmade".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        // The Go client's path: Update with a labels.KEY mask.
        let got = c.update(update("viago", "labels.k")).await.unwrap();
        assert_eq!(got.into_inner().namespace.unwrap().labels["k"], "v");
        let got = c
            .get(pb::GetNamespaceRequest {
                name: "viago".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(got.namespace.unwrap().labels["k"], "v");
    });
    let ls = d.ctr_ok(&["namespaces", "ls", "-q"]);
    let names: Vec<&str> = ls.lines().collect();
    assert!(!names.contains(&"unmade") && !names.contains(&"bad/name"));
    assert!(names.contains(&"viago"), "{ls}");
}

#[test]
fn ctr_images_mount_and_unmount_with_a_path_as_lease_id() {
    if !ready("ctr_images_mount_and_unmount_with_a_path_as_lease_id")
        || !berth_tests::require_tool("ctr_images_mount", "python3")
    {
        return;
    }
    let d = Berthd::start();
    d.ctr_ok(&["images", "import", busybox_tar().to_str().unwrap()]);
    let target = d.dir().join("mnt");
    std::fs::create_dir(&target).unwrap();
    let target_s = target.to_str().unwrap();

    let out = d.ctr_ok(&["images", "mount", BUSYBOX, target_s]);
    assert!(out.contains(target_s), "{out}");
    assert!(
        target.join("bin/busybox").exists(),
        "the image is not mounted at {target_s}"
    );
    // The lease is named after the path, and holds the view.
    let leases = d.ctr_ok(&["leases", "ls", "-q"]);
    assert!(leases.lines().any(|l| l == target_s), "{leases}");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert!(snaps.contains(target_s), "{snaps}");

    let out = d.ctr_ok(&["images", "unmount", "--rm", target_s]);
    assert!(out.contains(target_s), "{out}");
    assert!(!target.join("bin/busybox").exists(), "still mounted");
    let leases = d.ctr_ok(&["leases", "ls", "-q"]);
    assert!(!leases.lines().any(|l| l == target_s), "{leases}");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    assert!(!snaps.contains(target_s), "{snaps}");

    // Empty and NUL-bearing ids are still refused (ctr cannot send those;
    // the limit on length is checked through it instead).
    let long = "l".repeat(4097);
    let out = d.ctr(&["leases", "create", "--id", &long]);
    assert!(!out.status.success());
    // A path-like id that stays under the limit is fine.
    d.ctr_ok(&["leases", "create", "--id", "/var/tmp/x y"]);
}

/// The `garbage collection done` lines of the log, with their level.
fn gc_lines(d: &Berthd) -> Vec<String> {
    plain_log(d)
        .lines()
        .filter(|l| l.contains("garbage collection done"))
        .map(str::to_string)
        .collect()
}

#[test]
fn gc_logs_at_info_only_when_it_removed_something() {
    if !ready("gc_logs_at_info_only_when_it_removed_something") {
        return;
    }
    let d = Berthd::start();
    // A collection with nothing to remove (berthd runs one after every
    // lease delete).
    d.ctr_ok(&["leases", "create", "--id", "empty"]);
    d.ctr_ok(&["leases", "rm", "--sync", "empty"]);
    wait_until("a gc line", || !gc_lines(&d).is_empty());
    let lines = gc_lines(&d);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("DEBUG") && !l.contains("INFO")),
        "an empty collection logged above DEBUG:\n{}",
        lines.join("\n")
    );

    // A blob no lease or image holds: the next collection removes it.
    let mut child = std::process::Command::new("ctr")
        .arg("--address")
        .arg(d.address())
        .args(["content", "ingest", "loose"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"an unreferenced blob").unwrap();
    }
    assert!(child.wait().unwrap().success());
    d.ctr_ok(&["leases", "create", "--id", "trigger"]);
    d.ctr_ok(&["leases", "rm", "--sync", "trigger"]);
    assert_eq!(d.ctr_ok(&["content", "ls", "-q"]).trim(), "");
    wait_until("an INFO gc line", || {
        gc_lines(&d).iter().any(|l| l.contains("INFO"))
    });
    for l in gc_lines(&d) {
        if l.contains("INFO") {
            assert!(l.contains("content=1"), "{l}");
        } else {
            assert!(l.contains("content=0 snapshots=0 leases=0"), "{l}");
        }
    }
}

//! Issue 3 through berthctl: images import (OCI and docker-save archives,
//! platforms), ls/inspect/tag/rm, snapshots ls/tree/usage/mounts, export
//! round trip, and garbage collection leaving nothing behind.

use berth_tests::grpc::Lease;
use berth_tests::images::{archive, entry};
use berth_tests::{requires_root, Berthd};
use serde_json::Value;

#[test]
#[ignore = "needs root"]
fn berthctl_images_import_inspect_snapshots_gc() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let ml = "docker.io/berthtest/multilayer:oci-gzip";
    let out = d.json(&["images", "import", &archive("multilayer", "oci-gzip")]);
    assert_eq!(out["images"], serde_json::json!([ml]));
    let out = d.berthctl_ok(&["images", "import", &archive("busybox", "docker")]);
    let bb = out.trim().to_string();
    assert!(bb.contains("busybox"), "{out}");

    let ls = d.json(&["images", "ls"]);
    let names: Vec<&str> = ls
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{ls}");
    assert!(names.contains(&ml) && names.contains(&bb.as_str()), "{ls}");
    let ctr_ls = d.ctr_ok(&["images", "ls", "-q"]);
    assert!(ctr_ls.contains(ml) && ctr_ls.contains(&bb), "{ctr_ls}");

    // Inspect: four layers, the chain ID names a committed snapshot whose
    // ancestry has four members.
    let info = d.json(&["images", "inspect", ml]);
    assert_eq!(info["layers"].as_array().unwrap().len(), 4, "{info}");
    let chain = info["chain_id"].as_str().unwrap().to_string();
    let want = entry("multilayer", "oci-gzip");
    if let Some(ids) = want["chain_ids"].as_array() {
        assert_eq!(
            ids.last().unwrap(),
            &Value::from(chain.clone()),
            "catalog: {want}"
        );
    }
    let snaps = d.json(&["snapshots", "ls"]);
    let by_key = |k: &str| {
        snaps
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == k)
            .cloned()
    };
    let mut depth = 0;
    let mut cur = chain.clone();
    while let Some(s) = by_key(&cur) {
        assert_eq!(s["kind"], "committed");
        depth += 1;
        cur = s["parent"].as_str().unwrap().to_string();
        if cur.is_empty() {
            break;
        }
    }
    assert_eq!(depth, 4, "{snaps}");
    let tree = d.berthctl_ok(&["snapshots", "tree"]);
    assert!(
        tree.contains(&format!("      {chain} (committed)")),
        "{tree}"
    );
    let usage = d.json(&["snapshots", "usage", &chain]);
    assert!(usage[0]["inodes"].as_i64().unwrap() > 0, "{usage}");

    // A prepared snapshot on the chain shows an overlay mount. The test
    // holds it with a lease, as containerd's clients do: an unleased active
    // snapshot is garbage, and the collection the imports scheduled may run
    // at any moment (berthctl has no lease flag, so the prepare goes over
    // gRPC).
    let lease = Lease::create(&d.address(), "default");
    lease.prepare_snapshot("work", &chain);
    // A collection now (the one the imports scheduled, forced) keeps it.
    d.berthctl_ok(&["content", "gc"]);
    let m = d.berthctl_ok(&["snapshots", "mounts", "/mnt/x", "work"]);
    assert!(
        m.starts_with("mount -t overlay overlay /mnt/x -o ") && m.contains("lowerdir="),
        "{m}"
    );
    d.berthctl_ok(&["snapshots", "rm", "work"]);
    lease.release();
    // berthctl's own prepare, held the way `ctr snapshots prepare` holds
    // its snapshot: a `containerd.io/gc.root` label.
    let m = d.berthctl_ok(&[
        "snapshots",
        "prepare",
        "--target",
        "/mnt/y",
        "--label",
        "containerd.io/gc.root=2026-01-01T00:00:00Z",
        "work-cli",
        &chain,
    ]);
    assert!(
        m.starts_with("mount -t overlay overlay /mnt/y -o ") && m.contains("lowerdir="),
        "{m}"
    );
    d.berthctl_ok(&["content", "gc"]);
    d.berthctl_ok(&["snapshots", "mounts", "/mnt/y", "work-cli"]);
    d.berthctl_ok(&["snapshots", "rm", "work-cli"]);
    // The base layer has children: removing it is refused.
    let base = snaps
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["parent"] == "" && s["key"] != chain)
        .expect("a base snapshot")["key"]
        .as_str()
        .unwrap()
        .to_string();
    let err = d.berthctl(&["snapshots", "rm", &base]);
    assert_eq!(err.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&err.stderr).contains("FailedPrecondition"));

    // Tag, then remove every name; GC leaves no content and no snapshots.
    d.berthctl_ok(&["images", "tag", ml, "local/ml:1"]);
    let tagged = d.json(&["images", "inspect", "local/ml:1"]);
    assert_eq!(tagged["target"]["digest"], info["target"]["digest"]);
    d.berthctl_ok(&["images", "rm", "--sync", ml, "local/ml:1", &bb]);
    d.berthctl_ok(&["content", "gc"]);
    assert_eq!(d.berthctl_ok(&["content", "ls", "-q"]), "");
    assert_eq!(d.berthctl_ok(&["snapshots", "ls", "-q"]), "");
    let blobs = d
        .root()
        .join("io.containerd.content.v1.content/blobs/sha256");
    if blobs.exists() {
        assert_eq!(
            std::fs::read_dir(&blobs).unwrap().count(),
            0,
            "blobs left on disk"
        );
    }
}

#[test]
#[ignore = "needs root"]
fn berthctl_images_platforms_and_export_round_trip() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let mp = "docker.io/berthtest/multiplatform:oci-gzip";
    d.berthctl_ok(&[
        "images",
        "import",
        "--all-platforms",
        &archive("multiplatform", "oci-gzip"),
    ]);
    let ls = d.json(&["images", "ls"]);
    let plats = ls[0]["platforms"].as_array().unwrap();
    assert_eq!(plats.len(), 2, "{ls}");
    let amd = d.json(&["images", "inspect", mp, "--platform", "linux/amd64"]);
    let arm = d.json(&["images", "inspect", mp, "--platform", "linux/arm64/v8"]);
    assert_ne!(amd["manifest"]["digest"], arm["manifest"]["digest"]);
    assert_eq!(arm["platform"], "linux/arm64/v8");

    // Export one image, import it into a second daemon: same digests.
    let ml = "docker.io/berthtest/multilayer:oci-zstd";
    d.berthctl_ok(&["images", "import", &archive("multilayer", "oci-zstd")]);
    let out = d.dir().join("export.tar");
    d.berthctl_ok(&["images", "export", out.to_str().unwrap(), ml]);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    let d2 = Berthd::start();
    let names = d2.json(&["images", "import", out.to_str().unwrap()]);
    assert!(
        names["images"].as_array().unwrap().iter().any(|n| n == ml),
        "{names}"
    );
    let a = d.json(&["images", "inspect", ml]);
    let b = d2.json(&["images", "inspect", ml]);
    assert_eq!(a["target"]["digest"], b["target"]["digest"]);
    assert_eq!(a["chain_id"], b["chain_id"]);
    // And ctr accepts the export too.
    let ctr_out = d2.ctr(&["-n", "other", "images", "import", out.to_str().unwrap()]);
    assert!(
        ctr_out.status.success(),
        "{}",
        String::from_utf8_lossy(&ctr_out.stderr)
    );

    // Bad input: one line, non-zero.
    for args in [
        vec!["images", "import", "/nonexistent.tar"],
        vec!["images", "inspect", "nope:latest"],
        vec![
            "images",
            "import",
            "--platform",
            "linux",
            &archive("busybox", "oci-gzip"),
        ],
    ] {
        let o = d.berthctl(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&o.stderr).lines().count(),
            1,
            "{args:?}"
        );
    }
}

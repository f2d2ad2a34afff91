//! Issue 3: snapshots, images, diff and garbage collection through Debian's
//! ctr, against a real berthd. Test images come from
//! scripts/build-test-images, built once into the target dir.

mod images_support;

use berth_tests::{requires_root, Berthd};
use images_support::*;
use serde_json::Value;

#[test]
#[ignore = "needs root"]
fn ctr_snapshots_prepare_mounts_commit_rm() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    for sn in ["overlayfs", "native"] {
        let ctr = |args: &[&str]| {
            let mut a = vec!["snapshots", "--snapshotter", sn];
            a.extend_from_slice(args);
            d.ctr_ok(&a)
        };
        ctr(&["prepare", "base-key"]);
        let m = ctr(&["mounts", "/mnt/x", "base-key"]);
        assert!(
            m.contains("bind") && m.contains(&format!("io.containerd.snapshotter.v1.{sn}")),
            "{m}"
        );
        ctr(&["commit", "base", "base-key"]);
        ctr(&["prepare", "child", "base"]);
        let m = ctr(&["mounts", "/mnt/x", "child"]);
        if sn == "overlayfs" {
            assert!(m.contains("overlay") && m.contains("lowerdir="), "{m}");
        }
        let ls = ctr(&["ls"]);
        assert_eq!(lines_with(&ls, "base"), 2, "{ls}");
        assert!(ls.contains("Committed") && ls.contains("Active"), "{ls}");
        // A parent with children cannot go; committing twice to a name fails.
        let out = d.ctr(&["snapshots", "--snapshotter", sn, "rm", "base"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("failed precondition"));
        ctr(&["prepare", "other", "base"]);
        let out = d.ctr(&["snapshots", "--snapshotter", sn, "commit", "base", "other"]);
        assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
        ctr(&["label", "base", "team=x"]);
        assert!(ctr(&["info", "base"]).contains("team"));
        ctr(&["rm", "child", "other"]);
        ctr(&["rm", "base"]);
        assert!(ctr(&["ls"]).lines().count() <= 1);
    }
    let out = d.ctr(&["snapshots", "--snapshotter", "zfs", "ls"]);
    assert!(!out.status.success());
    for sn in ["overlayfs", "native"] {
        assert!(snapshot_dirs(&d, sn).is_empty(), "{sn} left dirs");
    }
}

#[test]
#[ignore = "needs root"]
fn ctr_import_oci_and_docker_then_rm_and_gc_leave_nothing() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let variants = [
        "oci-gzip",
        "oci-zstd",
        "docker",
        "docker-gzip",
        "docker-zstd",
    ];
    for v in variants {
        d.ctr_ok(&["images", "import", &archive("multilayer", v)]);
    }
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    for v in variants {
        assert!(
            ls.lines()
                .any(|l| l == format!("docker.io/berthtest/multilayer:{v}")),
            "{ls}"
        );
    }
    // Every variant has the same diff IDs, hence one committed chain.
    let chain = chain_ids("multilayer", "oci-gzip");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    for (i, c) in chain.iter().enumerate() {
        let line = snaps
            .lines()
            .find(|l| l.starts_with(c.as_str()))
            .unwrap_or_else(|| panic!("{c}: {snaps}"));
        assert!(line.contains("Committed"), "{line}");
        if i > 0 {
            assert!(line.contains(&chain[i - 1]), "parent of {c}: {line}");
        }
    }
    assert_eq!(snaps.lines().count(), chain.len() + 1, "{snaps}");
    // Filters work on the list.
    let f = d.ctr_ok(&["images", "ls", "-q", "name~=docker-"]);
    assert_eq!(f.lines().count(), 2, "{f}");
    assert!(!blobs(&d).is_empty());

    let names: Vec<String> = variants
        .iter()
        .map(|v| format!("docker.io/berthtest/multilayer:{v}"))
        .collect();
    let mut args = vec!["images", "rm", "--sync"];
    args.extend(names.iter().map(String::as_str));
    d.ctr_ok(&args);
    assert!(d.ctr_ok(&["images", "ls", "-q"]).trim().is_empty());
    assert_eq!(
        d.ctr_ok(&["snapshots", "ls"]).lines().count(),
        1,
        "only the header"
    );
    assert!(blobs(&d).is_empty(), "blobs left: {:?}", blobs(&d));
    assert!(
        snapshot_dirs(&d, "overlayfs").is_empty(),
        "{:?}",
        snapshot_dirs(&d, "overlayfs")
    );
}

#[test]
#[ignore = "needs root"]
fn multilayer_rootfs_is_right_and_runs_busybox_on_overlayfs_and_native() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let top = chain_ids("multilayer", "oci-gzip").pop().unwrap();
    for sn in ["overlayfs", "native"] {
        d.ctr_ok(&[
            "images",
            "import",
            "--snapshotter",
            sn,
            &archive("multilayer", "oci-gzip"),
        ]);
        let key = format!("rootfs-{sn}");
        d.ctr_ok(&["snapshots", "--snapshotter", sn, "prepare", &key, &top]);
        let m = Mounted::new(&d, sn, &key);
        check_expectations(m.path());
        let out = chroot(
            m.path(),
            "cat /data/link-rel; ls /opaque; id -u; ls -ln /home/user/file.txt",
        );
        assert!(out.starts_with("kept from layer 2\n"), "{out}");
        assert!(out.contains("new"), "{out}");
        assert!(out.contains("1000"), "{out}");
        // Writes land in the active snapshot only.
        chroot(m.path(), "echo hi > /data/new.txt && rm /data/keep.txt");
        drop(m);
        d.ctr_ok(&["snapshots", "--snapshotter", sn, "rm", &key]);
        let again = format!("again-{sn}");
        d.ctr_ok(&["snapshots", "--snapshotter", sn, "prepare", &again, &top]);
        let m = Mounted::new(&d, sn, &again);
        assert!(m.path().join("data/keep.txt").exists());
        assert!(!m.path().join("data/new.txt").exists());
        drop(m);
        d.ctr_ok(&["snapshots", "--snapshotter", sn, "rm", &again]);
    }
}

#[test]
#[ignore = "needs root"]
fn many_layers_image_mounts_and_reads() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    d.ctr_ok(&["images", "import", &archive("many-layers", "oci-gzip")]);
    let chain = chain_ids("many-layers", "oci-gzip");
    assert!(chain.len() > 100);
    d.ctr_ok(&["snapshots", "prepare", "ro", chain.last().unwrap()]);
    let m = Mounted::new(&d, "overlayfs", "ro");
    let n = dir_entries(&m.path().join("layers")).len();
    assert_eq!(n, chain.len() - 1, "one file per layer above the base");
    let out = chroot(m.path(), "cat /layers/file-001 && ls /layers | wc -l");
    assert!(out.contains("layer"), "{out}");
}

#[test]
#[ignore = "needs root"]
fn hostile_layers_are_refused_or_confined() {
    requires_root(&["ctr"]);
    let host_before = host_state();
    let listing: Value =
        serde_json::from_slice(&std::fs::read(images().join("hostile/hostile.json")).unwrap())
            .unwrap();
    for sn in ["overlayfs", "native"] {
        let d = Berthd::start();
        let sn_root = d.root().join(format!("io.containerd.snapshotter.v1.{sn}"));
        // Canary files where writes through `../..` or planted links would land.
        for f in [
            "tmp/x",
            "tmp/y",
            "escape",
            "outside",
            "snapshots/escape",
            "snapshots/x",
        ] {
            let p = sn_root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, b"canary").unwrap();
        }
        let before = canary_state(&sn_root);
        for case in listing["cases"].as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            let expect = case["expect"].as_str().unwrap();
            let file = images().join(case["file"].as_str().unwrap());
            let reference = case["ref"].as_str().unwrap();
            let out = d.ctr(&[
                "images",
                "import",
                "--snapshotter",
                sn,
                &file.to_string_lossy(),
            ]);
            let ok = out.status.success();
            if expect == "refuse" {
                assert!(!ok, "{sn}/{name}: hostile import accepted");
                let snaps = d.ctr_ok(&["snapshots", "--snapshotter", sn, "ls"]);
                let top = case["chain_ids"]
                    .as_array()
                    .and_then(|c| c.last())
                    .and_then(Value::as_str);
                if let Some(top) = top {
                    assert!(
                        !snaps.contains(top),
                        "{sn}/{name}: committed anyway: {snaps}"
                    );
                }
            }
            assert_eq!(
                canary_state(&sn_root),
                before,
                "{sn}/{name}: canary changed"
            );
            assert_eq!(host_state(), host_before, "{sn}/{name}: host files changed");
            let _ = d.ctr(&["images", "rm", "--sync", reference]);
            gc(&d);
            assert_eq!(
                d.ctr_ok(&["snapshots", "--snapshotter", sn, "ls"])
                    .lines()
                    .count(),
                1,
                "{sn}/{name}"
            );
            assert!(
                blobs(&d).is_empty(),
                "{sn}/{name}: blobs left {:?}",
                blobs(&d)
            );
            assert!(
                snapshot_dirs(&d, sn)
                    .iter()
                    .all(|n| !n.chars().all(|c| c.is_ascii_digit())),
                "{sn}/{name}"
            );
        }
    }
}

#[test]
#[ignore = "needs root"]
fn gc_loop_during_ten_concurrent_imports_keeps_every_image_whole() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let jobs: Vec<(&str, &str)> = vec![
        ("multilayer", "oci-gzip"),
        ("multilayer", "oci-gzip"),
        ("multilayer", "oci-zstd"),
        ("multilayer", "docker"),
        ("multilayer", "docker-gzip"),
        ("busybox", "oci-gzip"),
        ("busybox", "oci-gzip"),
        ("busybox", "docker-zstd"),
        ("many-layers", "oci-zstd"),
        ("busybox", "oci-zstd"),
    ];
    let stop = std::sync::atomic::AtomicBool::new(false);
    let runs = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let gc_loop = s.spawn(|| {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let id = format!("gc-{i}");
                d.ctr_ok(&["leases", "create", "--id", &id]);
                d.ctr_ok(&["leases", "rm", "--sync", &id]);
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                i += 1;
            }
        });
        let handles: Vec<_> = jobs
            .iter()
            .map(|(img, v)| {
                let d = &d;
                s.spawn(move || d.ctr(&["images", "import", &archive(img, v)]))
            })
            .collect();
        let outs: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        gc_loop.join().unwrap();
        for (o, (img, v)) in outs.into_iter().zip(&jobs) {
            let o = o.expect("import thread");
            assert!(
                o.status.success(),
                "import {img}:{v} failed: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    });
    assert!(runs.load(std::sync::atomic::Ordering::Relaxed) > 0);
    gc(&d);
    for (i, (img, v)) in jobs.iter().enumerate() {
        let top = chain_ids(img, v).pop().unwrap();
        let key = format!("check-{i}");
        d.ctr_ok(&["snapshots", "prepare", &key, &top]);
        let m = Mounted::new(&d, "overlayfs", &key);
        assert!(m.path().join("bin/busybox").is_file(), "{img}:{v}");
        let out = chroot(m.path(), "echo alive");
        assert_eq!(out.trim(), "alive");
        drop(m);
        d.ctr_ok(&["snapshots", "rm", &key]);
        // Every blob of the image is still there.
        let content = d.ctr_ok(&["content", "ls", "-q"]);
        let cat = catalog();
        for l in cat["images"][img][v]["layers"].as_array().unwrap() {
            let dg = l["digest"].as_str().unwrap();
            if !v.starts_with("docker") {
                assert!(content.contains(dg), "{img}:{v}: layer {dg} gone");
            }
        }
    }
}

#[test]
#[ignore = "needs root"]
fn ctr_snapshots_diff_makes_a_layer_with_whiteouts() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    d.ctr_ok(&["images", "import", &archive("busybox", "oci-gzip")]);
    let top = chain_ids("busybox", "oci-gzip").pop().unwrap();
    d.ctr_ok(&["snapshots", "prepare", "work", &top]);
    {
        let m = Mounted::new(&d, "overlayfs", "work");
        std::fs::write(m.path().join("hello.txt"), "hello\n").unwrap();
        std::fs::remove_file(m.path().join("bin/vi")).unwrap();
    }
    let out = d.ctr(&["snapshots", "diff", "--keep", "work"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gz = d.dir().join("diff.tar.gz");
    std::fs::write(&gz, &out.stdout).unwrap();
    let list = std::process::Command::new("tar")
        .arg("-tzf")
        .arg(&gz)
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./") == "hello.txt"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.trim_start_matches("./") == "bin/.wh.vi"),
        "{list}"
    );
    let content = d.ctr_ok(&["content", "ls"]);
    let digest = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&out.stdout));
    let line = content
        .lines()
        .find(|l| l.contains(&digest))
        .unwrap_or_else(|| panic!("{digest}: {content}"));
    assert!(
        line.contains("containerd.io/uncompressed=sha256:"),
        "{line}"
    );
}

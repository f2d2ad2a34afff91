//! Issue 6: server-side pull and push through berthd's
//! berth.images.v1.Registry service, against a real local docker-registry
//! filled by skopeo; and Debian's `ctr images pull --plain-http`.

use berth_tests::registry::{
    self, assert_nothing_stored, content, entry, files_under, pull_of, strings, Registry, Transfer,
};
use berth_tests::{requires_root, Berthd};

#[test]
#[ignore = "needs root"]
fn pull_multilayer_unpacks_the_same_chain_as_the_archive() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    for variant in ["oci-gzip", "oci-zstd"] {
        let reference = reg.push_test_image("multilayer", variant);
        let out = registry::pull(&d.address(), &pull_of(&reference))
            .unwrap_or_else(|e| panic!("pull {reference}: {e:?}\n{}", d.log()));
        let want = entry("multilayer", variant);
        assert_eq!(
            out.result.manifest_digest,
            want["manifest_digest"].as_str().unwrap()
        );
        assert_eq!(out.result.digest, want["manifest_digest"].as_str().unwrap());
        let chains = strings(&want["chain_ids"]);
        assert_eq!(out.result.chain_id, *chains.last().unwrap(), "top chain ID");
        // Every layer's digest is in the content store; the image is listed.
        let have = content(&d);
        for l in want["layers"].as_array().unwrap() {
            let dg = l["digest"].as_str().unwrap();
            assert!(have.iter().any(|c| c == dg), "{dg} missing from {have:?}");
        }
        let ls = d.ctr_ok(&["images", "ls", "-q"]);
        assert!(ls.lines().any(|l| l == out.result.name), "{ls}");
        // The committed snapshots are the archive's chain.
        let snaps = d.ctr_ok(&["snapshots", "ls"]);
        for c in &chains {
            assert!(snaps.contains(c.as_str()), "chain {c} not in\n{snaps}");
        }
    }
    // Garbage collection keeps everything a pulled image references.
    let before = content(&d);
    let snaps_before = d.ctr_ok(&["snapshots", "ls"]);
    d.berthctl_ok(&["content", "gc"]);
    let mut after = content(&d);
    after.sort();
    let mut before_sorted = before.clone();
    before_sorted.sort();
    assert_eq!(after, before_sorted, "GC removed pulled content");
    assert_eq!(
        d.ctr_ok(&["snapshots", "ls"]),
        snaps_before,
        "GC removed snapshots"
    );
    // Pulling again moves no layer bytes.
    let reference = reg.reference("multilayer:oci-gzip");
    let again = registry::pull(&d.address(), &pull_of(&reference)).unwrap();
    assert!(
        again
            .blobs
            .iter()
            .filter(|b| b.kind == "layer")
            .all(|b| b.state == 2 || b.state == 5),
        "{:?}",
        again.blobs
    );
    for l in entry("multilayer", "oci-gzip")["layers"]
        .as_array()
        .unwrap()
    {
        assert_eq!(reg.blob_gets(l["digest"].as_str().unwrap()), 1);
    }
}

#[test]
#[ignore = "needs root"]
fn busybox_pulled_from_the_registry_runs() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let out = registry::pull(&d.address(), &pull_of(&reference))
        .unwrap_or_else(|e| panic!("pull: {e:?}\n{}", d.log()));
    // Mount a view of the image's top snapshot and run busybox in it.
    let view = d.dir().join("view");
    std::fs::create_dir_all(&view).unwrap();
    // Held by a lease (`ctr snapshots view` takes none and sets no
    // gc.root label): a collection must not take the view away mid-test.
    let lease = berth_tests::grpc::Lease::create(&d.address(), "default");
    lease.view_snapshot("busybox-view", &out.result.chain_id);
    let mounts = d.ctr_ok(&[
        "snapshots",
        "mounts",
        view.to_str().unwrap(),
        "busybox-view",
    ]);
    let cmd = mounts
        .lines()
        .find(|l| l.starts_with("mount"))
        .expect("a mount command");
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(st.success(), "{cmd}");
    let run = std::process::Command::new("chroot")
        .arg(&view)
        .args(["/bin/busybox", "echo", "hello from the registry"])
        .output()
        .unwrap();
    berth_tests::unmount_under(&view);
    assert_eq!(
        String::from_utf8_lossy(&run.stdout).trim(),
        "hello from the registry"
    );
}

#[test]
#[ignore = "needs root"]
fn multiplatform_index_picks_the_platform() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    let reference = reg.push_test_image("multiplatform", "oci-gzip");
    let want = entry("multiplatform", "oci-gzip");
    let manifests = want["manifests"].as_array().unwrap();
    let digest_for = |arch: &str| {
        manifests
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap()["manifest_digest"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let amd = registry::pull(&d.address(), &pull_of(&reference)).unwrap();
    assert_eq!(amd.result.digest, want["index_digest"].as_str().unwrap());
    assert_eq!(amd.result.manifest_digest, digest_for("amd64"));
    assert_eq!(amd.result.platform, "linux/amd64");

    let d2 = Berthd::start();
    let arm = registry::pull(
        &d2.address(),
        &Transfer {
            platform: "linux/arm64/v8".into(),
            skip_unpack: true,
            ..pull_of(&reference)
        },
    )
    .unwrap();
    assert_eq!(arm.result.manifest_digest, digest_for("arm64"));
    assert_eq!(arm.result.platform, "linux/arm64/v8");
    // Only the arm64 manifest's blobs came (besides the index).
    let have = content(&d2);
    assert!(!have.contains(&digest_for("amd64")), "{have:?}");

    let bad_sn = registry::pull(
        &d2.address(),
        &Transfer {
            snapshotter: "nosuch".into(),
            ..pull_of(&reference)
        },
    )
    .unwrap_err();
    assert_eq!(bad_sn.0, tonic::Code::InvalidArgument, "{bad_sn:?}");

    let none = registry::pull(
        &d2.address(),
        &Transfer {
            platform: "linux/s390x".into(),
            ..pull_of(&reference)
        },
    )
    .unwrap_err();
    assert_eq!(none.0, tonic::Code::NotFound, "{none:?}");
}

#[test]
#[ignore = "needs root"]
fn push_an_imported_image_and_pull_it_back_by_digest() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let a = Berthd::start();
    let archive = berth_tests::images::dir().join("multilayer/oci-zstd.tar");
    a.ctr_ok(&["images", "import", "--no-unpack", archive.to_str().unwrap()]);
    let name = "docker.io/berthtest/multilayer:oci-zstd";
    let want = entry("multilayer", "oci-zstd");
    let remote = reg.reference("pushed/multilayer:v1");
    let pushed = registry::push(
        &a.address(),
        &Transfer {
            image: name.into(),
            reference: remote.clone(),
            ..Transfer::default()
        },
    )
    .unwrap_or_else(|e| panic!("push: {e:?}\n{}", a.log()));
    assert_eq!(
        pushed.result.digest,
        want["manifest_digest"].as_str().unwrap()
    );

    let b = Berthd::start();
    let by_digest = format!(
        "{}@{}",
        reg.reference("pushed/multilayer"),
        pushed.result.digest
    );
    let back = registry::pull(
        &b.address(),
        &Transfer {
            skip_unpack: true,
            ..pull_of(&by_digest)
        },
    )
    .unwrap_or_else(|e| panic!("pull back: {e:?}\n{}", b.log()));
    assert_eq!(back.result.digest, pushed.result.digest);
    // B holds exactly the image's manifest, config and layers, all as A
    // holds them (A also keeps the archive's own index).
    let (ca, mut cb) = (content(&a), content(&b));
    let mut expect: Vec<String> = vec![
        want["manifest_digest"].as_str().unwrap().to_string(),
        want["config_digest"].as_str().unwrap().to_string(),
    ];
    for l in want["layers"].as_array().unwrap() {
        expect.push(l["digest"].as_str().unwrap().to_string());
    }
    expect.sort();
    expect.dedup();
    cb.sort();
    assert_eq!(cb, expect, "blobs pulled back");
    assert!(
        cb.iter().all(|d| ca.contains(d)),
        "{cb:?} not all in {ca:?}"
    );

    // A second push finds every blob there already.
    let again = registry::push(
        &a.address(),
        &Transfer {
            image: name.into(),
            reference: remote,
            ..Transfer::default()
        },
    )
    .unwrap();
    assert!(
        again
            .blobs
            .iter()
            .filter(|b| b.kind == "layer")
            .all(|b| b.state == 2),
        "{:?}",
        again.blobs
    );
}

#[test]
#[ignore = "needs root"]
fn interrupted_pull_resumes_without_refetching_complete_blobs() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let mut d = Berthd::start();
    let direct = reg.push_test_image("large", "oci-gzip");
    // Through a 20 MB/s proxy: the pull takes seconds, so the kill below
    // lands with a layer half way on any machine.
    let slow = registry::Throttle::start(&reg.host(), 20 << 20);
    let reference = direct.replacen(&reg.host(), &slow.host(), 1);
    let layers: Vec<(String, i64)> = entry("large", "oci-gzip")["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_i64().unwrap(),
            )
        })
        .collect();
    let total: i64 = layers.iter().map(|l| l.1).sum();
    // Follow the pull and SIGKILL berthd once a third of the bytes are in.
    let pid = nix::unistd::Pid::from_raw(d.pid() as i32);
    let mut seen = Vec::new();
    let _ = registry::pull_with(
        &d.address(),
        &Transfer {
            skip_unpack: true,
            ..pull_of(&reference)
        },
        |p| {
            seen = p.blobs.clone();
            if p.bytes_done >= total / 3 {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                return false;
            }
            true
        },
    );
    d.kill9();
    let complete: Vec<String> = seen
        .iter()
        .filter(|b| b.kind == "layer" && b.state == 3)
        .map(|b| b.digest.clone())
        .collect();
    eprintln!("complete at kill: {complete:?}");
    d.restart();
    let out = registry::pull(&d.address(), &pull_of(&reference))
        .unwrap_or_else(|e| panic!("second pull: {e:?}\n{}", d.log()));
    assert_eq!(
        out.result.digest,
        entry("large", "oci-gzip")["manifest_digest"]
            .as_str()
            .unwrap()
    );
    // Complete blobs were not downloaded again.
    for dg in &complete {
        assert_eq!(reg.blob_gets(dg), 1, "{dg} fetched twice");
    }
    // A blob cut half way resumed from where it stopped (HTTP 206).
    let resumed: Vec<_> = out.blobs.iter().filter(|b| b.resumed_from > 0).collect();
    let cut: Vec<_> = seen
        .iter()
        .filter(|b| b.kind == "layer" && b.state == 1 && b.offset > 0)
        .collect();
    // A blob with every byte in but not yet reported committed may have
    // been mid-commit at the kill; only blobs cut short must resume.
    let cut: Vec<_> = cut.into_iter().filter(|b| b.offset < b.total).collect();
    eprintln!("cut at kill: {cut:?}\nresumed: {resumed:?}");
    assert!(
        !cut.is_empty(),
        "no blob was half way at the kill: {seen:?}"
    );
    let mut ranged = false;
    for b in &cut {
        let r = out.blobs.iter().find(|o| o.digest == b.digest).unwrap();
        // Either its commit finished before the kill (present now, fetched
        // once), or it resumed at least where it was.
        if r.state == 2 {
            assert_eq!(reg.blob_gets(&b.digest), 1, "{} fetched again", b.digest);
        } else {
            assert!(
                r.resumed_from >= b.offset,
                "{} resumed from {} though {} bytes were in at the kill",
                b.digest,
                r.resumed_from,
                b.offset
            );
            ranged |= r.resumed_from < r.total;
        }
    }
    if ranged {
        assert!(
            reg.log().contains("\" 206 "),
            "no ranged GET in the registry log"
        );
    }
    for (dg, _) in &layers {
        assert!(
            reg.blob_gets(dg) <= 2,
            "{dg} fetched {} times",
            reg.blob_gets(dg)
        );
    }
    let ingests = files_under(&d.root().join("content/ingest"));
    assert!(ingests.is_empty(), "ingests left: {ingests:?}");
}

#[test]
#[ignore = "needs root"]
fn corrupt_blob_is_refused_and_nothing_committed() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    let layer = entry("busybox", "oci-gzip")["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    // Flip one byte in the middle: same size, different digest.
    let file = reg.blob_file(&layer);
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
    let err = registry::pull(&d.address(), &pull_of(&reference)).unwrap_err();
    assert_eq!(err.0, tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.1.contains(&layer), "{}", err.1);
    assert_eq!(d.ctr_ok(&["images", "ls", "-q"]).trim(), "");
    let have = content(&d);
    assert!(!have.contains(&layer), "{have:?}");
    assert!(!d
        .root()
        .join("content/blobs/sha256")
        .join(&layer[7..])
        .exists());
    // What did verify (the config) was held only by the pull's lease,
    // gone now: collection leaves nothing.
    d.berthctl_ok(&["content", "gc"]);
    assert_nothing_stored(&d);
    let ingests = files_under(&d.root().join("content/ingest"));
    assert!(ingests.is_empty(), "ingests left: {ingests:?}");
}

#[test]
#[ignore = "needs root"]
fn oversized_manifest_is_refused_and_nothing_committed() {
    requires_root(registry::TOOLS);
    let d = Berthd::start();
    let want = entry("busybox", "oci-gzip");
    let layer = &want["layers"][0];
    // docker-registry itself will not serve a manifest over 4 MiB, so a
    // stand-in serves one of 5 MiB.
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":1}},"layers":[{{"mediaType":"{}","digest":"{}","size":{}}}],"annotations":{{"padding":"{}"}}}}"#,
        want["config_digest"].as_str().unwrap(),
        layer["media_type"].as_str().unwrap(),
        layer["digest"].as_str().unwrap(),
        layer["size"],
        "x".repeat(5 << 20)
    );
    let fake = registry::FakeRegistry::serve_manifest(
        "busybox:huge",
        manifest.into_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    let err = registry::pull(&d.address(), &pull_of(&fake.reference("busybox:huge"))).unwrap_err();
    assert_eq!(err.0, tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.1.contains("limit"), "{}", err.1);
    assert_nothing_stored(&d);

    // An index entry announcing a manifest over the limit is refused
    // before anything is fetched.
    let reg = Registry::start();
    reg.push_test_image("busybox", "oci-gzip");
    let index = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
        want["manifest_digest"].as_str().unwrap(),
        5 << 20
    );
    reg.plant_manifest("busybox", "huge-index", index.as_bytes());
    let err =
        registry::pull(&d.address(), &pull_of(&reg.reference("busybox:huge-index"))).unwrap_err();
    assert_eq!(err.0, tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.1.contains("limit"), "{}", err.1);
    assert_nothing_stored(&d);
}

#[test]
#[ignore = "needs root"]
fn concurrent_pulls_share_one_download() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    let reference = reg.push_test_image("large", "oci-zstd");
    let addr = d.address();
    let pulls: Vec<_> = (0..3)
        .map(|_| {
            let (addr, r) = (addr.clone(), reference.clone());
            std::thread::spawn(move || {
                registry::pull(
                    &addr,
                    &Transfer {
                        skip_unpack: true,
                        ..pull_of(&r)
                    },
                )
            })
        })
        .collect();
    let outs: Vec<_> = pulls
        .into_iter()
        .map(|h| h.join().unwrap().expect("pull"))
        .collect();
    let digest = entry("large", "oci-zstd")["manifest_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(outs.iter().all(|o| o.result.digest == digest));
    for l in entry("large", "oci-zstd")["layers"].as_array().unwrap() {
        assert_eq!(
            reg.blob_gets(l["digest"].as_str().unwrap()),
            1,
            "layer fetched more than once"
        );
    }
    eprintln!(
        "joined: {:?}",
        outs.iter().map(|o| o.joined).collect::<Vec<_>>()
    );
}

#[test]
#[ignore = "needs root"]
fn ctr_pulls_from_the_registry_into_berthd() {
    requires_root(registry::TOOLS);
    let reg = Registry::start();
    let d = Berthd::start();
    let reference = reg.push_test_image("multilayer", "oci-gzip");
    d.ctr_ok(&["images", "pull", "--plain-http", &reference]);
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == reference), "{ls}");
    let want = entry("multilayer", "oci-gzip");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    for c in strings(&want["chain_ids"]) {
        assert!(snaps.contains(&c), "chain {c} not in\n{snaps}");
    }
}

#[test]
#[ignore = "needs root"]
fn berthctl_pulls_from_the_registry_and_runs_the_image() {
    requires_root(&[registry::TOOLS, &["runc"]].concat());
    let d = Berthd::start();
    let reg = Registry::start();
    let reference = reg.push_test_image("busybox", "oci-gzip");
    d.berthctl_ok(&["images", "pull", "--plain-http", &reference]);
    let ls = d.ctr_ok(&["images", "ls", "-q"]);
    assert!(ls.lines().any(|l| l == reference), "{ls}");
    let out = d.berthctl_ok(&[
        "containers",
        "run",
        "--rm",
        &reference,
        &format!("registry-run-{}", std::process::id()),
        "/bin/busybox",
        "echo",
        "pulled and ran",
    ]);
    assert!(out.contains("pulled and ran"), "{out}");
}

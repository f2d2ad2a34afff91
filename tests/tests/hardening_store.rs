//! Hardening (issue 19) of what berthd keeps on disk, against a real
//! berthd: blobs gone bad are never handed on (item 6), blob files a crash
//! left without a record are reclaimed (item 5), specs and metadata are
//! readable by root only (item 4), descriptors that lie about sizes and
//! images deeper than overlayfs stacks are refused up front (items 13,
//! 10).

use std::path::{Path, PathBuf};

use berth_tests::images::archive;
use berth_tests::registry::Registry;
use berth_tests::{requires_root, Berthd};

use berth_tests::images::BUSYBOX;

fn blob_path(d: &Berthd, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    d.root().join("content/blobs/sha256").join(hex)
}

/// The largest blob of the store: the image's layer.
fn largest_blob(d: &Berthd) -> PathBuf {
    std::fs::read_dir(d.root().join("content/blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .expect("a blob")
}

/// Flips one bit in the middle of a committed (read-only) blob file.
fn flip_a_bit(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let mut bytes = std::fs::read(path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Appends bytes to a committed blob file (its size no longer matches).
fn grow(path: &Path) {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(b" ").unwrap();
}

fn import_busybox(d: &Berthd) {
    d.berthctl_ok(&[
        "images",
        "import",
        "--no-unpack",
        &archive("busybox", "oci-gzip"),
    ]);
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Item 6: `images export` of an image whose layer (then whose manifest)
/// no longer hashes to its digest fails with a message naming the blob,
/// leaves no file behind and packs nothing; the intact image exports.
#[test]
fn export_refuses_a_corrupted_blob() {
    let d = Berthd::start();
    import_busybox(&d);
    let out_dir = tempfile::tempdir().unwrap();
    let good = out_dir.path().join("good.tar");
    d.berthctl_ok(&["images", "export", good.to_str().unwrap(), BUSYBOX]);
    assert!(std::fs::metadata(&good).unwrap().len() > 0);
    std::fs::remove_file(&good).unwrap();

    let layer = largest_blob(&d);
    flip_a_bit(&layer);
    let bad = out_dir.path().join("bad.tar");
    let err = d.berthctl_fails(&["images", "export", bad.to_str().unwrap(), BUSYBOX]);
    let hex = layer.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains(&hex), "names the blob: {err}");
    assert!(
        dir_names(out_dir.path()).is_empty(),
        "nothing left behind: {:?}",
        dir_names(out_dir.path())
    );

    // A manifest gone bad is refused before anything is parsed from it.
    let d2 = Berthd::start();
    import_busybox(&d2);
    let target = d2.json(&["images", "inspect", BUSYBOX])["target"]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    grow(&blob_path(&d2, &target));
    let err = d2.berthctl_fails(&["images", "export", bad.to_str().unwrap(), BUSYBOX]);
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains(&target), "names the manifest: {err}");
    assert!(dir_names(out_dir.path()).is_empty());
}

/// Item 6: `images push` of an image whose layer no longer hashes to its
/// digest fails with a message naming the blob, and the registry never
/// gets the image (a second daemon cannot pull it).
#[test]
#[ignore = "needs root"]
fn push_refuses_a_corrupted_blob() {
    requires_root(&["docker-registry", "skopeo"]);
    let reg = Registry::start();
    let d = Berthd::start();
    import_busybox(&d);
    let layer = largest_blob(&d);
    flip_a_bit(&layer);
    let copy = reg.reference("corrupt:1");
    d.berthctl_ok(&["images", "tag", BUSYBOX, &copy]);
    let err = d.berthctl_fails(&["images", "push", &copy, "--plain-http"]);
    let hex = layer.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains("corrupt"), "{err}");
    assert!(err.contains(&hex), "names the blob: {err}");
    let d2 = Berthd::start();
    let err = d2.berthctl_fails(&["images", "pull", &copy, "--plain-http"]);
    assert!(err.contains("not found"), "nothing was pushed: {err}");
}

/// Item 5: a blob file without a record (what a kill -9 between a
/// commit's rename and its record leaves) goes at the next start-up, and
/// with the next collection of a running daemon; recorded blobs stay.
#[test]
fn orphan_blobs_are_reclaimed_at_start_and_by_gc() {
    let mut d = Berthd::start();
    import_busybox(&d);
    let blobs_dir = d.root().join("content/blobs/sha256");
    let before = dir_names(&blobs_dir);
    let orphan = |name: &str| {
        // A name that is a digest, bytes that match it.
        use sha2::Digest as _;
        let bytes = format!("orphan {name}").into_bytes();
        let hex = hex::encode(sha2::Sha256::digest(&bytes));
        std::fs::write(blobs_dir.join(&hex), bytes).unwrap();
        hex
    };
    d.kill9();
    let o1 = orphan("one");
    d.restart();
    assert_eq!(
        dir_names(&blobs_dir),
        before,
        "orphan {o1} removed at start"
    );

    let o2 = orphan("two");
    // Removing a lease with --sync runs a collection and waits for it.
    d.berthctl_ok(&["leases", "create", "--id", "l1"]);
    d.berthctl_ok(&["leases", "rm", "--sync", "l1"]);
    assert_eq!(dir_names(&blobs_dir), before, "orphan {o2} removed by gc");
    // The image is intact.
    let tar = d.dir().join("after.tar");
    d.berthctl_ok(&["images", "export", tar.to_str().unwrap(), BUSYBOX]);
}

/// Item 4: the metadata database (container specs with their env) is a
/// 0700 directory, also when an older berthd left it open.
#[test]
fn metadata_db_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let mut d = Berthd::start();
    let db = d.root().join("metadata.db");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&db), 0o700);
    d.kill9();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o755)).unwrap();
    d.restart();
    assert_eq!(mode(&db), 0o700);
}

/// Item 4: a running container's bundle is 0700 and nothing in it is
/// readable by others (config.json with its env, runtime.json, the shim's
/// files); only `rootfs` may be traversed.
#[test]
#[ignore = "needs root"]
fn bundle_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    requires_root(&["runc"]);
    let d = Berthd::start();
    d.berthctl_ok(&["images", "import", &archive("busybox", "oci-gzip")]);
    let id = format!("secret-{}", std::process::id());
    d.berthctl_ok(&[
        "containers",
        "run",
        "-d",
        "--null-io",
        "-e",
        "TOKEN=s3cret",
        BUSYBOX,
        &id,
        "sleep",
        "60",
    ]);
    let bundle = d.state().join("default").join(&id);
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&bundle), 0o700);
    let config = std::fs::read_to_string(bundle.join("config.json")).unwrap();
    assert!(config.contains("TOKEN=s3cret"));
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&bundle).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == "rootfs" || e.file_type().unwrap().is_symlink() {
            continue;
        }
        let m = mode(&e.path());
        assert_eq!(m & 0o077, 0, "{name} is {m:o}");
        seen.push(name);
    }
    for f in ["config.json", "runtime.json"] {
        assert!(seen.iter().any(|s| s == f), "{f} in {seen:?}");
    }
    d.berthctl_ok(&["tasks", "rm", "--force", &id]);
}

/// Item 13: the leases of imports a crash interrupted are gone after a
/// restart; a pull's stays (a retried pull resumes from what it holds, and
/// it expires by itself), as does a client's own.
#[test]
fn interrupted_import_leases_go_at_start() {
    let mut d = Berthd::start();
    for id in ["berth-import-0123abcd", "berth-pull-4567ef", "mine"] {
        d.berthctl_ok(&["leases", "create", "--id", id, "--expires", "24h"]);
    }
    d.kill9();
    d.restart();
    let ls = d.berthctl_ok(&["leases", "ls", "-q"]);
    let mut ids: Vec<&str> = ls.lines().collect();
    ids.sort();
    assert_eq!(ids, vec!["berth-pull-4567ef", "mine"], "{ls}");
}

/// Item 13: importing a file that is no archive names the problem, never
/// the file's contents.
#[test]
fn importing_a_text_file_does_not_echo_it() {
    let d = Berthd::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("passwd");
    std::fs::write(
        &secret,
        "root:x:0:0:SECRET-GECOS:/root:/bin/sh\ndaemon:x:1:1::/:/bin/false\n",
    )
    .unwrap();
    let err = d.berthctl_fails(&["images", "import", secret.to_str().unwrap()]);
    assert!(!err.contains("SECRET-GECOS"), "{err}");
    assert!(!err.contains("root:x:0"), "{err}");
    let log = d.log();
    assert!(!log.contains("SECRET-GECOS"), "daemon log echoes it: {log}");
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

/// Writes an OCI layout tar of one image `name` with `layers` copies of
/// an empty layer; `index_size` replaces the size index.json gives the
/// manifest. Returns the tar's path (under `dir`).
fn oci_archive(dir: &Path, name: &str, layers: usize, index_size: Option<u64>) -> String {
    let root = dir.join("layout");
    let blobs = root.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| -> String {
        let hex = sha256_hex(bytes);
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let layer = put(&[0u8; 1024]); // an empty tar
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": vec![layer.clone(); layers]},
    })
    .to_string();
    let config_digest = put(config.as_bytes());
    let layer_desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer, "size": 1024,
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": vec![layer_desc; layers],
    })
    .to_string();
    let manifest_digest = put(manifest.as_bytes());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": index_size.unwrap_or(manifest.len() as u64),
            "annotations": {"io.containerd.image.name": name},
        }],
    })
    .to_string();
    std::fs::write(root.join("index.json"), index).unwrap();
    std::fs::write(root.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let out = dir.join("image.tar");
    let st = std::process::Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&out)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    out.to_string_lossy().into_owned()
}

/// Item 13: an index that gives its manifest a size of 2^62 bytes is
/// refused (InvalidArgument, both sizes named), and no image is recorded;
/// the same archive with the true size imports.
#[test]
fn import_refuses_a_descriptor_size_that_lies() {
    let d = Berthd::start();
    let dir = tempfile::tempdir().unwrap();
    let name = "docker.io/test/liar:1";
    let tar = oci_archive(dir.path(), name, 1, Some(1 << 62));
    let err = d.berthctl_fails(&["images", "import", "--no-unpack", &tar]);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(err.contains(&(1u64 << 62).to_string()), "{err}");
    assert!(err.len() < 1024, "{err}");
    assert_eq!(d.berthctl_ok(&["images", "ls", "-q"]).trim(), "");

    let dir = tempfile::tempdir().unwrap();
    let tar = oci_archive(dir.path(), name, 1, None);
    d.berthctl_ok(&["images", "import", "--no-unpack", &tar]);
    assert_eq!(d.berthctl_ok(&["images", "ls", "-q"]).trim(), name);
}

/// Item 10: an image of more layers than overlayfs stacks (500) is
/// refused up front, InvalidArgument, on import and on pull: no
/// snapshot is made and the registry is asked for no blob.
#[test]
fn images_over_500_layers_are_refused_up_front() {
    let d = Berthd::start();
    let dir = tempfile::tempdir().unwrap();
    let tar = oci_archive(dir.path(), "docker.io/test/deep:501", 501, None);
    let started = std::time::Instant::now();
    let err = d.berthctl_fails(&["images", "import", &tar]);
    assert!(err.contains("InvalidArgument"), "{err}");
    assert!(
        err.contains("501 layers") && err.contains("at most 500"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_eq!(d.berthctl_ok(&["images", "ls", "-q"]).trim(), "");
    assert_eq!(d.berthctl_ok(&["snapshots", "ls", "-q"]).trim(), "");

    let layer = format!("sha256:{}", sha256_hex(&[0u8; 1024]));
    let layer_desc = serde_json::json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": layer, "size": 1024,
    });
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(b"{}")), "size": 2},
        "layers": vec![layer_desc; 501],
    })
    .to_string();
    let fake = berth_tests::registry::FakeRegistry::serve_manifest(
        "deep:501",
        manifest.into_bytes(),
        "application/vnd.oci.image.manifest.v1+json",
    );
    let pull = berth_tests::registry::pull_of(&fake.reference("deep:501"));
    let err = berth_tests::registry::pull(&d.address(), &pull).unwrap_err();
    assert_eq!(err.0, tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.1.contains("at most 500"), "{}", err.1);
    let asked = fake.requests();
    assert!(
        !asked.iter().any(|r| r.contains("/blobs/")),
        "no blob fetched: {asked:?}"
    );
    assert_eq!(d.berthctl_ok(&["snapshots", "ls", "-q"]).trim(), "");
}

//! Issue 3: snapshots, images, diff and garbage collection through Debian's
//! ctr, against a real berthd. Test images come from
//! scripts/build-test-images, built once into the target dir.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_snapshotter::Mount;
use berth_tests::{require_root, require_tool, Berthd};
use serde_json::Value;

/// Builds (once) and returns the test image directory.
fn images() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("berth-test-images");
        if !dir.join("multiplatform").exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images");
            let st = std::process::Command::new("python3")
                .arg(script)
                .arg(&dir)
                .args([
                    "--only",
                    "busybox,multilayer,many-layers,multiplatform,hostile",
                ])
                .status()
                .expect("run build-test-images");
            assert!(st.success(), "build-test-images failed");
        }
        dir
    })
}

fn catalog() -> Value {
    serde_json::from_slice(&std::fs::read(images().join("images.json")).unwrap()).unwrap()
}

fn archive(image: &str, variant: &str) -> String {
    images()
        .join(image)
        .join(format!("{variant}.tar"))
        .to_string_lossy()
        .into_owned()
}

fn chain_ids(image: &str, variant: &str) -> Vec<String> {
    catalog()["images"][image][variant]["chain_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn lines_with(out: &str, word: &str) -> usize {
    out.lines()
        .filter(|l| l.split_whitespace().any(|w| w == word))
        .count()
}

/// Runs a synchronous collection (deleting a fresh lease with `--sync`).
fn gc(d: &Berthd) {
    d.ctr_ok(&["leases", "create", "--id", "gc-trigger"]);
    d.ctr_ok(&["leases", "rm", "--sync", "gc-trigger"]);
}

fn dir_entries(p: &Path) -> Vec<String> {
    match std::fs::read_dir(p) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

fn blobs(d: &Berthd) -> Vec<String> {
    dir_entries(&d.root().join("content/blobs/sha256"))
}

fn snapshot_dirs(d: &Berthd, sn: &str) -> Vec<String> {
    dir_entries(
        &d.root()
            .join(format!("io.containerd.snapshotter.v1.{sn}/snapshots")),
    )
}

/// Parses `ctr snapshots mounts` output (`mount -t T SRC TARGET -o OPTS`).
fn parse_mounts(out: &str) -> Vec<Mount> {
    out.lines()
        .filter(|l| l.starts_with("mount "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let opts = w
                .iter()
                .position(|x| *x == "-o")
                .map(|i| w[i + 1])
                .unwrap_or("");
            Mount {
                kind: w[2].to_string(),
                source: w[3].to_string(),
                target: String::new(),
                options: opts.split(',').map(str::to_string).collect(),
            }
        })
        .collect()
}

/// A mounted rootfs, unmounted on drop.
struct Mounted(tempfile::TempDir);

impl Mounted {
    fn new(d: &Berthd, sn: &str, key: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-rootfs-")
            .tempdir()
            .unwrap();
        let out = d.ctr_ok(&["snapshots", "--snapshotter", sn, "mounts", "/x", key]);
        let m = parse_mounts(&out);
        assert!(!m.is_empty(), "{out}");
        berth_snapshotter::mount_all(&m, dir.path()).expect("mount rootfs");
        Mounted(dir)
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = berth_snapshotter::unmount(self.0.path());
        berth_tests::unmount_under(self.0.path());
    }
}

fn chroot(root: &Path, script: &str) -> String {
    let out = std::process::Command::new("chroot")
        .arg(root)
        .args(["/bin/busybox", "sh", "-c", script])
        .output()
        .expect("chroot");
    assert!(
        out.status.success(),
        "chroot {script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn check_expectations(root: &Path) {
    let exp: Value = serde_json::from_slice(
        &std::fs::read(images().join("multilayer/expectations.json")).unwrap(),
    )
    .unwrap();
    for p in exp["absent"].as_array().unwrap() {
        let p = p.as_str().unwrap();
        let path = root.join(p.trim_start_matches('/'));
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "{p} should be absent"
        );
    }
    for (p, want) in exp["present"].as_object().unwrap() {
        let path = root.join(p.trim_start_matches('/'));
        let md = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{p}: {e}"));
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_symlink() {
            "symlink"
        } else if ft.is_dir() {
            "dir"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "file"
        };
        assert_eq!(kind, want["type"].as_str().unwrap(), "{p}");
        if let Some(m) = want.get("mode").and_then(Value::as_str) {
            assert_eq!(
                format!("{:04o}", md.permissions().mode() & 0o7777),
                m,
                "{p} mode"
            );
        }
        if let Some(u) = want.get("uid").and_then(Value::as_u64) {
            assert_eq!(u64::from(md.uid()), u, "{p} uid");
        }
        if let Some(g) = want.get("gid").and_then(Value::as_u64) {
            assert_eq!(u64::from(md.gid()), g, "{p} gid");
        }
        if let Some(t) = want.get("target").and_then(Value::as_str) {
            assert_eq!(
                std::fs::read_link(&path).unwrap().to_string_lossy(),
                t,
                "{p}"
            );
        }
        if let Some(c) = want.get("content").and_then(Value::as_str) {
            assert_eq!(std::fs::read_to_string(&path).unwrap(), c, "{p}");
        }
    }
    for (p, want) in exp["dir_listing"].as_object().unwrap() {
        let mut got = dir_entries(&root.join(p.trim_start_matches('/')));
        got.sort();
        let want: Vec<String> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(got, want, "{p}");
    }
    for pair in exp["same_inode"].as_array().into_iter().flatten() {
        let a = pair[0].as_str().unwrap().trim_start_matches('/');
        let b = pair[1].as_str().unwrap().trim_start_matches('/');
        let (ma, mb) = (
            root.join(a).metadata().unwrap(),
            root.join(b).metadata().unwrap(),
        );
        assert_eq!(
            (ma.dev(), ma.ino()),
            (mb.dev(), mb.ino()),
            "{a} and {b} hard linked"
        );
    }
}

#[test]
fn ctr_snapshots_prepare_mounts_commit_rm() {
    if !require_tool("ctr_snapshots", "ctr") || !require_root("ctr_snapshots") {
        return;
    }
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
fn ctr_import_oci_and_docker_then_rm_and_gc_leave_nothing() {
    if !require_tool("ctr_import", "ctr") || !require_root("ctr_import") {
        return;
    }
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
fn multilayer_rootfs_is_right_and_runs_busybox_on_overlayfs_and_native() {
    if !require_tool("multilayer_rootfs", "ctr") || !require_root("multilayer_rootfs") {
        return;
    }
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
fn many_layers_image_mounts_and_reads() {
    if !require_tool("many_layers", "ctr") || !require_root("many_layers") {
        return;
    }
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

/// Everything under a snapshotter root except the snapshots' own trees and
/// the metadata database: path → file bytes / link target / "dir".
fn canary_state(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            let in_snapshots = dir.file_name().is_some_and(|n| n == "snapshots");
            // Snapshot trees, and the snapshotter's transient build/removal dirs.
            let snapshot_dir = in_snapshots
                && (name.chars().all(|c| c.is_ascii_digit())
                    || name.starts_with("new-")
                    || name.starts_with("rm-"));
            if name == "metadata.db" || snapshot_dir {
                continue;
            }
            let md = std::fs::symlink_metadata(&p).unwrap();
            let v = if md.is_symlink() {
                std::fs::read_link(&p)
                    .unwrap()
                    .to_string_lossy()
                    .as_bytes()
                    .to_vec()
            } else if md.is_dir() {
                stack.push(p.clone());
                b"dir".to_vec()
            } else {
                std::fs::read(&p).unwrap_or_default()
            };
            out.insert(p, v);
        }
    }
    out
}

fn host_state() -> Vec<(String, Option<Vec<u8>>)> {
    ["/escape", "/tmp/x", "/tmp/y", "/outside", "/etc/passwd"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(p).ok()))
        .collect()
}

#[test]
fn hostile_layers_are_refused_or_confined() {
    if !require_tool("hostile", "ctr") || !require_root("hostile") {
        return;
    }
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
fn gc_loop_during_ten_concurrent_imports_keeps_every_image_whole() {
    if !require_tool("gc_concurrent", "ctr") || !require_root("gc_concurrent") {
        return;
    }
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

mod transfer {
    //! berth.images.v1.Transfer: server-side import and export.

    use super::*;
    use berth_api::berth_images::v1 as pb;
    use pb::transfer_client::TransferClient;
    use tonic::transport::{Channel, Endpoint};
    use tonic::Request;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    async fn client(sock: &Path) -> TransferClient<Channel> {
        let sock = sock.to_path_buf();
        let ch = Endpoint::try_from("http://[::]:0")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await
            .expect("connect");
        TransferClient::new(ch)
            .max_decoding_message_size(16 << 20)
            .max_encoding_message_size(16 << 20)
    }

    fn ns<T>(msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut()
            .insert("containerd-namespace", "default".parse().unwrap());
        r
    }

    /// Streams `file` to Import; returns (progress messages, result).
    fn import(
        d: &Berthd,
        file: &str,
        opts: pb::ImportOptions,
    ) -> (Vec<pb::ImportProgress>, Result<Vec<String>, tonic::Status>) {
        rt().block_on(async {
            let mut c = client(&d.address()).await;
            let data = std::fs::read(file).unwrap();
            let mut msgs = vec![pb::ImportRequest {
                msg: Some(pb::import_request::Msg::Options(opts)),
            }];
            msgs.extend(data.chunks(1 << 20).map(|c| pb::ImportRequest {
                msg: Some(pb::import_request::Msg::Chunk(c.to_vec())),
            }));
            let mut seen = Vec::new();
            let mut stream = match c.import(ns(tokio_stream::iter(msgs))).await {
                Ok(s) => s.into_inner(),
                Err(e) => return (seen, Err(e)),
            };
            loop {
                match stream.message().await {
                    Ok(Some(p)) => {
                        let last = !p.images.is_empty();
                        seen.push(p.clone());
                        if last {
                            return (seen, Ok(p.images));
                        }
                    }
                    Ok(None) => {
                        return (
                            seen,
                            Err(tonic::Status::unknown("stream ended without result")),
                        )
                    }
                    Err(e) => return (seen, Err(e)),
                }
            }
        })
    }

    /// [`import`] with default options, for the perf run.
    pub(super) fn import_pub(
        d: &Berthd,
        file: &str,
    ) -> (Vec<pb::ImportProgress>, Result<Vec<String>, tonic::Status>) {
        import(d, file, pb::ImportOptions::default())
    }

    #[test]
    fn server_side_import_unpacks_and_export_round_trips() {
        if !require_tool("transfer", "ctr") || !require_root("transfer") {
            return;
        }
        let d = Berthd::start();
        let (progress, res) = import(
            &d,
            &archive("multilayer", "oci-zstd"),
            pb::ImportOptions::default(),
        );
        let names = res.expect("import");
        assert_eq!(
            names,
            vec!["docker.io/berthtest/multilayer:oci-zstd".to_string()]
        );
        assert!(
            progress.iter().any(|p| p.blob.is_some()),
            "per-blob progress"
        );
        assert!(
            progress.iter().any(|p| p.state.starts_with("unpacking")),
            "unpack state"
        );
        let size = std::fs::metadata(archive("multilayer", "oci-zstd"))
            .unwrap()
            .len() as i64;
        assert_eq!(progress.last().unwrap().received, size);
        // ctr sees the image as imported and unpacked: the chain is committed
        // and the config blob points at it.
        let chain = chain_ids("multilayer", "oci-zstd");
        let snaps = d.ctr_ok(&["snapshots", "ls"]);
        for c in &chain {
            assert!(snaps.contains(c.as_str()), "{c}: {snaps}");
        }
        let content = d.ctr_ok(&["content", "ls"]);
        assert!(
            content.contains(&format!(
                "containerd.io/gc.ref.snapshot.overlayfs={}",
                chain.last().unwrap()
            )),
            "{content}"
        );
        assert!(content.contains("containerd.io/uncompressed="), "{content}");
        d.ctr_ok(&["snapshots", "prepare", "root", chain.last().unwrap()]);
        let m = Mounted::new(&d, "overlayfs", "root");
        check_expectations(m.path());
        drop(m);
        d.ctr_ok(&["snapshots", "rm", "root"]);

        // Docker archive into the native snapshotter.
        let opts = pb::ImportOptions {
            snapshotter: "native".into(),
            ..Default::default()
        };
        let (_, res) = import(&d, &archive("multilayer", "docker-gzip"), opts);
        assert_eq!(
            res.expect("docker import"),
            vec!["docker.io/berthtest/multilayer:docker-gzip".to_string()]
        );
        let snaps = d.ctr_ok(&["snapshots", "--snapshotter", "native", "ls"]);
        assert!(snaps.contains(chain.last().unwrap().as_str()), "{snaps}");

        // Export the OCI image, import the tar with ctr into a fresh daemon.
        let tar = d.dir().join("export.tar");
        rt().block_on(async {
            let mut c = client(&d.address()).await;
            let req = pb::ExportRequest {
                names: vec!["docker.io/berthtest/multilayer:oci-zstd".into()],
                ..Default::default()
            };
            let mut s = c.export(ns(req)).await.expect("export").into_inner();
            let mut out = Vec::new();
            while let Some(chunk) = s.message().await.expect("export stream") {
                out.extend_from_slice(&chunk.data);
            }
            std::fs::write(&tar, out).unwrap();
        });
        let d2 = Berthd::start();
        d2.ctr_ok(&["images", "import", &tar.to_string_lossy()]);
        let ls = d2.ctr_ok(&["images", "ls", "-q"]);
        assert!(
            ls.contains("docker.io/berthtest/multilayer:oci-zstd"),
            "{ls}"
        );
        assert!(d2
            .ctr_ok(&["snapshots", "ls"])
            .contains(chain.last().unwrap().as_str()));

        // Removing the images and collecting leaves nothing.
        d.ctr_ok(&[
            "images",
            "rm",
            "--sync",
            "docker.io/berthtest/multilayer:oci-zstd",
            "docker.io/berthtest/multilayer:docker-gzip",
        ]);
        assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));
        assert!(snapshot_dirs(&d, "overlayfs").is_empty());
        assert!(snapshot_dirs(&d, "native").is_empty());
    }

    #[test]
    fn server_side_import_picks_platforms() {
        if !require_tool("transfer_platforms", "ctr") || !require_root("transfer_platforms") {
            return;
        }
        let file = archive("multiplatform", "oci-gzip");
        // Default: the host platform (amd64) only, unpacked.
        let d = Berthd::start();
        let (_, res) = import(&d, &file, pb::ImportOptions::default());
        let names = res.expect("import");
        assert_eq!(names.len(), 1, "{names:?}");
        let ls = d.ctr_ok(&["images", "ls"]);
        assert!(ls.contains("linux/amd64"), "{ls}");
        assert_eq!(
            d.ctr_ok(&["snapshots", "ls"]).lines().count(),
            3,
            "two amd64 layers"
        );
        // An explicit platform: arm64 content is kept and unpacked instead.
        let d2 = Berthd::start();
        let opts = pb::ImportOptions {
            platform: "linux/arm64/v8".into(),
            ..Default::default()
        };
        import(&d2, &file, opts).1.expect("arm64 import");
        let snaps = d2.ctr_ok(&["snapshots", "ls"]);
        assert!(snaps.lines().count() >= 2, "{snaps}");
        // All platforms: everything stored, the host one unpacked; GC keeps it.
        let d3 = Berthd::start();
        let opts = pb::ImportOptions {
            all_platforms: true,
            ..Default::default()
        };
        import(&d3, &file, opts).1.expect("all platforms");
        let before = blobs(&d3).len();
        gc(&d3);
        assert_eq!(blobs(&d3).len(), before, "gc keeps every platform's blobs");
        assert!(
            before > blobs(&d).len(),
            "all platforms stores more than one"
        );
        let bad = pb::ImportOptions {
            platform: "linux/s390x".into(),
            ..Default::default()
        };
        assert_eq!(
            import(&d3, &file, bad).1.unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn server_side_import_refuses_bad_layers_and_leaves_nothing() {
        if !require_tool("transfer_bad", "ctr") || !require_root("transfer_bad") {
            return;
        }
        let d = Berthd::start();
        for case in [
            "digest-mismatch",
            "truncated-gzip",
            "truncated-zstd",
            "unknown-media-type",
            "diffid-mismatch",
            "dotdot",
            "hardlink-dotdot",
            "whiteout-escape",
        ] {
            let file = images().join(format!("hostile/{case}.tar"));
            let (_, res) = import(&d, &file.to_string_lossy(), pb::ImportOptions::default());
            let err = res.expect_err(case);
            assert!(
                matches!(
                    err.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::FailedPrecondition
                        | tonic::Code::NotFound
                ),
                "{case}: {err:?}"
            );
            assert!(
                d.ctr_ok(&["images", "ls", "-q"]).trim().is_empty(),
                "{case}: image left"
            );
            gc(&d);
            assert_eq!(d.ctr_ok(&["snapshots", "ls"]).lines().count(), 1, "{case}");
            assert!(blobs(&d).is_empty(), "{case}: {:?}", blobs(&d));
            assert!(snapshot_dirs(&d, "overlayfs").is_empty(), "{case}");
        }
        // A garbage stream is InvalidArgument too.
        let junk = d.dir().join("junk.tar");
        std::fs::write(&junk, vec![7u8; 10_000]).unwrap();
        let (_, res) = import(&d, &junk.to_string_lossy(), pb::ImportOptions::default());
        assert_eq!(res.unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}

/// Throughput of a server-side import of `BERTH_PERF_ARCHIVE` (not a test:
/// `cargo test -p berth-tests --test images -- --ignored perf --nocapture`).
#[test]
#[ignore]
fn perf_transfer_import() {
    let Some(file) = std::env::var_os("BERTH_PERF_ARCHIVE") else {
        eprintln!("set BERTH_PERF_ARCHIVE");
        return;
    };
    let file = file.to_string_lossy().into_owned();
    let size = std::fs::metadata(&file).unwrap().len() as f64;
    let d = Berthd::start();
    let t = std::time::Instant::now();
    let (_, res) = transfer::import_pub(&d, &file);
    res.expect("import");
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "transfer import: {:.1} MB in {s:.2}s = {:.1} MB/s (archive bytes)",
        size / 1e6,
        size / 1e6 / s
    );
    for l in d.log().lines().filter(|l| l.contains("import:")) {
        eprintln!("{l}");
    }
    let t = std::time::Instant::now();
    let d2 = Berthd::start();
    d2.ctr_ok(&["images", "import", &file]);
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "ctr import into berthd: {s:.2}s = {:.1} MB/s",
        size / 1e6 / s
    );
}

#[test]
fn ctr_snapshots_diff_makes_a_layer_with_whiteouts() {
    if !require_tool("diff", "ctr") || !require_root("diff") {
        return;
    }
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

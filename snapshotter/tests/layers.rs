//! Layer apply on real snapshots: a 3-layer chain with deletions, opaque
//! dirs, hard links, symlinks, special modes, devices and xattrs; a
//! 120-layer chain; both snapshotters.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use berth_snapshotter::{Backend, Snapshotter};
use common::{need_root, unpack, Layer, MountGuard, MTIME};

const NS: &str = "default";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

pub fn three_layers() -> Vec<Vec<u8>> {
    let mut l1 = Layer::new();
    l1.dir("bin/", 0o755)
        .dir("etc/", 0o755)
        .file("etc/hosts", b"old hosts")
        .dir("data/", 0o755)
        .file("data/keep", b"keep")
        .dir("opq/", 0o755)
        .file("opq/a", b"a")
        .file("opq/b", b"b")
        .dir("del/", 0o755)
        .file("del/x", b"x")
        .file_mode("suid", 0o4755, 1000, b"s")
        .file_mode("sgid", 0o2755, 0, b"g")
        .dir("sticky/", 0o1777)
        .fifo("fifo")
        .chardev("null", 1, 3)
        .file_xattr("xa", "user.foo", b"bar", b"x");
    if let Ok(bb) = fs::read("/bin/busybox") {
        l1.file_mode("bin/busybox", 0o755, 0, &bb);
    }
    let mut l2 = Layer::new();
    l2.whiteout(".wh.del")
        .file("data/new", b"new")
        .hardlink("data/hl", "data/new")
        .symlink("lnk", "etc/hosts")
        .hardlink("data/hl2", "etc/hosts");
    let mut l3 = Layer::new();
    l3.dir("opq/", 0o755)
        .whiteout("opq/.wh..wh..opq")
        .file("opq/c", b"c")
        .file("etc/hosts", b"new hosts");
    vec![l1.finish(), l2.finish(), l3.finish()]
}

fn getxattr(p: &Path, name: &str) -> Option<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import os,sys; print(os.getxattr(sys.argv[1], sys.argv[2], follow_symlinks=False).decode())")
        .arg(p)
        .arg(name)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn check_three_layers(root: &Path) {
    assert!(
        !root.join("del").exists(),
        "deleted dir from layer 1 is gone"
    );
    assert_eq!(fs::read(root.join("data/keep")).unwrap(), b"keep");
    let new = fs::metadata(root.join("data/new")).unwrap();
    let hl = fs::metadata(root.join("data/hl")).unwrap();
    assert_eq!(new.ino(), hl.ino(), "hard link within a layer");
    assert_eq!(hl.nlink(), 2);
    assert_eq!(
        fs::read(root.join("data/hl2")).unwrap(),
        b"old hosts",
        "link to a lower file"
    );
    assert_eq!(fs::read(root.join("etc/hosts")).unwrap(), b"new hosts");
    assert_eq!(
        fs::read_link(root.join("lnk")).unwrap(),
        Path::new("etc/hosts")
    );
    let mut opq: Vec<_> = fs::read_dir(root.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    opq.sort();
    assert_eq!(opq, vec!["c"], "opaque dir hides layer 1's children");
    let suid = fs::metadata(root.join("suid")).unwrap();
    assert_eq!(suid.mode() & 0o7777, 0o4755);
    assert_eq!((suid.uid(), suid.gid()), (1000, 1000));
    assert_eq!(
        fs::metadata(root.join("sgid")).unwrap().mode() & 0o7777,
        0o2755
    );
    let sticky = fs::metadata(root.join("sticky")).unwrap();
    assert!(sticky.is_dir());
    assert_eq!(sticky.mode() & 0o7777, 0o1777);
    assert!(fs::symlink_metadata(root.join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let null = fs::symlink_metadata(root.join("null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(
        fs::metadata(root.join("bin")).unwrap().mtime(),
        MTIME as i64,
        "dir mtime kept"
    );
    assert_eq!(
        fs::metadata(root.join("etc/hosts")).unwrap().mtime(),
        MTIME as i64
    );
    match getxattr(&root.join("xa"), "user.foo") {
        Some(v) => assert_eq!(v, "bar"),
        None => eprintln!("WARNING: could not read xattrs (python3 missing?); xattr check skipped"),
    }
    if root.join("bin/busybox").exists() {
        let out = Command::new("chroot")
            .arg(root)
            .args([
                "/bin/busybox",
                "sh",
                "-c",
                "/bin/busybox cat /etc/hosts; /bin/busybox ls /opq; /bin/busybox cat /data/hl2",
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "new hostsc\nold hosts"
        );
    } else {
        eprintln!("WARNING: /bin/busybox missing; chroot check skipped");
    }
}

fn three_layer_chain(backend: Backend) {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&dir.path().join("root"), backend).unwrap();
    let top = unpack(&s, "img", &three_layers(), TAR);
    let m = s.prepare(NS, "rootfs", Some(&top), HashMap::new()).unwrap();
    {
        let g = MountGuard::new(&m, &dir.path().join("mnt"));
        check_three_layers(&g.path);
        fs::write(g.path.join("written"), b"rw").unwrap();
    }
    // a read-only view of the same chain shows the same tree
    let v = s.view(NS, "view", Some(&top), HashMap::new()).unwrap();
    let g = MountGuard::new(&v, &dir.path().join("view"));
    check_three_layers(&g.path);
    assert!(
        fs::write(g.path.join("nope"), b"x").is_err(),
        "view is read-only"
    );
}

#[test]
fn three_layer_chain_overlay() {
    three_layer_chain(Backend::Overlay);
}

#[test]
fn three_layer_chain_native() {
    three_layer_chain(Backend::Native);
}

fn long_chain(backend: Backend) {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir
        .path()
        .join("a-rather-long-snapshotter-root-directory-name-to-stress-options");
    let s = Snapshotter::open(&root, backend).unwrap();
    let layers: Vec<Vec<u8>> = (0..120)
        .map(|i| {
            let mut l = Layer::new();
            if i == 0 {
                l.dir("layers/", 0o755);
            }
            l.file(&format!("layers/{i}"), i.to_string().as_bytes());
            if i == 119 {
                l.whiteout("layers/.wh.0");
            }
            l.finish()
        })
        .collect();
    let top = unpack(&s, "long", &layers, TAR);
    let m = s.prepare(NS, "rootfs", Some(&top), HashMap::new()).unwrap();
    if backend == Backend::Overlay {
        assert!(
            m[0].options.join(",").len() > 4096,
            "exercises the long-options path"
        );
    }
    let v = s.view(NS, "view", Some(&top), HashMap::new()).unwrap();
    for (name, mounts) in [("mnt", m), ("view", v)] {
        let g = MountGuard::new(&mounts, &dir.path().join(name));
        assert!(!g.path.join("layers/0").exists());
        for i in 1..120 {
            assert_eq!(
                fs::read_to_string(g.path.join(format!("layers/{i}"))).unwrap(),
                i.to_string()
            );
        }
    }
}

#[test]
fn chain_of_120_layers_overlay() {
    long_chain(Backend::Overlay);
}

#[test]
fn chain_of_120_layers_native() {
    long_chain(Backend::Native);
}

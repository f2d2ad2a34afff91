//! Hostile layers: each is refused (InvalidArgument naming the entry) or
//! confined, and a canary directory outside the snapshot root is
//! byte-for-byte unchanged. Also malformed streams and media types.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use berth_snapshotter::{apply_layer, Backend, ErrorKind, Snapshotter};
use common::{gzip, need_root, snapshot_tree, zstd, Layer};

const NS: &str = "default";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

enum Expect {
    /// refused; the message names this entry
    Refused(&'static str),
    /// applied, confined inside the snapshot
    Confined,
}

fn hostile_layers(canary: &Path) -> Vec<(&'static str, Vec<u8>, Expect)> {
    let c = canary.to_str().unwrap();
    let cp = format!("{c}/passwd");
    let mut v = Vec::new();
    let mut add = |name, f: &dyn Fn(&mut Layer), e| {
        let mut l = Layer::new();
        f(&mut l);
        v.push((name, l.finish(), e));
    };
    add(
        "dotdot",
        &|l| {
            l.file("../x", b"pwned");
        },
        Expect::Refused("../x"),
    );
    add(
        "dotdot-deep",
        &|l| {
            l.file("a/../../../../x", b"pwned");
        },
        Expect::Refused("a/../../../../x"),
    );
    add(
        "absolute",
        &|l| {
            l.file(&format!("{c}/abs"), b"pwned");
        },
        Expect::Refused("/abs"),
    );
    add(
        "symlink-then-write-under",
        &|l| {
            l.symlink("evil", c).file("evil/pwned", b"pwned");
        },
        Expect::Refused("evil/pwned"),
    );
    add(
        "symlink-then-dir-under",
        &|l| {
            l.symlink("evil", c).dir("evil/sub/", 0o755);
        },
        Expect::Refused("evil/sub/"),
    );
    add(
        "symlink-then-overwrite",
        &|l| {
            l.symlink("evil2", &cp).file("evil2", b"pwned");
        },
        Expect::Confined,
    );
    add(
        "symlink-then-dir-over",
        &|l| {
            l.symlink("evil3", c).dir("evil3/", 0o700);
        },
        Expect::Confined,
    );
    add(
        "hardlink-out-dotdot",
        &|l| {
            l.hardlink("hl", "../../../../../../canary/passwd");
        },
        Expect::Refused("hl"),
    );
    add(
        "hardlink-out-absolute",
        &|l| {
            l.hardlink("hl", &cp);
        },
        Expect::Refused("hl"),
    );
    add(
        "hardlink-through-symlink",
        &|l| {
            l.symlink("sd", c).hardlink("hl", "sd/passwd");
        },
        Expect::Refused("hl"),
    );
    add(
        "hardlink-through-lower-symlink",
        &|l| {
            l.hardlink("hl", "lower_evil/passwd");
        },
        Expect::Refused("hl"),
    );
    add(
        "under-lower-symlink",
        &|l| {
            l.file("lower_evil/pwned", b"pwned");
        },
        Expect::Refused("lower_evil/pwned"),
    );
    add(
        "whiteout-dot",
        &|l| {
            l.whiteout(".wh..");
        },
        Expect::Refused(".wh.."),
    );
    add(
        "whiteout-dotdot",
        &|l| {
            l.whiteout(".wh...");
        },
        Expect::Refused(".wh..."),
    );
    add(
        "whiteout-parent-dotdot",
        &|l| {
            l.whiteout("../.wh.passwd");
        },
        Expect::Refused("../.wh.passwd"),
    );
    add(
        "whiteout-through-symlink",
        &|l| {
            l.symlink("ws", c).whiteout("ws/.wh.passwd");
        },
        Expect::Refused("ws/.wh.passwd"),
    );
    add(
        "opaque-through-symlink",
        &|l| {
            l.symlink("os", c).whiteout("os/.wh..wh..opq");
        },
        Expect::Refused("os/.wh..wh..opq"),
    );
    add(
        "whiteout-under-lower-symlink",
        &|l| {
            l.whiteout("lower_evil/.wh.passwd");
        },
        Expect::Refused("lower_evil/.wh.passwd"),
    );
    add(
        "opaque-under-lower-symlink",
        &|l| {
            l.whiteout("lower_evil/.wh..wh..opq");
        },
        Expect::Refused("lower_evil/.wh..wh..opq"),
    );
    v
}

fn hostile(backend: Backend) {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("canary");
    fs::create_dir(&canary).unwrap();
    fs::write(canary.join("passwd"), b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    fs::create_dir(canary.join("sub")).unwrap();
    fs::write(canary.join("sub/keep"), b"keep").unwrap();
    let before = snapshot_tree(&canary);
    let outside_before = snapshot_tree(dir.path());

    let s = Snapshotter::open(&dir.path().join("root"), backend).unwrap();
    let mut base = Layer::new();
    base.dir("etc/", 0o755)
        .file("etc/passwd", b"inside")
        .symlink("lower_evil", canary.to_str().unwrap());
    let m = s.prepare(NS, "k-base", None, HashMap::new()).unwrap();
    apply_layer(&m, &base.finish()[..], TAR).unwrap();
    s.commit(NS, "base", "k-base", HashMap::new()).unwrap();

    for (name, tar, expect) in hostile_layers(&canary) {
        let key = format!("h-{name}");
        let m = s.prepare(NS, &key, Some("base"), HashMap::new()).unwrap();
        let res = apply_layer(&m, &tar[..], TAR);
        match expect {
            Expect::Refused(entry) => {
                let err = res.expect_err(name);
                assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}: {err}");
                assert!(
                    err.to_string().contains(entry),
                    "{name}: message {err} names {entry}"
                );
            }
            Expect::Confined => {
                res.unwrap_or_else(|e| panic!("{name}: {e}"));
            }
        }
        assert_eq!(snapshot_tree(&canary), before, "{name}: canary changed");
        s.remove(NS, &key).unwrap();
    }
    // nothing appeared or changed next to the snapshotter root either
    let mut after = snapshot_tree(dir.path());
    after.retain(|p, _| !p.starts_with("root"));
    let mut expected = outside_before;
    expected.retain(|p, _| !p.starts_with("root"));
    assert_eq!(after, expected);
    assert!(!Path::new("/x").exists() && !dir.path().join("x").exists());
}

#[test]
fn hostile_layers_overlay() {
    hostile(Backend::Overlay);
}

#[test]
fn hostile_layers_native() {
    hostile(Backend::Native);
}

fn simple_layer() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("d/", 0o755)
        .file("d/f", &vec![42u8; 200_000])
        .file("g", b"g");
    l.finish()
}

fn try_apply(bytes: &[u8], mt: &str) -> berth_snapshotter::Result<berth_snapshotter::Applied> {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    let m = s.prepare(NS, "k", None, HashMap::new()).unwrap();
    apply_layer(&m, bytes, mt)
}

#[test]
fn malformed_streams_are_refused() {
    let tar = simple_layer();
    let gz = gzip(&tar);
    let zs = zstd(&tar);
    let gzm = "application/vnd.oci.image.layer.v1.tar+gzip";
    let zsm = "application/vnd.oci.image.layer.v1.tar+zstd";
    assert!(try_apply(&gz, gzm).is_ok());
    assert!(try_apply(&zs, zsm).is_ok());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("gzip cut short", gz[..gz.len() - 10].to_vec(), gzm),
        ("gzip cut in half", gz[..gz.len() / 2].to_vec(), gzm),
        ("zstd cut short", zs[..zs.len() - 5].to_vec(), zsm),
        ("zstd cut in half", zs[..zs.len() / 2].to_vec(), zsm),
        (
            "gzip trailing garbage",
            [&gz[..], b"garbage!"].concat(),
            gzm,
        ),
        (
            "zstd trailing garbage",
            [&zs[..], b"garbage!"].concat(),
            zsm,
        ),
        (
            "tar trailing garbage",
            [&tar[..], b"garbage!"].concat(),
            TAR,
        ),
        (
            "tar without end marker",
            tar[..tar.len() - 1024].to_vec(),
            TAR,
        ),
        ("tar cut mid-file", tar[..tar.len() / 2].to_vec(), TAR),
        ("gzip as zstd", gz.clone(), zsm),
    ];
    for (name, bytes, mt) in cases {
        let err = try_apply(&bytes, mt).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{name}: {err}");
    }
    let err = try_apply(&tar, "application/x-bogus").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("application/x-bogus"), "{err}");
}

#[test]
fn every_layer_media_type_is_accepted() {
    let tar = simple_layer();
    let (gz, zs) = (gzip(&tar), zstd(&tar));
    for (mt, bytes) in [
        ("application/vnd.oci.image.layer.v1.tar", &tar),
        ("application/vnd.oci.image.layer.v1.tar+gzip", &gz),
        ("application/vnd.oci.image.layer.v1.tar+zstd", &zs),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            &tar,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            &gz,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            &zs,
        ),
        ("application/vnd.docker.image.rootfs.diff.tar", &tar),
        ("application/vnd.docker.image.rootfs.diff.tar.gzip", &gz),
        ("application/vnd.docker.image.rootfs.diff.tar.zstd", &zs),
        ("application/vnd.docker.image.rootfs.diff.tar+zstd", &zs),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            &gz,
        ),
    ] {
        let a = try_apply(bytes, mt).unwrap_or_else(|e| panic!("{mt}: {e}"));
        assert_eq!(a.diff_id, berth_api::Digest::of(&tar), "{mt}");
        assert_eq!(a.compressed_digest, berth_api::Digest::of(bytes), "{mt}");
        assert_eq!(a.compressed_size, bytes.len() as u64, "{mt}");
    }
}

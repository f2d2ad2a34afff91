//! Hardening (issue 19): resource limits of layer apply and snapshot
//! chains, GNU sparse files, refused xattrs, and bounded echoes.
//!
//! The fd-bound tests run in a child process of this binary that lowers
//! its own soft RLIMIT_NOFILE to [`FD_LIMIT`] and runs only that test, so
//! a layer apply that held one fd per directory level or per lower layer
//! fails with EMFILE, while the fds of tests running beside it in the
//! parent (a 1024-level tree, sparse files) never count against the limit.

mod common;

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_snapshotter::{
    apply_layer, Backend, ErrorKind, Snapshotter, MAX_DEPTH, MAX_LAYERS, MAX_PATH_BYTES,
};
use common::{need_root, Layer};

const NS: &str = "default";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const FD_LIMIT: u64 = 128;

/// Set in the child that runs one fd-bound test.
const FEW_FDS_CHILD: &str = "BERTH_LIMITS_FEW_FDS_CHILD";

/// Runs `body` under RLIMIT_NOFILE [`FD_LIMIT`] in a child process that
/// runs only test `name` (this binary again, filtered to it), so the
/// limit counts this test's fds alone; panics when the child fails or
/// ran no test.
fn with_few_fds(name: &str, body: impl FnOnce()) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if std::env::var_os(FEW_FDS_CHILD).is_some() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
        setrlimit(Resource::RLIMIT_NOFILE, FD_LIMIT.min(hard), hard).expect("setrlimit");
        body();
        return;
    }
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--include-ignored", "--test-threads=1"])
        .env(FEW_FDS_CHILD, "1")
        .output()
        .expect("running the test in a child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{name} under RLIMIT_NOFILE {FD_LIMIT}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tar with long names (GNU long-name entries), as real tools write them.
struct LongTar(tar::Builder<Vec<u8>>);

impl LongTar {
    fn new() -> Self {
        Self(tar::Builder::new(Vec::new()))
    }
    fn dir(&mut self, path: &str) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(common::MTIME);
        self.0.append_data(&mut h, path, &b""[..]).unwrap();
        self
    }
    fn file(&mut self, path: &str, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(data.len() as u64);
        h.set_mtime(common::MTIME);
        self.0.append_data(&mut h, path, data).unwrap();
        self
    }
    fn finish(self) -> Vec<u8> {
        self.0.into_inner().unwrap()
    }
}

/// `a/a/.../a` with `depth` components.
fn deep(depth: usize) -> String {
    vec!["a"; depth].join("/")
}

fn base(s: &Snapshotter) {
    let mut l = Layer::new();
    l.dir("etc/", 0o755).file("etc/hosts", b"h");
    let m = s.prepare(NS, "k-base", None, HashMap::new()).unwrap();
    apply_layer(&m, &l.finish()[..], TAR).unwrap();
    s.commit(NS, "base", "k-base", HashMap::new()).unwrap();
}

#[test]
fn deep_trees_hold_few_fds_and_deeper_ones_are_refused() {
    if !need_root() {
        return;
    }
    with_few_fds(
        "deep_trees_hold_few_fds_and_deeper_ones_are_refused",
        deep_trees,
    );
}

fn deep_trees() {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    base(&s);

    // Every level listed, then a file at the bottom: MAX_DEPTH components.
    let mut t = LongTar::new();
    for d in 1..MAX_DEPTH {
        t.dir(&deep(d));
    }
    t.file(&format!("{}/bottom", deep(MAX_DEPTH - 1)), b"deep");
    // Back up to the top and down again, so cached levels are reopened.
    t.file("a/top", b"top");
    t.file(&format!("{}/again", deep(MAX_DEPTH - 1)), b"again");
    let m = s
        .prepare(NS, "k-deep", Some("base"), HashMap::new())
        .unwrap();
    apply_layer(&m, &t.finish()[..], TAR).expect("a tree MAX_DEPTH deep applies");
    let upper = dir.path().join("snapshots");
    let fsdir = fs::read_dir(&upper)
        .unwrap()
        .map(|e| e.unwrap().path().join("fs"))
        .find(|p| p.join("a").exists())
        .expect("upper dir with the tree");
    let bottom = fsdir.join(format!("{}/bottom", deep(MAX_DEPTH - 1)));
    assert_eq!(fs::read(&bottom).unwrap(), b"deep");
    assert_eq!(
        fs::read(fsdir.join(format!("{}/again", deep(MAX_DEPTH - 1)))).unwrap(),
        b"again"
    );
    assert_eq!(fs::read(fsdir.join("a/top")).unwrap(), b"top");
    // directory times were restored at every level
    let mid = fs::metadata(fsdir.join(deep(MAX_DEPTH / 2))).unwrap();
    assert_eq!(mid.mtime() as u64, common::MTIME);

    // One level more is refused, naming the entry in a short message.
    let mut t = LongTar::new();
    t.file(&format!("{}/x", deep(MAX_DEPTH)), b"x");
    let m = s
        .prepare(NS, "k-deeper", Some("base"), HashMap::new())
        .unwrap();
    let err = apply_layer(&m, &t.finish()[..], TAR).expect_err("deeper than MAX_DEPTH");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("levels deep"), "{msg}");
    assert!(msg.len() < 1024, "message of {} bytes", msg.len());

    // A path longer than PATH_MAX is refused too, with a short message.
    let long = vec!["n".repeat(200); MAX_PATH_BYTES / 200 + 1].join("/");
    let mut t = LongTar::new();
    t.file(&long, b"x");
    let m = s
        .prepare(NS, "k-long", Some("base"), HashMap::new())
        .unwrap();
    let err = apply_layer(&m, &t.finish()[..], TAR).expect_err("longer than PATH_MAX");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("bytes long"), "{msg}");
    assert!(msg.len() < 1024, "message of {} bytes", msg.len());

    // A component longer than NAME_MAX: InvalidArgument, not ENAMETOOLONG.
    let mut t = LongTar::new();
    t.file(&format!("ok/{}", "c".repeat(300)), b"x");
    let m = s
        .prepare(NS, "k-name", Some("base"), HashMap::new())
        .unwrap();
    let err = apply_layer(&m, &t.finish()[..], TAR).expect_err("longer than NAME_MAX");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("component of 300 bytes"), "{err}");
}

#[test]
fn refused_values_are_echoed_short() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Native).unwrap();
    // A megabyte-long name with `..` in it.
    let name = format!("{}/../x", "b".repeat(1 << 20));
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_size(name.len() as u64 + 1);
    h.set_path("././@LongLink").unwrap();
    h.set_cksum();
    let mut data = name.clone().into_bytes();
    data.push(0);
    b.append(&h, &data[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(1);
    h.set_path("short").unwrap();
    h.set_cksum();
    b.append(&h, &b"x"[..]).unwrap();
    let m = s.prepare(NS, "k", None, HashMap::new()).unwrap();
    let err = apply_layer(&m, &b.into_inner().unwrap()[..], TAR).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let msg = err.to_string();
    assert!(msg.len() < 1024, "message of {} bytes", msg.len());
    assert!(msg.contains("bbbb"), "{msg}");

    // A snapshot key of 4 KiB with a NUL: refused, short.
    let key = format!("{}\0", "k".repeat(4000));
    let err = s.prepare(NS, &key, None, HashMap::new()).unwrap_err();
    assert!(err.to_string().len() < 1024, "{}", err.to_string().len());
    let err = s.stat(NS, &"q".repeat(4096)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().len() < 1024, "{}", err.to_string().len());
}

#[test]
fn invalid_security_capability_is_invalid_argument() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    let mut file = Layer::new();
    file.file_xattr("f", "security.capability", b"\x01\x02\x03", b"x");
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([("SCHILY.xattr.security.capability", &b"\xff"[..])])
        .unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(0);
    h.set_path("d/").unwrap();
    h.set_cksum();
    b.append(&h, &b""[..]).unwrap();
    for (what, entry, tar) in [
        ("file", "f", file.finish()),
        ("dir", "d", b.into_inner().unwrap()),
    ] {
        let m = s
            .prepare(NS, &format!("k-{what}"), None, HashMap::new())
            .unwrap();
        let err = apply_layer(&m, &tar[..], TAR).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("security.capability"), "{msg}");
        assert!(msg.contains(entry), "{msg}");
    }
}

/// A 10 MiB file with three chunks of data and holes between them.
fn sparse_source(dir: &Path) -> Vec<u8> {
    let mut want = vec![0u8; 10 << 20];
    want[..4].copy_from_slice(b"head");
    want[5 << 20..(5 << 20) + 6].copy_from_slice(b"middle");
    let n = want.len();
    want[n - 4..].copy_from_slice(b"tail");
    let f = fs::File::create(dir.join("sparse10m")).unwrap();
    use std::os::unix::fs::FileExt;
    f.set_len(n as u64).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"middle", 5 << 20).unwrap();
    f.write_all_at(b"tail", n as u64 - 4).unwrap();
    want
}

#[test]
fn gnu_sparse_pax_files_are_expanded() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let want = sparse_source(&src.join("sub"));
    let s = Snapshotter::open(&dir.path().join("root"), Backend::Native).unwrap();
    for version in ["1.0", "0.1", "0.0"] {
        let tar = Command::new("tar")
            .args(["--sparse", "--format=posix"])
            .arg(format!("--sparse-version={version}"))
            .arg("-cf")
            .arg("-")
            .arg("-C")
            .arg(&src)
            .arg("sub")
            .output()
            .expect("GNU tar");
        assert!(tar.status.success(), "tar {version}");
        let key = format!("k-{version}");
        let m = s.prepare(NS, &key, None, HashMap::new()).unwrap();
        apply_layer(&m, &tar.stdout[..], TAR).unwrap_or_else(|e| panic!("{version}: {e}"));
        let root = Path::new(&m[0].source);
        let got = fs::read(root.join("sub/sparse10m"))
            .unwrap_or_else(|e| panic!("{version}: no expanded file: {e}"));
        assert!(got == want, "{version}: content differs");
        let names: Vec<_> = fs::read_dir(root.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["sparse10m"], "{version}: no GNUSparseFile stand-in");
        let md = fs::metadata(root.join("sub/sparse10m")).unwrap();
        assert!(md.blocks() * 512 < 1 << 20, "{version}: holes kept");
    }

    // Hand-made 1.0 maps that lie are refused.
    for (what, map, data) in [
        ("out of order", "2\n50\n10\n0\n10\n", 20),
        ("beyond the size", "1\n95\n10\n", 10),
        ("data too short", "1\n0\n50\n", 10),
        ("data too long", "1\n0\n5\n", 10),
        ("malformed", "1\nx\n5\n", 5),
        ("too many chunks", "99999999999\n", 0),
    ] {
        let mut b = tar::Builder::new(Vec::new());
        b.append_pax_extensions([
            ("GNU.sparse.major", &b"1"[..]),
            ("GNU.sparse.minor", b"0"),
            ("GNU.sparse.name", b"liar"),
            ("GNU.sparse.realsize", b"100"),
        ])
        .unwrap();
        let mut body = map.as_bytes().to_vec();
        body.resize(512, 0);
        body.extend(std::iter::repeat_n(b'z', data));
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(body.len() as u64);
        h.set_path("GNUSparseFile.0/liar").unwrap();
        h.set_cksum();
        b.append(&h, &body[..]).unwrap();
        let key = format!("k-bad-{}", what.replace(' ', "-"));
        let m = s.prepare(NS, &key, None, HashMap::new()).unwrap();
        let err = apply_layer(&m, &b.into_inner().unwrap()[..], TAR).expect_err(what);
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{what}: {err}");
        assert!(err.to_string().contains("sparse"), "{what}: {err}");
        let root = Path::new(&m[0].source);
        assert!(
            !root.join("GNUSparseFile.0").exists(),
            "{what}: map written"
        );
    }
}

#[test]
fn long_chains_hold_few_fds_and_stop_at_max_layers() {
    if !need_root() {
        return;
    }
    with_few_fds(
        "long_chains_hold_few_fds_and_stop_at_max_layers",
        long_chains,
    );
}

fn long_chains() {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    // Layer 0 has d/ (0750); the others are empty.
    let mut l = Layer::new();
    l.dir("d/", 0o750).file("d/f", b"f");
    let m = s.prepare(NS, "k-0", None, HashMap::new()).unwrap();
    apply_layer(&m, &l.finish()[..], TAR).unwrap();
    s.commit(NS, "l-0", "k-0", HashMap::new()).unwrap();
    for i in 1..=MAX_LAYERS {
        let key = format!("k-{i}");
        s.prepare(NS, &key, Some(&format!("l-{}", i - 1)), HashMap::new())
            .unwrap_or_else(|e| panic!("layer {i}: {e}"));
        s.commit(NS, &format!("l-{i}"), &key, HashMap::new())
            .unwrap();
    }
    // 300 lowers: a layer that needs d/ from below (not listed) looks it
    // up through all of them without holding one fd per layer.
    let m = s
        .prepare(NS, "k-top", Some("l-299"), HashMap::new())
        .unwrap();
    let mut l = Layer::new();
    l.file("d/new", b"new");
    apply_layer(&m, &l.finish()[..], TAR).expect("apply over 300 lowers");
    let upper = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .unwrap()
        .to_owned();
    let md = fs::metadata(Path::new(&upper).join("d")).unwrap();
    assert_eq!(md.mode() & 0o7777, 0o750, "d/ copied from the bottom layer");

    // l-{MAX_LAYERS - 1} is MAX_LAYERS deep: a child mounts MAX_LAYERS lowers.
    let last_ok = format!("l-{}", MAX_LAYERS - 1);
    s.prepare(NS, "k-ok", Some(&last_ok), HashMap::new())
        .expect("MAX_LAYERS lowers");
    let too_deep = format!("l-{MAX_LAYERS}");
    let err = s
        .prepare(NS, "k-deep", Some(&too_deep), HashMap::new())
        .expect_err("more than MAX_LAYERS lowers");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(err.to_string().contains("at most"), "{err}");
    let err = s
        .view(NS, "v-deep", Some(&too_deep), HashMap::new())
        .expect_err("views too");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
}

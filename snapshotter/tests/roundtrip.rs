//! diff_layer → apply_layer round trips (gzip, zstd, plain) on both
//! snapshotters, through the overlay fast path and the tree comparison.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use berth_snapshotter::{apply_layer, diff_layer, layer, Backend, Compression, Mount, Snapshotter};
use common::{need_root, snapshot_tree, unpack, Layer, MountGuard};

const NS: &str = "default";

fn base_chain(s: &Snapshotter) -> String {
    let mut l1 = Layer::new();
    l1.dir("etc/", 0o755)
        .file("etc/hosts", b"hosts")
        .file("etc/gone", b"gone")
        .dir("data/", 0o755)
        .file("data/a", b"a")
        .dir("data/sub/", 0o700)
        .file("data/sub/b", b"b")
        .dir("keep/", 0o755)
        .file("keep/x", b"x");
    let mut l2 = Layer::new();
    l2.file("etc/motd", b"motd")
        .file_xattr("etc/xa", "user.k", b"v", b"xa");
    unpack(
        s,
        "base",
        &[l1.finish(), l2.finish()],
        "application/vnd.oci.image.layer.v1.tar",
    )
}

/// Changes a container might make.
fn mutate(root: &Path) {
    fs::write(root.join("new-file"), b"new").unwrap();
    fs::remove_file(root.join("etc/gone")).unwrap();
    fs::remove_dir_all(root.join("data")).unwrap();
    fs::create_dir(root.join("data")).unwrap();
    fs::write(root.join("data/fresh"), b"fresh").unwrap();
    fs::write(root.join("etc/hosts"), b"changed hosts").unwrap();
    fs::create_dir_all(root.join("deep/er/est")).unwrap();
    fs::write(root.join("deep/er/est/f"), vec![9u8; 300_000]).unwrap();
    fs::hard_link(root.join("new-file"), root.join("new-link")).unwrap();
    std::os::unix::fs::symlink("etc/hosts", root.join("sym")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(root.join("keep/x"), fs::Permissions::from_mode(0o4711)).unwrap();
    std::os::unix::fs::chown(root.join("keep/x"), Some(123), Some(456)).unwrap();
}

fn tree_without_root_and_dir_times(p: &Path) -> BTreeMap<PathBuf, String> {
    let mut t = snapshot_tree(p);
    t.remove(Path::new(""));
    for v in t.values_mut() {
        if v.starts_with("dir") {
            if let Some(i) = v.find(" mtime=") {
                v.truncate(i);
            }
        }
    }
    t
}

fn decompress(c: Compression, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match c {
        Compression::None => out.extend_from_slice(bytes),
        Compression::Gzip => {
            flate2::read::MultiGzDecoder::new(bytes)
                .read_to_end(&mut out)
                .unwrap();
        }
        Compression::Zstd => out = zstd::decode_all(bytes).unwrap(),
    }
    out
}

fn roundtrip(backend: Backend, compression: Compression) {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&dir.path().join("root"), backend).unwrap();
    let top = base_chain(&s);
    let work = s.prepare(NS, "work", Some(&top), HashMap::new()).unwrap();
    {
        let g = MountGuard::new(&work, &dir.path().join("work"));
        mutate(&g.path);
    }
    let lower = s.view(NS, "lower", Some(&top), HashMap::new()).unwrap();
    let mut bytes = Vec::new();
    let w = diff_layer(&lower, &work, compression, &mut bytes).unwrap();
    assert_eq!(w.size, bytes.len() as u64);
    assert_eq!(w.digest, berth_api::Digest::of(&bytes));
    assert_eq!(
        w.diff_id,
        berth_api::Digest::of(&decompress(compression, &bytes))
    );

    let re = s.prepare(NS, "re", Some(&top), HashMap::new()).unwrap();
    let a = apply_layer(&re, &bytes[..], layer::oci_media_type(compression)).unwrap();
    assert_eq!(a.diff_id, w.diff_id);
    assert_eq!(a.compressed_digest, w.digest);
    assert_eq!(a.compressed_size, w.size);

    let g1 = MountGuard::new(&work, &dir.path().join("m-work"));
    let g2 = MountGuard::new(&re, &dir.path().join("m-re"));
    let (t1, t2) = (
        tree_without_root_and_dir_times(&g1.path),
        tree_without_root_and_dir_times(&g2.path),
    );
    assert_eq!(t1, t2);
    assert!(!g2.path.join("etc/gone").exists());
    assert!(
        !g2.path.join("data/a").exists(),
        "replaced dir hides old children"
    );
    assert!(g2.path.join("keep/x").exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        fs::metadata(g2.path.join("new-file")).unwrap().ino(),
        fs::metadata(g2.path.join("new-link")).unwrap().ino()
    );
}

#[test]
fn roundtrip_overlay_gzip() {
    roundtrip(Backend::Overlay, Compression::Gzip);
}

#[test]
fn roundtrip_overlay_zstd() {
    roundtrip(Backend::Overlay, Compression::Zstd);
}

#[test]
fn roundtrip_native_zstd() {
    roundtrip(Backend::Native, Compression::Zstd);
}

#[test]
fn roundtrip_native_gzip() {
    roundtrip(Backend::Native, Compression::Gzip);
}

/// A full-tree diff (empty lower) of a multi-layer view, through the
/// temporary read-only overlay mount, reproduces the view.
#[test]
fn full_tree_diff_of_a_view() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&dir.path().join("root"), Backend::Overlay).unwrap();
    let top = base_chain(&s);
    let view = s.view(NS, "v", Some(&top), HashMap::new()).unwrap();
    assert_eq!(view[0].kind, "overlay");
    let mut bytes = Vec::new();
    let none: &[Mount] = &[];
    diff_layer(none, &view, Compression::None, &mut bytes).unwrap();
    let fresh = s.prepare(NS, "fresh", None, HashMap::new()).unwrap();
    apply_layer(&fresh, &bytes[..], layer::oci_media_type(Compression::None)).unwrap();
    let g1 = MountGuard::new(&view, &dir.path().join("m-view"));
    let g2 = MountGuard::new(&fresh, &dir.path().join("m-fresh"));
    assert_eq!(
        tree_without_root_and_dir_times(&g1.path),
        tree_without_root_and_dir_times(&g2.path)
    );
}

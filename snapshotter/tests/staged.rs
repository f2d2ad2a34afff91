//! Staged apply + rebase: layers written before their parents exist (in
//! parallel), then stacked, give exactly the tree of a sequential unpack;
//! a layer that needs its lowers says so instead of guessing.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use berth_snapshotter::{apply_layer_staged, Backend, Error, ErrorKind, Snapshotter};
use common::{need_root, snapshot_tree, unpack, Layer, MountGuard};

const NS: &str = "default";
const TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// Three layers whose upper layers list every parent directory and link
/// only within themselves (as `docker build` and containerd's differ write
/// them), with a whiteout, an opaque directory and a replaced file.
fn self_contained_layers() -> Vec<Vec<u8>> {
    let mut l1 = Layer::new();
    l1.dir("etc/", 0o755)
        .file("etc/hosts", b"old hosts")
        .dir("data/", 0o750)
        .file("data/keep", b"keep")
        .dir("opq/", 0o755)
        .file("opq/a", b"a")
        .dir("del/", 0o755)
        .file("del/x", b"x");
    let mut l2 = Layer::new();
    l2.whiteout(".wh.del")
        .dir("data/", 0o750)
        .file("data/new", b"new")
        .hardlink("data/hl", "data/new")
        .symlink("lnk", "etc/hosts");
    let mut l3 = Layer::new();
    l3.dir("opq/", 0o700)
        .whiteout("opq/.wh..wh..opq")
        .file("opq/c", b"c")
        .dir("etc/", 0o755)
        .file("etc/hosts", b"new hosts");
    vec![l1.finish(), l2.finish(), l3.finish()]
}

fn merged_tree(s: &Snapshotter, top: &str, key: &str, mnt: PathBuf) -> Vec<(PathBuf, String)> {
    let m = s.view(NS, key, Some(top), HashMap::new()).unwrap();
    let g = MountGuard::new(&m, &mnt);
    let mut t = snapshot_tree(&g.path);
    t.remove(&PathBuf::new()); // the mount point's own times differ
    t.into_iter().collect()
}

#[test]
fn staged_layers_stack_like_a_sequential_unpack() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&dir.path().join("root"), Backend::Overlay).unwrap();
    let layers = self_contained_layers();

    // Reference: prepare → apply → commit, one after the other.
    let seq_top = unpack(&s, "seq", &layers, TAR);

    // Staged: every layer written at once into a parentless snapshot...
    let s = &s;
    let keys: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                sc.spawn(move || {
                    let key = format!("st-extract-{i}");
                    let m = s.prepare(NS, &key, None, HashMap::new()).unwrap();
                    let upper = PathBuf::from(&m[0].source);
                    let applied = apply_layer_staged(&upper, &l[..], TAR).unwrap();
                    assert_eq!(applied.diff_id, applied.compressed_digest);
                    key
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // ...then stacked in order.
    let mut parent: Option<String> = None;
    for (i, key) in keys.iter().enumerate() {
        if let Some(p) = &parent {
            let m = s.rebase(NS, key, p).unwrap();
            assert_eq!(m[0].kind, "overlay");
            assert!(
                m[0].options.iter().any(|o| o.starts_with("lowerdir=")),
                "{m:?}"
            );
        }
        let name = format!("st-{i}");
        s.commit(NS, &name, key, HashMap::new()).unwrap();
        parent = Some(name);
    }
    let st_top = parent.unwrap();
    assert_eq!(s.stat(NS, &st_top).unwrap().parent.as_deref(), Some("st-1"));

    let want = merged_tree(s, &seq_top, "seq-view", dir.path().join("m1"));
    let got = merged_tree(s, &st_top, "st-view", dir.path().join("m2"));
    assert!(want.iter().any(|(p, _)| p.ends_with("hl")), "{want:?}");
    assert!(!want.iter().any(|(p, _)| p.starts_with("del")), "{want:?}");
    assert_eq!(got, want);

    // Rebase is for parentless active snapshots on a committed parent.
    let e = s.rebase(NS, "st-1", "st-0").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
    s.prepare(NS, "lonely", None, HashMap::new()).unwrap();
    let e = s.rebase(NS, "lonely", "nope").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn staged_apply_refuses_to_guess_what_lies_below() {
    if !need_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(&dir.path().join("root"), Backend::Overlay).unwrap();
    // A file whose parent directory the layer does not list: its mode and
    // owner come from the layers below.
    let mut implicit = Layer::new();
    implicit.file("etc/hosts", b"x");
    // A hard link to a file of a lower layer.
    let mut link = Layer::new();
    link.hardlink("hl", "etc/hosts");
    for (i, l) in [implicit.finish(), link.finish()].iter().enumerate() {
        let key = format!("k{i}");
        let m = s.prepare(NS, &key, None, HashMap::new()).unwrap();
        let e = apply_layer_staged(&PathBuf::from(&m[0].source), &l[..], TAR).unwrap_err();
        assert!(matches!(e, Error::NeedsLowers(_)), "layer {i}: {e}");
        s.remove(NS, &key).unwrap();
    }
    // The native snapshotter cannot rebase (its snapshots are copies).
    let n = Snapshotter::open(&dir.path().join("native"), Backend::Native).unwrap();
    n.prepare(NS, "base", None, HashMap::new()).unwrap();
    n.commit(NS, "base-c", "base", HashMap::new()).unwrap();
    n.prepare(NS, "top", None, HashMap::new()).unwrap();
    let e = n.rebase(NS, "top", "base-c").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::FailedPrecondition, "{e}");
}

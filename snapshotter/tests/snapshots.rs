//! Snapshot operations and error kinds, on both snapshotters.

mod common;

use std::collections::HashMap;
use std::fs;

use berth_snapshotter::{Backend, ErrorKind, Kind, Snapshotter};

const NS: &str = "default";

fn labels(kv: &[(&str, &str)]) -> HashMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn each_backend(f: impl Fn(&Snapshotter, &std::path::Path)) {
    for b in [Backend::Overlay, Backend::Native] {
        let dir = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(dir.path(), b).unwrap();
        f(&s, dir.path());
    }
}

/// A committed chain `base` ← `mid` with one file each.
fn chain(s: &Snapshotter) {
    let m = s.prepare(NS, "k-base", None, HashMap::new()).unwrap();
    fs::write(format!("{}/base.txt", m[0].source), b"base").unwrap();
    s.commit(NS, "base", "k-base", HashMap::new()).unwrap();
    let m = s
        .prepare(NS, "k-mid", Some("base"), HashMap::new())
        .unwrap();
    let upper = upper_of(&m);
    fs::write(format!("{upper}/mid.txt"), b"mid").unwrap();
    s.commit(NS, "mid", "k-mid", HashMap::new()).unwrap();
}

fn upper_of(m: &[berth_snapshotter::Mount]) -> String {
    let m = &m[0];
    if m.kind == "bind" {
        return m.source.clone();
    }
    m.options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir="))
        .unwrap()
        .to_string()
}

#[test]
fn prepare_stat_commit_list() {
    each_backend(|s, _| {
        let m = s.prepare(NS, "a", None, labels(&[("x", "1")])).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].kind, "bind");
        assert!(m[0].options.contains(&"rw".to_string()));
        let i = s.stat(NS, "a").unwrap();
        assert_eq!(i.kind, Kind::Active);
        assert_eq!(i.parent, None);
        assert_eq!(i.labels.get("x").map(String::as_str), Some("1"));
        s.commit(NS, "c", "a", labels(&[("y", "2")])).unwrap();
        assert_eq!(s.stat(NS, "a").unwrap_err().kind(), ErrorKind::NotFound);
        let c = s.stat(NS, "c").unwrap();
        assert_eq!(c.kind, Kind::Committed);
        assert_eq!(c.labels, labels(&[("y", "2")]));
        s.prepare(NS, "b", Some("c"), HashMap::new()).unwrap();
        let mut names: Vec<_> = s.list(NS).unwrap().into_iter().map(|i| i.name).collect();
        names.sort();
        assert_eq!(names, vec!["b", "c"]);
        assert_eq!(s.stat(NS, "b").unwrap().parent.as_deref(), Some("c"));
    });
}

#[test]
fn mount_specs_have_the_right_shape() {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Overlay).unwrap();
    chain(&s);
    // active with parents: overlay with upper, work, lowers top first
    let m = s.prepare(NS, "act", Some("mid"), HashMap::new()).unwrap();
    assert_eq!(m[0].kind, "overlay");
    let opts = m[0].options.join(",");
    assert!(
        opts.contains("upperdir=") && opts.contains("workdir="),
        "{opts}"
    );
    let lower = m[0]
        .options
        .iter()
        .find_map(|o| o.strip_prefix("lowerdir="))
        .unwrap();
    let lowers: Vec<_> = lower.split(':').collect();
    assert_eq!(lowers.len(), 2);
    assert!(
        fs::metadata(format!("{}/mid.txt", lowers[0])).is_ok(),
        "top layer first"
    );
    // single-layer view: read-only bind of the parent
    let v = s.view(NS, "v1", Some("base"), HashMap::new()).unwrap();
    assert_eq!(v[0].kind, "bind");
    assert!(v[0].options.contains(&"ro".to_string()));
    assert!(fs::metadata(format!("{}/base.txt", v[0].source)).is_ok());
    // multi-layer view: overlay with lowerdirs only
    let v = s.view(NS, "v2", Some("mid"), HashMap::new()).unwrap();
    assert_eq!(v[0].kind, "overlay");
    assert!(!v[0].options.iter().any(|o| o.starts_with("upperdir=")));
    assert_eq!(s.stat(NS, "v2").unwrap().kind, Kind::View);
    assert_eq!(s.mounts(NS, "v2").unwrap(), v);
    // committed snapshots have no mounts
    assert_eq!(
        s.mounts(NS, "mid").unwrap_err().kind(),
        ErrorKind::FailedPrecondition
    );
}

#[test]
fn native_copies_the_parent() {
    let dir = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(dir.path(), Backend::Native).unwrap();
    chain(&s);
    let m = s.prepare(NS, "act", Some("mid"), HashMap::new()).unwrap();
    assert_eq!(m[0].kind, "bind");
    assert_eq!(
        fs::read(format!("{}/base.txt", m[0].source)).unwrap(),
        b"base"
    );
    assert_eq!(
        fs::read(format!("{}/mid.txt", m[0].source)).unwrap(),
        b"mid"
    );
    let v = s.view(NS, "v", Some("mid"), HashMap::new()).unwrap();
    assert!(v[0].options.contains(&"ro".to_string()));
}

#[test]
fn error_kinds() {
    each_backend(|s, _| {
        chain(s);
        // unknown key / parent
        assert_eq!(s.stat(NS, "nope").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            s.mounts(NS, "nope").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            s.remove(NS, "nope").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(s.usage(NS, "nope").unwrap_err().kind(), ErrorKind::NotFound);
        assert_eq!(
            s.prepare(NS, "x", Some("nope"), HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            s.commit(NS, "n", "nope", HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // duplicates
        s.prepare(NS, "act", Some("mid"), HashMap::new()).unwrap();
        assert_eq!(
            s.prepare(NS, "act", None, HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            s.commit(NS, "base", "act", HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::AlreadyExists
        );
        // state
        assert_eq!(
            s.commit(NS, "z", "mid", HashMap::new()).unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        s.view(NS, "view", Some("mid"), HashMap::new()).unwrap();
        assert_eq!(
            s.commit(NS, "z", "view", HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            s.prepare(NS, "y", Some("act"), HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument,
            "parent must be committed"
        );
        assert_eq!(
            s.remove(NS, "base").unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        assert_eq!(
            s.remove(NS, "mid").unwrap_err().kind(),
            ErrorKind::FailedPrecondition
        );
        // invalid keys and namespaces
        for bad in ["", "a\0b"] {
            assert_eq!(
                s.prepare(NS, bad, None, HashMap::new()).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
            assert_eq!(
                s.stat(NS, bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument
            );
        }
        assert_eq!(
            s.prepare("bad/ns", "k", None, HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidArgument
        );
        // removal order: children first
        s.remove(NS, "act").unwrap();
        s.remove(NS, "view").unwrap();
        s.remove(NS, "mid").unwrap();
        s.remove(NS, "base").unwrap();
        assert!(s.list(NS).unwrap().is_empty());
    });
}

#[test]
fn namespaces_are_isolated() {
    each_backend(|s, _| {
        chain(s);
        assert_eq!(
            s.stat("other", "mid").unwrap_err().kind(),
            ErrorKind::NotFound
        );
        assert_eq!(
            s.prepare("other", "k", Some("mid"), HashMap::new())
                .unwrap_err()
                .kind(),
            ErrorKind::NotFound
        );
        // the same key in another namespace is a different snapshot
        s.prepare("other", "k-base", None, HashMap::new()).unwrap();
        s.commit("other", "base", "k-base", HashMap::new()).unwrap();
        assert_eq!(s.list("other").unwrap().len(), 1);
        s.remove("other", "base").unwrap();
        assert!(s.stat(NS, "base").is_ok());
        assert_eq!(s.list(NS).unwrap().len(), 2);
    });
}

#[test]
fn update_labels_by_field_path() {
    each_backend(|s, _| {
        s.prepare(NS, "a", None, labels(&[("keep", "1"), ("drop", "2")]))
            .unwrap();
        let mut info = s.stat(NS, "a").unwrap();
        let before = info.updated_at;
        info.labels = labels(&[("new", "3")]);
        let got = s
            .update(
                NS,
                info.clone(),
                &["labels.new".into(), "labels.drop".into()],
            )
            .unwrap();
        assert_eq!(got.labels, labels(&[("keep", "1"), ("new", "3")]));
        assert!(got.updated_at >= before);
        let got = s.update(NS, info.clone(), &["labels".into()]).unwrap();
        assert_eq!(got.labels, labels(&[("new", "3")]));
        info.labels = labels(&[("only", "x")]);
        let got = s.update(NS, info.clone(), &[]).unwrap();
        assert_eq!(got.labels, labels(&[("only", "x")]));
        assert_eq!(s.stat(NS, "a").unwrap().labels, labels(&[("only", "x")]));
        let err = s.update(NS, info.clone(), &["parent".into()]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        info.name = "missing".into();
        assert_eq!(
            s.update(NS, info, &[]).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    });
}

#[test]
fn usage_counts_bytes_and_inodes() {
    each_backend(|s, _| {
        let m = s.prepare(NS, "a", None, HashMap::new()).unwrap();
        fs::write(format!("{}/big", m[0].source), vec![7u8; 1 << 20]).unwrap();
        fs::create_dir(format!("{}/d", m[0].source)).unwrap();
        let u = s.usage(NS, "a").unwrap();
        assert!(u.size >= 1 << 20, "{u:?}");
        assert_eq!(u.inodes, 3, "root, file, dir");
        s.commit(NS, "c", "a", HashMap::new()).unwrap();
        assert_eq!(s.usage(NS, "c").unwrap(), u);
    });
}

#[test]
fn cleanup_removes_only_orphans_and_metadata_persists() {
    for b in [Backend::Overlay, Backend::Native] {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = Snapshotter::open(dir.path(), b).unwrap();
            chain(&s);
            fs::create_dir_all(dir.path().join("snapshots/999999/fs")).unwrap();
            fs::create_dir_all(dir.path().join("snapshots/new-1-1/fs")).unwrap();
            fs::create_dir_all(dir.path().join("snapshots/rm-5")).unwrap();
            assert_eq!(s.cleanup().unwrap(), 3);
            assert_eq!(s.cleanup().unwrap(), 0);
        }
        // reopen: records and dirs still there and consistent
        let s = Snapshotter::open(dir.path(), b).unwrap();
        assert_eq!(s.stat(NS, "mid").unwrap().parent.as_deref(), Some("base"));
        let n = fs::read_dir(dir.path().join("snapshots")).unwrap().count();
        assert_eq!(n, 2);
        let m = s.prepare(NS, "again", Some("mid"), HashMap::new()).unwrap();
        assert!(!m.is_empty());
        // removing deletes the directory
        s.remove(NS, "again").unwrap();
        assert_eq!(
            fs::read_dir(dir.path().join("snapshots")).unwrap().count(),
            2
        );
    }
}

#[test]
fn concurrent_operations_do_not_interfere() {
    each_backend(|s, _| {
        chain(s);
        std::thread::scope(|sc| {
            for t in 0..8 {
                sc.spawn(move || {
                    for i in 0..10 {
                        let key = format!("t{t}-k{i}");
                        let name = format!("t{t}-c{i}");
                        let m = s.prepare(NS, &key, Some("mid"), HashMap::new()).unwrap();
                        fs::write(format!("{}/f", upper_of(&m)), key.as_bytes()).unwrap();
                        s.commit(NS, &name, &key, HashMap::new()).unwrap();
                        // racing on one shared key: exactly one wins per round
                        let _ = s.prepare(NS, &format!("shared-{i}"), None, HashMap::new());
                        s.remove(NS, &name).unwrap();
                    }
                });
            }
        });
        let names: Vec<_> = s.list(NS).unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names.len(), 2 + 10, "{names:?}");
        assert_eq!(s.cleanup().unwrap(), 0, "no orphaned directories");
    });
}

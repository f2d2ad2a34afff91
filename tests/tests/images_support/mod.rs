//! Helpers shared by the image e2e tests: the test image catalogue (from
//! `berth_tests::images`), mounts, chroot, expectation checks.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_snapshotter::Mount;
use berth_tests::Berthd;
use serde_json::Value;

// Each test binary uses a different subset.
#[allow(unused_imports)]
pub(crate) use berth_tests::images::{archive, catalog, chain_ids, dir as images};

pub(crate) fn lines_with(out: &str, word: &str) -> usize {
    out.lines()
        .filter(|l| l.split_whitespace().any(|w| w == word))
        .count()
}

/// Runs a synchronous collection (deleting a fresh lease with `--sync`).
pub(crate) fn gc(d: &Berthd) {
    d.ctr_ok(&["leases", "create", "--id", "gc-trigger"]);
    d.ctr_ok(&["leases", "rm", "--sync", "gc-trigger"]);
}

pub(crate) fn dir_entries(p: &Path) -> Vec<String> {
    match std::fs::read_dir(p) {
        Ok(rd) => rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    }
}

pub(crate) fn blobs(d: &Berthd) -> Vec<String> {
    dir_entries(&d.root().join("content/blobs/sha256"))
}

pub(crate) fn snapshot_dirs(d: &Berthd, sn: &str) -> Vec<String> {
    dir_entries(
        &d.root()
            .join(format!("io.containerd.snapshotter.v1.{sn}/snapshots")),
    )
}

/// Parses `ctr snapshots mounts` output (`mount -t T SRC TARGET -o OPTS`).
pub(crate) fn parse_mounts(out: &str) -> Vec<Mount> {
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
pub(crate) struct Mounted(tempfile::TempDir);

impl Mounted {
    pub(crate) fn new(d: &Berthd, sn: &str, key: &str) -> Self {
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
    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = berth_snapshotter::unmount(self.0.path());
        berth_tests::unmount_under(self.0.path());
    }
}

pub(crate) fn chroot(root: &Path, script: &str) -> String {
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

pub(crate) fn check_expectations(root: &Path) {
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

/// Everything under a snapshotter root except the snapshots' own trees and
/// the metadata database: path → file bytes / link target / "dir".
pub(crate) fn canary_state(root: &Path) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
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

pub(crate) fn host_state() -> Vec<(String, Option<Vec<u8>>)> {
    ["/escape", "/tmp/x", "/tmp/y", "/outside", "/etc/passwd"]
        .iter()
        .map(|p| (p.to_string(), std::fs::read(p).ok()))
        .collect()
}

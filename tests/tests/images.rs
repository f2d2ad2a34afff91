//! Issue 3: snapshots, images, diff and garbage collection through Debian's
//! ctr, against a real berthd.

use berth_tests::{require_root, require_tool, Berthd};

fn lines_with(out: &str, word: &str) -> usize {
    out.lines()
        .filter(|l| l.split_whitespace().any(|w| w == word))
        .count()
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
        let mut a = vec!["snapshots", "--snapshotter", sn, "rm", "base"];
        let out = d.ctr(&a);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("failed precondition"));
        ctr(&["prepare", "other", "base"]);
        a = vec!["snapshots", "--snapshotter", sn, "commit", "base", "other"];
        let out = d.ctr(&a);
        assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
        ctr(&["label", "base", "team=x"]);
        assert!(ctr(&["info", "base"]).contains("team"));
        ctr(&["rm", "child", "other"]);
        ctr(&["rm", "base"]);
        assert!(ctr(&["ls"]).lines().count() <= 1);
    }
    let out = d.ctr(&["snapshots", "--snapshotter", "zfs", "ls"]);
    assert!(!out.status.success());
    // Nothing left on disk in either snapshotter.
    for sn in ["overlayfs", "native"] {
        let dir = d
            .root()
            .join(format!("io.containerd.snapshotter.v1.{sn}/snapshots"));
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert!(left.is_empty(), "{sn}: {left:?}");
    }
}

//! What the berthctl task tests share: the busybox image imported through
//! berthctl, berthctl with stdin, one task's row, a tmux session.

// The test files' prelude: each does `use super::support::*`.
pub(crate) use std::path::Path;
pub(crate) use std::process::Stdio;
pub(crate) use std::time::{Duration, Instant};

pub(crate) use berth_tests::{requires_root, Berthd};
pub(crate) use serde_json::Value;

pub(crate) use berth_tests::images::BUSYBOX as IMAGE;

/// What every test here runs besides berthd (with `requires_root`).
pub(crate) const TOOLS: &[&str] = &["ctr", "runc"];

/// Imports (and unpacks) busybox through berthctl.
pub(crate) fn import_busybox(d: &Berthd) {
    let tar = berth_tests::images::busybox();
    let out = d.berthctl_ok(&["images", "import", tar.to_str().unwrap()]);
    assert_eq!(out.trim(), IMAGE);
}

/// Runs berthctl with stdin from `input`; returns (exit code, stdout, stderr).
pub(crate) fn run_with_stdin(
    d: &Berthd,
    args: &[&str],
    input: &[u8],
) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut c = d
        .berthctl_cmd(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input).unwrap();
    let out = c.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub(crate) fn task(d: &Berthd, id: &str) -> Value {
    let v = d.json(&["tasks", "ls"]);
    v.as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

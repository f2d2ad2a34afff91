//! Running the command-line tools the tests drive (Debian's `ctr`, our
//! `berthctl`), reading what they print, and the preconditions of a test.
//!
//! A test never passes without running: a missing tool or a missing root
//! fails it with a message saying what to install or how to run it. Tests
//! that need root (mounts, runc, cgroups) are also marked
//! `#[ignore = "needs root"]`, so a plain `cargo test` as a normal user
//! lists them as ignored instead of failing; `make test` runs them as root
//! with `--include-ignored` (scripts/test).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Whether `tool` is on `PATH`.
pub fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
        .unwrap_or(false)
}

/// Panics, naming what is missing, unless every one of `tools` is on
/// `PATH` (scripts/install-deps installs them all).
pub fn requires(tools: &[&str]) {
    let missing: Vec<&str> = tools.iter().copied().filter(|t| !on_path(t)).collect();
    assert!(
        missing.is_empty(),
        "this test needs {missing:?} on PATH: run scripts/install-deps (as root), or `make test`"
    );
}

/// Panics unless we are root and every one of `tools` is on `PATH`. Tests
/// calling this are `#[ignore = "needs root"]`: run them as root with
/// `cargo test -- --include-ignored` (as `make test` does).
pub fn requires_root(tools: &[&str]) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (mounts, runc, cgroups): run it as root, \
         `cargo test -- --include-ignored` (as `make test` does)"
    );
    requires(tools);
}

/// Older form of [`requires_root`]: true, or a panic (never a silent skip).
pub fn require_root(test: &str) -> bool {
    assert!(
        nix::unistd::geteuid().is_root(),
        "{test} needs root (mounts, runc, cgroups): run it as root, \
         `cargo test -- --include-ignored` (as `make test` does)"
    );
    true
}

/// Older form of [`requires`]: true, or a panic (never a silent skip).
pub fn require_tool(test: &str, tool: &str) -> bool {
    assert!(
        on_path(tool),
        "{test} needs `{tool}` on PATH: run scripts/install-deps (as root), or `make test`"
    );
    true
}

/// Lossy UTF-8 of a command's output.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Stdout of a successful command; panics with both streams otherwise.
pub fn check(out: Output, what: &str) -> String {
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
    stdout
}

/// Parses what `what` printed as JSON; panics showing it otherwise.
pub fn parse_json(out: &str, what: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {out}"))
}

/// `ctr --address ADDRESS` (namespace `default` unless the args say
/// otherwise), stdin from /dev/null. A hung call fails after ten minutes
/// (exit 124) instead of hanging the suite.
pub fn ctr_command(address: &Path) -> Command {
    let mut c = Command::new("timeout");
    c.args(["--kill-after=10", "600", "ctr"])
        .arg("--address")
        .arg(address)
        .stdin(Stdio::null());
    c
}

/// `berthctl` pointed at `address`, its fifos under `fifo_dir` (so no two
/// daemons on the machine share them).
pub fn berthctl_command(address: &Path, fifo_dir: &Path) -> Command {
    let mut c = Command::new(crate::paths::bin("berthctl"));
    c.env("BERTH_ADDRESS", address)
        .env("BERTH_FIFO_DIR", fifo_dir);
    c
}

/// Checks a command that must fail the way berthctl fails: exit 1 and one
/// line on stderr starting `berthctl: `. Returns that line.
pub fn berthctl_failure(out: Output, what: &str) -> String {
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "{what} succeeded: {}",
        text(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert_eq!(err.lines().count(), 1, "{what}: one line: {err}");
    assert!(err.starts_with("berthctl: "), "{what}: {err}");
    err
}

/// `ctr tasks ls` output as `id -> (pid, status)`.
pub fn ctr_tasks(out: &str) -> BTreeMap<String, (u32, String)> {
    out.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                (f.get(1)?.parse().ok()?, f.get(2)?.to_string()),
            ))
        })
        .collect()
}

//! Bad input through Debian's `ctr` against a real berthd and runc: a
//! missing snapshot, a missing runtime binary, a duplicate exec id, and
//! refusals on a live task; each a clear error with the code containerd
//! uses, and nothing left behind.

mod ctr_support;

use berth_tests::{check, requires_root, Berthd};
use ctr_support::*;

#[test]
#[ignore = "needs root"]
fn ctr_bad_input_leaves_nothing() {
    requires_root(TOOLS);
    let d = daemon();

    // A container whose snapshot was removed before its task starts.
    let nosnap = cid("b", "nosnap");
    d.ctr_ok(&["containers", "create", IMAGE, &nosnap, "true"]);
    d.ctr_ok(&["snapshots", "rm", &nosnap]);
    let out = d.ctr(&["tasks", "start", &nosnap]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("not found") && err.contains(&nosnap),
        "missing snapshot: {err}"
    );
    assert!(task_status(&d, &nosnap).is_none());
    d.ctr_ok(&["containers", "rm", &nosnap]);
    assert_gone(&d, &nosnap, None);

    // A runtime binary that does not exist.
    let nobin = cid("b", "nobin");
    let out = ctr_run(&d, "/nonexistent/runc", &["--rm", IMAGE, &nobin, "true"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("/nonexistent/runc") && err.contains("failed precondition"),
        "missing runtime binary: {err}"
    );
    assert_gone(&d, &nobin, None);

    // exec with an exec id already in use.
    let dup = cid("b", "dup");
    check(
        ctr_run(&d, "runc", &["-d", IMAGE, &dup, "sleep", "1000"]),
        "ctr run -d",
    );
    let shim = shim_pid(&d, &dup);
    let fifos = fifo_dir(&d);
    d.ctr_ok(&[
        "tasks",
        "exec",
        "-d",
        "--fifo-dir",
        &fifos,
        "--exec-id",
        "e1",
        &dup,
        "sleep",
        "1000",
    ]);
    let out = d.ctr(&[
        "tasks",
        "exec",
        "--fifo-dir",
        &fifos,
        "--exec-id",
        "e1",
        &dup,
        "true",
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("e1"),
        "{err}"
    );
    // The first e1 still runs.
    let ps = d.ctr_ok(&["tasks", "ps", &dup]);
    assert_eq!(ps.lines().skip(1).count(), 2, "{ps}");
    d.ctr_ok(&["tasks", "rm", "--force", &dup]);
    d.ctr_ok(&["containers", "rm", &dup]);
    assert_gone(&d, &dup, Some(shim));
    assert_only_image_snapshot(&d);
}

/// stderr of a `ctr` call that must fail.
fn ctr_err(d: &Berthd, args: &[&str]) -> String {
    let out = d.ctr(args);
    assert!(!out.status.success(), "ctr {args:?} succeeded");
    text(&out.stderr)
}

#[test]
#[ignore = "needs root"]
fn ctr_refusals_on_a_live_task() {
    requires_root(TOOLS);
    let d = daemon();
    let id = cid("f", "live");
    check(
        ctr_run(&d, "runc", &["-d", IMAGE, &id, "sleep", "1000"]),
        "ctr run -d",
    );
    let fifos = fifo_dir(&d);
    let shim = shim_pid(&d, &id);
    // (`ctr containers rm` refuses a running task on its own side.)
    let err = ctr_err(&d, &["tasks", "rm", &id]);
    assert!(err.contains("failed precondition"), "{err}");
    let err = ctr_err(&d, &["tasks", "start", &id]);
    assert!(err.contains("already exists"), "{err}");
    // An exec of a missing program fails; nothing of it stays.
    let exec = [
        "tasks",
        "exec",
        "--fifo-dir",
        &fifos,
        "--exec-id",
        "nx",
        &id,
    ];
    let err = ctr_err(&d, &[&exec[..], &["/no/such"]].concat());
    assert!(err.contains("\"/no/such\": stat"), "{err}");
    let ps = d.ctr_ok(&["tasks", "ps", &id]);
    assert_eq!(ps.lines().skip(1).count(), 1, "{ps}");
    d.ctr_ok(&[&exec[..], &["true"]].concat());
    let err = ctr_err(&d, &["tasks", "resume", &id]);
    assert!(err.contains("failed precondition"), "{err}");
    d.ctr_ok(&["tasks", "kill", "-a", "-s", "SIGKILL", &id]);
    wait_until("task to stop", || {
        task_status(&d, &id).is_some_and(|(_, s)| s == "STOPPED")
    });
    let err = ctr_err(&d, &["tasks", "kill", &id]);
    assert!(
        err.contains("not found") || err.contains("process already finished"),
        "{err}"
    );
    d.ctr_ok(&["tasks", "rm", &id]);
    d.ctr_ok(&["containers", "rm", &id]);
    assert_gone(&d, &id, Some(shim));
    assert_only_image_snapshot(&d);
}

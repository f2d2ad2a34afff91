//! Helpers shared by the `ctr`-driven e2e tests (ctr_run, ctr_errors): a
//! berthd with busybox imported through `ctr`, parsing of `ctr tasks ls`,
//! and the "nothing left behind" checks.
//!
//! Container ids carry the test process id and a per-test tag: the cgroup
//! path (`/default/<id>`) is shared with every other berthd on the machine.
// Each test binary uses a different subset.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Output};
use std::time::Duration;

use berth_tests::Berthd;

pub(crate) use berth_tests::images::BUSYBOX as IMAGE;
pub(crate) use berth_tests::text;
pub(crate) const NS: &str = "default";

/// What every test here runs besides berthd (with `requires_root`).
pub(crate) const TOOLS: &[&str] = &["ctr", "runc"];

/// A berthd with the busybox image imported through `ctr`.
pub(crate) fn daemon() -> Berthd {
    let d = Berthd::start();
    d.ctr_ok(&[
        "images",
        "import",
        berth_tests::images::busybox().to_str().unwrap(),
    ]);
    d
}

/// A container id unique on this machine: `<tag>-<name>-<pid>`.
pub(crate) fn cid(tag: &str, name: &str) -> String {
    format!("{tag}-{name}-{}", std::process::id())
}

/// `ctr run` flags selecting the runtime binary (none for runc).
pub(crate) fn runtime_flags(binary: &str) -> Vec<&str> {
    if binary == "runc" {
        vec![]
    } else {
        vec!["--runc-binary", binary]
    }
}

/// Where `ctr` puts its stdio fifos in these tests: under the test dir, so
/// a failed test (or a detached process, whose fifos ctr never removes)
/// leaves nothing in /run/containerd/fifo.
pub(crate) fn fifo_dir(d: &Berthd) -> String {
    d.dir().join("fifo").display().to_string()
}

/// Runs `ctr run --fifo-dir ... [runtime flags] ARGS...`.
pub(crate) fn ctr_run(d: &Berthd, binary: &str, args: &[&str]) -> Output {
    let fifos = fifo_dir(d);
    let mut full = vec!["run", "--fifo-dir", &fifos];
    full.extend(runtime_flags(binary));
    full.extend_from_slice(args);
    d.ctr(&full)
}

/// `ctr tasks ls` rows as (id, pid, status).
pub(crate) fn tasks_ls(d: &Berthd) -> Vec<(String, u32, String)> {
    berth_tests::cli::ctr_tasks(&d.ctr_ok(&["tasks", "ls"]))
        .into_iter()
        .map(|(id, (pid, status))| (id, pid, status))
        .collect()
}

pub(crate) fn task_status(d: &Berthd, id: &str) -> Option<(u32, String)> {
    tasks_ls(d)
        .into_iter()
        .find(|(t, _, _)| t == id)
        .map(|(_, pid, st)| (pid, st))
}

/// Waits up to 15 s for `f`.
pub(crate) fn wait_until(what: &str, f: impl FnMut() -> bool) {
    berth_tests::process::settle(what, Duration::from_secs(15), f)
}

#[allow(unused_imports)]
pub(crate) use berth_tests::process::alive as pid_alive;

/// The shim's pid for a live task (its `shim.pid` in the bundle).
pub(crate) fn shim_pid(d: &Berthd, id: &str) -> i32 {
    let p = d.state().join(NS).join(id).join("shim.pid");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .parse()
        .unwrap()
}

/// Nothing of container `id` is left: no task, no container record, no
/// bundle, no runc state, no mount under the test dir, no shim process,
/// no cgroup.
pub(crate) fn assert_gone(d: &Berthd, id: &str, shim: Option<i32>) {
    assert!(task_status(d, id).is_none(), "task {id} still listed");
    let cs = d.ctr_ok(&["containers", "ls", "-q"]);
    assert!(!cs.lines().any(|l| l == id), "container {id} listed: {cs}");
    let bundle = d.state().join(NS).join(id);
    assert!(!bundle.exists(), "bundle {} left", bundle.display());
    let runc_state = d.state().join(".runc").join(NS).join(id);
    assert!(
        !runc_state.exists(),
        "runc state {} left",
        runc_state.display()
    );
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = d.dir().display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&dir)),
        "mounts left under {dir}:\n{mounts}"
    );
    if let Some(pid) = shim {
        wait_until(&format!("shim {pid} of {id} to exit"), || !pid_alive(pid));
    }
    let cg = Path::new("/sys/fs/cgroup/memory").join(NS).join(id);
    assert!(!cg.exists(), "cgroup {} left", cg.display());
}

/// Only the image's committed snapshot is left (no container's active one).
pub(crate) fn assert_only_image_snapshot(d: &Berthd) {
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    let rows: Vec<&str> = snaps.lines().skip(1).collect();
    assert!(
        rows.len() == 1 && rows[0].trim_end().ends_with("Committed"),
        "snapshots left:\n{snaps}"
    );
}

/// A child process killed and reaped on drop.
pub(crate) struct Reap(pub(crate) Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

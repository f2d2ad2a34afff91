//! Start-up recovery: reattach to every shim of a previous run before
//! berthd serves.
//!
//! For each bundle `<state>/<ns>/<id>/`: a live shim (its `shim.pid` is a
//! live process and its `address` answers Handshake) is listed with
//! ListProcesses and its task put back in the table, and its event pump
//! resumes from the oldest unacknowledged event (the shim keeps them), so
//! exits that happened while berthd was down are published once. A bundle
//! whose shim is dead is cleaned up (runtime `delete --force`, rootfs
//! unmounted, bundle removed) and its task kept as stopped with status 137
//! until deleted. A live shim that never created its task (Create was cut
//! short) is shut down and its bundle removed.
//!
//! # Why an interrupted Create or Delete ends fully done or fully undone
//!
//! Tasks.Create runs, in order: (a) the container record is read (it must
//! exist), (b) the bundle is written (`config.json`, `runtime.json`: the
//! intent), (c) `berth-shim start` launches the shim, which writes
//! `shim.pid` and `address` into the bundle before it answers, (d) the
//! shim's Create runs the runtime, which writes `init.pid`. Tasks.Delete
//! runs the shim's Delete (runtime state deleted, rootfs unmounted,
//! `init.pid` removed, then the shim exits) and then removes the bundle.
//! A kill -9 of berthd between any two steps leaves one of these states,
//! and recovery resolves each one way:
//!
//! - no container record for the bundle (the record went while berthd was
//!   down, or never existed): kill the shim, clean up: undone;
//! - bundle, no live shim, no `init.pid` (cut before (d), or after the
//!   shim's Delete): the task never existed or is deleted; clean up:
//!   undone (Create) or done (Delete);
//! - live shim that lists no init process (cut between (c) and (d), or
//!   after the shim's Delete): kill it, clean up: same;
//! - live shim with an init process: the task exists: done (Create) or
//!   not yet deleted (Delete did not reach the shim; the client retries);
//! - no live shim but `init.pid` (the shim died after (d)): the task is
//!   kept as stopped with status 137, as containerd reports a dead shim,
//!   its runtime state and mounts already cleaned up; Delete removes it.
//!
//! So after recovery every task has a live shim or is a stopped dead-shim
//! task, every shim belongs to a task, and every task has a record.
//!
//! Orphans outside bundles (runtime state under `<state>/.runc`, mounts
//! under the state dir, shim sockets under `<state>/.s`) are cleaned up
//! and logged, one line each ([`super::orphans`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt;

use super::bundle;
use super::error::Error;
use super::pump;
use super::shim;
use super::table::Tasks;
use super::task::{dead_exit, Placement, Task};

/// Shims reattached at once.
const PARALLEL: usize = 64;

/// `(namespace, id, bundle)` of every bundle under `state`.
fn scan(state: &Path, foreign: &[PathBuf]) -> Vec<(String, String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(state) else {
        return out;
    };
    for ns in namespaces.flatten() {
        let ns_name = ns.file_name().to_string_lossy().into_owned();
        if berth_api::identifiers::validate("namespace", &ns_name).is_err()
            || !ns.path().is_dir()
            || foreign.contains(&ns.path())
        {
            continue;
        }
        let Ok(ids) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for id in ids.flatten() {
            let id_name = id.file_name().to_string_lossy().into_owned();
            if berth_api::identifiers::validate("id", &id_name).is_ok() && id.path().is_dir() {
                out.push((ns_name.clone(), id_name, id.path()));
            }
        }
    }
    out
}

impl Tasks {
    /// Reattaches to the shims of a previous run before serving (see the
    /// module docs). Bundles without a container record are cleaned up.
    pub async fn recover(&self) {
        let store = self.inner.deps.store.clone();
        let has_record = move |ns: &str, id: &str| {
            !matches!(
                crate::store::containers::get(&store, ns, id),
                Err(crate::store::Error::NotFound { .. })
            )
        };
        run(self, &has_record).await
    }
}

async fn run(mgr: &Tasks, has_record: &(dyn Fn(&str, &str) -> bool + Sync)) {
    let state = &mgr.inner.config.state;
    bundle::empty_trash(state);
    let found = scan(state, &mgr.inner.config.foreign);
    let start = std::time::Instant::now();
    let n = found.len();
    let results: Vec<bool> = futures::stream::iter(found)
        .map(|(ns, id, dir)| async move {
            if has_record(&ns, &id) {
                one(mgr, &ns, &id, &dir).await
            } else {
                orphan(mgr, &ns, &id, &dir).await;
                false
            }
        })
        .buffer_unordered(PARALLEL)
        .collect()
        .await;
    let live = results.iter().filter(|r| **r).count();
    tracing::info!(
        bundles = n,
        live,
        elapsed_ms = start.elapsed().as_millis() as u64,
        "tasks recovered"
    );
    super::orphans::clean(
        state,
        &mgr.inner.config.default_runtime,
        &mgr.inner.config.foreign,
    )
    .await;
}

/// A bundle whose container record is gone: its shim (if any) is killed
/// and everything cleaned up.
async fn orphan(mgr: &Tasks, ns: &str, id: &str, dir: &Path) {
    let info = bundle::runtime_info(dir, &mgr.inner.config.default_runtime);
    let shim_pid = shim::read_shim_pid(dir).unwrap_or(0);
    tracing::warn!(
        namespace = ns,
        id,
        shim_pid,
        bundle = %dir.display(),
        "orphan bundle without a container record; killing its shim and removing it"
    );
    shim::kill(shim_pid).await;
    bundle::cleanup(dir, id, &info).await;
}

/// Recovers one bundle; true when its shim is live.
async fn one(mgr: &Tasks, ns: &str, id: &str, dir: &Path) -> bool {
    let info = bundle::runtime_info(dir, &mgr.inner.config.default_runtime);
    let shim_pid = shim::read_shim_pid(dir).unwrap_or(0);
    let address = std::fs::read_to_string(dir.join("address")).unwrap_or_default();
    if shim::pid_alive(shim_pid) && !address.trim().is_empty() {
        match reattach(mgr, ns, id, dir, address.trim(), shim_pid, &info).await {
            Ok(true) => return true,
            Ok(false) => {
                tracing::warn!(
                    namespace = ns,
                    id,
                    "shim has no task (create was interrupted); shutting it down"
                );
                shim::kill(shim_pid).await;
                bundle::cleanup(dir, id, &info).await;
                return false;
            }
            Err(e) => {
                tracing::warn!(namespace = ns, id, error = %e, "cannot reattach to a live shim");
                if shim::pid_alive(shim_pid) {
                    // Leave it: a later start-up may reach it. Report it.
                    return false;
                }
            }
        }
    }
    let has_init = dir.join("init.pid").exists();
    if !has_init {
        // Never created (Create cut before the runtime ran) or already
        // deleted by its shim (Delete cut before the bundle went).
        tracing::warn!(
            namespace = ns,
            id,
            shim_pid,
            bundle = %dir.display(),
            "orphan bundle without a live shim or task; removing it"
        );
        bundle::cleanup(dir, id, &info).await;
        return false;
    }
    // The shim is dead: clean up and keep the task as stopped (137).
    tracing::warn!(
        namespace = ns,
        id,
        shim_pid,
        "shim died while berthd was down; cleaning up its task"
    );
    let pid = std::fs::read_to_string(dir.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    bundle::cleanup(dir, id, &info).await;
    let at = Placement {
        bundle: dir.to_path_buf(),
        pid,
        shim_pid,
        info,
    };
    let events = mgr.inner.deps.events.clone();
    let task = Arc::new(Task::new(ns, id, at, shim::connect_dead(), events));
    task.mark_dead(dead_exit());
    mgr.insert(task);
    false
}

async fn reattach(
    mgr: &Tasks,
    ns: &str,
    id: &str,
    dir: &Path,
    address: &str,
    shim_pid: u32,
    info: &bundle::RuntimeInfo,
) -> Result<bool, Error> {
    // One round trip per shim (its pid is in the bundle): with hundreds of
    // shims, each call is a wake-up of every shim on a few cores.
    let mut client = shim::connect(address).await?;
    let procs = shim::outcome(client.list_processes(()).await)?.processes;
    let Some(init) = procs.iter().find(|p| p.exec_id.is_empty()) else {
        return Ok(false);
    };
    let pid = init.pid;
    let at = Placement {
        bundle: dir.to_path_buf(),
        pid,
        shim_pid,
        info: info.clone(),
    };
    let events = mgr.inner.deps.events.clone();
    let task =
        Arc::new(Task::new(ns, id, at, client, events).with_known(shim::process(id, init.clone())));
    pump::spawn(Arc::clone(&mgr.inner), Arc::clone(&task), 0);
    mgr.insert(task);
    tracing::debug!(
        namespace = ns,
        id,
        pid,
        shim_pid,
        processes = procs.len(),
        "reattached to shim"
    );
    Ok(true)
}

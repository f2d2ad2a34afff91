//! One container's task: its init process and exec'd processes, their
//! exits and the events about them.
//!
//! Lifecycle operations (create, start, exec, delete, pause, resume,
//! update) are serialised by one async lock; reads (state, wait, pids,
//! stats) and kill are not. Each process's exit status and time are kept
//! until the process is deleted. Deleting the init process unmounts the
//! rootfs and makes the shim exit on its own once berthd has acknowledged
//! the queued events (or after [`DRAIN_TIMEOUT`]).
//!
//! TaskExit is published in one place, [`Task::report_exits`], which every
//! change that can make an exit due calls: an exit recorded, a Start done,
//! the deferral of init's exit timed out, init deleted.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::events as ev;
use berth_api::task_types::Status;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::bundle::Bundle;
use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::events::EventQueue;
use crate::process::{Phase, Proc};
use crate::reaper::{Exit, Reaper};
use crate::runtime::Runtime;
use crate::stdio::StdioPaths;

/// How long a deleted shim waits for berthd to acknowledge its last events.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an exit waits for the shim-copied output (a terminal's) to
/// drain, and how long init's TaskExit waits for running execs' exits.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// A snapshot of one process for State/ListProcesses.
#[derive(Debug, Clone)]
pub struct ProcState {
    /// empty for init
    pub exec_id: String,
    /// 0 before start (exec) or create (init)
    pub pid: u32,
    /// containerd status
    pub status: Status,
    /// stdio as requested
    pub paths: StdioPaths,
    /// the exit, once reaped
    pub exit: Option<Exit>,
}

/// The container behind the task.
#[derive(Default)]
pub(crate) enum Container {
    /// nothing created yet
    #[default]
    Empty,
    /// created by the runtime and not deleted
    Live(Box<Live>),
    /// init was deleted: the shim is on its way out and creates nothing
    Deleted,
}

/// A created container: its processes and what the shim holds for it.
pub(crate) struct Live {
    pub(crate) runtime: Runtime,
    pub(crate) init: Proc,
    pub(crate) execs: HashMap<String, Proc>,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) oom: Option<JoinHandle<()>>,
    /// the shim mounted `<bundle>/rootfs` and unmounts it on delete
    pub(crate) rootfs_mounted: bool,
    /// false when the container shares a pid namespace: what is left of
    /// it is killed when init exits (the kernel does it otherwise)
    pub(crate) own_pid_ns: bool,
}

impl Live {
    pub(crate) fn proc(&self, exec_id: &str) -> Result<&Proc> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs.get(exec_id).ok_or_else(|| not_found(exec_id))
    }

    pub(crate) fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| not_found(exec_id))
    }

    fn paused(&self) -> bool {
        self.init.phase == Phase::Paused
    }

    fn snapshot(&self, p: &Proc) -> ProcState {
        ProcState {
            exec_id: p.exec_id.clone(),
            pid: p.pid,
            status: p.phase.status(self.paused()),
            paths: p.paths.clone(),
            exit: p.phase.exit(),
        }
    }
}

impl Container {
    pub(crate) fn live(&self) -> Result<&Live> {
        match self {
            Container::Live(l) => Ok(l),
            _ => Err(not_found("")),
        }
    }

    pub(crate) fn live_mut(&mut self) -> Result<&mut Live> {
        match self {
            Container::Live(l) => Ok(l),
            _ => Err(not_found("")),
        }
    }

    /// A process, or NotFound naming it.
    pub(crate) fn proc(&self, exec_id: &str) -> Result<&Proc> {
        match self {
            Container::Live(l) => l.proc(exec_id),
            _ => Err(not_found(exec_id)),
        }
    }

    /// A process, or NotFound naming it.
    pub(crate) fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        match self {
            Container::Live(l) => l.proc_mut(exec_id),
            _ => Err(not_found(exec_id)),
        }
    }
}

pub(crate) fn not_found(exec_id: &str) -> Error {
    if exec_id.is_empty() {
        Error::NotFound("task is not created".into())
    } else {
        Error::NotFound(format!("exec_id: process {exec_id:?} does not exist"))
    }
}

/// The shim's one task. See the module docs.
pub struct Task {
    pub(crate) namespace: String,
    pub(crate) id: String,
    pub(crate) bundle: Bundle,
    pub(crate) default_runtime: String,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) events: EventQueue,
    pub(crate) state: Mutex<Container>,
    pub(crate) op: tokio::sync::Mutex<()>,
    exit_tx: watch::Sender<bool>,
}

impl Task {
    /// A task with nothing created yet.
    pub fn new(
        namespace: &str,
        id: &str,
        bundle: &Path,
        default_runtime: &str,
        reaper: Arc<Reaper>,
    ) -> Arc<Self> {
        Arc::new(Self {
            namespace: namespace.to_string(),
            id: id.to_string(),
            bundle: Bundle::new(bundle),
            default_runtime: default_runtime.to_string(),
            reaper,
            events: EventQueue::new(namespace),
            state: Mutex::new(Container::Empty),
            op: tokio::sync::Mutex::new(()),
            exit_tx: watch::channel(false).0,
        })
    }

    /// Becomes true when the shim should stop serving and exit.
    pub fn exit_signal(&self) -> watch::Receiver<bool> {
        self.exit_tx.subscribe()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Container> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bundle directory.
    pub fn bundle(&self) -> &Path {
        self.bundle.path()
    }

    /// A process as errors name it: `"ID"` or `"EXEC" of task "ID"`.
    pub(crate) fn name(&self, exec_id: &str) -> String {
        if exec_id.is_empty() {
            format!("{:?}", self.id)
        } else {
            format!("{:?} of task {:?}", exec_id, self.id)
        }
    }

    /// Pid of the init process (0 before create).
    pub fn init_pid(&self) -> u32 {
        self.lock().live().map(|l| l.init.pid).unwrap_or(0)
    }

    /// State of one process.
    pub fn state(&self, exec_id: &str) -> Result<ProcState> {
        let st = self.lock();
        let live = st.live().map_err(|_| not_found(exec_id))?;
        Ok(live.snapshot(live.proc(exec_id)?))
    }

    /// Every process, init first.
    pub fn list(&self) -> Vec<ProcState> {
        let st = self.lock();
        let Ok(live) = st.live() else {
            return Vec::new();
        };
        let mut execs: Vec<&Proc> = live.execs.values().collect();
        execs.sort_by(|a, b| a.exec_id.cmp(&b.exec_id));
        std::iter::once(&live.init)
            .chain(execs)
            .map(|p| live.snapshot(p))
            .collect()
    }

    /// Resolves with the process's exit; waits while it runs.
    pub async fn wait(&self, exec_id: &str) -> Result<Exit> {
        let mut rx = self.lock().proc(exec_id)?.exit_tx.subscribe();
        let exit = rx
            .wait_for(|e| e.is_some())
            .await
            .map_err(|_| not_found(exec_id))?;
        (*exit).ok_or_else(|| not_found(exec_id))
    }

    /// Registers `pid` with the reaper and records its exit when it comes
    /// (after the terminal output drained, bounded).
    pub(crate) fn watch_exit(
        self: &Arc<Self>,
        exec_id: &str,
        pid: u32,
        output_done: Option<oneshot::Receiver<()>>,
    ) {
        let rx = self.reaper.watch(pid);
        let me = Arc::clone(self);
        let exec_id = exec_id.to_string();
        tokio::spawn(async move {
            let Ok(exit) = rx.await else { return };
            if let Some(done) = output_done {
                let _ = tokio::time::timeout(OUTPUT_DRAIN, done).await;
            }
            me.on_exit(&exec_id, pid, exit);
        });
    }

    /// Records an exit. Without its own pid namespace the container's
    /// remaining processes are killed when init exits.
    fn on_exit(self: &Arc<Self>, exec_id: &str, pid: u32, exit: Exit) {
        let mut st = self.lock();
        let Ok(live) = st.live_mut() else { return };
        let Ok(p) = live.proc_mut(exec_id) else {
            return;
        };
        if p.pid != pid || !p.phase.exited(exit) {
            return;
        }
        tracing::info!(exec_id, pid, status = exit.status, "process exited");
        p.exit_tx.send_replace(Some(exit));
        if exec_id.is_empty() {
            if !live.own_pid_ns {
                let rt = live.runtime.clone();
                let id = self.id.clone();
                tokio::spawn(async move {
                    let _ = rt.kill(&id, 9, true).await;
                });
            }
            if live.execs.values().any(|e| e.phase.is_running()) {
                // Init's TaskExit waits for theirs, or OUTPUT_DRAIN.
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(OUTPUT_DRAIN).await;
                    me.report_exits_now(true);
                });
            }
        }
        self.report_exits(live, false);
    }

    /// [`Task::report_exits`] under the state lock.
    pub(crate) fn report_exits_now(&self, force: bool) {
        let mut st = self.lock();
        if let Ok(live) = st.live_mut() {
            self.report_exits(live, force);
        }
    }

    /// Publishes every TaskExit that is due, each once. Like containerd,
    /// init's TaskExit follows the exits of exec'd processes that were
    /// still running (the kernel kills them with the pid namespace's
    /// init), unless `force` (the deferral timed out, init is deleted). An
    /// exit during a Start waits in [`Phase::Starting`] until TaskStart.
    pub(crate) fn report_exits(&self, live: &mut Live, force: bool) {
        let mut execs: Vec<&mut Proc> = live
            .execs
            .values_mut()
            .filter(|p| p.phase.has_unreported())
            .collect();
        execs.sort_by_key(|p| p.phase.exit().map(|e| e.at));
        for p in execs {
            if let Some(exit) = p.phase.take_unreported() {
                self.publish_exit(p, exit);
            }
        }
        let execs_running = live.execs.values().any(|e| e.phase.is_running());
        if force || !execs_running {
            if let Some(exit) = live.init.phase.take_unreported() {
                self.publish_exit(&live.init, exit);
            }
        }
    }

    fn publish_exit(&self, p: &Proc, exit: Exit) {
        let msg = ev::TaskExit {
            container_id: self.id.clone(),
            id: if p.exec_id.is_empty() {
                self.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid,
            exit_status: exit.status,
            exited_at: Some(exit.at.into()),
        };
        self.events.publish("/tasks/exit", "TaskExit", &msg);
    }

    /// Publishes the OOM event (called by the OOM watcher).
    pub(crate) fn on_oom(&self) {
        tracing::warn!("container hit its memory limit (oom)");
        self.events.publish(
            "/tasks/oom",
            "TaskOOM",
            &ev::TaskOom {
                container_id: self.id.clone(),
            },
        );
    }

    /// Asks the shim to exit after berthd has acknowledged the queued
    /// events, or after [`DRAIN_TIMEOUT`]; `now` skips the wait.
    pub fn exit_after_drain(self: &Arc<Self>, now: bool) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            if !now {
                let mut changes = me.events.subscribe();
                let drained = async {
                    while me.events.pending() > 0 {
                        if changes.changed().await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained).await;
            }
            tracing::info!(pending = me.events.pending(), "shim exiting");
            me.exit_tx.send_replace(true);
        });
    }

    /// Whether no process is left (nothing created, or init deleted).
    pub fn is_empty(&self) -> bool {
        !matches!(*self.lock(), Container::Live(_))
    }
}

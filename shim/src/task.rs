//! One container's task: its init process and exec'd processes, their
//! lifecycle through the OCI runtime, exit retention and events.
//!
//! Lifecycle operations (create, start, exec, delete, pause, resume,
//! update) are serialised by one async lock; reads (state, wait, pids,
//! stats) and kill are not. Each process's exit status and time are kept
//! until the process is deleted. Deleting the init process unmounts the
//! rootfs and makes the shim exit on its own once berthd has acknowledged
//! the queued events (or after [`DRAIN_TIMEOUT`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::events as ev;
use berth_api::task_types::Status;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::events::EventQueue;
use crate::reaper::{Exit, Reaper};
use crate::runtime::Runtime;
use crate::stdio::{ProcessIo, StdioPaths};

/// How long a deleted shim waits for berthd to acknowledge its last events.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an exit waits for the shim-copied output (a terminal's) to drain.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// A process's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcStatus {
    /// created by the runtime (init) or recorded (exec), not started
    Created,
    /// started and not yet reaped
    Running,
    /// exited; the exit is kept until delete
    Stopped,
}

/// One process of the task. The init process has an empty `exec_id`.
pub struct Proc {
    pub(crate) exec_id: String,
    pub(crate) pid: u32,
    pub(crate) status: ProcStatus,
    pub(crate) paths: StdioPaths,
    /// exec processes: the OCI process spec (JSON)
    pub(crate) spec: Vec<u8>,
    pub(crate) exit: Option<Exit>,
    pub(crate) exit_tx: watch::Sender<Option<Exit>>,
    pub(crate) io: Option<ProcessIo>,
    pub(crate) started: bool,
    /// a Start is running the runtime: an exit now is published after TaskStart
    pub(crate) starting: bool,
    pub(crate) exit_event_pending: bool,
}

impl Proc {
    pub(crate) fn new(exec_id: &str, paths: StdioPaths, spec: Vec<u8>) -> Self {
        Self {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: ProcStatus::Created,
            paths,
            spec,
            exit: None,
            exit_tx: watch::channel(None).0,
            io: None,
            started: false,
            starting: false,
            exit_event_pending: false,
        }
    }
}

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

#[derive(Default)]
pub(crate) struct State {
    pub(crate) runtime: Option<Runtime>,
    pub(crate) init: Option<Proc>,
    pub(crate) execs: HashMap<String, Proc>,
    pub(crate) paused: bool,
    pub(crate) cgroup: Option<Cgroup>,
    pub(crate) oom: Option<JoinHandle<()>>,
    pub(crate) rootfs_mounted: bool,
    pub(crate) deleted: bool,
    /// init exited but its TaskExit waits for running execs' exits
    pub(crate) init_exit_deferred: bool,
    /// the container shares a pid namespace: kill what is left when init exits
    pub(crate) kill_all_on_exit: bool,
}

impl State {
    pub(crate) fn proc(&self, exec_id: &str) -> Result<&Proc> {
        let p = if exec_id.is_empty() {
            self.init.as_ref()
        } else {
            self.execs.get(exec_id)
        };
        p.ok_or_else(|| not_found(exec_id))
    }
    pub(crate) fn proc_mut(&mut self, exec_id: &str) -> Result<&mut Proc> {
        let p = if exec_id.is_empty() {
            self.init.as_mut()
        } else {
            self.execs.get_mut(exec_id)
        };
        p.ok_or_else(|| not_found(exec_id))
    }
    pub(crate) fn runtime(&self) -> Result<Runtime> {
        self.runtime
            .clone()
            .ok_or_else(|| Error::NotFound("task is not created".into()))
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
    pub(crate) bundle: PathBuf,
    pub(crate) default_runtime: String,
    pub(crate) reaper: Arc<Reaper>,
    pub(crate) events: EventQueue,
    pub(crate) state: Mutex<State>,
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
            bundle: bundle.to_path_buf(),
            default_runtime: default_runtime.to_string(),
            reaper,
            events: EventQueue::new(namespace),
            state: Mutex::new(State::default()),
            op: tokio::sync::Mutex::new(()),
            exit_tx: watch::channel(false).0,
        })
    }

    /// Becomes true when the shim should stop serving and exit.
    pub fn exit_signal(&self) -> watch::Receiver<bool> {
        self.exit_tx.subscribe()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The container id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The bundle directory.
    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// Pid of the init process (0 before create).
    pub fn init_pid(&self) -> u32 {
        self.lock().init.as_ref().map(|p| p.pid).unwrap_or(0)
    }

    /// State of one process.
    pub fn state(&self, exec_id: &str) -> Result<ProcState> {
        let st = self.lock();
        Ok(snapshot(st.proc(exec_id)?, st.paused))
    }

    /// Every process, init first.
    pub fn list(&self) -> Vec<ProcState> {
        let st = self.lock();
        let mut out: Vec<ProcState> = st.init.iter().map(|p| snapshot(p, st.paused)).collect();
        let mut execs: Vec<&Proc> = st.execs.values().collect();
        execs.sort_by(|a, b| a.exec_id.cmp(&b.exec_id));
        out.extend(execs.into_iter().map(|p| snapshot(p, st.paused)));
        out
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

    /// Records an exit. Like containerd, the init process's TaskExit is
    /// published after the exits of exec'd processes that were still
    /// running (the kernel kills them with the pid namespace's init), or
    /// after [`OUTPUT_DRAIN`] at the latest. Without its own pid namespace
    /// the container's remaining processes are killed when init exits.
    fn on_exit(self: &Arc<Self>, exec_id: &str, pid: u32, exit: Exit) {
        let mut st = self.lock();
        let is_init = exec_id.is_empty();
        let Ok(p) = st.proc_mut(exec_id) else { return };
        if p.pid != pid || p.exit.is_some() {
            return;
        }
        tracing::info!(exec_id, pid, status = exit.status, "process exited");
        p.exit = Some(exit);
        p.status = ProcStatus::Stopped;
        p.exit_tx.send_replace(Some(exit));
        // A created process killed outside a Start has its exit published
        // at once; during a Start it waits for TaskStart.
        let started = p.started || !p.starting;
        if !started {
            p.exit_event_pending = true;
        }
        let execs_running = st.execs.values().any(|e| e.started && e.exit.is_none());
        if is_init {
            st.paused = false;
            if started && execs_running {
                st.init_exit_deferred = true;
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(OUTPUT_DRAIN).await;
                    me.flush_init_exit();
                });
            } else if started {
                self.publish_exit(st.proc("").ok());
            }
            if st.kill_all_on_exit {
                if let Some(rt) = st.runtime.clone() {
                    let id = self.id.clone();
                    tokio::spawn(async move {
                        let _ = rt.kill(&id, 9, true).await;
                    });
                }
            }
            return;
        }
        if started {
            self.publish_exit(st.proc(exec_id).ok());
        }
        if st.init_exit_deferred && !execs_running {
            st.init_exit_deferred = false;
            self.publish_exit(st.proc("").ok());
        }
    }

    fn publish_exit(&self, p: Option<&Proc>) {
        if let Some(p) = p {
            let msg = self.exit_event(p);
            self.events.publish("/tasks/exit", "TaskExit", &msg);
        }
    }

    /// Publishes a deferred init TaskExit (see [`Task::on_exit`]).
    pub(crate) fn flush_init_exit(&self) {
        let mut st = self.lock();
        if std::mem::take(&mut st.init_exit_deferred) {
            self.publish_exit(st.init.as_ref());
        }
    }

    pub(crate) fn exit_event(&self, p: &Proc) -> ev::TaskExit {
        let exit = p.exit.unwrap_or(Exit {
            pid: p.pid,
            status: 0,
            at: std::time::SystemTime::now(),
        });
        ev::TaskExit {
            container_id: self.id.clone(),
            id: if p.exec_id.is_empty() {
                self.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid,
            exit_status: exit.status,
            exited_at: Some(exit.at.into()),
        }
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
        let st = self.lock();
        st.init.is_none()
    }
}

fn snapshot(p: &Proc, paused: bool) -> ProcState {
    let status = match p.status {
        ProcStatus::Created => Status::Created,
        ProcStatus::Running if paused => Status::Paused,
        ProcStatus::Running => Status::Running,
        ProcStatus::Stopped => Status::Stopped,
    };
    ProcState {
        exec_id: p.exec_id.clone(),
        pid: p.pid,
        status,
        paths: p.paths.clone(),
        exit: p.exit,
    }
}

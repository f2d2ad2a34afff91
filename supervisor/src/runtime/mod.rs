//! The task manager: one berth-shim per container task.
//!
//! `io.containerd.runc.v2` (and `.v1`) tasks run under berth-shim, which
//! drives the OCI runtime named by the container's runc options
//! (`binary_name`), else berthd's `runtime_binary`. The table holds one
//! entry per task; each entry has its own lock for Create/Delete, and no
//! lock is held across a call to a shim except that per-task one.
//!
//! Events: a pump per shim streams its queued events, republishes each on
//! the bus and acknowledges it, so every event is published once, in order.
//! A shim that dies (its stream breaks and its pid is gone) is cleaned up
//! (runtime `delete --force`, rootfs unmounted, bundle removed) and its task
//! reported stopped with exit status 137, as containerd does.
//!
//! berthd never kills its shims when it stops: they run in their own
//! session, and [`TaskManager::recover`] reattaches to them at start-up.

pub mod bundle;
mod known;
mod orphans;
mod pump;
mod recover;
pub mod shim;
mod task;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

pub use bundle::RuntimeInfo;
pub use known::Change;
pub use task::{CreateTask, Exit, Task};

use crate::events::Events;

/// Runtime names served by berth-shim.
pub const RUNC_RUNTIMES: [&str; 2] = ["io.containerd.runc.v2", "io.containerd.runc.v1"];

/// containerd's exit status for a task whose shim died: 128 + SIGKILL.
pub const DEAD_SHIM_STATUS: u32 = 128 + 9;

/// Why a task operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// no such task or process
    #[error("{0}")]
    NotFound(String),
    /// the task or process exists
    #[error("{0}")]
    AlreadyExists(String),
    /// a malformed request; the message names the field
    #[error("{0}")]
    InvalidArgument(String),
    /// not allowed now (e.g. an unknown runtime, a missing binary)
    #[error("{0}")]
    FailedPrecondition(String),
    /// not supported by berthd
    #[error("{0}")]
    Unimplemented(String),
    /// the shim could not be started or reached
    #[error("shim: {0}")]
    Launch(String),
    /// the shim refused or failed a call (its code is kept)
    #[error("{0}")]
    Shim(#[from] tonic::Status),
    /// a bundle file
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// on which path
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// metadata
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// a bug
    #[error("internal: {0}")]
    Internal(String),
}

type Key = (String, String);

enum Slot {
    /// Create is running; the id is taken but not yet usable.
    Creating,
    Ready(Arc<Task>),
}

pub(crate) struct Inner {
    state: PathBuf,
    address: PathBuf,
    default_runtime: String,
    events: Events,
    table: Mutex<HashMap<Key, Slot>>,
    /// When this berthd started: shim events older than this happened
    /// while it was down and are kept for late subscribers.
    started: SystemTime,
}

/// The task table. Cheap to clone.
#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

/// Frees a reserved id unless the task made it into the table.
struct Reservation<'a> {
    mgr: &'a TaskManager,
    key: Key,
    done: bool,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.mgr.lock().remove(&self.key);
        }
    }
}

fn key(ns: &str, id: &str) -> Key {
    (ns.to_string(), id.to_string())
}

impl TaskManager {
    /// A manager keeping bundles under `state`; shims are told berthd's
    /// `address`; `default_runtime` is the OCI runtime binary used when a
    /// container's options name none.
    pub fn new(state: PathBuf, address: PathBuf, default_runtime: String, events: Events) -> Self {
        Self {
            inner: Arc::new(Inner {
                state,
                address,
                default_runtime,
                events,
                table: Mutex::new(HashMap::new()),
                started: SystemTime::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reserve(&self, ns: &str, id: &str) -> Result<Reservation<'_>, Error> {
        let k = key(ns, id);
        let mut t = self.lock();
        if t.contains_key(&k) {
            return Err(Error::AlreadyExists(format!("task {id:?}: already exists")));
        }
        t.insert(k.clone(), Slot::Creating);
        Ok(Reservation {
            mgr: self,
            key: k,
            done: false,
        })
    }

    fn insert(&self, task: Arc<Task>) {
        let k = key(&task.namespace, &task.id);
        self.lock().insert(k, Slot::Ready(task));
    }

    /// True while a task exists (or is being created) for the container.
    pub fn exists(&self, ns: &str, id: &str) -> bool {
        self.lock().contains_key(&key(ns, id))
    }

    /// The task of a container; NotFound when there is none.
    pub fn get(&self, ns: &str, id: &str) -> Result<Arc<Task>, Error> {
        match self.lock().get(&key(ns, id)) {
            Some(Slot::Ready(t)) => Ok(Arc::clone(t)),
            _ => Err(Error::NotFound(format!("task {id:?}: not found"))),
        }
    }

    /// Every task of a namespace, by id.
    pub fn list(&self, ns: &str) -> Vec<Arc<Task>> {
        let mut out: Vec<Arc<Task>> = self
            .lock()
            .iter()
            .filter(|((n, _), _)| n == ns)
            .filter_map(|(_, s)| match s {
                Slot::Ready(t) => Some(Arc::clone(t)),
                Slot::Creating => None,
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Creates a task: writes the bundle, launches and connects the shim,
    /// and has it create the init process. Returns the init pid. On any
    /// failure nothing is left: no shim, no bundle, no table entry.
    pub async fn create(&self, ns: &str, req: CreateTask) -> Result<u32, Error> {
        let id = req.container.id.clone();
        berth_api::identifiers::validate("container_id", &id)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut reservation = self.reserve(ns, &id)?;
        let task = task::create(&self.inner, ns, req).await?;
        let task = Arc::new(task);
        pump::spawn(Arc::clone(&self.inner), Arc::clone(&task), 0);
        let pid = task.pid;
        self.insert(task);
        reservation.done = true;
        Ok(pid)
    }

    /// Deletes a task's init process (it must have exited): the shim
    /// reports the exit, cleans up and exits; the bundle is removed. A task
    /// whose shim died answers with status 137.
    pub async fn delete(&self, ns: &str, id: &str) -> Result<(u32, Exit), Error> {
        let t = self.get(ns, id)?;
        let res = t.delete(&self.inner).await?;
        let k = key(ns, id);
        let mut table = self.lock();
        if matches!(table.get(&k), Some(Slot::Ready(cur)) if Arc::ptr_eq(cur, &t)) {
            table.remove(&k);
        }
        Ok(res)
    }

    /// Reattaches to the shims of a previous run before serving (see
    /// [`recover`](recover::run)). `has_record(ns, id)` says whether a
    /// container record exists; bundles without one are cleaned up.
    pub async fn recover(&self, has_record: &(dyn Fn(&str, &str) -> bool + Sync)) {
        recover::run(self, has_record).await
    }
}

impl Inner {
    /// Publishes a TaskExit for a task whose shim died; `downtime`: it
    /// died while berthd was down (recovery found it), so late subscribers
    /// get it too.
    fn publish_dead_exit(&self, task: &Task, exit: Exit, downtime: bool) {
        let msg = berth_api::events::TaskExit {
            container_id: task.id.clone(),
            id: task.id.clone(),
            pid: task.pid,
            exit_status: exit.status,
            exited_at: Some(crate::services::convert::timestamp(exit.at)),
        };
        if !downtime {
            self.events.publish(&task.namespace, "/tasks/exit", &msg);
            return;
        }
        use crate::events::Event as _;
        let env = crate::events::Envelope {
            timestamp: exit.at,
            namespace: task.namespace.clone(),
            topic: "/tasks/exit".into(),
            event: prost_types::Any {
                type_url: berth_api::type_urls::event(berth_api::events::TaskExit::NAME),
                value: prost::Message::encode_to_vec(&msg),
            },
        };
        if let Err(e) = self.events.forward_backlog(env) {
            tracing::error!(error = %e, "dropping a dead shim's exit event");
        }
    }
}

/// The exit recorded for a task whose shim died now.
pub fn dead_exit() -> Exit {
    Exit {
        status: DEAD_SHIM_STATUS,
        at: SystemTime::now(),
    }
}

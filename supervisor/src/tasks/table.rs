//! The task table: one entry per task, each with its own lock for
//! Create/Delete; no lock is held across a call to a shim except that
//! per-task one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use super::error::Error;
use super::task::Task;
use crate::events::Events;
use crate::store::Store;

type Key = (String, String);

enum Slot {
    /// Create is running; the id is taken but not yet usable.
    Creating,
    Ready(Arc<Task>),
}

/// Where the task service keeps its tasks and which runtime it uses.
#[derive(Debug, Clone)]
pub struct Config {
    /// The state directory: bundles, shim sockets, runtime state.
    pub state: PathBuf,
    /// berthd's own socket, which shims are told.
    pub address: PathBuf,
    /// The OCI runtime binary used when a container's options name none.
    pub default_runtime: String,
    /// Directories under `state` that other modules own (network
    /// namespaces, CNI caches, fifos): never bundles, and their mounts are
    /// not orphans, so recovery leaves them alone.
    pub foreign: Vec<PathBuf>,
}

/// What the task service needs from the rest of berthd.
#[derive(Clone)]
pub struct Deps {
    /// Container records (a task runs one).
    pub store: Store,
    /// Where task events go.
    pub events: Events,
}

pub(super) struct Inner {
    pub(super) config: Config,
    pub(super) deps: Deps,
    table: Mutex<HashMap<Key, Slot>>,
    /// When this berthd started: shim events older than this happened
    /// while it was down and are kept for late subscribers.
    pub(super) started: SystemTime,
}

/// The task service. Cheap to clone.
#[derive(Clone)]
pub struct Tasks {
    pub(super) inner: Arc<Inner>,
}

/// Frees a reserved id unless the task made it into the table.
pub(super) struct Reservation<'a> {
    tasks: &'a Tasks,
    key: Key,
    done: bool,
}

impl Reservation<'_> {
    /// Puts the created task in the table; the id is its own now.
    pub(super) fn fill(mut self, task: Arc<Task>) {
        self.tasks
            .lock()
            .insert(self.key.clone(), Slot::Ready(task));
        self.done = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.tasks.lock().remove(&self.key);
        }
    }
}

fn key(ns: &str, id: &str) -> Key {
    (ns.to_string(), id.to_string())
}

impl Tasks {
    /// A task service keeping bundles under `config.state`.
    pub fn new(config: Config, deps: Deps) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                deps,
                table: Mutex::new(HashMap::new()),
                started: SystemTime::now(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Slot>> {
        self.inner.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the id for a task being created.
    pub(super) fn reserve(&self, ns: &str, id: &str) -> Result<Reservation<'_>, Error> {
        let k = key(ns, id);
        let mut t = self.lock();
        if t.contains_key(&k) {
            return Err(Error::AlreadyExists(format!("task {id:?}: already exists")));
        }
        t.insert(k.clone(), Slot::Creating);
        Ok(Reservation {
            tasks: self,
            key: k,
            done: false,
        })
    }

    /// Puts a recovered task in the table.
    pub(super) fn insert(&self, task: Arc<Task>) {
        let k = key(&task.namespace, &task.id);
        self.lock().insert(k, Slot::Ready(task));
    }

    /// Takes `task` out of the table (unless another took its place).
    pub(super) fn remove(&self, task: &Arc<Task>) {
        let k = key(&task.namespace, &task.id);
        let mut table = self.lock();
        if matches!(table.get(&k), Some(Slot::Ready(cur)) if Arc::ptr_eq(cur, task)) {
            table.remove(&k);
        }
    }

    /// True while a task exists (or is being created) for the container.
    pub fn exists(&self, ns: &str, id: &str) -> bool {
        self.lock().contains_key(&key(ns, id))
    }

    /// The task of a container; NotFound when there is none.
    pub(super) fn get(&self, ns: &str, id: &str) -> Result<Arc<Task>, Error> {
        match self.lock().get(&key(ns, id)) {
            Some(Slot::Ready(t)) => Ok(Arc::clone(t)),
            _ => Err(Error::NotFound(format!("task {id:?}: not found"))),
        }
    }

    /// Every task of a namespace, by id.
    pub(super) fn all(&self, ns: &str) -> Vec<Arc<Task>> {
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
}

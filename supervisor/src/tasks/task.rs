//! One task: its shim connection, its known state, and the one place where
//! a call to its shim meets a shim that died ([`Task::call`]).

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use berth_api::events::TaskExit;
use tokio::sync::watch;

use super::bundle::{self, RuntimeInfo};
use super::error::Error;
use super::process::{Change, Exit, Known, Process, Status};
use super::shim::{self, Client, Reply};
use crate::events::{Envelope, Events};

/// containerd's exit status for a task whose shim died: 128 + SIGKILL.
pub const DEAD_SHIM_STATUS: u32 = 128 + 9;

/// The exit recorded for a task whose shim died now.
pub(super) fn dead_exit() -> Exit {
    Exit {
        status: DEAD_SHIM_STATUS,
        at: SystemTime::now(),
    }
}

/// A live (or dead-shim) task.
pub(crate) struct Task {
    /// Namespace.
    pub(crate) namespace: String,
    /// Container id.
    pub(crate) id: String,
    /// Bundle directory.
    pub(super) bundle: PathBuf,
    /// Init pid.
    pub(crate) pid: u32,
    /// The shim's pid.
    pub(super) shim_pid: u32,
    pub(super) info: RuntimeInfo,
    client: Client,
    events: Events,
    /// Serialises Delete with dead-shim cleanup.
    pub(super) op: tokio::sync::Mutex<()>,
    /// Set from just before the shim's Delete: the shim is expected to exit.
    pub(super) deleting: AtomicBool,
    /// Some once the shim is known dead.
    dead: watch::Sender<Option<Exit>>,
    /// True once the event pump has finished.
    pub(super) pump_done: watch::Sender<bool>,
    /// The init process as last known, for List.
    known: Known,
}

/// Where a task's shim is and what runs it.
pub(super) struct Placement {
    pub(super) bundle: PathBuf,
    pub(super) pid: u32,
    pub(super) shim_pid: u32,
    pub(super) info: RuntimeInfo,
}

impl Task {
    pub(super) fn new(ns: &str, id: &str, at: Placement, client: Client, events: Events) -> Self {
        Self {
            namespace: ns.to_string(),
            id: id.to_string(),
            bundle: at.bundle,
            pid: at.pid,
            shim_pid: at.shim_pid,
            info: at.info,
            client,
            events,
            op: tokio::sync::Mutex::new(()),
            deleting: AtomicBool::new(false),
            dead: watch::channel(None).0,
            pump_done: watch::channel(false).0,
            known: Known::new(Process::created(id, at.pid)),
        }
    }

    /// Starts the known state from the shim's answer about init.
    pub(super) fn with_known(self, state: Process) -> Self {
        self.known.remember(state);
        self
    }

    /// Applies a change of the init process reported by a call or event.
    pub(super) fn note(&self, change: Change) {
        self.known.note(change);
    }

    /// The init process's state without a call to the shim (see
    /// [`super::process`]); a dead shim's task reads as stopped (137).
    pub(crate) fn known_state(&self) -> Process {
        match self.dead() {
            Some(exit) => self.dead_state(exit),
            None => self.known.get(),
        }
    }

    /// Lets a verb through unless the init process's known status rules
    /// it out (`allowed` says, `refusal` is the answer then). A task whose
    /// shim died answers as every call to it does.
    pub(super) fn allow(
        &self,
        allowed: impl FnOnce(Status) -> bool,
        refusal: impl FnOnce() -> Error,
    ) -> Result<(), Error> {
        if self.dead().is_some() {
            return Err(Error::ShimDied(self.id.clone()));
        }
        match allowed(self.known.get().status) {
            true => Ok(()),
            false => Err(refusal()),
        }
    }

    /// A shim client for one call (clones share the connection).
    pub(super) fn client(&self) -> Client {
        self.client.clone()
    }

    /// The exit recorded when the shim died, if it did.
    pub(crate) fn dead(&self) -> Option<Exit> {
        *self.dead.borrow()
    }

    /// Calls the shim: the one place every verb meets a dead shim. A task
    /// whose shim is known dead answers NotFound at once; a call whose
    /// connection broke because the shim went away cleans up after it
    /// (once, see [`Task::handle_dead`]) and answers [`Error::ShimDied`];
    /// any other failure is the shim's own answer.
    pub(super) async fn call<T, Fut>(&self, f: impl FnOnce(Client) -> Fut) -> Result<T, Error>
    where
        Fut: Future<Output = Reply<T>>,
    {
        if self.dead().is_some() {
            return Err(Error::ShimDied(self.id.clone()));
        }
        match shim::outcome(f(self.client()).await) {
            Ok(v) => Ok(v),
            Err(failure) => Err(self.failed(failure).await),
        }
    }

    /// What a failed call means: the shim's refusal, or (the connection
    /// broke and the shim's pid is gone) a dead shim, cleaned up now.
    pub(super) async fn failed(&self, f: shim::Failure) -> Error {
        if !(f.broken && shim::wait_gone(self.shim_pid, Duration::from_secs(2)).await) {
            return f.into();
        }
        // A shim that exits after Delete is no death.
        if !self.deleting.load(Ordering::SeqCst) {
            self.handle_dead().await;
        }
        Error::ShimDied(self.id.clone())
    }

    /// The state a dead shim's init process reads as.
    fn dead_state(&self, exit: Exit) -> Process {
        Process {
            status: Status::Stopped,
            exit_status: exit.status,
            exited_at: Some(exit.at),
            ..Process::created(&self.id, self.pid)
        }
    }

    /// Remembers a fresh answer about the init process.
    pub(super) fn remember(&self, state: Process) {
        self.known.remember(state);
    }

    /// The init process as it reads once its shim died (status 137).
    pub(super) fn stopped_state(&self) -> Process {
        self.dead_state(self.dead().unwrap_or_else(dead_exit))
    }

    /// Waits until the shim is known dead; the exit recorded then.
    pub(super) async fn died(&self) -> Exit {
        let mut dead = self.dead.subscribe();
        let exit = dead.wait_for(|d| d.is_some()).await.ok().and_then(|d| *d);
        exit.unwrap_or_else(dead_exit)
    }

    /// Cleans up after a shim that died and reports the task stopped with
    /// status 137 (once).
    pub(super) async fn handle_dead(&self) {
        let _op = self.op.lock().await;
        if self.dead().is_some() {
            return;
        }
        tracing::warn!(namespace = %self.namespace, id = %self.id, shim_pid = self.shim_pid, "shim died; cleaning up its task");
        bundle::cleanup(&self.bundle, &self.id, &self.info).await;
        let exit = dead_exit();
        self.dead.send_replace(Some(exit));
        self.publish_dead_exit(exit, false);
    }

    /// Marks a task dead without cleanup (recovery found it so and cleaned
    /// up) and publishes its exit as one that happened while berthd was
    /// down.
    pub(super) fn mark_dead(&self, exit: Exit) {
        self.dead.send_replace(Some(exit));
        self.pump_done.send_replace(true);
        self.publish_dead_exit(exit, true);
    }

    /// Publishes a TaskExit for a task whose shim died; `downtime`: it
    /// died while berthd was down (recovery found it), so late subscribers
    /// get it too.
    fn publish_dead_exit(&self, exit: Exit, downtime: bool) {
        let msg = TaskExit {
            container_id: self.id.clone(),
            id: self.id.clone(),
            pid: self.pid,
            exit_status: exit.status,
            exited_at: Some(exit.at.into()),
        };
        if !downtime {
            self.events.publish(&self.namespace, &msg);
            return;
        }
        let env = Envelope::at(exit.at, &self.namespace, &msg);
        if let Err(e) = self.events.forward_backlog(env) {
            tracing::error!(error = %e, "dropping a dead shim's exit event");
        }
    }
}

//! A process as berthd knows it: its status, with the guards that say
//! which verbs it allows, and the init process's last known state, so that
//! Tasks.List answers from berthd's table instead of waking every shim
//! (with hundreds of tasks on a few cores that is most of a List's time,
//! and of a restart's).
//!
//! The known state is kept current from three sources: the shim's answers
//! (Create, State, ListProcesses at recovery), the results of calls that
//! change the state (Start, Pause, Resume, Wait), and the shim's own
//! events, which the pump applies in order before publishing them. So a
//! client that learned of a change through berthd (a reply, an event)
//! never lists the state before it. A stopped process stays stopped.
//!
//! # Guards
//!
//! The shim holds the truth; berthd's known state can only lag behind it.
//! A status moves forward (created → running ⇄ paused → stopped), so what
//! berthd knows is never ahead of the shim: a verb the known state already
//! rules out (anything but `kill --all` on a stopped process, a second
//! start) is refused here with the code the shim would answer, without a
//! call; everything else is the shim's to decide. A process that is gone
//! (it exited, or its container was deleted behind berthd's back) is
//! [`Refusal::Finished`], NotFound for every verb, as containerd's kill
//! answers and as berth-shim answers when the call reaches it.

use std::sync::Mutex;
use std::time::SystemTime;

/// A process's status (containerd's task status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// not known (a shim answered something berthd does not know)
    Unknown,
    /// created, not started
    Created,
    /// running
    Running,
    /// frozen
    Paused,
    /// being frozen
    Pausing,
    /// exited
    Stopped,
}

/// Why the known state refuses a verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// the process is gone: it exited (NotFound for every verb)
    Finished,
    /// start: only a created process starts
    NotCreated,
}

/// A guard's answer.
pub type Guard = Result<(), Refusal>;

impl Status {
    /// The one refusal every verb that needs a live process shares.
    fn live(self) -> Guard {
        match self {
            Status::Stopped => Err(Refusal::Finished),
            _ => Ok(()),
        }
    }

    /// Whether Start may run: only a created process starts.
    pub fn can_start(self) -> Guard {
        self.live()?;
        match self {
            Status::Created | Status::Unknown => Ok(()),
            _ => Err(Refusal::NotCreated),
        }
    }

    /// Whether a signal may be sent: not to a process that exited, except
    /// `all`, which reaches what is left of the container.
    pub fn can_signal(self, all: bool) -> Guard {
        if all {
            return Ok(());
        }
        self.live()
    }

    /// Whether a process may be exec'd into the task (the shim also wants
    /// it running).
    pub fn can_exec(self) -> Guard {
        self.live()
    }

    /// Whether the task may be paused or resumed (the shim decides which).
    pub fn can_freeze(self) -> Guard {
        self.live()
    }

    /// Whether resources may be updated: created, running or paused (a
    /// created task's limits apply when it starts, as with runc).
    pub fn can_update(self) -> Guard {
        self.live()
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit status (128 + signal when killed).
    pub status: u32,
    /// When it was seen.
    pub at: SystemTime,
}

/// A process of a task, as berthd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// The task (container) id.
    pub container_id: String,
    /// The exec id; empty for the init process.
    pub exec_id: String,
    /// Its pid (0 before it exists).
    pub pid: u32,
    /// Its status.
    pub status: Status,
    /// stdin fifo/URI.
    pub stdin: String,
    /// stdout fifo/URI.
    pub stdout: String,
    /// stderr fifo/URI.
    pub stderr: String,
    /// Whether it has a pty.
    pub terminal: bool,
    /// Exit status (0 until it exits).
    pub exit_status: u32,
    /// When it exited.
    pub exited_at: Option<SystemTime>,
}

impl Process {
    /// A created init process of `container_id` with `pid`.
    pub fn created(container_id: &str, pid: u32) -> Self {
        Self {
            container_id: container_id.to_string(),
            exec_id: String::new(),
            pid,
            status: Status::Created,
            stdin: String::new(),
            stdout: String::new(),
            stderr: String::new(),
            terminal: false,
            exit_status: 0,
            exited_at: None,
        }
    }

    /// Applies a change; nothing changes a stopped process.
    pub fn apply(&mut self, change: Change) {
        if self.status == Status::Stopped {
            return;
        }
        self.status = match change {
            Change::Started | Change::Resumed => Status::Running,
            Change::Paused => Status::Paused,
            Change::Exited(exit) => {
                self.exit_status = exit.status;
                self.exited_at = Some(exit.at);
                Status::Stopped
            }
        };
    }
}

/// One process of a task as `ps` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessInfo {
    /// Its pid.
    pub pid: u32,
    /// containerd's details (`ProcessDetails` with the exec id), if any.
    pub info: Option<prost_types::Any>,
}

/// A change in the init process's state.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    /// started
    Started,
    /// frozen
    Paused,
    /// thawed
    Resumed,
    /// exited
    Exited(Exit),
}

/// The init process as last known; see the module docs.
pub(super) struct Known(Mutex<Process>);

impl Known {
    /// Starts from what the shim reported.
    pub(super) fn new(state: Process) -> Self {
        Self(Mutex::new(state))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Process> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The state as last known.
    pub(super) fn get(&self) -> Process {
        self.lock().clone()
    }

    /// A fresh answer from the shim replaces what was known, except that
    /// a stopped process stays stopped: a State answer sent before the
    /// exit can arrive after the exit event was noted (and published).
    pub(super) fn remember(&self, state: Process) {
        let mut known = self.lock();
        if known.status == Status::Stopped && state.status != Status::Stopped {
            return;
        }
        *known = state;
    }

    /// Applies a change; nothing changes a stopped process.
    pub(super) fn note(&self, change: Change) {
        self.lock().apply(change);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_in_order_and_stopped_is_final() {
        let k = Known::new(Process::created("c", 7));
        k.note(Change::Started);
        assert_eq!(k.get().status, Status::Running);
        k.note(Change::Paused);
        assert_eq!(k.get().status, Status::Paused);
        k.note(Change::Resumed);
        let at = std::time::SystemTime::now();
        k.note(Change::Exited(Exit { status: 3, at }));
        let s = k.get();
        assert_eq!((s.status, s.exit_status, s.pid), (Status::Stopped, 3, 7));
        assert_eq!(s.exited_at, Some(at));
        // A late start event (published before the exit) changes nothing.
        k.note(Change::Started);
        assert_eq!(k.get().status, Status::Stopped);
        // Nor does a State answer the shim sent before the exit.
        let mut stale = Process::created("c", 7);
        stale.status = Status::Running;
        k.remember(stale);
        assert_eq!(k.get().status, Status::Stopped);
    }

    #[test]
    fn guards_refuse_only_what_the_known_state_rules_out() {
        use Refusal::*;
        use Status::*;
        // Start: only from created (or unknown: the shim decides).
        assert_eq!((Created.can_start(), Unknown.can_start()), (Ok(()), Ok(())));
        for s in [Running, Paused] {
            assert_eq!(s.can_start(), Err(NotCreated), "{s:?}");
        }
        // Signals: never to an exited process, but `all` reaches the rest
        // of the container.
        for s in [Unknown, Created, Running, Paused] {
            assert_eq!(s.can_signal(false), Ok(()), "{s:?}");
        }
        assert_eq!(Stopped.can_signal(true), Ok(()));
        // Exec, pause/resume, update: anything but stopped (the known
        // state may lag: a created task may already run, a paused one may
        // have been resumed).
        for s in [Unknown, Created, Running, Paused] {
            assert_eq!(
                (s.can_exec(), s.can_freeze(), s.can_update()),
                (Ok(()), Ok(()), Ok(())),
                "{s:?}"
            );
        }
        // A gone process is the same refusal for every verb.
        for g in [
            Stopped.can_start(),
            Stopped.can_signal(false),
            Stopped.can_exec(),
            Stopped.can_freeze(),
            Stopped.can_update(),
        ] {
            assert_eq!(g, Err(Finished));
        }
    }
}

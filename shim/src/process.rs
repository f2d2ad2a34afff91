//! One process of the container (its init or an exec'd one): where it is
//! in its life, and the guards every verb asks before it acts.
//!
//! ```text
//!            start            runtime done
//! Created ──────────▶ Starting ──────────▶ Running ◀──▶ Paused (init only)
//!    │                   │ exit held         │             │
//!    │ exit              ▼                   │ exit        │ exit
//!    └──────────────▶ Exited ◀───────────────┴─────────────┘
//! ```
//!
//! An exit that comes while a Start is running the runtime is held by
//! `Starting` until the Start has published TaskStart, so TaskExit never
//! precedes it. A process that has exited is gone for every verb that
//! needs it alive (start, kill, exec into it, pause, resume, update): they
//! answer NotFound, as containerd's kill does; State, Wait and Delete
//! still see its exit, and ResizePty and CloseIO leave it alone. `Exited` remembers whether its TaskExit was published,
//! which the task does in one place (`Task::report_exits`). A deleted
//! process is no longer in the task's table.

use berth_api::task_types::Status;
use tokio::sync::watch;

use crate::error::Error;
use crate::reaper::Exit;
use crate::stdio::{ProcessIo, StdioPaths};

/// Where a process is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// init: created by the runtime; exec: recorded, not run yet
    Created,
    /// a Start is running the runtime; an exit that comes meanwhile is held
    Starting {
        /// the exit, if the process already ended
        exited: Option<Exit>,
    },
    /// started and not reaped
    Running,
    /// init only: the container is frozen
    Paused,
    /// reaped; kept until the process is deleted
    Exited {
        /// how it ended
        exit: Exit,
        /// whether its TaskExit has been published
        reported: bool,
    },
}

/// Why a verb is refused in a process's current phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// start: only a created process starts
    NotCreated,
    /// kill: an exec that was never started has no pid
    NotStarted,
    /// delete: a live process must be killed first
    StillRunning,
    /// the process has exited
    Finished,
    /// the container's init is not running
    NotRunning,
    /// pause: already frozen
    AlreadyPaused,
    /// resume: not frozen
    NotPaused,
}

impl Refusal {
    /// The error for process `name` (as `Task::name` spells it).
    pub fn error(self, name: &str) -> Error {
        match self {
            Refusal::NotCreated => {
                Error::FailedPrecondition(format!("process {name} is not in created state"))
            }
            Refusal::NotStarted => {
                Error::FailedPrecondition(format!("process {name} is not started"))
            }
            Refusal::StillRunning => Error::FailedPrecondition(format!(
                "process {name} is running; kill it before deleting"
            )),
            Refusal::Finished => Error::NotFound(format!("process {name} already finished")),
            Refusal::NotRunning => Error::FailedPrecondition(format!("task {name} is not running")),
            Refusal::AlreadyPaused => {
                Error::FailedPrecondition(format!("task {name} is already paused"))
            }
            Refusal::NotPaused => Error::FailedPrecondition(format!("task {name} is not paused")),
        }
    }
}

/// A guard's answer.
pub type Guard = Result<(), Refusal>;

impl Phase {
    /// Start runs a created process.
    pub fn can_start(&self) -> Guard {
        match self {
            Phase::Created => Ok(()),
            Phase::Exited { .. } => Err(Refusal::Finished),
            _ => Err(Refusal::NotCreated),
        }
    }

    /// Kill signals a process that has a pid and has not exited; `all` on
    /// init also reaches what is left of an exited container.
    pub fn can_kill(&self, is_init: bool, all: bool) -> Guard {
        match self {
            Phase::Exited { .. } if !(is_init && all) => Err(Refusal::Finished),
            Phase::Created | Phase::Starting { .. } if !is_init => Err(Refusal::NotStarted),
            _ => Ok(()),
        }
    }

    /// Delete removes a process that never ran or has exited.
    pub fn can_delete(&self) -> Guard {
        match self {
            Phase::Created | Phase::Exited { .. } => Ok(()),
            _ => Err(Refusal::StillRunning),
        }
    }

    /// Exec adds a process to a running (or frozen) container. Asked of init.
    pub fn can_exec(&self) -> Guard {
        match self {
            Phase::Running | Phase::Paused => Ok(()),
            Phase::Exited { .. } => Err(Refusal::Finished),
            _ => Err(Refusal::NotRunning),
        }
    }

    /// Pause freezes a running container. Asked of init.
    pub fn can_pause(&self) -> Guard {
        match self {
            Phase::Running => Ok(()),
            Phase::Paused => Err(Refusal::AlreadyPaused),
            Phase::Exited { .. } => Err(Refusal::Finished),
            _ => Err(Refusal::NotRunning),
        }
    }

    /// Resume thaws a frozen container. Asked of init.
    pub fn can_resume(&self) -> Guard {
        match self {
            Phase::Paused => Ok(()),
            Phase::Running => Err(Refusal::NotPaused),
            Phase::Exited { .. } => Err(Refusal::Finished),
            _ => Err(Refusal::NotRunning),
        }
    }

    /// Update changes the resources of a created, running or frozen
    /// container (a created one's new limits apply when it starts, as with
    /// containerd and runc). Asked of init.
    pub fn can_update(&self) -> Guard {
        match self {
            Phase::Created | Phase::Running | Phase::Paused => Ok(()),
            Phase::Exited { .. } => Err(Refusal::Finished),
            Phase::Starting { .. } => Err(Refusal::NotRunning),
        }
    }

    /// Whether the process is alive after a Start.
    pub fn is_running(&self) -> bool {
        matches!(self, Phase::Running | Phase::Paused)
    }

    /// The exit, once the process has ended (also while a Start holds it).
    pub fn exit(&self) -> Option<Exit> {
        match *self {
            Phase::Starting { exited } => exited,
            Phase::Exited { exit, .. } => Some(exit),
            _ => None,
        }
    }

    /// containerd's status; an exec in a frozen container is paused too.
    pub fn status(&self, container_paused: bool) -> Status {
        match self {
            Phase::Created | Phase::Starting { exited: None } => Status::Created,
            Phase::Running if container_paused => Status::Paused,
            Phase::Running => Status::Running,
            Phase::Paused => Status::Paused,
            Phase::Starting { exited: Some(_) } | Phase::Exited { .. } => Status::Stopped,
        }
    }

    /// Records an exit; false when one is already recorded.
    pub fn exited(&mut self, exit: Exit) -> bool {
        *self = match *self {
            Phase::Created | Phase::Running | Phase::Paused => Phase::Exited {
                exit,
                reported: false,
            },
            Phase::Starting { exited: None } => Phase::Starting { exited: Some(exit) },
            Phase::Starting { exited: Some(_) } | Phase::Exited { .. } => return false,
        };
        true
    }

    /// A Start begins (after [`Phase::can_start`]).
    pub fn starting(&mut self) {
        *self = Phase::Starting { exited: None };
    }

    /// A Start ends: running, or exited if the exit came meanwhile; on
    /// failure, back to created unless it exited.
    pub fn start_done(&mut self, ok: bool) {
        if let Phase::Starting { exited } = *self {
            *self = match exited {
                Some(exit) => Phase::Exited {
                    exit,
                    reported: false,
                },
                None if ok => Phase::Running,
                None => Phase::Created,
            };
        }
    }

    /// Pause or Resume succeeded.
    pub fn set_paused(&mut self, paused: bool) {
        *self = match *self {
            Phase::Running | Phase::Paused if paused => Phase::Paused,
            Phase::Running | Phase::Paused => Phase::Running,
            other => other,
        };
    }

    /// The exit whose TaskExit is still to be published, marked published.
    pub fn take_unreported(&mut self) -> Option<Exit> {
        match self {
            Phase::Exited { exit, reported } if !*reported => {
                *reported = true;
                Some(*exit)
            }
            _ => None,
        }
    }

    /// Whether an exit is recorded whose TaskExit is still to be published.
    pub fn has_unreported(&self) -> bool {
        matches!(
            self,
            Phase::Exited {
                reported: false,
                ..
            }
        )
    }
}

/// One process of the task. The init process has an empty `exec_id`.
pub struct Proc {
    pub(crate) exec_id: String,
    /// 0 until the runtime reported it
    pub(crate) pid: u32,
    pub(crate) phase: Phase,
    pub(crate) paths: StdioPaths,
    /// exec processes: the OCI process spec (JSON)
    pub(crate) spec: Vec<u8>,
    /// Wait's channel: the exit, once recorded
    pub(crate) exit_tx: watch::Sender<Option<Exit>>,
    pub(crate) io: Option<ProcessIo>,
}

impl Proc {
    pub(crate) fn new(exec_id: &str, paths: StdioPaths, spec: Vec<u8>) -> Self {
        Self {
            exec_id: exec_id.to_string(),
            pid: 0,
            phase: Phase::Created,
            paths,
            spec,
            exit_tx: watch::channel(None).0,
            io: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn exit(status: u32) -> Exit {
        Exit {
            pid: 42,
            status,
            at: SystemTime::now(),
        }
    }

    #[test]
    fn guards_by_phase() {
        let exited = Phase::Exited {
            exit: exit(0),
            reported: true,
        };
        let starting = Phase::Starting { exited: None };
        let all = [
            Phase::Created,
            starting,
            Phase::Running,
            Phase::Paused,
            exited,
        ];
        let ok = |g: Guard| g.is_ok();
        // start
        assert_eq!(
            all.map(|p| ok(p.can_start())),
            [true, false, false, false, false]
        );
        // delete
        assert_eq!(
            all.map(|p| ok(p.can_delete())),
            [true, false, false, false, true]
        );
        assert_eq!(Phase::Running.can_delete(), Err(Refusal::StillRunning));
        // kill: init
        assert_eq!(
            all.map(|p| ok(p.can_kill(true, false))),
            [true, true, true, true, false]
        );
        assert_eq!(exited.can_kill(true, false), Err(Refusal::Finished));
        assert!(
            exited.can_kill(true, true).is_ok(),
            "kill --all after init exit"
        );
        // kill: exec
        assert_eq!(
            all.map(|p| ok(p.can_kill(false, true))),
            [false, false, true, true, false]
        );
        assert_eq!(
            Phase::Created.can_kill(false, false),
            Err(Refusal::NotStarted)
        );
        assert_eq!(exited.can_kill(false, true), Err(Refusal::Finished));
        // container verbs, asked of init
        assert_eq!(
            all.map(|p| ok(p.can_exec())),
            [false, false, true, true, false]
        );
        assert_eq!(
            all.map(|p| ok(p.can_update())),
            [true, false, true, true, false]
        );
        assert_eq!(
            all.map(|p| ok(p.can_pause())),
            [false, false, true, false, false]
        );
        assert_eq!(Phase::Paused.can_pause(), Err(Refusal::AlreadyPaused));
        assert_eq!(
            all.map(|p| ok(p.can_resume())),
            [false, false, false, true, false]
        );
        assert_eq!(Phase::Running.can_resume(), Err(Refusal::NotPaused));
        assert_eq!(Phase::Created.can_resume(), Err(Refusal::NotRunning));
        assert_eq!(Phase::Created.can_exec(), Err(Refusal::NotRunning));
        assert_eq!(Phase::Running.can_start(), Err(Refusal::NotCreated));
        // An exited process is gone for every verb that needs it alive.
        for guard in [
            Phase::can_start,
            Phase::can_exec,
            Phase::can_pause,
            Phase::can_resume,
            Phase::can_update,
        ] {
            assert_eq!(guard(&exited), Err(Refusal::Finished));
        }
        assert_eq!(
            Refusal::Finished.error("\"c\"").to_string(),
            "process \"c\" already finished"
        );
    }

    #[test]
    fn transitions_and_exit_reporting() {
        // An exit during Start is held, then becomes an unreported exit.
        let mut p = Phase::Created;
        p.starting();
        assert_eq!(p.status(false), Status::Created);
        assert!(p.exited(exit(137)));
        assert!(!p.exited(exit(1)), "one exit only");
        assert_eq!(p.status(false), Status::Stopped);
        assert!(!p.has_unreported(), "held while starting");
        p.start_done(true);
        assert_eq!(p.exit().map(|e| e.status), Some(137));
        assert_eq!(p.take_unreported().map(|e| e.status), Some(137));
        assert_eq!(p.take_unreported(), None, "reported once");

        // A Start that fails leaves a created process created.
        let mut p = Phase::Created;
        p.starting();
        p.start_done(false);
        assert_eq!(p, Phase::Created);
        p.starting();
        p.start_done(true);
        assert_eq!(p, Phase::Running);

        // Pause and resume; an exit while frozen ends the pause.
        p.set_paused(true);
        assert_eq!(p.status(false), Status::Paused);
        assert_eq!(
            Phase::Running.status(true),
            Status::Paused,
            "exec in a frozen container"
        );
        p.set_paused(false);
        assert_eq!(p, Phase::Running);
        p.set_paused(true);
        assert!(p.exited(exit(0)));
        assert!(p.has_unreported());
        p.set_paused(false);
        assert!(matches!(p, Phase::Exited { .. }));
    }
}

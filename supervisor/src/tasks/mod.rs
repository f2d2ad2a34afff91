//! Tasks: one berth-shim per container task, and the verbs on it.
//!
//! `io.containerd.runc.v2` (and `.v1`) tasks run under berth-shim, which
//! drives the OCI runtime named by the container's runc options
//! (`binary_name`), else berthd's `runtime_binary`. [`Tasks`] is the
//! domain API every adapter calls (the containerd Tasks service today, the
//! CRI next): create with a container's spec, start, kill, exec, wait,
//! delete, state, list, pause/resume, update, pids, metrics, pty resize,
//! stdin close, and stop (signal, grace, SIGKILL). One file per verb adds to `impl Tasks`; none of them, nor
//! an adapter, sees the shim's wire types: [`shim`] is the one seam.
//!
//! A process's state is a [`Status`] with guards (`can_start`, ...) that
//! refuse what berthd already knows to be impossible; the shim decides the
//! rest. A shim that dies is handled in one place, [`task::Task::call`],
//! for every verb: the task is cleaned up (runtime `delete --force`,
//! rootfs unmounted, bundle removed) and reported stopped with exit
//! status 137, as containerd does.
//!
//! Events: a pump per shim streams its queued events, republishes each on
//! the bus and acknowledges it, so every event is published once, in order.
//!
//! berthd never kills its shims when it stops: they run in their own
//! session, and [`Tasks::recover`] reattaches to them at start-up.

mod bundle;
mod create;
mod delete;
mod error;
mod exec;
mod io;
mod kill;
mod orphans;
mod pause;
mod process;
mod pump;
mod recover;
mod shim;
mod start;
mod state;
mod stats;
mod stop;
mod table;
mod task;
mod update;
mod wait;

pub use create::{CreateTask, LogFile, OpenStdin, RUNC_RUNTIMES};
pub use delete::Deleted;
pub use error::Error;
pub use exec::ExecProcess;
pub use io::{AttachOutput, Attached};
pub use kill::Kill;
pub use process::{Exit, Guard, Process, ProcessInfo, Refusal, Status};
pub use stats::{decode_metrics, CgroupFigures};
pub use stop::Stop;
pub use table::{Config, Deps, Tasks};
pub use task::DEAD_SHIM_STATUS;

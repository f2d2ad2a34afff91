//! berth-shim: one per container. Daemonises away from berthd, becomes a
//! child subreaper, drives a runc-compatible OCI runtime through its CLI and
//! serves `berth.shim.v1` on a unix socket with a single-threaded runtime.
//!
//! Entry points: [`daemon::start`] (`berth-shim start`) and
//! [`daemon::serve`] (the hidden `berth-shim serve`).

pub mod attach;
pub mod bundle;
pub mod cgroup;
pub mod console;
pub mod daemon;
pub mod error;
pub mod events;
pub mod lifecycle;
pub mod logfile;
pub mod oom;
pub mod ops;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod stdio;
mod sys;
pub mod task;

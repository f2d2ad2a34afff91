//! Issue 4 through berthctl: `run` (foreground, --rm, -d, env/cwd/user/
//! mounts, limits), containers, tasks (exec, ps, pause/resume, metrics,
//! kill, rm) and events, against a real berthd with berth-shim and runc,
//! cross-checked with Debian's ctr.
//!
//! One binary, one file per topic: `run` (foreground runs, the spec from
//! flags, bad input), `lifecycle` (a detached task's verbs and events,
//! containers in parallel), `tty` (a pty in tmux), `limits` (memory
//! limit, OOM, crun).

mod lifecycle;
mod limits;
mod run;
mod support;
mod tty;

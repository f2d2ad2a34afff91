//! The shim reaps every child itself: runc/crun invocations it spawned,
//! logging binaries, and container processes re-parented to it (it is a
//! child subreaper).
//!
//! One task turns SIGCHLD into a `waitpid(-1, WNOHANG)` loop and hands each
//! status to whoever registered for that pid. Nothing else in the process
//! may wait for children (no `std::process::Child::wait`, no
//! `tokio::process`): [`Reaper::spawn`] records the pid under the reaper's
//! lock before the reaper can collect it, and an exit for a pid nobody has
//! claimed yet is parked until someone does (a container's init pid is only
//! known once runc has written its pid file).

use std::collections::{HashMap, VecDeque};
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// How one child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// its pid
    pub pid: u32,
    /// exit code, or 128 + signal number when killed by a signal
    pub status: u32,
    /// when the shim collected it
    pub at: SystemTime,
}

/// Parked exits nobody claimed are kept this long (and at most this many),
/// enough to cover the gap between a process starting and its pid file
/// being read.
const UNCLAIMED_TTL: Duration = Duration::from_secs(60);
const UNCLAIMED_MAX: usize = 1024;

#[derive(Default)]
struct Inner {
    waiters: HashMap<u32, oneshot::Sender<Exit>>,
    unclaimed: VecDeque<Exit>,
}

/// See the module docs.
#[derive(Default)]
pub struct Reaper {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Reaper")
    }
}

impl Reaper {
    /// Installs the SIGCHLD handler and starts the reaping task. Call once,
    /// inside the runtime, before spawning anything.
    pub fn start(self: &Arc<Self>) -> io::Result<()> {
        let mut sigchld = signal(SignalKind::child())?;
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Spawns `cmd` and registers its pid before the reaper can see it.
    /// The returned receiver resolves with the child's exit. Never call
    /// `wait` on the returned `Child`; dropping it is fine.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, oneshot::Receiver<Exit>)> {
        let mut inner = self.lock();
        let child = cmd.spawn()?;
        let (tx, rx) = oneshot::channel();
        inner.waiters.insert(child.id(), tx);
        Ok((child, rx))
    }

    /// Resolves when `pid` (a process re-parented to the shim, or any pid
    /// not spawned through [`Reaper::spawn`]) exits; immediately if it
    /// already has and the exit was parked.
    pub fn watch(&self, pid: u32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(pos) = inner.unclaimed.iter().position(|e| e.pid == pid) {
            if let Some(exit) = inner.unclaimed.remove(pos) {
                let _ = tx.send(exit);
                return rx;
            }
        }
        inner.waiters.insert(pid, tx);
        rx
    }

    /// Collects every exited child and dispatches its status.
    fn reap(&self) {
        let mut inner = self.lock();
        loop {
            let exit = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => exit_of(pid, code as u32),
                Ok(WaitStatus::Signaled(pid, sig, _)) => exit_of(pid, 128 + sig as u32),
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                Ok(_) => continue,
                Err(Errno::EINTR) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "waitpid failed");
                    break;
                }
            };
            match inner.waiters.remove(&exit.pid) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => {
                    let now = exit.at;
                    inner.unclaimed.retain(|e| {
                        now.duration_since(e.at)
                            .map(|d| d < UNCLAIMED_TTL)
                            .unwrap_or(true)
                    });
                    if inner.unclaimed.len() >= UNCLAIMED_MAX {
                        inner.unclaimed.pop_front();
                    }
                    inner.unclaimed.push_back(exit);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn exit_of(pid: Pid, status: u32) -> Exit {
    Exit {
        pid: pid.as_raw() as u32,
        status,
        at: SystemTime::now(),
    }
}

/// Two reapers in one process steal each other's children: unit tests
/// that start one hold this lock.
#[cfg(test)]
pub(crate) static TEST_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[cfg(test)]
mod tests {
    use super::*;

    // The reaper collects every child; nothing here may wait on its own.
    #[allow(clippy::zombie_processes)]
    #[tokio::test(flavor = "current_thread")]
    async fn spawned_and_watched_exits_are_dispatched() {
        let _one = TEST_LOCK.lock().await;
        let reaper = Arc::new(Reaper::default());
        reaper.start().unwrap();
        let (_c, rx) = reaper.spawn(Command::new("/bin/false").arg("x")).unwrap();
        assert_eq!(rx.await.unwrap().status, 1);
        let (_c, rx) = reaper
            .spawn(Command::new("/bin/sh").args(["-c", "kill -9 $$"]))
            .unwrap();
        assert_eq!(rx.await.unwrap().status, 137);

        // An exit reaped before anyone watched is parked, then delivered.
        let child = Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let exit = tokio::time::timeout(Duration::from_secs(5), reaper.watch(pid)).await;
        assert_eq!(exit.unwrap().unwrap().status, 0);
    }
}

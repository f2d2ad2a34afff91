//! Stop: end a task the way a container manager stops a container: its
//! stop signal to init, a grace period for it to exit, then SIGKILL to
//! every process of the container and a bounded wait for the exit.

use std::time::Duration;

use berth_api::ErrorKind;

use super::error::Error;
use super::kill::Kill;
use super::process::Status;
use super::table::Tasks;

const SIGKILL: u32 = 9;

/// How a task is stopped.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// The signal sent first (SIGTERM, or the image's stop signal).
    pub signal: u32,
    /// How long init gets to exit after it; zero sends SIGKILL at once.
    pub grace: Duration,
    /// How long to wait for the exit after SIGKILL.
    pub kill_wait: Duration,
}

impl Tasks {
    /// Stops task `id` as `how` says. A task that is gone or already
    /// stopped is fine (nothing to do); true if it ended within the grace
    /// period (false: SIGKILL was needed or nothing ran).
    pub async fn stop(&self, ns: &str, id: &str, how: Stop) -> Result<bool, Error> {
        let gone = |e: &Error| e.kind() == ErrorKind::NotFound;
        if !self.exists(ns, id) {
            return Ok(false);
        }
        match self.state(ns, id, "").await {
            Ok(p) if p.status == Status::Stopped => return Ok(false),
            Ok(_) => {}
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        if !how.grace.is_zero() {
            let first = Kill {
                signal: how.signal,
                ..Default::default()
            };
            match self.kill(ns, id, first).await {
                Ok(()) => {
                    if tokio::time::timeout(how.grace, self.wait(ns, id, ""))
                        .await
                        .is_ok()
                    {
                        return Ok(true);
                    }
                    tracing::info!(ns, id, grace = ?how.grace, "task still running: SIGKILL");
                }
                Err(e) if gone(&e) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        let kill = Kill {
            signal: SIGKILL,
            all: true,
            ..Default::default()
        };
        match self.kill(ns, id, kill).await {
            Ok(()) => {}
            Err(e) if gone(&e) => return Ok(false),
            Err(e) => return Err(e),
        }
        match tokio::time::timeout(how.kill_wait, self.wait(ns, id, "")).await {
            Ok(Ok(_)) => Ok(false),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "task {id:?}: still running {:?} after SIGKILL",
                how.kill_wait
            ))),
        }
    }
}

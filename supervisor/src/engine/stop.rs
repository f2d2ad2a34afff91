//! Stop, kill, restart, pause, unpause and wait. Stop sends the stop
//! signal (the container's, the image's, else SIGTERM), waits up to its
//! timeout for the run to end, then SIGKILLs every process and waits for
//! the monitor to finish; a stopped container is not restarted by its
//! policy.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::watch;

use super::model::Status;
use super::start::By;
use super::{Engine, Error, Result, RunMark, Slot};
use crate::tasks::Kill;

/// How long a SIGKILLed run may take to be cleaned up.
const KILL_GRACE: Duration = Duration::from_secs(30);

/// A signal by name (`SIGTERM`, `TERM`, `term`) or number.
pub(super) fn signal_number(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN+") {
        if let Ok(k) = rt.parse::<i32>() {
            return Ok(libc::SIGRTMIN() + k);
        }
    }
    Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| Error::InvalidArgument(format!("signal {s:?}: unknown")))
}

/// Waits until run `run` has ended (or the container is gone); false on
/// timeout.
pub(super) async fn run_ended(
    rx: &mut watch::Receiver<RunMark>,
    run: u64,
    timeout: Duration,
) -> bool {
    let done = |m: &RunMark| m.removed || m.run > run || (m.run == run && !m.running);
    tokio::time::timeout(timeout, rx.wait_for(done))
        .await
        .is_ok_and(|r| r.is_ok())
}

impl Engine {
    /// Stops container `what`; `timeout` overrides its stop timeout.
    pub async fn stop(&self, ns: &str, what: &str, timeout: Option<u32>) -> Result<String> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        self.stop_locked(&slot, timeout).await?;
        Ok(slot.id.clone())
    }

    /// Stop with the container's lock held.
    pub(super) async fn stop_locked(&self, slot: &Arc<Slot>, timeout: Option<u32>) -> Result<()> {
        let rec = self
            .update(slot, |r| {
                r.state.manually_stopped = true;
                if r.state.status == Status::Restarting {
                    r.state.status = Status::Exited;
                }
            })
            .await?;
        if !rec.state.status.is_running() {
            return Ok(());
        }
        let (ns, id) = (slot.ns.as_str(), slot.id.as_str());
        let run = rec.state.runs;
        let mut rx = slot.run.subscribe();
        let timeout = Duration::from_secs(timeout.unwrap_or_else(|| rec.stop_timeout()) as u64);
        let sig = signal_number(&rec.stop_signal)?;
        let tasks = &self.deps().tasks;
        let sent = tasks
            .kill(
                ns,
                id,
                Kill {
                    exec_id: String::new(),
                    signal: sig as u32,
                    all: false,
                },
            )
            .await;
        if rec.state.status == Status::Paused {
            let _ = tasks.resume(ns, id).await;
        }
        if let Err(e) = sent {
            if e.kind() != berth_api::ErrorKind::NotFound {
                tracing::warn!(namespace = ns, id, error = %e, "stop signal not sent; killing");
            }
        }
        if run_ended(&mut rx, run, timeout).await {
            return Ok(());
        }
        tracing::info!(namespace = ns, id, "stop timeout passed; killing");
        let _ = tasks
            .kill(
                ns,
                id,
                Kill {
                    exec_id: String::new(),
                    signal: libc::SIGKILL as u32,
                    all: true,
                },
            )
            .await;
        if run_ended(&mut rx, run, KILL_GRACE).await {
            return Ok(());
        }
        Err(Error::Internal(format!(
            "container {}: still running {}s after SIGKILL",
            rec.name,
            KILL_GRACE.as_secs()
        )))
    }

    /// Stops (if running) and starts container `what` again.
    pub async fn restart(
        &self,
        ns: &str,
        what: &str,
        timeout: Option<u32>,
    ) -> Result<(String, u32)> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        self.stop_locked(&slot, timeout).await?;
        let pid = self.start_locked(&slot, None, By::User).await?;
        Ok((slot.id.clone(), pid))
    }

    /// Sends `signal` (default SIGKILL) to the container's main process.
    /// The stop signal or SIGKILL counts as stopping it: its restart
    /// policy then leaves it stopped.
    pub async fn kill(&self, ns: &str, what: &str, signal: &str) -> Result<String> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        if !rec.state.status.is_running() {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.name
            )));
        }
        let sig = signal_number(if signal.is_empty() { "SIGKILL" } else { signal })?;
        if sig == libc::SIGKILL || signal_number(&rec.stop_signal).ok() == Some(sig) {
            self.update(&slot, |r| r.state.manually_stopped = true)
                .await?;
        }
        self.deps()
            .tasks
            .kill(
                &slot.ns,
                &slot.id,
                Kill {
                    exec_id: String::new(),
                    signal: sig as u32,
                    all: false,
                },
            )
            .await?;
        Ok(slot.id.clone())
    }

    /// Freezes a running container.
    pub async fn pause(&self, ns: &str, what: &str) -> Result<String> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is already paused",
                    rec.name
                )))
            }
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running",
                    rec.name
                )))
            }
        }
        self.deps().tasks.pause(&slot.ns, &slot.id).await?;
        self.update(&slot, |r| r.state.status = Status::Paused)
            .await?;
        Ok(slot.id.clone())
    }

    /// Thaws a paused container.
    pub async fn unpause(&self, ns: &str, what: &str) -> Result<String> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        if rec.state.status != Status::Paused {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not paused",
                rec.name
            )));
        }
        self.deps().tasks.resume(&slot.ns, &slot.id).await?;
        self.update(&slot, |r| r.state.status = Status::Running)
            .await?;
        Ok(slot.id.clone())
    }

    /// Waits until container `what` is not running; its exit code.
    pub async fn wait(&self, ns: &str, what: &str) -> Result<i32> {
        let slot = self.find(ns, what)?;
        let mut rx = slot.run.subscribe();
        let mark = *rx.borrow_and_update();
        if !mark.running {
            return Ok(slot.record().state.exit_code);
        }
        let run = mark.run;
        let done = |m: &RunMark| m.removed || m.run > run || (m.run == run && !m.running);
        let m = rx
            .wait_for(done)
            .await
            .map(|m| *m)
            .map_err(|_| Error::NotFound(format!("container {what}: removed")))?;
        Ok(m.exit_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(signal_number("SIGTERM").unwrap(), libc::SIGTERM);
        assert_eq!(signal_number("term").unwrap(), libc::SIGTERM);
        assert_eq!(signal_number("9").unwrap(), 9);
        assert_eq!(signal_number("SIGRTMIN+3").unwrap(), libc::SIGRTMIN() + 3);
        assert!(signal_number("SIGNOPE").is_err());
        assert!(signal_number("0").is_err());
    }
}

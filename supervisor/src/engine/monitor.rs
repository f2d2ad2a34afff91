//! The monitor of a run: waits for the task to exit, then cleans up
//! (task deleted, networks detached, ports freed, stdin closed), records
//! the exit, and removes the container (`auto_remove`) or restarts it by
//! its policy. Whoever waits on the run is told only after all of that.
//!
//! Back-off between restarts starts at 100 ms and doubles up to a minute,
//! as Docker's does; a run that lasted 10 s or more starts it over.
//! `on-failure:N` restarts after a non-zero exit, at most N times;
//! `always` and `unless-stopped` after every exit; none restarts a
//! container a user stopped or killed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::model::{RestartPolicy, Status};
use super::start::By;
use super::{Engine, RunMark, Slot};

/// First back-off.
const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest back-off.
const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A run this long resets the back-off.
const BACKOFF_RESET: Duration = Duration::from_secs(10);

/// Whether a container with `policy` that exited with `code` restarts.
pub(super) fn should_restart(
    policy: RestartPolicy,
    code: i32,
    manually_stopped: bool,
    restarts: u32,
) -> bool {
    if manually_stopped {
        return false;
    }
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        RestartPolicy::OnFailure { max_retries } => {
            code != 0 && (max_retries == 0 || restarts < max_retries)
        }
    }
}

impl Engine {
    /// Watches run `run` of `slot` until it ends; see the module doc.
    pub(super) fn spawn_monitor(&self, slot: Arc<Slot>, run: u64) {
        let engine = self.clone();
        tokio::spawn(async move {
            let (ns, id) = (slot.ns.clone(), slot.id.clone());
            let code = loop {
                match engine.deps().tasks.wait(&ns, &id, "").await {
                    Ok(exit) => break exit.status as i32,
                    Err(e) if e.kind() == berth_api::ErrorKind::NotFound => break 137,
                    Err(e) => {
                        tracing::warn!(namespace = %ns, id = %id, error = %e, "waiting for a container's task; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            };
            engine.on_exit(&slot, run, code).await;
        });
    }

    /// A run ended with `code`: clean up, record, then remove or restart.
    pub(super) async fn on_exit(&self, slot: &Arc<Slot>, run: u64, code: i32) {
        let rec = slot.record();
        if rec.state.runs != run || !rec.state.status.is_running() {
            return;
        }
        let (ns, id) = (slot.ns.as_str(), slot.id.as_str());
        match self.deps().tasks.delete(ns, id).await {
            Ok(_) => {}
            Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(namespace = ns, id, error = %e, "deleting an exited task"),
        }
        self.teardown_network(slot).await;
        slot.ports.lock().unwrap_or_else(|p| p.into_inner()).clear();
        slot.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        let lasted = rec
            .state
            .started_at
            .and_then(|s| SystemTime::now().duration_since(s).ok())
            .unwrap_or_default();
        let restart = should_restart(
            rec.config.restart,
            code,
            rec.state.manually_stopped,
            rec.state.restart_count,
        );
        let status = if restart {
            Status::Restarting
        } else {
            Status::Exited
        };
        let saved = self
            .update(slot, |r| {
                let s = &mut r.state;
                s.status = status;
                s.pid = 0;
                s.exit_code = code;
                s.finished_at = Some(SystemTime::now());
                s.endpoints.clear();
                s.ports.clear();
            })
            .await;
        if let Err(e) = saved {
            tracing::error!(namespace = ns, id, error = %e, "recording an exit");
        }
        self.refresh_hosts(&rec.config.networks).await;
        tracing::info!(namespace = ns, id, name = %rec.name, code, restart, "container exited");
        let mut removed = false;
        if rec.config.auto_remove && !restart {
            match self.destroy(slot).await {
                Ok(()) => removed = true,
                Err(e) => {
                    tracing::error!(namespace = ns, id, error = %e, "removing a container on exit")
                }
            }
        }
        slot.run.send_replace(RunMark {
            run,
            running: false,
            exit_code: code,
            removed,
        });
        if restart {
            let delay = next_backoff(slot, lasted);
            self.spawn_restart(Arc::clone(slot), delay);
        }
    }

    /// Starts the container again after `delay`, unless a user stopped or
    /// removed it meanwhile.
    pub(super) fn spawn_restart(&self, slot: Arc<Slot>, delay: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _op = slot.op.lock().await;
            let rec = slot.record();
            if rec.state.status != Status::Restarting
                || rec.state.manually_stopped
                || slot.removing.load(Ordering::SeqCst)
            {
                return;
            }
            let _ = engine.update(&slot, |r| r.state.restart_count += 1).await;
            if let Err(e) = engine.start_locked(&slot, None, By::Policy).await {
                tracing::warn!(namespace = %slot.ns, id = %slot.id, error = %e, "restart by policy failed");
                let _ = engine
                    .update(&slot, |r| {
                        r.state.status = Status::Exited;
                        r.state.error = e.to_string();
                    })
                    .await;
            }
        });
    }
}

/// The back-off before the next restart of `slot`.
fn next_backoff(slot: &Slot, lasted: Duration) -> Duration {
    let mut b = slot.backoff.lock().unwrap_or_else(|p| p.into_inner());
    let next = if lasted >= BACKOFF_RESET || b.is_zero() {
        BACKOFF_START
    } else {
        (*b * 2).min(BACKOFF_MAX)
    };
    *b = next;
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies() {
        let of = |n| RestartPolicy::OnFailure { max_retries: n };
        assert!(!should_restart(RestartPolicy::No, 1, false, 0));
        assert!(should_restart(RestartPolicy::Always, 0, false, 9));
        assert!(!should_restart(RestartPolicy::Always, 0, true, 0));
        assert!(should_restart(RestartPolicy::UnlessStopped, 0, false, 0));
        assert!(!should_restart(of(2), 0, false, 0));
        assert!(should_restart(of(2), 3, false, 1));
        assert!(!should_restart(of(2), 3, false, 2));
        assert!(should_restart(of(0), 3, false, 100));
    }
}

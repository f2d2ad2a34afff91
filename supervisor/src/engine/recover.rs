//! Start-up: every record is loaded again, after the task service has
//! reattached to its shims. A container whose task still runs keeps
//! running with its addresses (the CNI cache and its netns survived) and
//! its ports (bound again here), and gets a monitor; one whose task exited
//! while berthd was down is handled as a live exit (cleanup, restart
//! policy, removal); one whose task is gone altogether exited with 137.
//! Then, as Docker does at its start, `always` containers and
//! `unless-stopped` ones a user did not stop are started.

use std::sync::Arc;
use std::time::Duration;

use super::model::{RestartPolicy, Status};
use super::start::By;
use super::{ports, records, Engine, Slot};

impl Engine {
    /// Loads the records and resumes every container; see the module doc.
    pub async fn recover(&self) {
        self.deps().networks.recover().await;
        let all = match records::all(&self.deps().store) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(error = %e, "reading container records");
                return;
            }
        };
        let mut slots = Vec::new();
        for (ns, rec) in all {
            let slot = Slot::new(&ns, rec);
            self.slots()
                .insert((ns.clone(), slot.id.clone()), Arc::clone(&slot));
            slots.push(slot);
        }
        self.forget_volume_users(&slots).await;
        let mut resumed = 0usize;
        for slot in slots {
            let rec = slot.record();
            let (ns, id) = (slot.ns.clone(), slot.id.clone());
            match rec.state.status {
                Status::Running | Status::Paused => {
                    if self.deps().tasks.exists(&ns, &id) {
                        let mut wanted = rec.state.ports.clone();
                        match ports::bind_all(&mut wanted) {
                            Ok(held) => {
                                *slot.ports.lock().unwrap_or_else(|p| p.into_inner()) = held
                            }
                            Err(e) => {
                                tracing::warn!(namespace = %ns, id = %id, error = %e, "rebinding published ports")
                            }
                        }
                        self.spawn_monitor(Arc::clone(&slot), rec.state.runs);
                        resumed += 1;
                    } else {
                        tracing::info!(namespace = %ns, id = %id, "task gone while berthd was down");
                        self.on_exit(&slot, rec.state.runs, 137).await;
                    }
                }
                Status::Restarting => {
                    self.spawn_restart(Arc::clone(&slot), Duration::from_millis(100));
                }
                Status::Removing => {
                    if let Err(e) = self.destroy(&slot).await {
                        tracing::warn!(namespace = %ns, id = %id, error = %e, "finishing a removal");
                    }
                }
                Status::Exited => {
                    let start = match rec.config.restart {
                        RestartPolicy::Always => true,
                        RestartPolicy::UnlessStopped => !rec.state.manually_stopped,
                        _ => false,
                    };
                    if start {
                        let engine = self.clone();
                        tokio::spawn(async move {
                            let _op = slot.op.lock().await;
                            if let Err(e) = engine.start_locked(&slot, None, By::Policy).await {
                                tracing::warn!(namespace = %slot.ns, id = %slot.id, error = %e, "starting by policy at start-up");
                            }
                        });
                    }
                }
                Status::Created => {}
            }
        }
        tracing::info!(resumed, "containers recovered");
    }
}

//! Remove and prune: a stopped container (a running one with `force`,
//! killed first) goes in one step: its task, networks and ports, its
//! containerd record, its rootfs snapshot, its files (log included) and
//! its record.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::model::Status;
use super::stop::run_ended;
use super::{records, Engine, Error, Result, RunMark, Slot};
use crate::tasks::Kill;

impl Engine {
    /// Removes container `what`; see the module doc.
    pub async fn remove(&self, ns: &str, what: &str, force: bool) -> Result<String> {
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        if rec.state.status.is_running() {
            if !force {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is running: stop it first, or force the removal",
                    rec.name
                )));
            }
            self.update(&slot, |r| r.state.manually_stopped = true)
                .await?;
            let mut rx = slot.run.subscribe();
            let _ = self
                .deps()
                .tasks
                .kill(
                    ns,
                    &slot.id,
                    Kill {
                        exec_id: String::new(),
                        signal: libc::SIGKILL as u32,
                        all: true,
                    },
                )
                .await;
            if rec.state.status == Status::Paused {
                let _ = self.deps().tasks.resume(ns, &slot.id).await;
            }
            if !run_ended(&mut rx, rec.state.runs, Duration::from_secs(30)).await {
                return Err(Error::Internal(format!(
                    "container {}: still running 30s after SIGKILL",
                    rec.name
                )));
            }
        } else {
            self.update(&slot, |r| {
                r.state.manually_stopped = true;
                if r.state.status == Status::Restarting {
                    r.state.status = Status::Exited;
                }
            })
            .await?;
        }
        self.destroy(&slot).await?;
        Ok(slot.id.clone())
    }

    /// Removes everything of a container that is not running. The first
    /// call does it; later ones (an auto-remove racing a user's) return.
    pub(super) async fn destroy(&self, slot: &Arc<Slot>) -> Result<()> {
        if slot.removing.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let r = self.destroy_inner(slot).await;
        if r.is_err() {
            slot.removing.store(false, Ordering::SeqCst);
        }
        r
    }

    async fn destroy_inner(&self, slot: &Arc<Slot>) -> Result<()> {
        let (ns, id) = (slot.ns.as_str(), slot.id.as_str());
        let rec = self
            .update(slot, |r| r.state.status = Status::Removing)
            .await?;
        let deps = self.deps();
        if deps.tasks.exists(ns, id) {
            match deps.tasks.delete(ns, id).await {
                Ok(_) => {}
                Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.teardown_network(slot).await;
        slot.ports.lock().unwrap_or_else(|p| p.into_inner()).clear();
        slot.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
        match deps.containers.delete(ns, id).await {
            Ok(()) => {}
            Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        match deps.snapshots.remove(ns, &rec.snapshotter, id).await {
            Ok(()) => {}
            Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        let (dir, stdin_dir) = (rec.dir.clone(), self.cfg().state.join("engine").join(id));
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&stdin_dir);
        })
        .await;
        records::delete(&deps.store, ns, id).await?;
        let anonymous = rec.config.auto_remove || slot.remove_volumes.load(Ordering::SeqCst);
        self.release_volumes(ns, id, anonymous).await;
        self.slots().remove(&(ns.to_string(), id.to_string()));
        let mark = *slot.run.borrow();
        slot.run.send_replace(RunMark {
            removed: true,
            running: false,
            exit_code: rec.state.exit_code,
            ..mark
        });
        tracing::info!(namespace = ns, id, name = %rec.name, "container removed");
        Ok(())
    }

    /// Removes every container of `ns` that is not running (and, with
    /// filters, matches `label=K[=V]` and `until=DURATION|RFC3339`).
    pub async fn prune(&self, ns: &str, filters: &[String]) -> Result<Vec<String>> {
        let mut labels = Vec::new();
        let mut until: Option<SystemTime> = None;
        for f in filters {
            let (k, v) = f.split_once('=').unwrap_or((f, ""));
            match k {
                "label" => labels.push(v.to_string()),
                "until" => until = Some(parse_until(v)?),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "prune filter {f:?}: label=KEY[=VALUE] or until=TIME"
                    )))
                }
            }
        }
        let mut removed = Vec::new();
        for slot in self.all(ns) {
            let _op = slot.op.lock().await;
            let rec = slot.record();
            if !matches!(rec.state.status, Status::Created | Status::Exited) {
                continue;
            }
            let labelled = labels.iter().all(|l| match l.split_once('=') {
                Some((k, v)) => rec.config.labels.get(k).is_some_and(|x| x == v),
                None => rec.config.labels.contains_key(l),
            });
            if !labelled || until.is_some_and(|u| rec.created_at >= u) {
                continue;
            }
            self.destroy(&slot).await?;
            removed.push(slot.id.clone());
        }
        Ok(removed)
    }
}

/// `until=`: a duration before now (`10m`, `1h30m`) or an RFC 3339 time.
pub(super) fn parse_until(v: &str) -> Result<SystemTime> {
    if let Ok(d) = humantime::parse_duration(v) {
        return Ok(SystemTime::now() - d);
    }
    humantime::parse_rfc3339_weak(v)
        .map_err(|_| Error::InvalidArgument(format!("until {v:?}: a duration or an RFC 3339 time")))
}

//! Delete: remove a process that has exited; for the init process, the
//! whole task (the shim cleans up and exits, the bundle goes).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_api::shim::v1 as sp;

use super::bundle;
use super::error::Error;
use super::shim;
use super::table::{Inner, Tasks};
use super::task::{dead_exit, Task};

/// What a deleted process reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    /// Its pid.
    pub pid: u32,
    /// Its exit status.
    pub exit_status: u32,
    /// When it exited (None for one that never ran).
    pub exited_at: Option<SystemTime>,
}

impl Tasks {
    /// Deletes task `id` (its init process must have exited): the shim
    /// reports the exit, cleans up and exits; the bundle is removed.
    /// Returns the init pid and exit. A task whose shim died answers with
    /// status 137.
    pub async fn delete(&self, ns: &str, id: &str) -> Result<Deleted, Error> {
        let t = self.get(ns, id)?;
        let res = delete_init(&self.inner, &t).await?;
        self.remove(&t);
        Ok(res)
    }

    /// Deletes the exited process `exec_id` of task `id`; returns its pid
    /// and exit.
    pub async fn delete_process(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
    ) -> Result<Deleted, Error> {
        let t = self.get(ns, id)?;
        if exec_id.is_empty() {
            return Err(Error::InvalidArgument(
                "exec_id: required (delete the init process with Delete)".into(),
            ));
        }
        let req = sp::ProcessRequest {
            exec_id: exec_id.to_string(),
        };
        let r = t.call(|mut c| async move { c.delete(req).await }).await?;
        Ok(Deleted {
            pid: r.pid,
            exit_status: r.exit_status,
            exited_at: shim::time(r.exited_at),
        })
    }
}

/// Deletes the init process of `t`; see [`Tasks::delete`].
async fn delete_init(inner: &Inner, t: &Arc<Task>) -> Result<Deleted, Error> {
    let dead = |t: &Task| {
        let exit = t.dead().unwrap_or_else(dead_exit);
        Deleted {
            pid: t.pid,
            exit_status: exit.status,
            exited_at: Some(exit.at),
        }
    };
    let op = t.op.lock().await;
    if t.dead().is_some() {
        return Ok(dead(t));
    }
    t.deleting.store(true, Ordering::SeqCst);
    let req = sp::ProcessRequest {
        exec_id: String::new(),
    };
    let r = match shim::outcome(t.client().delete(req).await) {
        Ok(r) => r,
        Err(failure) => {
            t.deleting.store(false, Ordering::SeqCst);
            // The dead-shim cleanup takes the task's lock.
            drop(op);
            return match t.failed(failure).await {
                Error::ShimDied(_) => Ok(dead(t)),
                e => Err(e),
            };
        }
    };
    // The shim has deleted the container and unmounted its rootfs; it
    // exits once its last events are acknowledged. Waiting for that (and
    // removing the bundle) is off the reply's path: the bundle is moved
    // aside first, so the id is free at once.
    let dir = bundle::move_to_trash(&inner.config.state, &t.bundle);
    let mut done = t.pump_done.subscribe();
    let (ns, id, shim_pid) = (t.namespace.clone(), t.id.clone(), t.shim_pid);
    tokio::spawn(async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), done.wait_for(|d| *d)).await;
        if !shim::wait_gone(shim_pid, Duration::from_secs(2)).await {
            tracing::warn!(namespace = %ns, id = %id, shim_pid, "shim did not exit after delete; killing it");
            shim::kill(shim_pid).await;
        }
        let _ = tokio::task::spawn_blocking(move || bundle::remove(&dir)).await;
    });
    let exit = shim::exit(r.exit_status, r.exited_at);
    tracing::info!(namespace = %t.namespace, id = %t.id, status = exit.status, "task deleted");
    Ok(Deleted {
        pid: r.pid,
        exit_status: exit.status,
        exited_at: Some(exit.at),
    })
}

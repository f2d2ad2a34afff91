//! StartContainer, StopContainer, RemoveContainer and ReopenContainerLog
//! over the tasks domain: the task is created at start with the shim
//! writing the CRI log itself; stop sends the stop signal, waits out the
//! timeout, then SIGKILLs every process; stop and remove of an unknown or
//! finished container succeed.

use std::sync::Arc;
use std::time::Duration;

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::{fail, now_ns};
use super::metadata::{self, ContainerMetadata};
use super::state::Error as StoreError;
use super::{Cri, NAMESPACE};
use crate::tasks::{self, CreateTask, LogFile, OpenStdin, Stop};

const SIGTERM: u32 = 15;

/// How long to wait for the processes to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

impl Cri {
    /// The container `id` (or unique prefix), `None` when unknown.
    pub(super) fn find_container(
        &self,
        id: &str,
    ) -> Result<Option<Arc<ContainerMetadata>>, Status> {
        match self.inner.stores.containers.get(id) {
            Ok(m) => Ok(Some(m)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    /// The container `id`, NotFound when unknown.
    pub(super) fn get_container(&self, id: &str) -> Result<Arc<ContainerMetadata>, Status> {
        self.find_container(id)?
            .ok_or_else(|| fail(ErrorKind::NotFound, format!("container {id:?} not found")))
    }

    /// The containers of pod `pod`.
    pub(super) fn pod_containers(&self, pod: &str) -> Vec<Arc<ContainerMetadata>> {
        self.inner
            .stores
            .containers
            .list()
            .into_iter()
            .filter(|c| c.sandbox_id == pod)
            .collect()
    }

    fn tasks(&self) -> &tasks::Tasks {
        &self.inner.deps.tasks
    }

    pub(super) async fn start_container(
        &self,
        req: cri::StartContainerRequest,
    ) -> Result<cri::StartContainerResponse, Status> {
        let m = self.get_container(&req.container_id)?;
        if self.tasks().exists(NAMESPACE, &m.id) {
            return Err(fail(
                ErrorKind::FailedPrecondition,
                format!("container {} was started already", m.id),
            ));
        }
        let pod = self
            .inner
            .stores
            .sandboxes
            .get(&m.sandbox_id)
            .map_err(|e| fail(ErrorKind::NotFound, e))?;
        if !pod.ready {
            return Err(fail(
                ErrorKind::FailedPrecondition,
                format!("pod sandbox {} is not ready (stopped)", pod.id),
            ));
        }
        let rootfs = self
            .inner
            .deps
            .snapshots
            .mounts(NAMESPACE, &m.snapshotter, &m.id)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        // The shim copies the output itself even without a log path (to
        // /dev/null then), so Attach can join it.
        let log = Some(LogFile {
            path: if m.log_path.is_empty() {
                "/dev/null".into()
            } else {
                m.log_path.clone()
            },
            cri_format: true,
            max_size: 0,
            max_files: 0,
        });
        let create = CreateTask {
            container_id: m.id.clone(),
            rootfs,
            terminal: m.config.tty,
            log,
            ..Default::default()
        };
        // A container created with stdin keeps it open for Attach.
        let stdin = m.config.stdin.then_some(OpenStdin {
            once: m.config.stdin_once,
        });
        self.tasks()
            .create_with_stdin(NAMESPACE, create, stdin)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        if let Err(e) = self.tasks().start(NAMESPACE, &m.id, "").await {
            if let Err(de) = self.tasks().delete(NAMESPACE, &m.id).await {
                tracing::warn!(id = m.id, error = %de, "deleting the task of a failed start");
            }
            return Err(fail(e.kind(), e));
        }
        let now = now_ns();
        self.update_container(&m.id, |c| c.started_at = now).await?;
        tracing::info!(id = m.id, "container started");
        Ok(cri::StartContainerResponse {})
    }

    /// Changes container `id` by `f` in the store, then persists what the
    /// store holds (one writer at a time, each writing the latest, so a
    /// start and an OOM event never lose each other's change). Nothing to
    /// do for a container that is gone.
    pub(super) async fn update_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerMetadata),
    ) -> Result<(), Status> {
        let stores = &self.inner.stores;
        if stores.containers.update(id, f).is_none() {
            return Ok(());
        }
        let _one = self.inner.persist.lock().await;
        let Ok(m) = stores.containers.get(id) else {
            return Ok(());
        };
        let rec = metadata::container_record(&m, Vec::new(), &m.snapshotter);
        self.save_extension(rec, metadata::CONTAINER_EXTENSION)
            .await
    }

    pub(super) async fn stop_container(
        &self,
        req: cri::StopContainerRequest,
    ) -> Result<cri::StopContainerResponse, Status> {
        let Some(m) = self.find_container(&req.container_id)? else {
            return Ok(cri::StopContainerResponse {});
        };
        self.stop_container_by_id(&m.id, req.timeout).await?;
        Ok(cri::StopContainerResponse {})
    }

    /// The container's stop signal: the image's `StopSignal` is not kept,
    /// so SIGTERM (the kubelet sends its own first where it matters).
    fn stop_signal(&self) -> u32 {
        SIGTERM
    }

    /// Stops the container's task: the stop signal, `timeout` seconds,
    /// then SIGKILL to every process. Nothing to do without a running task.
    pub(super) async fn stop_container_by_id(&self, id: &str, timeout: i64) -> Result<(), Status> {
        let how = Stop {
            signal: self.stop_signal(),
            grace: Duration::from_secs(timeout.max(0) as u64),
            kill_wait: KILL_WAIT,
        };
        let graceful = self
            .tasks()
            .stop(NAMESPACE, id, how)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        if graceful {
            tracing::info!(id, "container stopped");
        }
        Ok(())
    }

    pub(super) async fn remove_container(
        &self,
        req: cri::RemoveContainerRequest,
    ) -> Result<cri::RemoveContainerResponse, Status> {
        let Some(m) = self.find_container(&req.container_id)? else {
            return Ok(cri::RemoveContainerResponse {});
        };
        self.remove_container_by_id(&m.id).await?;
        Ok(cri::RemoveContainerResponse {})
    }

    /// Kills, deletes the task, the snapshot and the record of container
    /// `id`. Idempotent.
    pub(super) async fn remove_container_by_id(&self, id: &str) -> Result<(), Status> {
        let Some(m) = self.find_container(id)? else {
            return Ok(());
        };
        self.stop_container_by_id(&m.id, 0).await?;
        if self.tasks().exists(NAMESPACE, &m.id) {
            match self.tasks().delete(NAMESPACE, &m.id).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e.kind(), e)),
            }
        }
        match self
            .inner
            .deps
            .snapshots
            .remove(NAMESPACE, &m.snapshotter, &m.id)
            .await
        {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.kind(), e)),
        }
        match self.inner.deps.containers.delete(NAMESPACE, &m.id).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.kind(), e)),
        }
        let stores = &self.inner.stores;
        stores.containers.remove(&m.id);
        stores.containers.release(&m.name, &m.id);
        self.inner.cpu_samples.forget(&m.id);
        tracing::info!(id = m.id, "container removed");
        self.emit(&m, cri::ContainerEventType::ContainerDeletedEvent);
        Ok(())
    }

    pub(super) async fn reopen_container_log(
        &self,
        req: cri::ReopenContainerLogRequest,
    ) -> Result<cri::ReopenContainerLogResponse, Status> {
        let m = self.get_container(&req.container_id)?;
        if !self.tasks().exists(NAMESPACE, &m.id) {
            return Err(fail(
                ErrorKind::FailedPrecondition,
                format!("container {} is not running", m.id),
            ));
        }
        self.tasks()
            .reopen_log(NAMESPACE, &m.id)
            .await
            .map_err(|e| fail(e.kind(), e))?;
        Ok(cri::ReopenContainerLogResponse {})
    }
}

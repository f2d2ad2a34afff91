//! StopPodSandbox and RemovePodSandbox. Both succeed for a pod that is
//! unknown or already stopped (the CRI asks for idempotence). Stop stops
//! every container of the pod (grace, then SIGKILL), runs CNI DEL and
//! removes the network namespace; Remove also removes the containers, the
//! UTS/IPC namespaces, the pod's files and its record.

use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::fail;
use super::metadata::{self, PidHolder, SandboxMetadata};
use super::state::Error as StoreError;
use super::{Cri, NAMESPACE};

/// How long a pod's containers get between SIGTERM and SIGKILL on a stop
/// of the pod (the kubelet stops them itself first, with its own grace).
const POD_STOP_GRACE: i64 = 10;

impl Cri {
    /// The pod `id` (or unique prefix), `None` when unknown.
    fn find_pod(&self, id: &str) -> Result<Option<std::sync::Arc<SandboxMetadata>>, Status> {
        match self.inner.stores.sandboxes.get(id) {
            Ok(m) => Ok(Some(m)),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(Status::invalid_argument(e.to_string())),
        }
    }

    pub(super) async fn stop_pod_sandbox(
        &self,
        req: cri::StopPodSandboxRequest,
    ) -> Result<cri::StopPodSandboxResponse, Status> {
        let Some(m) = self.find_pod(&req.pod_sandbox_id)? else {
            tracing::debug!(
                id = req.pod_sandbox_id,
                "stop of an unknown pod: nothing to do"
            );
            return Ok(cri::StopPodSandboxResponse {});
        };
        self.stop_pod(&m).await?;
        Ok(cri::StopPodSandboxResponse {})
    }

    /// Stops the pod's containers, tears its network down and marks it not
    /// ready, persistently. Safe to repeat.
    async fn stop_pod(&self, m: &SandboxMetadata) -> Result<(), Status> {
        // All at once: each gets the whole grace period, not a share.
        let containers = self.pod_containers(&m.id);
        let stops = containers
            .iter()
            .map(|c| self.stop_container_by_id(&c.id, POD_STOP_GRACE));
        for r in futures::future::join_all(stops).await {
            r?;
        }
        if matches!(m.pid_holder, PidHolder::Pause { .. }) {
            self.stop_holder(&m.id).await?;
        }
        if !m.network.is_empty() {
            let netns = (!m.netns_path.is_empty()).then(|| m.netns_path.clone().into());
            self.detach_pod(&m.id, &m.network, netns).await?;
        }
        self.release_pod(m, false).await;
        if m.ready {
            let mut stopped = m.clone();
            stopped.ready = false;
            self.save_pod(stopped).await?;
            tracing::info!(id = m.id, "pod sandbox stopped");
        }
        Ok(())
    }

    /// Persists `m` (its record's metadata extension) and puts it in the
    /// store.
    async fn save_pod(&self, m: SandboxMetadata) -> Result<(), Status> {
        let rec = metadata::sandbox_record(&m, Vec::new(), "");
        self.save_extension(rec, metadata::SANDBOX_EXTENSION)
            .await?;
        self.inner.stores.sandboxes.put(&m.id.clone(), m);
        Ok(())
    }

    pub(super) async fn remove_pod_sandbox(
        &self,
        req: cri::RemovePodSandboxRequest,
    ) -> Result<cri::RemovePodSandboxResponse, Status> {
        let Some(m) = self.find_pod(&req.pod_sandbox_id)? else {
            tracing::debug!(
                id = req.pod_sandbox_id,
                "remove of an unknown pod: nothing to do"
            );
            return Ok(cri::RemovePodSandboxResponse {});
        };
        // containerd refuses a ready pod; the kubelet always stops first,
        // and stopping here is what a caller wants anyway.
        self.stop_pod(&m).await?;
        for c in self.pod_containers(&m.id) {
            self.remove_container_by_id(&c.id).await?;
        }
        self.release_pod(&m, true).await;
        if matches!(m.pid_holder, PidHolder::Pause { .. }) {
            self.remove_holder(&m.id).await;
        }
        match self.inner.deps.containers.delete(NAMESPACE, &m.id).await {
            Ok(()) => {}
            Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e.kind(), e)),
        }
        let stores = &self.inner.stores;
        stores.sandboxes.remove(&m.id);
        stores.sandboxes.release(&m.name, &m.id);
        self.inner.cpu_samples.forget(&m.id);
        tracing::info!(id = m.id, "pod sandbox removed");
        Ok(cri::RemovePodSandboxResponse {})
    }
}

//! UpdateContainerResources: the new resources go to the running task
//! (the shim's Update, `runc update`: cgroup v1 or v2 alike) and into the
//! container's metadata, so ContainerStatus reports them; a container
//! that is not running only has its metadata changed (its next task is
//! made from the record's spec, as containerd's is).

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tonic::Status;

use super::convert::resources::linux_resources;
use super::helpers::fail;
use super::{Cri, NAMESPACE};

impl Cri {
    pub(super) async fn update_container_resources(
        &self,
        req: cri::UpdateContainerResourcesRequest,
    ) -> Result<cri::UpdateContainerResourcesResponse, Status> {
        let m = self.get_container(&req.container_id)?;
        let wanted = req.linux.unwrap_or_default();
        let oci = linux_resources(&wanted).map_err(|e| fail(ErrorKind::InvalidArgument, e))?;
        let tasks = &self.inner.deps.tasks;
        if tasks.exists(NAMESPACE, &m.id) {
            let any = prost_types::Any {
                type_url: berth_api::type_urls::OCI_LINUX_RESOURCES.into(),
                value: serde_json::to_vec(&oci).map_err(|e| Status::internal(e.to_string()))?,
            };
            match tasks
                .update(NAMESPACE, &m.id, Some(any), req.annotations)
                .await
            {
                Ok(()) => {}
                // It exited meanwhile: only the metadata changes.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(fail(e.kind(), format!("container {}: {e}", m.id))),
            }
        }
        self.update_container(&m.id, |c| {
            c.config
                .linux
                .get_or_insert_with(Default::default)
                .resources = Some(wanted);
        })
        .await?;
        tracing::info!(id = m.id, "container resources updated");
        Ok(cri::UpdateContainerResourcesResponse {})
    }
}

//! PodSandboxStatus and ListPodSandbox, answered from the CRI's store.

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::labels_match;
use super::metadata::SandboxMetadata;
use super::sandbox_run::{ns_options, pod_not_found};
use super::Cri;

fn state(m: &SandboxMetadata) -> cri::PodSandboxState {
    if m.ready {
        cri::PodSandboxState::SandboxReady
    } else {
        cri::PodSandboxState::SandboxNotready
    }
}

fn network_status(m: &SandboxMetadata) -> Option<cri::PodSandboxNetworkStatus> {
    if m.netns_path.is_empty() {
        return None;
    }
    let mut ips = m.ips.iter();
    Some(cri::PodSandboxNetworkStatus {
        ip: ips.next().cloned().unwrap_or_default(),
        additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
    })
}

/// The CRI status of pod `m`.
pub(super) fn pod_status_of(m: &SandboxMetadata) -> cri::PodSandboxStatus {
    cri::PodSandboxStatus {
        id: m.id.clone(),
        metadata: m.config.metadata.clone(),
        state: state(m) as i32,
        created_at: m.created_at,
        network: network_status(m),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(ns_options(&m.config)),
            }),
        }),
        labels: m.config.labels.clone(),
        annotations: m.config.annotations.clone(),
        runtime_handler: m.runtime_handler.clone(),
    }
}

impl Cri {
    pub(super) async fn pod_sandbox_status(
        &self,
        req: cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse, Status> {
        let m = self
            .inner
            .stores
            .sandboxes
            .get(&req.pod_sandbox_id)
            .map_err(|e| match e {
                super::state::Error::NotFound { .. } => pod_not_found(&req.pod_sandbox_id),
                e => Status::invalid_argument(e.to_string()),
            })?;
        let status = pod_status_of(&m);
        let mut info = HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "netNamespacePath": m.netns_path,
                "utsNamespacePath": m.uts_path,
                "ipcNamespacePath": m.ipc_path,
                "network": m.network,
                "stateDir": m.state_dir,
                "pidHolder": format!("{:?}", m.pid_holder),
                "config": m.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::PodSandboxStatusResponse {
            status: Some(status),
            info,
            containers_statuses: self.pod_container_statuses(&m.id),
            timestamp: super::helpers::now_ns(),
        })
    }

    pub(super) async fn list_pod_sandbox(
        &self,
        req: cri::ListPodSandboxRequest,
    ) -> Result<cri::ListPodSandboxResponse, Status> {
        let f = req.filter.unwrap_or_default();
        let items = self
            .inner
            .stores
            .sandboxes
            .list()
            .into_iter()
            .filter(|m| f.id.is_empty() || m.id.starts_with(&f.id))
            .filter(|m| f.state.as_ref().is_none_or(|s| s.state == state(m) as i32))
            .filter(|m| labels_match(&f.label_selector, &m.config.labels))
            .map(|m| cri::PodSandbox {
                id: m.id.clone(),
                metadata: m.config.metadata.clone(),
                state: state(&m) as i32,
                created_at: m.created_at,
                labels: m.config.labels.clone(),
                annotations: m.config.annotations.clone(),
                runtime_handler: m.runtime_handler.clone(),
            })
            .collect();
        Ok(cri::ListPodSandboxResponse { items })
    }
}

//! Version, Status, RuntimeConfig and UpdateRuntimeConfig: what the kubelet
//! asks first about a runtime.

use std::collections::HashMap;

use k8s_cri::v1 as cri;

use super::{Cri, API_VERSION};

/// The runtime name the kubelet shows (`crictl version`).
pub(super) const RUNTIME_NAME: &str = "berth";

/// Condition types the kubelet checks (CRI constants).
const RUNTIME_READY: &str = "RuntimeReady";
const NETWORK_READY: &str = "NetworkReady";

impl Cri {
    pub(super) fn version_info(&self) -> cri::VersionResponse {
        cri::VersionResponse {
            // The kubelet's "runtime API version" string; containerd
            // answers the same constant.
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: format!("v{}", crate::build_info::VERSION),
            runtime_api_version: API_VERSION.into(),
        }
    }

    pub(super) async fn status_info(&self, verbose: bool) -> cri::StatusResponse {
        let network = match self.inner.networks.status().await {
            crate::network::NetworkStatus::Ready { .. } => cri::RuntimeCondition {
                r#type: NETWORK_READY.into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            crate::network::NetworkStatus::NotReady { reason, message } => cri::RuntimeCondition {
                r#type: NETWORK_READY.into(),
                status: false,
                reason,
                message,
            },
        };
        let mut info = HashMap::new();
        if verbose {
            info.insert(
                "config".to_string(),
                serde_json::to_string(self.config()).unwrap_or_default(),
            );
        }
        cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![
                    cri::RuntimeCondition {
                        r#type: RUNTIME_READY.into(),
                        status: true,
                        reason: String::new(),
                        message: String::new(),
                    },
                    network,
                ],
            }),
            info,
            runtime_handlers: vec![cri::RuntimeHandler {
                name: String::new(),
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: false,
            }),
        }
    }

    pub(super) fn runtime_config_info(&self) -> cri::RuntimeConfigResponse {
        cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cri::CgroupDriver::Cgroupfs as i32,
            }),
        }
    }

    /// Keeps the pod CIDR the kubelet hands over (the only runtime config
    /// the CRI defines); an empty one leaves the last one in place.
    pub(super) fn update_runtime_config(&self, req: cri::UpdateRuntimeConfigRequest) {
        let cidr = req
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if cidr.is_empty() {
            return;
        }
        tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
        *self
            .inner
            .pod_cidr
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = cidr;
    }

    /// The pod CIDR last given by the kubelet (empty if none).
    pub fn pod_cidr(&self) -> String {
        self.inner
            .pod_cidr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

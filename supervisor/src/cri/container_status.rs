//! ContainerStatus and ListContainers: the CRI metadata with the task's
//! state (created, running, exited with its code, time and reason:
//! `OOMKilled` when the kernel's OOM killer ended it, as the shim's OOM
//! event says, else `Completed` or `Error`).

use std::collections::HashMap;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::{labels_match, to_ns};
use super::metadata::ContainerMetadata;
use super::{Cri, NAMESPACE};
use crate::tasks::{Process, Status as TaskStatus};

/// A container's state, exit code, finish time and reason.
struct Observed {
    state: cri::ContainerState,
    exit_code: i32,
    finished_at: i64,
    reason: String,
}

/// Why a container exited, as the CRI says it.
fn exit_reason(code: u32, oom_killed: bool) -> &'static str {
    match (code, oom_killed) {
        (0, _) => "Completed",
        (_, true) => "OOMKilled",
        _ => "Error",
    }
}

fn observe(m: &ContainerMetadata, p: Option<&Process>) -> Observed {
    let exited = |code: u32, at: i64| Observed {
        state: cri::ContainerState::ContainerExited,
        exit_code: code as i32,
        finished_at: at,
        reason: exit_reason(code, m.oom_killed).into(),
    };
    match p {
        None if m.started_at == 0 => Observed {
            state: cri::ContainerState::ContainerCreated,
            exit_code: 0,
            finished_at: 0,
            reason: String::new(),
        },
        // Started, and its task is gone: it exited without a known code.
        None => exited(255, m.started_at),
        Some(p) => match p.status {
            TaskStatus::Stopped => exited(p.exit_status, p.exited_at.map(to_ns).unwrap_or(0)),
            TaskStatus::Created => Observed {
                state: cri::ContainerState::ContainerCreated,
                exit_code: 0,
                finished_at: 0,
                reason: String::new(),
            },
            TaskStatus::Unknown => Observed {
                state: cri::ContainerState::ContainerUnknown,
                exit_code: 0,
                finished_at: 0,
                reason: String::new(),
            },
            _ => Observed {
                state: cri::ContainerState::ContainerRunning,
                exit_code: 0,
                finished_at: 0,
                reason: String::new(),
            },
        },
    }
}

/// The CRI status of container `m` whose init process is `p`.
pub(super) fn status_of(m: &ContainerMetadata, p: Option<&Process>) -> cri::ContainerStatus {
    let o = observe(m, p);
    let c = &m.config;
    cri::ContainerStatus {
        id: m.id.clone(),
        metadata: c.metadata.clone(),
        state: o.state as i32,
        created_at: m.created_at,
        started_at: m.started_at,
        finished_at: o.finished_at,
        exit_code: o.exit_code,
        image: c.image.clone(),
        image_ref: m.image_ref.clone(),
        reason: o.reason,
        message: String::new(),
        labels: c.labels.clone(),
        annotations: c.annotations.clone(),
        mounts: c.mounts.clone(),
        log_path: m.log_path.clone(),
        resources: c.linux.as_ref().map(|l| cri::ContainerResources {
            linux: l.resources.clone(),
            windows: None,
        }),
        image_id: m.image_id.clone(),
        user: None,
    }
}

impl Cri {
    pub(super) async fn container_status(
        &self,
        req: cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse, Status> {
        let m = self.get_container(&req.container_id)?;
        let p = self.inner.deps.tasks.state(NAMESPACE, &m.id, "").await.ok();
        let status = status_of(&m, p.as_ref());
        let mut info = HashMap::new();
        if req.verbose {
            let v = serde_json::json!({
                "sandboxID": m.sandbox_id,
                "pid": p.as_ref().map(|p| p.pid).unwrap_or(0),
                "snapshotter": m.snapshotter,
                "snapshotKey": m.id,
                "config": m.config,
            });
            info.insert("info".to_string(), v.to_string());
        }
        Ok(cri::ContainerStatusResponse {
            status: Some(status),
            info,
        })
    }

    /// The statuses of pod `pod`'s containers, from the tasks' known
    /// states (no shim is asked).
    pub(super) fn pod_container_statuses(&self, pod: &str) -> Vec<cri::ContainerStatus> {
        let known = self.known_tasks();
        self.pod_containers(pod)
            .iter()
            .map(|m| status_of(m, known.get(&m.id)))
            .collect()
    }

    /// The containers whose id and pod id start with `id` and `pod` (empty:
    /// any) and whose labels have every pair of `labels`: the CRI's
    /// container filters.
    pub(super) fn containers_matching(
        &self,
        id: &str,
        pod: &str,
        labels: &HashMap<String, String>,
    ) -> Vec<std::sync::Arc<ContainerMetadata>> {
        self.inner
            .stores
            .containers
            .list()
            .into_iter()
            .filter(|m| m.id.starts_with(id) && m.sandbox_id.starts_with(pod))
            .filter(|m| labels_match(labels, &m.config.labels))
            .collect()
    }

    /// Every task of `k8s.io` as berthd knows it, by container id.
    pub(super) fn known_tasks(&self) -> HashMap<String, Process> {
        self.inner
            .deps
            .tasks
            .list(NAMESPACE, &[])
            .unwrap_or_default()
            .into_iter()
            .map(|p| (p.container_id.clone(), p))
            .collect()
    }

    /// The containers of the store by CRI state.
    pub(super) fn container_states(&self) -> Vec<cri::ContainerState> {
        let known = self.known_tasks();
        self.inner
            .stores
            .containers
            .list()
            .iter()
            .map(|m| observe(m, known.get(&m.id)).state)
            .collect()
    }

    pub(super) async fn list_containers(
        &self,
        req: cri::ListContainersRequest,
    ) -> Result<cri::ListContainersResponse, Status> {
        let f = req.filter.unwrap_or_default();
        let known = self.known_tasks();
        let containers = self
            .containers_matching(&f.id, &f.pod_sandbox_id, &f.label_selector)
            .into_iter()
            .filter_map(|m| {
                let o = observe(&m, known.get(&m.id));
                if f.state.as_ref().is_some_and(|s| s.state != o.state as i32) {
                    return None;
                }
                Some(cri::Container {
                    id: m.id.clone(),
                    pod_sandbox_id: m.sandbox_id.clone(),
                    metadata: m.config.metadata.clone(),
                    image: m.config.image.clone(),
                    image_ref: m.image_ref.clone(),
                    state: o.state as i32,
                    created_at: m.created_at,
                    labels: m.config.labels.clone(),
                    annotations: m.config.annotations.clone(),
                    image_id: m.image_id.clone(),
                })
            })
            .collect();
        Ok(cri::ListContainersResponse { containers })
    }
}

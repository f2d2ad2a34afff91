//! ContainerStats, ListContainerStats, PodSandboxStats and
//! ListPodSandboxStats: each running container's cgroup figures from its
//! shim (CPU time, memory working set, page faults, processes) and its
//! writable layer's usage from the snapshotter; a pod's figures are the
//! sums of its containers' (no process holds the pod's own cgroup).
//! `usage_nano_cores` is the CPU rate since the previous sample of the
//! same container or pod, as the kubelet expects.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_cri::v1 as cri;
use tonic::Status;

use super::helpers::{labels_match, now_ns};
use super::metadata::ContainerMetadata;
use super::sandbox_run::pod_not_found;
use super::{Cri, NAMESPACE};
use crate::tasks::{decode_metrics, CgroupFigures as Cgroup};

/// How long a stats call waits for a shim's answer.
const STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn u64v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

/// The previous CPU sample of each container and pod: (time ns, CPU ns).
#[derive(Default)]
pub(super) struct CpuSamples(Mutex<HashMap<String, (i64, u64)>>);

impl CpuSamples {
    /// The CPU rate (ns of CPU per s, i.e. nano-cores) since `id`'s last
    /// sample, and this sample kept for the next.
    fn rate(&self, id: &str, at: i64, cpu_ns: u64) -> Option<u64> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let prev = g.insert(id.to_string(), (at, cpu_ns));
        let (t0, c0) = prev?;
        let dt = at.checked_sub(t0).filter(|d| *d > 0)? as u128;
        let dc = cpu_ns.checked_sub(c0)? as u128;
        Some((dc * 1_000_000_000 / dt) as u64)
    }

    /// Forgets `id`.
    pub(super) fn forget(&self, id: &str) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

impl Cri {
    /// The cgroup figures of container `id`'s task, if it is live.
    async fn cgroup_of(&self, id: &str) -> Option<Cgroup> {
        let filter = [format!("id=={id:?}")];
        let ask = self.inner.deps.tasks.metrics(NAMESPACE, &filter);
        match tokio::time::timeout(STATS_TIMEOUT, ask).await {
            Ok(Ok(mut list)) => list
                .pop()
                .and_then(|(_, any)| any)
                .and_then(|a| decode_metrics(&a)),
            Ok(Err(e)) => {
                tracing::debug!(id, error = %e, "cri stats: no cgroup figures");
                None
            }
            Err(_) => {
                tracing::debug!(id, "cri stats: the shim was slow to answer");
                None
            }
        }
    }

    fn cpu(&self, id: &str, at: i64, cg: &Cgroup) -> cri::CpuUsage {
        cri::CpuUsage {
            timestamp: at,
            usage_core_nano_seconds: u64v(cg.cpu_ns),
            usage_nano_cores: self
                .inner
                .cpu_samples
                .rate(id, at, cg.cpu_ns)
                .and_then(u64v),
        }
    }

    fn memory(at: i64, cg: &Cgroup) -> cri::MemoryUsage {
        cri::MemoryUsage {
            timestamp: at,
            working_set_bytes: u64v(cg.working_set),
            available_bytes: cg
                .limit
                .and_then(|l| u64v(l.saturating_sub(cg.working_set))),
            usage_bytes: u64v(cg.usage),
            rss_bytes: u64v(cg.rss),
            page_faults: u64v(cg.page_faults),
            major_page_faults: u64v(cg.major_page_faults),
        }
    }

    /// Container `m`'s stats, and its cgroup figures for its pod's sums.
    async fn stats_of(&self, m: &ContainerMetadata) -> (cri::ContainerStats, Option<Cgroup>) {
        let cg = self.cgroup_of(&m.id).await;
        let at = now_ns();
        let layer = self
            .inner
            .deps
            .snapshots
            .usage(NAMESPACE, &m.snapshotter, &m.id)
            .await
            .ok();
        let stats = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: m.id.clone(),
                metadata: m.config.metadata.clone(),
                labels: m.config.labels.clone(),
                annotations: m.config.annotations.clone(),
            }),
            cpu: cg.as_ref().map(|cg| self.cpu(&m.id, at, cg)),
            memory: cg.as_ref().map(|cg| Self::memory(at, cg)),
            writable_layer: layer.map(|u| cri::FilesystemUsage {
                timestamp: at,
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: self.inner.deps.root.display().to_string(),
                }),
                used_bytes: u64v(u.size),
                inodes_used: u64v(u.inodes),
            }),
            swap: None,
        };
        (stats, cg)
    }

    pub(super) async fn container_stats(
        &self,
        req: cri::ContainerStatsRequest,
    ) -> Result<cri::ContainerStatsResponse, Status> {
        let m = self.get_container(&req.container_id)?;
        Ok(cri::ContainerStatsResponse {
            stats: Some(self.stats_of(&m).await.0),
        })
    }

    pub(super) async fn list_container_stats(
        &self,
        req: cri::ListContainerStatsRequest,
    ) -> Result<cri::ListContainerStatsResponse, Status> {
        let f = req.filter.unwrap_or_default();
        let picked = self.containers_matching(&f.id, &f.pod_sandbox_id, &f.label_selector);
        let stats = futures::future::join_all(picked.iter().map(|m| self.stats_of(m))).await;
        Ok(cri::ListContainerStatsResponse {
            stats: stats.into_iter().map(|(s, _)| s).collect(),
        })
    }

    /// Pod `id`'s stats: its containers' and their sums.
    async fn pod_stats_of(&self, pod: &super::metadata::SandboxMetadata) -> cri::PodSandboxStats {
        let containers = self.pod_containers(&pod.id);
        let each = futures::future::join_all(containers.iter().map(|m| self.stats_of(m))).await;
        let at = now_ns();
        let mut sum: Option<Cgroup> = None;
        let mut stats = Vec::new();
        for (s, cg) in each {
            if let Some(cg) = cg {
                *sum.get_or_insert_with(Cgroup::default) += cg;
            }
            stats.push(s);
        }
        let md = pod.config.metadata.clone();
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: pod.id.clone(),
                metadata: md,
                labels: pod.config.labels.clone(),
                annotations: pod.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: sum.as_ref().map(|cg| self.cpu(&pod.id, at, cg)),
                memory: sum.as_ref().map(|cg| Self::memory(at, cg)),
                network: None,
                process: sum.as_ref().map(|cg| cri::ProcessUsage {
                    timestamp: at,
                    process_count: u64v(cg.pids),
                }),
                containers: stats,
            }),
            windows: None,
        }
    }

    pub(super) async fn pod_sandbox_stats(
        &self,
        req: cri::PodSandboxStatsRequest,
    ) -> Result<cri::PodSandboxStatsResponse, Status> {
        let pod = self
            .inner
            .stores
            .sandboxes
            .get(&req.pod_sandbox_id)
            .map_err(|_| pod_not_found(&req.pod_sandbox_id))?;
        Ok(cri::PodSandboxStatsResponse {
            stats: Some(self.pod_stats_of(&pod).await),
        })
    }

    pub(super) async fn list_pod_sandbox_stats(
        &self,
        req: cri::ListPodSandboxStatsRequest,
    ) -> Result<cri::ListPodSandboxStatsResponse, Status> {
        let f = req.filter.unwrap_or_default();
        let pods: Vec<_> = self
            .inner
            .stores
            .sandboxes
            .list()
            .into_iter()
            .filter(|p| f.id.is_empty() || p.id.starts_with(&f.id))
            .filter(|p| labels_match(&f.label_selector, &p.config.labels))
            .collect();
        let stats = futures::future::join_all(pods.iter().map(|p| self.pod_stats_of(p))).await;
        Ok(cri::ListPodSandboxStatsResponse { stats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_memory_is_the_limit_less_the_working_set() {
        let cg = Cgroup {
            working_set: 700,
            limit: Some(1000),
            ..Cgroup::default()
        };
        let mem = Cri::memory(1, &cg);
        assert_eq!(mem.available_bytes.unwrap().value, 300);
        assert_eq!(mem.working_set_bytes.unwrap().value, 700);
        let no_limit = Cri::memory(1, &Cgroup::default());
        assert_eq!(no_limit.available_bytes, None);
    }

    #[test]
    fn cpu_rate_needs_two_samples() {
        let s = CpuSamples::default();
        assert_eq!(s.rate("c", 1_000_000_000, 0), None);
        assert_eq!(s.rate("c", 2_000_000_000, 500_000_000), Some(500_000_000));
        assert_eq!(
            s.rate("c", 2_000_000_000, 600_000_000),
            None,
            "no time passed"
        );
        s.forget("c");
        assert_eq!(s.rate("c", 3_000_000_000, 600_000_000), None);
    }
}

//! Pids and Metrics: what runs in a task, and its cgroup statistics, with
//! [`CgroupFigures`]: the figures every reader of those statistics wants,
//! decoded once from containerd's cgroup v1 or v2 metrics.

use berth_api::cgroups;
use berth_api::type_urls::{CGROUPS_V1_METRICS, CGROUPS_V2_METRICS};
use prost::Message;

use super::error::Error;
use super::process::ProcessInfo;
use super::shim;
use super::table::Tasks;

impl Tasks {
    /// The processes in task `id`.
    pub async fn pids(&self, ns: &str, id: &str) -> Result<Vec<ProcessInfo>, Error> {
        let t = self.get(ns, id)?;
        let r = t.call(|mut c| async move { c.pids(()).await }).await?;
        Ok(shim::process_infos(r))
    }

    /// The cgroup metrics (containerd's `io.containerd.cgroups.v1.Metrics`
    /// in an `Any`) of every live task of `ns` that `filters` match, by id.
    pub async fn metrics(
        &self,
        ns: &str,
        filters: &[String],
    ) -> Result<Vec<(String, Option<prost_types::Any>)>, Error> {
        let tasks = self.live(ns, filters)?;
        let stats = futures::future::join_all(
            tasks
                .iter()
                .map(|t| t.call(|mut c| async move { c.stats(()).await })),
        )
        .await;
        let mut out = Vec::new();
        for (t, s) in tasks.iter().zip(stats) {
            let s = s.map_err(|e| Error::Shim {
                kind: e.kind(),
                message: format!("metrics of {:?}: {e}", t.id),
            })?;
            out.push((t.id.clone(), s.stats));
        }
        Ok(out)
    }
}

/// One cgroup's figures (a sum of several has no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupFigures {
    /// CPU time, all CPUs, user and system (ns).
    pub cpu_ns: u64,
    /// Memory in use (bytes).
    pub usage: u64,
    /// The usage less the inactive file cache (the kubelet's working set).
    pub working_set: u64,
    /// The memory limit, when there is one.
    pub limit: Option<u64>,
    /// Anonymous memory (v1 `total_rss`, v2 `anon`).
    pub rss: u64,
    /// Page faults.
    pub page_faults: u64,
    /// Major page faults.
    pub major_page_faults: u64,
    /// Processes and threads.
    pub pids: u64,
}

impl std::ops::AddAssign for CgroupFigures {
    fn add_assign(&mut self, o: Self) {
        self.cpu_ns += o.cpu_ns;
        self.usage += o.usage;
        self.working_set += o.working_set;
        self.limit = None;
        self.rss += o.rss;
        self.page_faults += o.page_faults;
        self.major_page_faults += o.major_page_faults;
        self.pids += o.pids;
    }
}

/// containerd's cgroup v1 or v2 metrics (as [`Tasks::metrics`] gives
/// them) as one cgroup's figures; None for another payload. The working
/// set is the usage less the inactive file cache (the kubelet's and
/// cAdvisor's rule).
pub fn decode_metrics(any: &prost_types::Any) -> Option<CgroupFigures> {
    // cgroup v1 says "no limit" with the largest page-aligned i64.
    let limit = |l: u64| (l > 0 && l < (1 << 62)).then_some(l);
    if any.type_url == CGROUPS_V1_METRICS {
        let m = cgroups::v1::Metrics::decode(any.value.as_slice()).ok()?;
        let mem = m.memory.unwrap_or_default();
        let usage = mem.usage.unwrap_or_default();
        Some(CgroupFigures {
            cpu_ns: m.cpu.and_then(|c| c.usage).map(|u| u.total).unwrap_or(0),
            usage: usage.usage,
            working_set: usage.usage.saturating_sub(mem.total_inactive_file),
            limit: limit(usage.limit),
            rss: mem.total_rss,
            page_faults: mem.total_pg_fault,
            major_page_faults: mem.total_pg_maj_fault,
            pids: m.pids.map(|p| p.current).unwrap_or(0),
        })
    } else if any.type_url == CGROUPS_V2_METRICS {
        let m = cgroups::v2::Metrics::decode(any.value.as_slice()).ok()?;
        let mem = m.memory.unwrap_or_default();
        Some(CgroupFigures {
            cpu_ns: m.cpu.map(|c| c.usage_usec * 1000).unwrap_or(0),
            usage: mem.usage,
            working_set: mem.usage.saturating_sub(mem.inactive_file),
            limit: limit(mem.usage_limit),
            rss: mem.anon,
            page_faults: mem.pgfault,
            major_page_faults: mem.pgmajfault,
            pids: m.pids.map(|p| p.current).unwrap_or(0),
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_figures_and_the_working_set() {
        let m = cgroups::v1::Metrics {
            cpu: Some(cgroups::v1::CpuStat {
                usage: Some(cgroups::v1::CpuUsage {
                    total: 5_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: Some(cgroups::v1::MemoryStat {
                total_inactive_file: 300,
                total_rss: 700,
                usage: Some(cgroups::v1::MemoryEntry {
                    usage: 1000,
                    limit: 9_223_372_036_854_771_712,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            pids: Some(cgroups::v1::PidsStat {
                current: 3,
                limit: 0,
            }),
            ..Default::default()
        };
        let any = prost_types::Any {
            type_url: CGROUPS_V1_METRICS.into(),
            value: m.encode_to_vec(),
        };
        let cg = decode_metrics(&any).unwrap();
        assert_eq!(
            (
                cg.cpu_ns,
                cg.usage,
                cg.working_set,
                cg.rss,
                cg.pids,
                cg.limit
            ),
            (5_000, 1000, 700, 700, 3, None),
            "no limit: the largest page-aligned i64"
        );
        let mut sum = cg;
        sum += cg;
        assert_eq!((sum.cpu_ns, sum.pids), (10_000, 6));
        let other = prost_types::Any {
            type_url: "x".into(),
            value: vec![],
        };
        assert_eq!(decode_metrics(&other), None);
    }
}

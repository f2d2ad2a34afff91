//! What a scrape reads from the domain: tasks, shims, content, snapshots,
//! CRI objects and each running container's cgroup figures, as plain
//! numbers for [`crate::metrics::Figures`].
//!
//! Nothing here holds a lock across a call or waits on a shim for long: a
//! shim that does not answer within [`STATS_TIMEOUT`] leaves its container
//! out of this scrape instead of stalling it.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::app::App;
use crate::metrics::{ContainerFigures, CriFigures, Figures};
use crate::tasks::Status;

/// How long one container's cgroup figures may take.
const STATS_TIMEOUT: Duration = Duration::from_secs(2);

/// The CRI's namespace and the label telling its pods from its containers
/// (containerd's, which the CRI adapter keeps).
const CRI_NAMESPACE: &str = "k8s.io";
const CRI_KIND_LABEL: &str = "io.cri-containerd.kind";

/// containerd's task status names, lowercase.
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Unknown => "unknown",
        Status::Created => "created",
        Status::Running => "running",
        Status::Paused => "paused",
        Status::Pausing => "pausing",
        Status::Stopped => "stopped",
    }
}

/// Everything [`Figures`] holds, read now.
pub(super) async fn figures(app: &App) -> Figures {
    let namespaces: Vec<String> = match crate::store::namespaces::list(&app.store) {
        Ok(list) => list.into_iter().map(|n| n.name).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot list namespaces");
            Vec::new()
        }
    };
    let mut f = Figures::default();
    let mut running = Vec::new();
    for ns in &namespaces {
        let Ok(tasks) = app.tasks.list(ns, &[]) else {
            continue;
        };
        for t in tasks {
            *f.tasks
                .entry((ns.clone(), status_name(t.status).to_string()))
                .or_default() += 1;
            if matches!(t.status, Status::Running | Status::Paused) {
                running.push((ns.clone(), t.container_id));
            }
        }
        let shims = app.tasks.live_shims(ns) as u64;
        if shims > 0 {
            f.shims.insert(ns.clone(), shims);
        }
    }
    f.containers = containers(app, running).await;
    (f.content_blobs, f.content_bytes) = content(app);
    f.snapshots = snapshots(app, &namespaces).await;
    f.cri = app
        .metrics
        .cri()
        .figures()
        .unwrap_or_else(|| cri_records(app));
    f
}

/// The cgroup figures of each running container, asked of the shims at
/// once.
async fn containers(app: &App, running: Vec<(String, String)>) -> Vec<ContainerFigures> {
    let asks = running.into_iter().map(|(ns, id)| async move {
        // The id in quotes: a filter value of its own, whatever it holds.
        let filter = [format!("id=={id:?}")];
        let answer = tokio::time::timeout(STATS_TIMEOUT, app.tasks.metrics(&ns, &filter)).await;
        let any = match answer {
            Ok(Ok(mut list)) => list.pop().and_then(|(_, any)| any)?,
            Ok(Err(e)) => {
                tracing::debug!(namespace = ns, id, error = %e, "metrics: no cgroup figures");
                return None;
            }
            Err(_) => {
                tracing::debug!(namespace = ns, id, "metrics: shim slow to answer stats");
                return None;
            }
        };
        decode(&any).map(|mut c| {
            c.namespace = ns;
            c.id = id;
            c
        })
    });
    futures::future::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// containerd's cgroups v1 or v2 metrics as the figures berthd exports.
fn decode(any: &prost_types::Any) -> Option<ContainerFigures> {
    let c = crate::tasks::decode_metrics(any)?;
    Some(ContainerFigures {
        cpu_seconds: c.cpu_ns as f64 / 1e9,
        memory_bytes: c.usage,
        memory_limit_bytes: c.limit,
        pids: c.pids,
        ..ContainerFigures::default()
    })
}

/// Distinct blobs and their bytes (a blob recorded in two namespaces is
/// stored once).
fn content(app: &App) -> (u64, u64) {
    let Ok(all) = app.content.list_all() else {
        return (0, 0);
    };
    let mut seen = HashSet::new();
    let mut bytes = 0;
    for (_, info) in all {
        if seen.insert(info.digest.clone()) {
            bytes += info.size;
        }
    }
    (seen.len() as u64, bytes)
}

async fn snapshots(app: &App, namespaces: &[String]) -> BTreeMap<(String, String, String), u64> {
    let mut out = BTreeMap::new();
    for sn in app.snapshots.backends().names() {
        for ns in namespaces {
            let Ok(list) = app.snapshots.list(ns, &sn, &[]).await else {
                continue;
            };
            for info in list {
                let kind = format!("{:?}", info.kind).to_lowercase();
                *out.entry((ns.clone(), sn.clone(), kind)).or_default() += 1;
            }
        }
    }
    out
}

/// The CRI's pods and containers counted from their records in `k8s.io`
/// (state `unknown`), for when no CRI adapter reports its own view.
fn cri_records(app: &App) -> CriFigures {
    let mut f = CriFigures::default();
    let Ok(records) = crate::store::containers::list(&app.store, CRI_NAMESPACE) else {
        return f;
    };
    for r in records {
        let counts = match r.labels.get(CRI_KIND_LABEL).map(String::as_str) {
            Some("sandbox") => &mut f.pods,
            Some("container") => &mut f.containers,
            _ => continue,
        };
        *counts.entry("unknown".to_string()).or_default() += 1;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::cgroups;
    use prost::Message;

    #[test]
    fn cgroup_figures_decode() {
        let m = cgroups::v1::Metrics {
            cpu: Some(cgroups::v1::CpuStat {
                usage: Some(cgroups::v1::CpuUsage {
                    total: 2_500_000_000,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: Some(cgroups::v1::MemoryStat {
                usage: Some(cgroups::v1::MemoryEntry {
                    usage: 4096,
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
            type_url: berth_api::type_urls::CGROUPS_V1_METRICS.into(),
            value: m.encode_to_vec(),
        };
        let c = decode(&any).unwrap();
        assert_eq!(c.cpu_seconds, 2.5);
        assert_eq!(c.memory_bytes, 4096);
        assert_eq!(c.memory_limit_bytes, None, "no limit");
        assert_eq!(c.pids, 3);
        let other = prost_types::Any {
            type_url: "x".into(),
            value: vec![],
        };
        assert!(decode(&other).is_none());
    }
}

//! The workloads. Each one names its metrics up front and, for one daemon,
//! returns one result per metric (a summary of samples, or why there is none).

use std::path::PathBuf;

use serde::Serialize;

use crate::daemon::{Daemon, SideError};
use crate::fixtures::Archive;
use crate::stats::Stats;

pub(crate) mod containers;
pub(crate) mod content;
pub(crate) mod images;
pub(crate) mod memory;
pub(crate) mod pods;

/// One figure in the report.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Metric {
    pub(crate) id: &'static str,
    pub(crate) title: String,
    pub(crate) unit: &'static str,
    pub(crate) higher_is_better: bool,
    /// The target for berthd/containerd from the issues, if any.
    pub(crate) target_ratio: Option<f64>,
    /// How the figure is taken (runs, caches, what is timed).
    pub(crate) method: String,
}

/// One side's outcome for one metric.
pub(crate) type Side = Result<Stats, SideError>;

/// Settings and shared inputs, filled in by main before the workloads run.
pub(crate) struct Ctx {
    pub(crate) runs: usize,
    pub(crate) warmup: usize,
    pub(crate) drop_caches: bool,
    pub(crate) latency_runs: usize,
    pub(crate) parallel: usize,
    pub(crate) idle: usize,
    pub(crate) recovery: usize,
    pub(crate) ingest_mib: u64,
    /// One distinct random blob per content run (warm-up included).
    pub(crate) random_blobs: Vec<(PathBuf, String)>,
    pub(crate) import: Option<(Archive, Archive, String)>,
    pub(crate) busybox: Option<Archive>,
    /// The CRI workloads' sandbox image (a pause stand-in).
    pub(crate) pause: Option<Archive>,
    /// Pods timed one after another in the pod-start workload.
    pub(crate) pod_runs: usize,
    /// Idle pods per run in the pod-memory workload.
    pub(crate) idle_pods: usize,
    /// Pods started at once in the pod-parallel workload.
    pub(crate) pods_parallel: usize,
    pub(crate) pull_ref: Option<String>,
    /// berthctl, for berthd's server-side pull.
    pub(crate) berthctl: Option<PathBuf>,
    pub(crate) crun: Option<PathBuf>,
    /// Why a fixture is missing (shown as the skip reason on both sides).
    pub(crate) missing: Vec<(&'static str, String)>,
}

impl Ctx {
    pub(crate) fn missing(&self, what: &str) -> SideError {
        let why = self
            .missing
            .iter()
            .find(|(w, _)| *w == what)
            .map(|(_, m)| m.clone())
            .unwrap_or_else(|| "not prepared".into());
        SideError::Skipped(format!("{what} unavailable: {why}"))
    }
}

/// A named group of metrics measured together.
pub(crate) struct Workload {
    pub(crate) name: &'static str,
    pub(crate) metrics: Vec<Metric>,
    pub(crate) run: fn(&mut Daemon, &Ctx) -> Vec<Side>,
}

/// All workloads, in the order they run against each daemon.
pub(crate) fn all(ctx: &Ctx) -> Vec<Workload> {
    vec![
        content::workload(ctx),
        images::import_workload(ctx),
        images::pull_workload(ctx),
        containers::latency_workload(ctx),
        containers::parallel_workload(ctx),
        memory::memory_workload(ctx),
        memory::recovery_workload(ctx),
        // Last: these turn the daemons' CRI on (a restart with a new config).
        pods::start_workload(ctx),
        pods::memory_workload(ctx),
        pods::parallel_workload(ctx),
    ]
}

/// The same error for every metric of a workload.
pub(crate) fn all_err(n: usize, e: SideError) -> Vec<Side> {
    vec![Err(e); n]
}

/// Stats of samples, or a failure if none were taken.
pub(crate) fn summarise(samples: &[f64]) -> Side {
    Stats::of(samples).ok_or_else(|| SideError::Failed("no samples".into()))
}

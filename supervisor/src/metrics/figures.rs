//! The state metrics: a [`Figures`] gathered when a scrape asks, encoded
//! by a registry collector. A series exists only while its object does (a
//! container that went has no line), so nothing is left to reset.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// berthd's state at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    /// Tasks (their init process) by (namespace, status): `created`,
    /// `running`, `paused`, `pausing`, `stopped`, `unknown`.
    pub tasks: BTreeMap<(String, String), u64>,
    /// Live shims by namespace.
    pub shims: BTreeMap<String, u64>,
    /// Distinct blobs in the content store.
    pub content_blobs: u64,
    /// Their bytes.
    pub content_bytes: u64,
    /// Snapshots by (namespace, snapshotter, kind): `active`, `committed`,
    /// `view`.
    pub snapshots: BTreeMap<(String, String, String), u64>,
    /// CRI pods and containers.
    pub cri: CriFigures,
    /// Each running (or paused) container's cgroup figures.
    pub containers: Vec<ContainerFigures>,
}

/// The CRI's pods and containers, each by state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriFigures {
    /// Pod sandboxes by state (`ready`, `notready`; `unknown` when counted
    /// from records alone).
    pub pods: BTreeMap<String, u64>,
    /// CRI containers by state (`created`, `running`, `exited`, `unknown`).
    pub containers: BTreeMap<String, u64>,
}

/// One container's cgroup figures, from its shim.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerFigures {
    /// Its namespace.
    pub namespace: String,
    /// Its id.
    pub id: String,
    /// CPU time used, all CPUs, user and system (seconds).
    pub cpu_seconds: f64,
    /// Memory in use (bytes).
    pub memory_bytes: u64,
    /// Its memory limit (bytes), when it has one.
    pub memory_limit_bytes: Option<u64>,
    /// Processes and threads in it.
    pub pids: u64,
}

/// Encodes the last figures set at every scrape.
#[derive(Debug, Default)]
pub(super) struct Collector {
    current: Mutex<Figures>,
}

impl Collector {
    pub(super) fn set(&self, figures: Figures) {
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = figures;
    }
}

fn gauges<L: EncodeLabelSet, V: EncodeGaugeValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in rows {
        ConstGauge::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn counters<L: EncodeLabelSet, V: EncodeCounterValue>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in rows {
        ConstCounter::new(v).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let f = self.current.lock().unwrap_or_else(|p| p.into_inner());
        let e = &mut enc;
        gauges(
            e,
            "berth_tasks",
            "Tasks by namespace and the status of their init process",
            f.tasks
                .iter()
                .map(|((ns, st), n)| ([("namespace", ns.as_str()), ("status", st.as_str())], *n)),
        )?;
        gauges(
            e,
            "berth_shims",
            "Live berth-shim processes by namespace",
            f.shims
                .iter()
                .map(|(ns, n)| ([("namespace", ns.as_str())], *n)),
        )?;
        let none: [(&str, &str); 0] = [];
        gauges(
            e,
            "berth_content_blobs",
            "Distinct blobs in the content store",
            [(none, f.content_blobs)],
        )?;
        gauges(
            e,
            "berth_content_bytes",
            "Bytes of the blobs in the content store",
            [(none, f.content_bytes)],
        )?;
        gauges(
            e,
            "berth_snapshots",
            "Snapshots by namespace, snapshotter and kind",
            f.snapshots.iter().map(|((ns, sn, kind), n)| {
                (
                    [
                        ("namespace", ns.as_str()),
                        ("snapshotter", sn.as_str()),
                        ("kind", kind.as_str()),
                    ],
                    *n,
                )
            }),
        )?;
        gauges(
            e,
            "berth_cri_pods",
            "CRI pod sandboxes by state",
            f.cri
                .pods
                .iter()
                .map(|(s, n)| ([("state", s.as_str())], *n)),
        )?;
        gauges(
            e,
            "berth_cri_containers",
            "CRI containers by state",
            f.cri
                .containers
                .iter()
                .map(|(s, n)| ([("state", s.as_str())], *n)),
        )?;
        let who = |c: &ContainerFigures| [("namespace", c.namespace.clone()), ("id", c.id.clone())];
        counters(
            e,
            "berth_container_cpu_seconds",
            "CPU time a running container has used (cgroup cpuacct or cpu.stat), seconds",
            f.containers.iter().map(|c| (who(c), c.cpu_seconds)),
        )?;
        gauges(
            e,
            "berth_container_memory_bytes",
            "Memory a running container uses (its cgroup's usage), bytes",
            f.containers.iter().map(|c| (who(c), c.memory_bytes)),
        )?;
        gauges(
            e,
            "berth_container_memory_limit_bytes",
            "A running container's memory limit, bytes (only containers that have one)",
            f.containers
                .iter()
                .filter_map(|c| Some((who(c), c.memory_limit_bytes?))),
        )?;
        gauges(
            e,
            "berth_container_pids",
            "Processes and threads in a running container's cgroup",
            f.containers.iter().map(|c| (who(c), c.pids)),
        )?;
        Ok(())
    }
}

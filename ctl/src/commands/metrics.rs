//! `berthctl tasks metrics`: containerd's cgroup v1/v2 metrics, decoded.

use berth_api::services::tasks::v1 as pb;
use prost::Message;
use serde::Serialize;

use super::Ctx;
use crate::error::{Error, Result, RpcContext};
use crate::output::Row;

/// One metric.
#[derive(Debug, Serialize)]
pub struct MetricRow {
    /// dotted name, e.g. `memory.usage_in_bytes`
    pub metric: String,
    /// value
    pub value: u64,
}

impl Row for MetricRow {
    fn headers() -> &'static [&'static str] {
        &["METRIC", "VALUE"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.metric.clone(), self.value.to_string()]
    }
}

fn m(metric: &str, value: u64) -> MetricRow {
    MetricRow {
        metric: metric.into(),
        value,
    }
}

/// The interesting numbers of a metrics `Any`.
pub fn decode(any: &prost_types::Any) -> Result<Vec<MetricRow>> {
    let bad = |e: prost::DecodeError| Error::Protocol(format!("decode {}: {e}", any.type_url));
    let url = any.type_url.rsplit('/').next().unwrap_or(&any.type_url);
    let mut rows = Vec::new();
    if url == berth_api::type_urls::CGROUPS_V1_METRICS {
        let v = berth_api::cgroups::v1::Metrics::decode(any.value.as_slice()).map_err(bad)?;
        if let Some(mem) = &v.memory {
            if let Some(u) = &mem.usage {
                rows.push(m("memory.usage_in_bytes", u.usage));
                rows.push(m("memory.limit_in_bytes", u.limit));
                rows.push(m("memory.max_usage_in_bytes", u.max));
                rows.push(m("memory.failcnt", u.failcnt));
            }
            rows.push(m("memory.stat.cache", mem.cache));
            rows.push(m("memory.stat.rss", mem.rss));
        }
        if let Some(cpu) = v.cpu.as_ref().and_then(|c| c.usage.as_ref()) {
            rows.push(m("cpuacct.usage", cpu.total));
            rows.push(m("cpuacct.usage_user", cpu.user));
            rows.push(m("cpuacct.usage_kernel", cpu.kernel));
        }
        if let Some(p) = &v.pids {
            rows.push(m("pids.current", p.current));
            rows.push(m("pids.limit", p.limit));
        }
        if let Some(o) = &v.memory_oom_control {
            rows.push(m("memory.oom_control.oom_kill", o.oom_kill));
        }
    } else if url == berth_api::type_urls::CGROUPS_V2_METRICS {
        let v = berth_api::cgroups::v2::Metrics::decode(any.value.as_slice()).map_err(bad)?;
        if let Some(mem) = &v.memory {
            rows.push(m("memory.usage", mem.usage));
            rows.push(m("memory.usage_limit", mem.usage_limit));
        }
        if let Some(cpu) = &v.cpu {
            rows.push(m("cpu.usage_usec", cpu.usage_usec));
            rows.push(m("cpu.user_usec", cpu.user_usec));
            rows.push(m("cpu.system_usec", cpu.system_usec));
        }
        if let Some(p) = &v.pids {
            rows.push(m("pids.current", p.current));
            rows.push(m("pids.limit", p.limit));
        }
    } else {
        return Err(Error::Protocol(format!(
            "metrics of unknown type {:?}",
            any.type_url
        )));
    }
    Ok(rows)
}

/// Prints task `id`'s metrics.
pub async fn show(ctx: &Ctx, id: &str) -> Result<()> {
    let resp = ctx
        .client
        .tasks()
        .metrics(pb::MetricsRequest {
            filters: vec![format!("id=={id}")],
        })
        .await
        .with_context(|| format!("metrics of task {id:?}"))?
        .into_inner();
    let metric = resp
        .metrics
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| Error::Rpc {
            what: format!("metrics of task {id:?}"),
            status: tonic::Status::not_found(format!("task {id:?}: no metrics (not running?)")),
        })?;
    let data = metric
        .data
        .ok_or_else(|| Error::Protocol(format!("metrics of task {id:?}: empty")))?;
    ctx.out.list(&decode(&data)?)
}

//! Pids and Metrics: what runs in a task, and its cgroup statistics.

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

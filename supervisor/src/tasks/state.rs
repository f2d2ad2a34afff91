//! Get and List: a process's state from its shim, every task's from
//! berthd's table.

use berth_api::shim::v1 as sp;

use super::error::Error;
use super::process::Process;
use super::shim;
use super::table::Tasks;
use super::task::Task;
use crate::filters::{Fields, Filter};

/// The fields a task List filters on.
struct TaskFields<'a>(&'a Task);

impl Fields for TaskFields<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        match (path.first()?.as_str(), path.len()) {
            ("id", 1) | ("container_id", 1) => Some(self.0.id.clone()),
            ("namespace", 1) => Some(self.0.namespace.clone()),
            ("pid", 1) => Some(self.0.pid.to_string()),
            _ => None,
        }
    }
}

impl Tasks {
    /// The state of process `exec_id` (empty: init) of task `id`, from
    /// its shim. A task whose shim died reads as stopped with status 137.
    pub async fn state(&self, ns: &str, id: &str, exec_id: &str) -> Result<Process, Error> {
        let t = self.get(ns, id)?;
        let req = sp::ProcessRequest {
            exec_id: exec_id.to_string(),
        };
        match t.call(|mut c| async move { c.state(req).await }).await {
            Ok(s) => {
                let p = shim::process(id, s);
                if exec_id.is_empty() {
                    t.remember(p.clone());
                }
                Ok(p)
            }
            Err(Error::ShimDied(_)) if exec_id.is_empty() => Ok(t.stopped_state()),
            Err(Error::ShimDied(_)) => {
                Err(Error::NotFound(format!("process {exec_id:?}: not found")))
            }
            Err(e) => Err(e),
        }
    }

    /// The init processes of the tasks of `ns` that `filters` match, from
    /// berthd's table (no shim is asked; see [`super::process`]).
    pub fn list(&self, ns: &str, filters: &[String]) -> Result<Vec<Process>, Error> {
        let filter = Filter::parse(filters)?;
        Ok(self
            .all(ns)
            .into_iter()
            .filter(|t| filter.matches(&TaskFields(t)))
            .map(|t| t.known_state())
            .collect())
    }

    /// The ids of the tasks of `ns` that `filters` match and whose shim
    /// lives (for metrics).
    pub(super) fn live(
        &self,
        ns: &str,
        filters: &[String],
    ) -> Result<Vec<std::sync::Arc<Task>>, Error> {
        let filter = Filter::parse(filters)?;
        Ok(self
            .all(ns)
            .into_iter()
            .filter(|t| t.dead().is_none() && filter.matches(&TaskFields(t)))
            .collect())
    }
}

//! Start: run a created process (the init process, or an exec'd one).

use berth_api::shim::v1 as sp;

use super::error::Error;
use super::process::{Change, Status};
use super::table::Tasks;

impl Tasks {
    /// Starts process `exec_id` (empty: init) of task `id`; returns its pid.
    pub async fn start(&self, ns: &str, id: &str, exec_id: &str) -> Result<u32, Error> {
        let t = self.get(ns, id)?;
        let init = exec_id.is_empty();
        if init {
            t.allow(Status::can_start, || {
                Error::FailedPrecondition(format!("process {id:?} is not in created state"))
            })?;
        }
        let req = sp::ProcessRequest {
            exec_id: exec_id.to_string(),
        };
        let r = t.call(|mut c| async move { c.start(req).await }).await?;
        if init {
            t.note(Change::Started);
        }
        Ok(r.pid)
    }
}

//! Update: change a task's resources (OCI `LinuxResources` JSON).

use std::collections::HashMap;

use berth_api::shim::v1 as sp;

use super::error::{not_running, Error};
use super::process::Status;
use super::table::Tasks;

impl Tasks {
    /// Updates the resources (and annotations) of task `id`.
    pub async fn update(
        &self,
        ns: &str,
        id: &str,
        resources: Option<prost_types::Any>,
        annotations: HashMap<String, String>,
    ) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        t.allow(Status::can_update, || not_running(id))?;
        let req = sp::UpdateRequest {
            resources,
            annotations,
        };
        t.call(|mut c| async move { c.update(req).await }).await
    }
}

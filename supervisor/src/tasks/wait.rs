//! Wait: until a process exits.

use berth_api::shim::v1 as sp;

use super::error::Error;
use super::process::{Change, Exit};
use super::shim;
use super::table::Tasks;

impl Tasks {
    /// Waits for process `exec_id` (empty: init) of task `id` to exit.
    /// Ends with status 137 if the shim dies meanwhile.
    pub async fn wait(&self, ns: &str, id: &str, exec_id: &str) -> Result<Exit, Error> {
        let t = self.get(ns, id)?;
        let req = sp::ProcessRequest {
            exec_id: exec_id.to_string(),
        };
        let call = t.call(|mut c| async move { c.wait(req).await });
        tokio::select! {
            r = call => match r {
                Ok(r) => {
                    let exit = shim::exit(r.exit_status, r.exited_at);
                    if exec_id.is_empty() {
                        t.note(Change::Exited(exit));
                    }
                    Ok(exit)
                }
                Err(Error::ShimDied(_)) => Ok(t.died().await),
                Err(e) => Err(e),
            },
            exit = t.died() => Ok(exit),
        }
    }
}

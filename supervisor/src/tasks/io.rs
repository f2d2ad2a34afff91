//! A process's terminal, stdin and log: resize its pty, close its stdin,
//! reopen its log file.

use berth_api::shim::v1 as sp;

use super::error::Error;
use super::table::Tasks;

impl Tasks {
    /// Resizes the pty of process `exec_id` (empty: init) of task `id`.
    pub async fn resize_pty(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        let req = sp::ResizePtyRequest {
            exec_id: exec_id.to_string(),
            width,
            height,
        };
        t.call(|mut c| async move { c.resize_pty(req).await }).await
    }

    /// Closes the stdin of process `exec_id` (empty: init) of task `id`.
    pub async fn close_io(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        stdin: bool,
    ) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        let req = sp::CloseIoRequest {
            exec_id: exec_id.to_string(),
            stdin,
        };
        t.call(|mut c| async move { c.close_io(req).await }).await
    }

    /// Has the shim reopen the init process's log file (after the kubelet
    /// renamed it); FailedPrecondition when the task has none.
    pub async fn reopen_log(&self, ns: &str, id: &str) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        t.call(|mut c| async move { c.reopen_log(()).await }).await
    }
}

//! Kill: signal one process, or with `all` every process of the task.

use berth_api::shim::v1 as sp;

use super::error::Error;
use super::table::Tasks;

/// A signal to send.
#[derive(Debug, Clone, Default)]
pub struct Kill {
    /// The process (empty: init).
    pub exec_id: String,
    /// The signal number.
    pub signal: u32,
    /// Every process of the container (init only).
    pub all: bool,
}

impl Tasks {
    /// Signals a process of task `id`. A process that already exited
    /// answers NotFound (as containerd does).
    pub async fn kill(&self, ns: &str, id: &str, k: Kill) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        if k.exec_id.is_empty() {
            t.allow(
                |s| s.can_signal(k.all),
                || Error::NotFound(format!("process {id:?} already finished")),
            )?;
        }
        let req = sp::KillRequest {
            exec_id: k.exec_id,
            signal: k.signal,
            all: k.all,
        };
        t.call(|mut c| async move { c.kill(req).await }).await
    }
}

//! Exec: add a process to a running task (started later with Start).

use berth_api::shim::v1 as sp;

use super::error::{not_running, Error};
use super::process::Status;
use super::table::Tasks;

/// A process to add to a task.
#[derive(Debug, Clone, Default)]
pub struct ExecProcess {
    /// Its id within the task (a containerd identifier).
    pub exec_id: String,
    /// Whether it gets a pty.
    pub terminal: bool,
    /// stdin fifo/URI.
    pub stdin: String,
    /// stdout fifo/URI.
    pub stdout: String,
    /// stderr fifo/URI.
    pub stderr: String,
    /// The OCI process spec (JSON in an `Any`).
    pub spec: Option<prost_types::Any>,
}

impl Tasks {
    /// Adds process `p` to task `id`.
    pub async fn exec(&self, ns: &str, id: &str, p: ExecProcess) -> Result<(), Error> {
        let t = self.get(ns, id)?;
        berth_api::identifiers::validate("exec_id", &p.exec_id)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        if p.spec.is_none() {
            return Err(Error::InvalidArgument(
                "spec: an OCI process spec is required".into(),
            ));
        }
        t.allow(Status::can_exec, || not_running(id))?;
        let req = sp::ExecRequest {
            exec_id: p.exec_id,
            terminal: p.terminal,
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            spec: p.spec,
        };
        t.call(|mut c| async move { c.exec(req).await }).await
    }
}

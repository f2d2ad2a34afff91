//! The remaining verbs: exec (record), kill, pause/resume, pids, stats,
//! update, resize pty, close stdin.

use std::sync::Arc;

use berth_api::events as ev;
use berth_api::runc::v1::ProcessDetails;
use berth_api::task_types::ProcessInfo;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use prost::Message;

use crate::error::{Error, Result};
use crate::process::{Guard, Phase, Proc, Refusal};
use crate::runtime::{Runtime, RuntimeError};
use crate::stdio::StdioPaths;
use crate::task::Task;

impl Task {
    /// Records an exec process (started later by `start(exec_id)`).
    /// `spec` is the OCI process spec (JSON); its `terminal` is set from
    /// the request, as containerd's shim does, so the runtime allocates a
    /// pty exactly when the shim hands it a console socket.
    pub async fn exec(
        self: &Arc<Self>,
        exec_id: &str,
        paths: StdioPaths,
        spec: Vec<u8>,
    ) -> Result<()> {
        berth_api::identifiers::validate("exec_id", exec_id)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let mut parsed: serde_json::Value = serde_json::from_slice(&spec)
            .map_err(|e| Error::InvalidArgument(format!("spec: not an OCI process spec: {e}")))?;
        if parsed
            .get("args")
            .and_then(|a| a.as_array())
            .is_none_or(|a| a.is_empty())
        {
            return Err(Error::InvalidArgument(
                "spec: process args must not be empty".into(),
            ));
        }
        let Some(fields) = parsed.as_object_mut() else {
            return Err(Error::InvalidArgument(
                "spec: not an OCI process spec (an object)".into(),
            ));
        };
        fields.insert("terminal".into(), paths.terminal.into());
        let spec = serde_json::to_vec(&parsed)
            .map_err(|e| Error::InvalidArgument(format!("spec: {e}")))?;
        let _op = self.op.lock().await;
        let mut st = self.lock();
        let live = st.live_mut()?;
        live.init
            .phase
            .can_exec()
            .map_err(|r| r.error(&self.name("")))?;
        if live.execs.contains_key(exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec_id: process {exec_id:?} already exists"
            )));
        }
        live.execs
            .insert(exec_id.to_string(), Proc::new(exec_id, paths, spec));
        self.events.publish(&ev::TaskExecAdded {
            container_id: self.id.clone(),
            exec_id: exec_id.to_string(),
        });
        Ok(())
    }

    /// Signals one process, or with `all` every process of the container.
    pub async fn kill(&self, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = i32::try_from(signal)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .ok_or_else(|| Error::InvalidArgument(format!("signal: {signal} is not a signal")))?;
        let (phase, pid, runtime) = {
            let st = self.lock();
            let p = st.proc(exec_id)?;
            (p.phase, p.pid, st.live()?.runtime.clone())
        };
        phase
            .can_kill(exec_id.is_empty(), all)
            .map_err(|r| r.error(&self.name(exec_id)))?;
        if exec_id.is_empty() {
            return runtime.kill(&self.id, sig as u32, all).await.map_err(|e| {
                // The runtime raced with an exit, or the container is gone.
                let exited = self
                    .lock()
                    .live()
                    .is_ok_and(|l| l.init.phase.exit().is_some());
                let not_running = matches!(&e, RuntimeError::Failed { message, .. }
                    if message.contains("container not running"));
                if exited || not_running {
                    Refusal::Finished.error(&self.name(""))
                } else {
                    e.into()
                }
            });
        }
        kill(Pid::from_raw(pid as i32), sig).map_err(|e| {
            if e == nix::errno::Errno::ESRCH {
                Refusal::Finished.error(&self.name(exec_id))
            } else {
                Error::Io {
                    context: format!("kill {pid}"),
                    source: e.into(),
                }
            }
        })
    }

    /// Freezes the container.
    pub async fn pause(&self) -> Result<()> {
        let _op = self.op.lock().await;
        let runtime = self.init_allows(Phase::can_pause)?;
        runtime.pause(&self.id).await?;
        if let Ok(live) = self.lock().live_mut() {
            live.init.phase.set_paused(true);
        }
        self.events.publish(&ev::TaskPaused {
            container_id: self.id.clone(),
        });
        Ok(())
    }

    /// Thaws the container.
    pub async fn resume(&self) -> Result<()> {
        let _op = self.op.lock().await;
        let runtime = self.init_allows(Phase::can_resume)?;
        runtime.resume(&self.id).await?;
        if let Ok(live) = self.lock().live_mut() {
            live.init.phase.set_paused(false);
        }
        self.events.publish(&ev::TaskResumed {
            container_id: self.id.clone(),
        });
        Ok(())
    }

    /// The runtime, when init's phase passes `guard`.
    fn init_allows(&self, guard: fn(&Phase) -> Guard) -> Result<Runtime> {
        let st = self.lock();
        let live = st.live()?;
        guard(&live.init.phase).map_err(|r| r.error(&self.name("")))?;
        Ok(live.runtime.clone())
    }

    /// Pids in the container; exec'd processes carry containerd's
    /// `ProcessDetails` with their exec id.
    pub async fn pids(&self) -> Result<Vec<ProcessInfo>> {
        let runtime = self.lock().live()?.runtime.clone();
        let pids = runtime.ps(&self.id).await?;
        let st = self.lock();
        let live = st.live()?;
        Ok(pids
            .into_iter()
            .map(|pid| {
                let info = live
                    .execs
                    .values()
                    .find(|p| p.pid == pid && p.phase.is_running())
                    .map(|p| prost_types::Any {
                        type_url: "containerd.runc.v1.ProcessDetails".into(),
                        value: ProcessDetails {
                            exec_id: p.exec_id.clone(),
                        }
                        .encode_to_vec(),
                    });
                ProcessInfo { pid, info }
            })
            .collect())
    }

    /// cgroup metrics as containerd's Metrics in an Any.
    pub fn stats(&self) -> Result<prost_types::Any> {
        let st = self.lock();
        let live = st.live()?;
        let cg = live
            .cgroup
            .as_ref()
            .ok_or_else(|| Error::NotFound("task has no cgroup".into()))?;
        if !cg.exists() {
            return Err(Error::NotFound(format!(
                "the cgroup of task {} is gone",
                self.name("")
            )));
        }
        Ok(cg.metrics())
    }

    /// Applies an OCI LinuxResources (JSON).
    pub async fn update(&self, resources: &[u8]) -> Result<()> {
        serde_json::from_slice::<serde_json::Value>(resources).map_err(|e| {
            Error::InvalidArgument(format!("resources: not an OCI LinuxResources: {e}"))
        })?;
        let _op = self.op.lock().await;
        let runtime = self.init_allows(Phase::can_update)?;
        runtime.update(&self.id, resources).await?;
        Ok(())
    }

    /// Resizes a process's terminal; a process without one is left alone.
    pub fn resize_pty(&self, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let st = self.lock();
        let p = st.proc(exec_id)?;
        if let Some(io) = &p.io {
            io.resize(width, height).map_err(Error::io("resize pty"))?;
        }
        Ok(())
    }

    /// Reopens the log file the shim writes for init (CRI
    /// ReopenContainerLog, after the kubelet moved the file away).
    pub fn reopen_log(&self) -> Result<()> {
        let st = self.lock();
        let init = &st.live()?.init;
        match init.io.as_ref().and_then(|io| io.reopen_log()) {
            Some(res) => res.map_err(Error::io("reopen log")),
            None => Err(Error::FailedPrecondition(format!(
                "task {} has no log file",
                self.name("")
            ))),
        }
    }

    /// Joins a process's stdio beside its log file (see
    /// [`crate::attach`]): FailedPrecondition when the shim does not copy
    /// its output (no log file) or the output already ended.
    pub fn attach(
        &self,
        exec_id: &str,
        want: crate::attach::Want,
        stdin: tokio::sync::mpsc::Receiver<Vec<u8>>,
    ) -> Result<tokio::sync::mpsc::Receiver<crate::attach::Chunk>> {
        let st = self.lock();
        let p = st.proc(exec_id)?;
        let point =
            p.io.as_ref()
                .and_then(|io| io.attach_point())
                .ok_or_else(|| {
                    Error::FailedPrecondition(format!(
                    "{}: its output does not pass through the shim (no log file): cannot attach",
                    self.name(exec_id)
                ))
                })?;
        point
            .attach(want, stdin)
            .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", self.name(exec_id))))
    }

    /// Closes a process's stdin (after what was written is copied).
    pub fn close_stdin(&self, exec_id: &str) -> Result<()> {
        let mut st = self.lock();
        let p = st.proc_mut(exec_id)?;
        if let Some(io) = p.io.as_mut() {
            io.close_stdin();
        }
        Ok(())
    }
}

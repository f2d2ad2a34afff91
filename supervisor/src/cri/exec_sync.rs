//! ExecSync: run a command in a running container and answer its stdout,
//! stderr and exit code, honouring the request's timeout (the process is
//! SIGKILLed and DeadlineExceeded answered). Output comes through two
//! fifos under the state dir that berthd holds open read-write (so a read
//! never sees EOF before the shim opened them); after the exit, what is
//! left in them is drained. Each stream is capped at 16 MiB, as the
//! kubelet's own limit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::ErrorKind;
use k8s_cri::v1 as cri;
use tokio::io::AsyncReadExt;
use tonic::Status;

use super::helpers::fail;
use super::{Cri, NAMESPACE};
use crate::tasks::{ExecProcess, Kill};

/// Largest output kept per stream.
const MAX_OUTPUT: usize = 16 << 20;
/// How long output may still trickle in after the exit.
const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Reads `fifo` until `done` fires and the fifo stays idle for
/// [`DRAIN_IDLE`].
async fn collect(
    mut rx: tokio::net::unix::pipe::Receiver,
    mut done: tokio::sync::watch::Receiver<bool>,
) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let finished = *done.borrow();
        let read = if finished {
            match tokio::time::timeout(DRAIN_IDLE, rx.read(&mut buf)).await {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                r = rx.read(&mut buf) => r,
                _ = done.changed() => continue,
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

fn open_fifo(path: &Path) -> Result<tokio::net::unix::pipe::Receiver, Status> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Status::internal(format!("mkfifo {}: {e}", path.display())))?;
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| Status::internal(format!("open {}: {e}", path.display())))
}

impl Cri {
    pub(super) async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, Status> {
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: required"));
        }
        let m = self.get_container(&req.container_id)?;
        let rec = self
            .inner
            .deps
            .containers
            .get(NAMESPACE, &m.id)
            .map_err(|e| fail(e.kind(), e))?;
        let spec: serde_json::Value = rec
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok())
            .ok_or_else(|| Status::internal(format!("container {}: no spec", m.id)))?;
        let mut process = spec["process"].clone();
        process["args"] = serde_json::json!(req.cmd);
        process["terminal"] = serde_json::json!(false);
        let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let dir: PathBuf = self.state_dir().join("exec").join(&exec_id);
        std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
        let result = self
            .exec_in(&m.id, &exec_id, &dir, process, req.timeout)
            .await;
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    async fn exec_in(
        &self,
        id: &str,
        exec_id: &str,
        dir: &Path,
        process: serde_json::Value,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse, Status> {
        let tasks = &self.inner.deps.tasks;
        let (out_path, err_path) = (dir.join("stdout"), dir.join("stderr"));
        let out_rx = open_fifo(&out_path)?;
        let err_rx = open_fifo(&err_path)?;
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let out_task = tokio::spawn(collect(out_rx, done_rx.clone()));
        let err_task = tokio::spawn(collect(err_rx, done_rx));
        let spec = prost_types::Any {
            type_url: berth_api::type_urls::OCI_PROCESS.into(),
            value: serde_json::to_vec(&process).map_err(|e| Status::internal(e.to_string()))?,
        };
        tasks
            .exec(
                NAMESPACE,
                id,
                ExecProcess {
                    exec_id: exec_id.to_string(),
                    terminal: false,
                    stdin: String::new(),
                    stdout: out_path.display().to_string(),
                    stderr: err_path.display().to_string(),
                    spec: Some(spec),
                },
            )
            .await
            .map_err(|e| fail(e.kind(), e))?;
        let cleanup = || async {
            if let Err(e) = tasks.delete_process(NAMESPACE, id, exec_id).await {
                tracing::debug!(id, exec_id, error = %e, "deleting an exec process");
            }
        };
        if let Err(e) = tasks.start(NAMESPACE, id, exec_id).await {
            cleanup().await;
            let _ = done_tx.send(true);
            return Err(fail(e.kind(), e));
        }
        let wait = tasks.wait(NAMESPACE, id, exec_id);
        let exit = if timeout > 0 {
            match tokio::time::timeout(Duration::from_secs(timeout as u64), wait).await {
                Ok(r) => r,
                Err(_) => {
                    let _ = tasks
                        .kill(
                            NAMESPACE,
                            id,
                            Kill {
                                exec_id: exec_id.to_string(),
                                signal: 9,
                                all: false,
                            },
                        )
                        .await;
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        tasks.wait(NAMESPACE, id, exec_id),
                    )
                    .await;
                    cleanup().await;
                    let _ = done_tx.send(true);
                    return Err(fail(
                        ErrorKind::DeadlineExceeded,
                        format!("command {exec_id} in container {id}: timeout {timeout}s exceeded"),
                    ));
                }
            }
        } else {
            wait.await
        };
        let _ = done_tx.send(true);
        let stdout = out_task.await.unwrap_or_default();
        let stderr = err_task.await.unwrap_or_default();
        cleanup().await;
        let exit = exit.map_err(|e| fail(e.kind(), e))?;
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: exit.status as i32,
        })
    }
}

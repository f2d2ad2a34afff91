//! Exec in a CRI container, the one implementation behind ExecSync and the
//! streaming server's exec: [`Cri::exec_start`] starts the command with
//! the stdio asked for, [`Cri::exec_finish`] removes it once waited for.
//!
//! ExecSync runs a command and answers its stdout, stderr and exit code,
//! honouring the request's timeout (the process is SIGKILLed and
//! DeadlineExceeded answered). Stdio goes through fifos under the state
//! dir that berthd holds open read-write (so a read never sees EOF before
//! the shim opened them); after the exit, what is left in them is drained.
//! Each stream is capped at 16 MiB, as the kubelet's own limit.

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
pub(super) const DRAIN_IDLE: Duration = Duration::from_millis(100);

/// Reads `fifo` until `done` fires and the fifo stays idle for
/// [`DRAIN_IDLE`].
pub(super) async fn collect(
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

/// What an exec runs and which stdio it gets.
pub(super) struct ExecSpec {
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    /// The terminal's size (width, height) when the process starts.
    pub console_size: Option<(u32, u32)>,
}

/// A started exec: its id and berthd's ends of its stdio fifos.
pub(super) struct Running {
    pub container_id: String,
    pub exec_id: String,
    dir: PathBuf,
    pub stdin: Option<tokio::net::unix::pipe::Sender>,
    pub stdout: Option<tokio::net::unix::pipe::Receiver>,
    pub stderr: Option<tokio::net::unix::pipe::Receiver>,
}

fn open_stdin(path: &Path) -> Result<tokio::net::unix::pipe::Sender, Status> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Status::internal(format!("mkfifo {}: {e}", path.display())))?;
    tokio::net::unix::pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| Status::internal(format!("open {}: {e}", path.display())))
}

impl Cri {
    /// Starts `spec` in running container `container_id`.
    pub(super) async fn exec_start(
        &self,
        container_id: &str,
        spec: ExecSpec,
    ) -> Result<Running, Status> {
        let m = self.get_container(container_id)?;
        let rec = self
            .inner
            .deps
            .containers
            .get(NAMESPACE, &m.id)
            .map_err(|e| fail(e.kind(), e))?;
        let oci: serde_json::Value = rec
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok())
            .ok_or_else(|| Status::internal(format!("container {}: no spec", m.id)))?;
        let mut process = oci["process"].clone();
        process["args"] = serde_json::json!(spec.cmd);
        process["terminal"] = serde_json::json!(spec.tty);
        if let Some(p) = process.as_object_mut() {
            match spec.console_size {
                Some((width, height)) if spec.tty => {
                    p.insert(
                        "consoleSize".into(),
                        serde_json::json!({"height": height, "width": width}),
                    );
                }
                _ => {
                    p.remove("consoleSize");
                }
            }
        }
        let exec_id = format!("exec-{}", uuid::Uuid::new_v4().simple());
        let dir: PathBuf = self.state_dir().join("exec").join(&exec_id);
        std::fs::create_dir_all(&dir).map_err(|e| Status::internal(e.to_string()))?;
        let mut r = Running {
            container_id: m.id.clone(),
            exec_id,
            dir,
            stdin: None,
            stdout: None,
            stderr: None,
        };
        match self.exec_spawn(&mut r, &spec, process).await {
            Ok(()) => Ok(r),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&r.dir);
                Err(e)
            }
        }
    }

    async fn exec_spawn(
        &self,
        r: &mut Running,
        spec: &ExecSpec,
        process: serde_json::Value,
    ) -> Result<(), Status> {
        let tasks = &self.inner.deps.tasks;
        let path = |name: &str| r.dir.join(name).display().to_string();
        let (mut stdin, mut stdout, mut stderr) = (String::new(), String::new(), String::new());
        if spec.stdin {
            r.stdin = Some(open_stdin(&r.dir.join("stdin"))?);
            stdin = path("stdin");
        }
        if spec.stdout {
            r.stdout = Some(open_fifo(&r.dir.join("stdout"))?);
            stdout = path("stdout");
        }
        if spec.stderr && !spec.tty {
            r.stderr = Some(open_fifo(&r.dir.join("stderr"))?);
            stderr = path("stderr");
        }
        let any = prost_types::Any {
            type_url: berth_api::type_urls::OCI_PROCESS.into(),
            value: serde_json::to_vec(&process).map_err(|e| Status::internal(e.to_string()))?,
        };
        tasks
            .exec(
                NAMESPACE,
                &r.container_id,
                ExecProcess {
                    exec_id: r.exec_id.clone(),
                    terminal: spec.tty,
                    stdin,
                    stdout,
                    stderr,
                    spec: Some(any),
                },
            )
            .await
            .map_err(|e| fail(e.kind(), e))?;
        if let Err(e) = tasks.start(NAMESPACE, &r.container_id, &r.exec_id).await {
            self.exec_delete(&r.container_id, &r.exec_id).await;
            return Err(fail(e.kind(), e));
        }
        Ok(())
    }

    async fn exec_delete(&self, id: &str, exec_id: &str) {
        if let Err(e) = self
            .inner
            .deps
            .tasks
            .delete_process(NAMESPACE, id, exec_id)
            .await
        {
            tracing::debug!(id, exec_id, error = %e, "deleting an exec process");
        }
    }

    /// Removes exec `r` (waited for, or killed) and its fifos.
    pub(super) async fn exec_finish(&self, r: Running) {
        self.exec_delete(&r.container_id, &r.exec_id).await;
        let _ = std::fs::remove_dir_all(&r.dir);
    }

    pub(super) async fn exec_sync(
        &self,
        req: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, Status> {
        if req.cmd.is_empty() {
            return Err(Status::invalid_argument("cmd: required"));
        }
        let mut r = self
            .exec_start(
                &req.container_id,
                ExecSpec {
                    cmd: req.cmd,
                    tty: false,
                    stdin: false,
                    stdout: true,
                    stderr: true,
                    console_size: None,
                },
            )
            .await?;
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let out_task = tokio::spawn(collect(
            r.stdout.take().expect("stdout asked"),
            done_rx.clone(),
        ));
        let err_task = tokio::spawn(collect(r.stderr.take().expect("stderr asked"), done_rx));
        let exit = self.exec_wait(&r, req.timeout).await;
        let _ = done_tx.send(true);
        let stdout = out_task.await.unwrap_or_default();
        let stderr = err_task.await.unwrap_or_default();
        self.exec_finish(r).await;
        let status = exit?;
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: status as i32,
        })
    }

    /// Waits for exec `r` to exit (at most `timeout` seconds when > 0, then
    /// SIGKILL and DeadlineExceeded); its exit status.
    pub(super) async fn exec_wait(&self, r: &Running, timeout: i64) -> Result<u32, Status> {
        let tasks = &self.inner.deps.tasks;
        let (id, exec_id) = (r.container_id.as_str(), r.exec_id.as_str());
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
                    return Err(fail(
                        ErrorKind::DeadlineExceeded,
                        format!("command {exec_id} in container {id}: timeout {timeout}s exceeded"),
                    ));
                }
            }
        } else {
            wait.await
        };
        exit.map(|e| e.status).map_err(|e| fail(e.kind(), e))
    }
}

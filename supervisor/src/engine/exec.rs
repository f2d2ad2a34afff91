//! Exec: a further process in a running container, its stdio through
//! berthd so that a remote client gets it too.
//!
//! The process is the container's own (its spec's process: env, user,
//! capabilities, cwd) with the command replaced and the request's env
//! (over the container's), working directory and user (names from the
//! image's files) applied. Its stdio are fifos under
//! `STATE/engine/exec/EXEC_ID` that berthd opens read-write before the
//! process starts: opening never blocks, and the pipes (with whatever
//! the process wrote) live however early the shim closes its ends. So
//! once the process has exited (the shim reports that after a terminal's
//! output drained) everything it wrote is in the fifos, and draining them
//! to empty is the whole output: no idle timeout, nothing lost.
//!
//! A client that goes away does not stop the process: its output is read
//! and dropped until it exits, then it is deleted like any other.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use super::error::blocking;
use super::logs::LogStream;
use super::model::Status;
use super::users::Users;
use super::{Engine, Error, Result};
use crate::tasks::{ExecProcess, Kill};

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// The command and its arguments.
    pub cmd: Vec<String>,
    /// KEY=VALUE over the container's environment.
    pub env: Vec<String>,
    /// An absolute directory (empty: the container's).
    pub working_dir: String,
    /// user[:group] (empty: the container's).
    pub user: String,
    /// A terminal (stdout carries both streams).
    pub tty: bool,
    /// Keep stdin open for the client's input.
    pub stdin: bool,
    /// The terminal's size (columns, rows).
    pub tty_size: Option<(u16, u16)>,
}

/// What an exec client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecInput {
    /// Bytes for the process's stdin.
    Stdin(Vec<u8>),
    /// The client's stdin ended: the process's stdin is closed.
    CloseStdin,
    /// The client's terminal size (columns, rows).
    Resize(u16, u16),
}

/// What an exec client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutput {
    /// The process runs: its exec ID and pid.
    Started {
        /// Its ID within the container's task.
        exec_id: String,
        /// Its host pid.
        pid: u32,
    },
    /// Output of one stream.
    Output(LogStream, Vec<u8>),
    /// The process exited with this code (the last message).
    Exit(i32),
}

/// Read size of the output fifos.
const CHUNK: usize = 64 * 1024;

/// Makes fifo `name` in `dir` and opens it read-write.
fn fifo(dir: &Path, name: &str) -> Result<PathBuf> {
    let p = dir.join(name);
    nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Error::io("mkfifo", &p)(e.into()))?;
    Ok(p)
}

fn open_out(p: &Path) -> Result<pipe::Receiver> {
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(p)
        .map_err(Error::io("open exec fifo", p))
}

/// `KEY=VALUE`s of `over` replace those of `env` with the same key.
fn merge_env(env: &mut Vec<serde_json::Value>, over: &[String]) {
    for kv in over {
        let key = kv.split_once('=').map(|(k, _)| k).unwrap_or(kv);
        env.retain(|e| {
            e.as_str()
                .is_none_or(|s| s.split_once('=').map(|(k, _)| k).unwrap_or(s) != key)
        });
        env.push(serde_json::Value::from(kv.as_str()));
    }
}

/// Copies one output fifo to the client until `done`, then drains it.
async fn pump(
    mut rx: pipe::Receiver,
    stream: LogStream,
    out: mpsc::Sender<ExecOutput>,
    mut done: watch::Receiver<bool>,
) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            r = rx.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let _ = out.send(ExecOutput::Output(stream, buf[..n].to_vec())).await;
                }
            },
            _ = async { let _ = done.wait_for(|d| *d).await; } => break,
        }
    }
    // The process is gone: what it wrote is buffered; read to empty.
    loop {
        match rx.try_read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                let _ = out
                    .send(ExecOutput::Output(stream, buf[..n].to_vec()))
                    .await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl Engine {
    /// Runs `req` in running container `what`; see the module doc. The
    /// first message is `Started`, the last `Exit`.
    pub async fn exec(
        &self,
        ns: &str,
        what: &str,
        req: ExecRequest,
        mut input: mpsc::Receiver<ExecInput>,
    ) -> Result<mpsc::Receiver<ExecOutput>> {
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument("exec: a command is required".into()));
        }
        if !req.working_dir.is_empty() && !req.working_dir.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "working dir {:?}: must be an absolute path",
                req.working_dir
            )));
        }
        let slot = self.find(ns, what)?;
        let rec = slot.record();
        match rec.state.status {
            Status::Running => {}
            Status::Paused => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is paused: unpause it first",
                    rec.name
                )))
            }
            _ => {
                return Err(Error::FailedPrecondition(format!(
                    "container {} is not running",
                    rec.name
                )))
            }
        }
        let id = slot.id.clone();
        let mut process = self.exec_process(ns, &rec, &req).await?;
        process["args"] = serde_json::json!(req.cmd);
        let exec_id = format!("exec-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
        let dir = self.cfg().state.join("engine").join("exec").join(&exec_id);
        let (tty, want_stdin) = (req.tty, req.stdin);
        let d = dir.clone();
        let (stdin_path, stdout_path, stderr_path) = blocking(move || {
            std::fs::create_dir_all(&d).map_err(Error::io("create exec dir", &d))?;
            let stdin = want_stdin.then(|| fifo(&d, "stdin")).transpose()?;
            let stdout = fifo(&d, "stdout")?;
            let stderr = (!tty).then(|| fifo(&d, "stderr")).transpose()?;
            Ok((stdin, stdout, stderr))
        })
        .await?;
        let opened = (|| {
            let stdin = match &stdin_path {
                Some(p) => Some(
                    pipe::OpenOptions::new()
                        .read_write(true)
                        .open_sender(p)
                        .map_err(Error::io("open exec fifo", p))?,
                ),
                None => None,
            };
            let stdout = open_out(&stdout_path)?;
            let stderr = stderr_path.as_deref().map(open_out).transpose()?;
            Ok::<_, Error>((stdin, stdout, stderr))
        })();
        let (stdin, stdout, stderr) = match opened {
            Ok(x) => x,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let wire = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let tasks = &self.deps().tasks;
        let spec = prost_types::Any {
            type_url: berth_api::type_urls::OCI_PROCESS.into(),
            value: serde_json::to_vec(&process).map_err(|e| Error::Internal(e.to_string()))?,
        };
        let added = tasks
            .exec(
                ns,
                &id,
                ExecProcess {
                    exec_id: exec_id.clone(),
                    terminal: req.tty,
                    stdin: wire(&stdin_path),
                    stdout: stdout_path.display().to_string(),
                    stderr: wire(&stderr_path),
                    spec: Some(spec),
                },
            )
            .await;
        if let Err(e) = added {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e.into());
        }
        let pid = match tasks.start(ns, &id, &exec_id).await {
            Ok(pid) => pid,
            Err(e) => {
                let _ = tasks.delete_process(ns, &id, &exec_id).await;
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        if req.tty {
            if let Some((w, h)) = req.tty_size {
                let _ = tasks
                    .resize_pty(ns, &id, &exec_id, w.into(), h.into())
                    .await;
            }
        }
        tracing::info!(namespace = ns, id = %id, exec_id = %exec_id, pid, "exec started");

        let (out_tx, out_rx) = mpsc::channel(16);
        let _ = out_tx
            .send(ExecOutput::Started {
                exec_id: exec_id.clone(),
                pid,
            })
            .await;
        let (done_tx, done_rx) = watch::channel(false);
        let mut pumps = vec![tokio::spawn(pump(
            stdout,
            LogStream::Stdout,
            out_tx.clone(),
            done_rx.clone(),
        ))];
        if let Some(rx) = stderr {
            pumps.push(tokio::spawn(pump(
                rx,
                LogStream::Stderr,
                out_tx.clone(),
                done_rx,
            )));
        }

        // The client's input: stdin, its end, resizes.
        let (engine, ns_in, id_in, exec_in) =
            (self.clone(), ns.to_string(), id.clone(), exec_id.clone());
        let input_task = tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(m) = input.recv().await {
                match m {
                    ExecInput::Stdin(data) => {
                        if let Some(w) = stdin.as_mut() {
                            if w.write_all(&data).await.is_err() {
                                stdin = None;
                            }
                        }
                    }
                    ExecInput::CloseStdin => stdin = None,
                    ExecInput::Resize(w, h) => {
                        let _ = engine
                            .deps()
                            .tasks
                            .resize_pty(&ns_in, &id_in, &exec_in, w.into(), h.into())
                            .await;
                    }
                }
            }
        });

        let (engine, ns) = (self.clone(), ns.to_string());
        tokio::spawn(async move {
            let tasks = &engine.deps().tasks;
            let code = match tasks.wait(&ns, &id, &exec_id).await {
                Ok(exit) => exit.status as i32,
                Err(e) => {
                    tracing::warn!(namespace = %ns, id = %id, exec_id = %exec_id, error = %e, "exec wait failed");
                    let _ = tasks
                        .kill(
                            &ns,
                            &id,
                            Kill {
                                exec_id: exec_id.clone(),
                                signal: libc::SIGKILL as u32,
                                all: false,
                            },
                        )
                        .await;
                    137
                }
            };
            let _ = done_tx.send(true);
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(10), p).await;
            }
            input_task.abort();
            if let Err(e) = tasks.delete_process(&ns, &id, &exec_id).await {
                tracing::debug!(namespace = %ns, id = %id, exec_id = %exec_id, error = %e, "deleting an exec");
            }
            let _ = std::fs::remove_dir_all(&dir);
            tracing::info!(namespace = %ns, id = %id, exec_id = %exec_id, code, "exec exited");
            let _ = out_tx.send(ExecOutput::Exit(code)).await;
        });
        Ok(out_rx)
    }

    /// The container's process spec with `req`'s env, cwd, user and
    /// terminal applied (the command is the caller's).
    async fn exec_process(
        &self,
        ns: &str,
        rec: &super::Record,
        req: &ExecRequest,
    ) -> Result<serde_json::Value> {
        let c = self.deps().containers.get(ns, &rec.id)?;
        let oci: serde_json::Value = c
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok())
            .ok_or_else(|| Error::Internal(format!("container {}: no spec", rec.name)))?;
        let mut p = oci["process"].clone();
        p["terminal"] = serde_json::json!(req.tty);
        let mut env = p["env"].as_array().cloned().unwrap_or_default();
        if req.tty
            && !env
                .iter()
                .any(|e| e.as_str().is_some_and(|s| s.starts_with("TERM=")))
        {
            env.push("TERM=xterm".into());
        }
        merge_env(&mut env, &req.env);
        p["env"] = serde_json::Value::Array(env);
        if !req.working_dir.is_empty() {
            p["cwd"] = serde_json::json!(req.working_dir);
        }
        if let Some((w, h)) = req.tty_size.filter(|_| req.tty) {
            p["consoleSize"] = serde_json::json!({"width": w, "height": h});
        }
        if !req.user.is_empty() {
            let mounts = self
                .deps()
                .snapshots
                .mounts(ns, &rec.snapshotter, &rec.id)
                .await?;
            let user = req.user.clone();
            let u = blocking(move || Users::read(&mounts).resolve(&user)).await?;
            let mut user = serde_json::json!({"uid": u.uid, "gid": u.gid});
            if !u.additional_gids.is_empty() {
                user["additionalGids"] = serde_json::json!(u.additional_gids);
            }
            p["user"] = user;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_over_the_containers() {
        let mut env = vec![
            serde_json::Value::from("PATH=/bin"),
            serde_json::Value::from("A=1"),
        ];
        merge_env(&mut env, &["A=2".into(), "B=3".into(), "PATH=/x".into()]);
        assert_eq!(
            env,
            vec![
                serde_json::Value::from("A=2"),
                serde_json::Value::from("B=3"),
                serde_json::Value::from("PATH=/x"),
            ]
        );
    }
}

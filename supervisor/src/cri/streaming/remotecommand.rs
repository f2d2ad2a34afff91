//! Remote command (exec) over a SPDY session, as the kubelet serves it:
//! the client opens one stream per `streamtype` (error, stdin, stdout,
//! stderr, resize), the server runs the command with that stdio and ends
//! with the command's result on the error stream: from
//! `v4.channel.k8s.io` a v1 Status JSON (Success, or Failure with reason
//! NonZeroExitCode and the code as an ExitCode cause), before it a text
//! message on failure only. `resize` (v3 and later, with a tty) carries
//! JSON `{"Width":W,"Height":H}` objects, applied to the pty.

use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Session, Stream, StreamWriter};
use crate::cri::exec_sync::{ExecSpec, DRAIN_IDLE};
use crate::cri::{Cri, NAMESPACE};

/// How long the client has to open its streams (the kubelet's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);

/// The streams of one session.
#[derive(Default)]
struct Streams {
    error: Option<StreamWriter>,
    stdin: Option<Stream>,
    stdout: Option<StreamWriter>,
    stderr: Option<StreamWriter>,
    resize: Option<Stream>,
    /// Streams not used but kept open until the end.
    held: Vec<Stream>,
}

/// 4 for `v4.channel.k8s.io` ... 1 for `channel.k8s.io`.
fn version(protocol: &str) -> u8 {
    match protocol {
        "v4.channel.k8s.io" => 4,
        "v3.channel.k8s.io" => 3,
        "v2.channel.k8s.io" => 2,
        _ => 1,
    }
}

/// Waits until the client opened every stream the request implies.
async fn gather(session: &mut Session, v: u8, req: &cri::ExecRequest) -> Option<Streams> {
    let want = |s: &Streams| {
        s.error.is_some()
            && (!req.stdin || s.stdin.is_some())
            && (!req.stdout || s.stdout.is_some())
            && (!req.stderr || req.tty || s.stderr.is_some())
            && (!(req.tty && v >= 3) || s.resize.is_some())
    };
    let mut s = Streams::default();
    let deadline = tokio::time::Instant::now() + STREAM_CREATION;
    while !want(&s) {
        let stream = tokio::time::timeout_at(deadline, session.incoming.recv())
            .await
            .ok()??;
        match stream.header("streamtype").unwrap_or("") {
            "error" => s.error = Some(stream.sender()),
            "stdin" => s.stdin = Some(stream),
            "stdout" => {
                s.stdout = Some(stream.sender());
                s.held.push(stream);
            }
            "stderr" => {
                s.stderr = Some(stream.sender());
                s.held.push(stream);
            }
            "resize" => s.resize = Some(stream),
            other => {
                tracing::debug!(streamtype = other, "exec: unexpected stream");
                stream
                    .sender()
                    .reset(super::spdy::rst::REFUSED_STREAM)
                    .await;
            }
        }
    }
    Some(s)
}

/// Reads `rx` to `to` until `done` and [`DRAIN_IDLE`] of quiet; then FIN.
async fn forward(
    mut rx: tokio::net::unix::pipe::Receiver,
    mut done: tokio::sync::watch::Receiver<bool>,
    to: StreamWriter,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let read = if *done.borrow() {
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
                if !to.send(&buf[..n]).await {
                    break;
                }
            }
        }
    }
    to.finish().await;
}

/// The v1 Status the error stream carries from v4 on.
fn status_json(exit: Result<u32, String>, cmd: &[String]) -> Vec<u8> {
    let v = match exit {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!(
                "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
            ),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(msg) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": msg,
            "reason": "InternalError",
        }),
    };
    serde_json::to_vec(&v).unwrap_or_default()
}

impl Cri {
    /// Serves one exec session.
    pub(super) async fn serve_exec(
        &self,
        mut session: Session,
        protocol: &str,
        req: cri::ExecRequest,
    ) {
        let v = version(protocol);
        let Some(mut streams) = gather(&mut session, v, &req).await else {
            tracing::debug!(container = %req.container_id, "exec: streams not opened in time");
            session.close().await;
            return;
        };
        let result = self.run_exec(&mut streams, &req).await;
        if let Some(err) = streams.error.take() {
            let msg = match (&result, v) {
                (r, 4..) => Some(status_json(r.clone(), &req.cmd)),
                (Ok(0), _) => None,
                (Ok(code), _) => Some(
                    format!("command terminated with non-zero exit code: exit code {code}")
                        .into_bytes(),
                ),
                (Err(m), _) => Some(m.clone().into_bytes()),
            };
            if let Some(m) = msg {
                err.send(&m).await;
            }
            err.finish().await;
        }
        drop(streams);
        session.close().await;
    }

    /// Runs the command with the session's stdio; its exit status.
    async fn run_exec(&self, s: &mut Streams, req: &cri::ExecRequest) -> Result<u32, String> {
        let mut r = self
            .exec_start(
                &req.container_id,
                ExecSpec {
                    cmd: req.cmd.clone(),
                    tty: req.tty,
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr && !req.tty,
                },
            )
            .await
            .map_err(|e| e.message().to_string())?;
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let mut outputs = Vec::new();
        if let (Some(rx), Some(to)) = (r.stdout.take(), s.stdout.clone()) {
            outputs.push(tokio::spawn(forward(rx, done_rx.clone(), to)));
        }
        if let (Some(rx), Some(to)) = (r.stderr.take(), s.stderr.clone()) {
            outputs.push(tokio::spawn(forward(rx, done_rx.clone(), to)));
        }
        let mut inputs = Vec::new();
        if let (Some(mut pipe), Some(mut stream)) = (r.stdin.take(), s.stdin.take()) {
            let tasks = self.inner.deps.tasks.clone();
            let (id, exec_id) = (r.container_id.clone(), r.exec_id.clone());
            inputs.push(tokio::spawn(async move {
                while let Some(bytes) = stream.data.recv().await {
                    if pipe.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                // The client half-closed stdin: the command sees EOF.
                drop(pipe);
                let _ = tasks.close_io(NAMESPACE, &id, &exec_id, true).await;
            }));
        }
        if let Some(mut stream) = s.resize.take() {
            let tasks = self.inner.deps.tasks.clone();
            let (id, exec_id) = (r.container_id.clone(), r.exec_id.clone());
            inputs.push(tokio::spawn(async move {
                #[derive(serde::Deserialize)]
                #[serde(rename_all = "PascalCase")]
                struct Size {
                    width: u32,
                    height: u32,
                }
                let mut buf: Vec<u8> = Vec::new();
                while let Some(bytes) = stream.data.recv().await {
                    buf.extend_from_slice(&bytes);
                    let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<Size>();
                    let mut used = 0;
                    while let Some(Ok(size)) = it.next() {
                        used = it.byte_offset();
                        if let Err(e) = tasks
                            .resize_pty(NAMESPACE, &id, &exec_id, size.width, size.height)
                            .await
                        {
                            tracing::debug!(error = %e, "exec: resize");
                        }
                    }
                    buf.drain(..used);
                    if buf.len() > 4096 {
                        break;
                    }
                }
            }));
        }
        let exit = self.exec_wait(&r, 0).await;
        let _ = done_tx.send(true);
        for t in outputs {
            let _ = t.await;
        }
        for t in inputs {
            t.abort();
        }
        self.exec_finish(r).await;
        exit.map_err(|e| e.message().to_string())
    }
}

//! Remote command (exec and attach) over a SPDY session, as the kubelet
//! serves it: the client opens one stream per `streamtype` (error, stdin,
//! stdout, stderr, resize), the server runs the command with that stdio
//! (or joins the container's own) and ends with the result on the error
//! stream: from `v4.channel.k8s.io` a v1 Status JSON (Success, or Failure
//! with reason NonZeroExitCode and the code as an ExitCode cause), before
//! it a text message on failure only. `resize` (v3 and later, with a
//! tty) carries JSON `{"Width":W,"Height":H}` objects, applied to the pty.
//!
//! A tty exec starts with the terminal's size: the first resize the
//! client sends (it sends one at once) is awaited briefly and put in the
//! process's `consoleSize`, so the runtime sizes the pty before the
//! command runs (a command reading its size at once sees it).
//!
//! Attach joins the container's stdio through its shim
//! ([`crate::tasks::Tasks::attach`]): the output from now on, stdin when
//! the container was created with one. The session ends when the
//! container's output ends (it exited), when the client's stdin ends
//! (unless the container is `stdin_once`: then its stdin is closed and the
//! output keeps flowing), or when the client goes away; the container
//! keeps running.

use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::session::{Session, Stream, StreamWriter};
use crate::cri::exec_sync::{ExecSpec, DRAIN_IDLE};
use crate::cri::{Cri, NAMESPACE};
use crate::tasks::{AttachOutput, Attached};

/// How long the client has to open its streams (the kubelet's default).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// How long a tty exec waits for the client's first terminal size.
const FIRST_SIZE: Duration = Duration::from_secs(1);

/// The streams a session needs.
#[derive(Debug, Clone, Copy)]
struct Wants {
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl From<&cri::ExecRequest> for Wants {
    fn from(r: &cri::ExecRequest) -> Self {
        Self {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
    }
}

impl From<&cri::AttachRequest> for Wants {
    fn from(r: &cri::AttachRequest) -> Self {
        Self {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            tty: r.tty,
        }
    }
}

/// A terminal size as the resize stream carries it.
#[derive(Debug, Clone, Copy, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
struct Size {
    width: u32,
    height: u32,
}

/// Reads the sizes off a resize stream.
struct Sizes {
    stream: Stream,
    buf: Vec<u8>,
    ready: std::collections::VecDeque<Size>,
}

impl Sizes {
    fn new(stream: Stream) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            ready: Default::default(),
        }
    }

    /// The next size; None at the stream's end or on garbage.
    async fn next(&mut self) -> Option<Size> {
        loop {
            if let Some(s) = self.ready.pop_front() {
                return Some(s);
            }
            let bytes = self.stream.data.recv().await?;
            self.buf.extend_from_slice(&bytes);
            let mut it = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Size>();
            let mut used = 0;
            while let Some(Ok(size)) = it.next() {
                used = it.byte_offset();
                self.ready.push_back(size);
            }
            self.buf.drain(..used);
            if self.buf.len() > 4096 {
                return None;
            }
        }
    }
}

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
async fn gather(session: &mut Session, v: u8, req: Wants) -> Option<Streams> {
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
        let Some(mut streams) = gather(&mut session, v, (&req).into()).await else {
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
        let mut sizes = s.resize.take().map(Sizes::new);
        let mut console_size = None;
        if let (true, Some(sz)) = (req.tty, sizes.as_mut()) {
            console_size = tokio::time::timeout(FIRST_SIZE, sz.next())
                .await
                .ok()
                .flatten();
        }
        let mut r = self
            .exec_start(
                &req.container_id,
                ExecSpec {
                    cmd: req.cmd.clone(),
                    tty: req.tty,
                    stdin: req.stdin,
                    stdout: req.stdout,
                    stderr: req.stderr && !req.tty,
                    console_size: console_size.map(|s| (s.width, s.height)),
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
        if let Some(sizes) = sizes {
            inputs.push(self.spawn_resizes(sizes, &r.container_id, &r.exec_id));
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

    /// Applies the sizes the client sends to the pty of `exec_id`.
    fn spawn_resizes(
        &self,
        mut sizes: Sizes,
        id: &str,
        exec_id: &str,
    ) -> tokio::task::JoinHandle<()> {
        let tasks = self.inner.deps.tasks.clone();
        let (id, exec_id) = (id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            while let Some(size) = sizes.next().await {
                if let Err(e) = tasks
                    .resize_pty(NAMESPACE, &id, &exec_id, size.width, size.height)
                    .await
                {
                    tracing::debug!(error = %e, "resize");
                }
            }
        })
    }

    /// Serves one attach session.
    pub(super) async fn serve_attach(
        &self,
        mut session: Session,
        protocol: &str,
        req: cri::AttachRequest,
    ) {
        let v = version(protocol);
        let Some(mut streams) = gather(&mut session, v, (&req).into()).await else {
            tracing::debug!(container = %req.container_id, "attach: streams not opened in time");
            session.close().await;
            return;
        };
        let result = self.run_attach(&mut session, &mut streams, &req).await;
        if let Some(err) = streams.error.take() {
            let msg = match (&result, v) {
                (r, 4..) => Some(status_json(r.clone().map(|()| 0), &[])),
                (Ok(()), _) => None,
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

    /// Joins the container's stdio until its output ends, the client's
    /// stdin ends (see the module doc) or the client goes away.
    async fn run_attach(
        &self,
        session: &mut Session,
        s: &mut Streams,
        req: &cri::AttachRequest,
    ) -> Result<(), String> {
        let id = &req.container_id;
        let Attached { stdin, mut output } = self
            .inner
            .deps
            .tasks
            .attach(
                NAMESPACE,
                id,
                "",
                req.stdin,
                req.stdout,
                req.stderr && !req.tty,
            )
            .await
            .map_err(|e| format!("error attaching to container: {e}"))?;
        let mut tasks = Vec::new();
        // Without a stdin stream the attach's stdin stays open (its end
        // would detach) until the session ends.
        let mut held_stdin = None;
        match s.stdin.take() {
            Some(mut stream) => tasks.push(tokio::spawn(async move {
                while let Some(bytes) = stream.data.recv().await {
                    if !stdin.write(bytes).await {
                        break;
                    }
                }
            })),
            None => held_stdin = Some(stdin),
        }
        if let (true, Some(resize)) = (req.tty, s.resize.take()) {
            tasks.push(self.spawn_resizes(Sizes::new(resize), id, ""));
        }
        loop {
            tokio::select! {
                o = output.next() => {
                    let (to, data) = match o {
                        Some(AttachOutput::Stdout(d)) => (s.stdout.as_ref(), d),
                        Some(AttachOutput::Stderr(d)) => (s.stderr.as_ref(), d),
                        None => break,
                    };
                    if let Some(to) = to {
                        if !to.send(&data).await {
                            break;
                        }
                    }
                }
                extra = session.incoming.recv() => match extra {
                    // The client went away.
                    None => break,
                    Some(stream) => stream.sender().reset(super::spdy::rst::REFUSED_STREAM).await,
                },
            }
        }
        for t in tasks {
            t.abort();
        }
        drop(held_stdin);
        drop(output);
        for w in [s.stdout.as_ref(), s.stderr.as_ref()].into_iter().flatten() {
            w.finish().await;
        }
        Ok(())
    }
}

//! A process's terminal, stdin and log: resize its pty, close its stdin,
//! reopen its log file, attach to its stdio.

use berth_api::shim::v1 as sp;
use berth_api::ErrorKind;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::error::Error;
use super::table::Tasks;

/// Output of an attached process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutput {
    /// stdout (a terminal's output)
    Stdout(Vec<u8>),
    /// stderr
    Stderr(Vec<u8>),
}

/// An attach to a process's stdio (see [`Tasks::attach`]). Dropping it
/// detaches.
pub struct Attached {
    /// Writes the process's stdin; dropping it ends this attach's stdin.
    pub stdin: AttachStdin,
    /// The process's output from the attach on.
    pub output: AttachOutputs,
}

/// See [`Attached::stdin`].
pub struct AttachStdin(mpsc::Sender<sp::AttachInput>);

impl AttachStdin {
    /// Queues `data` for the process's stdin; false once the attach is
    /// over.
    pub async fn write(&self, data: Vec<u8>) -> bool {
        self.0
            .send(sp::AttachInput {
                data,
                ..Default::default()
            })
            .await
            .is_ok()
    }
}

/// See [`Attached::output`].
pub struct AttachOutputs(tonic::Streaming<sp::AttachOutput>);

impl AttachOutputs {
    /// The next piece of output; None once the output ended (the
    /// process exited), the attach is over or the shim went away.
    pub async fn next(&mut self) -> Option<AttachOutput> {
        loop {
            let m = self.0.message().await.ok()??;
            if m.data.is_empty() {
                continue;
            }
            return Some(match sp::AttachStream::try_from(m.stream) {
                Ok(sp::AttachStream::Stderr) => AttachOutput::Stderr(m.data),
                _ => AttachOutput::Stdout(m.data),
            });
        }
    }
}

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

    /// Attaches to process `exec_id` (empty: init) of task `id`: its
    /// output from now on (stdout and stderr as asked) and, with
    /// `stdin`, a writer of its stdin (when the shim keeps one open for
    /// it, see [`Tasks::create_with_stdin`]). FailedPrecondition when the
    /// shim does not copy the process's output itself, or predates
    /// attach (a container started by an older berthd).
    pub async fn attach(
        &self,
        ns: &str,
        id: &str,
        exec_id: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<Attached, Error> {
        let t = self.get(ns, id)?;
        let (tx, rx) = mpsc::channel(16);
        let first = sp::AttachInput {
            exec_id: exec_id.to_string(),
            stdin,
            stdout,
            stderr,
            data: Vec::new(),
        };
        tx.send(first)
            .await
            .map_err(|_| Error::FailedPrecondition("attach: request channel closed".into()))?;
        let output = t
            .call(|mut c| async move { c.attach(ReceiverStream::new(rx)).await })
            .await
            .map_err(|e| match e {
                Error::Shim {
                    kind: ErrorKind::Unimplemented,
                    ..
                } => Error::FailedPrecondition(format!(
                    "task {id:?}: its shim predates attach (started by an older berth); restart the container to attach"
                )),
                e => e,
            })?;
        Ok(Attached {
            stdin: AttachStdin(tx),
            output: AttachOutputs(output),
        })
    }
}

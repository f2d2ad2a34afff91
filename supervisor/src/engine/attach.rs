//! Logs and attach through berthd, so a remote client gets them too.
//!
//! Attach follows the container's log from the moment it is called (or
//! replays it first) until the run it attached to ends: the current run,
//! or the next one when the container is not running (a client attaches,
//! then starts). Its stdin goes into the fifo berthd holds for the
//! container; the end of the client's stdin closes it; resizes reach the
//! terminal. A client that goes away only detaches: nothing is signalled
//! or closed.

use std::io::Write;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::logs::{self, LogEntry, LogQuery};
use super::{Engine, Error, Result};

/// What an attached client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachInput {
    /// Bytes for the container's stdin.
    Stdin(Vec<u8>),
    /// The client's stdin ended.
    CloseStdin,
    /// The client's terminal size (columns, rows).
    Resize(u16, u16),
}

/// What an attached client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachOutput {
    /// Output is followed from here on; the container's ID.
    Ready(String),
    /// Output.
    Output(Vec<LogEntry>),
    /// The run ended (and the container was removed, when `removed`).
    Exit {
        /// Its exit code.
        code: i32,
        /// Removed on exit.
        removed: bool,
    },
}

impl Engine {
    /// Reads container `what`'s log as `q` asks (following the current
    /// run when `follow`); batches of entries until done.
    pub fn logs(
        &self,
        ns: &str,
        what: &str,
        mut q: LogQuery,
        follow: bool,
    ) -> Result<mpsc::Receiver<Vec<LogEntry>>> {
        let slot = self.find(ns, what)?;
        let rec = slot.record();
        let runs = slot.run.subscribe();
        let mark = *runs.borrow();
        q.follow_run = (follow && mark.running).then_some(mark.run);
        let (tx, rx) = mpsc::channel(4);
        let path = rec.log_path();
        tokio::task::spawn_blocking(move || logs::read(&path, &q, runs, tx));
        Ok(rx)
    }

    /// Attaches to container `what`; see the module doc.
    pub fn attach(
        &self,
        ns: &str,
        what: &str,
        stdin: bool,
        replay: bool,
        mut input: mpsc::Receiver<AttachInput>,
    ) -> Result<mpsc::Receiver<AttachOutput>> {
        let slot = self.find(ns, what)?;
        let rec = slot.record();
        if stdin && !rec.config.open_stdin {
            return Err(Error::InvalidArgument(format!(
                "container {}: stdin was not kept open (create it with -i)",
                rec.name
            )));
        }
        let runs = slot.run.subscribe();
        let mark = *runs.borrow();
        let run = if mark.running { mark.run } else { mark.run + 1 };
        let path = rec.log_path();
        let start_offset =
            (!replay).then(|| std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0));
        let q = LogQuery {
            follow_run: Some(run),
            start_offset,
            coalesce: true,
            ..Default::default()
        };
        let (entries_tx, mut entries_rx) = mpsc::channel(4);
        let reader_runs = runs.clone();
        tokio::task::spawn_blocking(move || logs::read(&path, &q, reader_runs, entries_tx));

        let (out_tx, out_rx) = mpsc::channel(8);
        let id = slot.id.clone();
        let mut final_runs = runs;
        tokio::spawn(async move {
            if out_tx.send(AttachOutput::Ready(id)).await.is_err() {
                return;
            }
            while let Some(batch) = entries_rx.recv().await {
                if out_tx.send(AttachOutput::Output(batch)).await.is_err() {
                    return;
                }
            }
            let m = *final_runs.borrow_and_update();
            if m.removed || m.run > run || (m.run == run && !m.running) {
                let _ = out_tx
                    .send(AttachOutput::Exit {
                        code: m.exit_code,
                        removed: m.removed,
                    })
                    .await;
            }
        });

        let engine = self.clone();
        let (ns, id) = (ns.to_string(), slot.id.clone());
        tokio::spawn(async move {
            while let Some(msg) = input.recv().await {
                match msg {
                    AttachInput::Stdin(data) if stdin => {
                        let fifo = slot.stdin.lock().unwrap_or_else(|p| p.into_inner()).clone();
                        let Some(fifo) = fifo else { continue };
                        let wrote =
                            tokio::task::spawn_blocking(move || (&*fifo).write_all(&data)).await;
                        if !matches!(wrote, Ok(Ok(()))) {
                            tracing::debug!(namespace = %ns, id = %id, "stdin write failed");
                        }
                    }
                    AttachInput::CloseStdin if stdin => {
                        let f: Option<Arc<std::fs::File>> =
                            slot.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
                        drop(f);
                    }
                    AttachInput::Resize(w, h) => {
                        let _ = engine
                            .deps()
                            .tasks
                            .resize_pty(&ns, &id, "", w as u32, h as u32)
                            .await;
                    }
                    _ => {}
                }
            }
        });
        Ok(out_rx)
    }
}

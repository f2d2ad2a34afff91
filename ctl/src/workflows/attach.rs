//! Running a process attached to our terminal: its stdio, signal
//! forwarding, pty resizes, closing stdin at our end of input, and the
//! exit status. Shared by `run`, `tasks start`, `tasks exec` and
//! `tasks attach`.

use std::path::PathBuf;
use std::time::Duration;

use berth_api::services::tasks::v1 as pb;
use tokio::signal::unix::{signal, SignalKind};

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};
use crate::stdio::{fifo_dir, Attached, Fifos};

/// How a new process's stdio is wired.
#[derive(Debug, Clone, Default)]
pub struct IoOptions {
    /// allocate a terminal
    pub tty: bool,
    /// return once the process started (it keeps running)
    pub detach: bool,
    /// connect the process's stdio to /dev/null
    pub null_io: bool,
    /// append the process's stdout and stderr to this file
    pub log_file: Option<PathBuf>,
}

/// How a started process ended up, for the command to report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// started detached; it keeps running
    Detached {
        /// its pid
        pid: u32,
    },
    /// ran attached until it exited with this status
    Exited(u32),
}

/// A process's stdio: the fifos we own (if any) and the strings for the
/// API.
pub struct Stdio {
    /// fifos, removed on drop unless kept
    pub fifos: Option<Fifos>,
    /// stdin, stdout, stderr as the API takes them
    pub wire: (String, String, String),
}

impl Stdio {
    /// Prepares stdio for process `exec_id` (None: the init process).
    pub fn prepare(
        client: &Client,
        id: &str,
        exec_id: Option<&str>,
        io: &IoOptions,
    ) -> Result<Self> {
        if io.null_io {
            if io.tty {
                return Err(Error::Input(
                    "--tty and --null-io cannot be used together".into(),
                ));
            }
            return Ok(Self {
                fifos: None,
                wire: Default::default(),
            });
        }
        if let Some(f) = &io.log_file {
            if io.tty {
                return Err(Error::Input(
                    "--tty and --log-file cannot be used together".into(),
                ));
            }
            let abs = std::path::absolute(f)
                .map_err(|e| Error::io(format!("log file {}", f.display()), e))?;
            let uri = format!("file://{}", abs.display());
            return Ok(Self {
                fifos: None,
                wire: (String::new(), uri.clone(), uri),
            });
        }
        let fifos = Fifos::create(fifo_dir(client.namespace(), id, exec_id), true, io.tty)?;
        let wire = fifos.wire();
        Ok(Self {
            fifos: Some(fifos),
            wire,
        })
    }

    /// True when there is something to copy.
    pub fn attachable(&self) -> bool {
        self.fifos.is_some()
    }
}

/// Sends the terminal's current size to the process's pty.
async fn resize(client: &Client, id: &str, exec_id: &str) {
    if let Some((w, h)) = crate::tty::size() {
        let _ = client
            .tasks()
            .resize_pty(pb::ResizePtyRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
                width: w.into(),
                height: h.into(),
            })
            .await;
    }
}

/// Copies stdio until the process exits (starting it first when `start`),
/// forwarding SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 to it (without a
/// terminal; with one, those keys travel through the pty) and resizes (with
/// one). Returns the exit status and the copy threads, to drain once the
/// process is deleted.
pub async fn attach_until_exit(
    client: &Client,
    id: &str,
    exec_id: &str,
    wire: &(String, String, String),
    tty: bool,
    start: bool,
) -> Result<(u32, Attached)> {
    let mut attached = Attached::start(&wire.0, &wire.1, &wire.2);
    let raw = tty.then(crate::tty::RawMode::enter);
    let mut tasks = client.tasks();
    let sig = |k| signal(k).map_err(|e| Error::io("install signal handler", e));
    let mut winch = sig(SignalKind::window_change())?;
    let mut forwarded = Vec::new();
    for (kind, num) in [
        (SignalKind::interrupt(), libc::SIGINT),
        (SignalKind::terminate(), libc::SIGTERM),
        (SignalKind::hangup(), libc::SIGHUP),
        (SignalKind::quit(), libc::SIGQUIT),
        (SignalKind::user_defined1(), libc::SIGUSR1),
        (SignalKind::user_defined2(), libc::SIGUSR2),
    ] {
        forwarded.push((sig(kind)?, num as u32));
    }
    if tty {
        resize(client, id, exec_id).await;
    }
    if start {
        tasks
            .start(pb::StartRequest {
                container_id: id.into(),
                exec_id: exec_id.into(),
            })
            .await
            .with_context(|| format!("start task {id:?}"))?;
    }
    let mut waiter = tasks.clone();
    let wait = waiter.wait(pb::WaitRequest {
        container_id: id.into(),
        exec_id: exec_id.into(),
    });
    tokio::pin!(wait);
    let mut stdin_open = !wire.0.is_empty();
    let status = loop {
        let any_signal = futures::future::select_all(
            forwarded
                .iter_mut()
                .map(|(s, n)| Box::pin(async move { s.recv().await.map(|_| *n) })),
        );
        tokio::select! {
            r = &mut wait => break r.with_context(|| format!("wait for task {id:?}"))?.into_inner().exit_status,
            Some(()) = attached.stdin_closed.recv(), if stdin_open => {
                stdin_open = false;
                let _ = tasks.close_io(pb::CloseIoRequest {
                    container_id: id.into(),
                    exec_id: exec_id.into(),
                    stdin: true,
                }).await;
            }
            _ = winch.recv(), if tty => resize(client, id, exec_id).await,
            (Some(n), _, _) = any_signal, if !tty => {
                let _ = tasks.kill(pb::KillRequest {
                    container_id: id.into(),
                    exec_id: exec_id.into(),
                    signal: n,
                    all: false,
                }).await;
            }
        }
    };
    drop(raw);
    Ok((status, attached))
}

/// How long to wait for the last output once a process is gone.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Reattaches to the init process of task `id` through the fifos it was
/// started with, until it exits; returns its exit status. The task is
/// left for its owner to delete.
pub async fn attach(client: &Client, id: &str) -> Result<u32> {
    let p = client
        .tasks()
        .get(pb::GetRequest {
            container_id: id.into(),
            exec_id: String::new(),
        })
        .await
        .with_context(|| format!("get task {id:?}"))?
        .into_inner()
        .process
        .unwrap_or_default();
    let fifo = |s: &str| {
        if s.is_empty() || s.contains("://") {
            String::new()
        } else {
            s.to_string()
        }
    };
    let wire = (fifo(&p.stdin), fifo(&p.stdout), fifo(&p.stderr));
    if wire.1.is_empty() && wire.2.is_empty() {
        return Err(Error::Input(format!(
            "task {id:?} has no fifos to attach to (started with --null-io or --log-file?)"
        )));
    }
    let (status, attached) = attach_until_exit(client, id, "", &wire, p.terminal, false).await?;
    attached.drain(Duration::from_millis(300)).await;
    Ok(status)
}

//! The `berth.shim.v1.Shim` gRPC adapter: decode, one call into [`Task`],
//! encode. No logic lives here.

use std::sync::Arc;

use berth_api::shim::v1 as pb;
use berth_api::shim::v1::shim_server::Shim;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::attach::Want;
use crate::logfile::Stream;

use crate::error::Error;
use crate::lifecycle::CreateOpts;
use crate::logfile::{Format, LogOptions};
use crate::stdio::StdioPaths;
use crate::task::{ProcState, Task};

/// Serves one [`Task`].
pub struct ShimService {
    task: Arc<Task>,
}

impl ShimService {
    /// Wraps the task.
    pub fn new(task: Arc<Task>) -> Self {
        Self { task }
    }
}

type Reply<T> = Result<Response<T>, Status>;

fn ok<T>(v: T) -> Reply<T> {
    Ok(Response::new(v))
}

/// Runs a verb that moves a process between phases to its end, even when
/// the caller goes away: tonic drops the handler of a client that
/// disconnected (berthd killed mid-call), and a Start cut after `runtime
/// start` would stay Starting for good, holding the exit and refusing
/// Delete.
async fn to_the_end<T: Send + 'static>(
    verb: impl std::future::Future<Output = crate::error::Result<T>> + Send + 'static,
) -> Result<T, Status> {
    match tokio::spawn(verb).await {
        Ok(r) => r.map_err(Status::from),
        Err(e) => Err(Status::internal(format!("shim verb ended abnormally: {e}"))),
    }
}

fn ts(t: std::time::SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

fn state_of(task: &Task, p: ProcState) -> pb::StateResponse {
    pb::StateResponse {
        id: task.id().to_string(),
        exec_id: p.exec_id,
        pid: p.pid,
        status: p.status as i32,
        stdin: p.paths.stdin,
        stdout: p.paths.stdout,
        stderr: p.paths.stderr,
        terminal: p.paths.terminal,
        exit_status: p.exit.map(|e| e.status).unwrap_or(0),
        exited_at: p.exit.map(|e| ts(e.at)),
        bundle: task.bundle().display().to_string(),
    }
}

/// CreateRequest.log, checked.
fn log_options(l: pb::LogFile, stdout: &str, stderr: &str) -> Result<LogOptions, Error> {
    let path = std::path::PathBuf::from(&l.path);
    if !path.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "log.path: {:?} is not an absolute path",
            l.path
        )));
    }
    let format = match pb::LogFormat::try_from(l.format) {
        Ok(pb::LogFormat::Cri) => Format::Cri,
        Ok(pb::LogFormat::JsonFile) => Format::JsonFile,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "log.format: {} is not CRI or JSON_FILE",
                l.format
            )))
        }
    };
    if !stdout.is_empty() || !stderr.is_empty() {
        return Err(Error::InvalidArgument(
            "stdout, stderr: must be empty when log is set".into(),
        ));
    }
    Ok(LogOptions {
        path,
        format,
        max_size: l.max_size,
        max_files: l.max_files,
    })
}

#[tonic::async_trait]
impl Shim for ShimService {
    async fn create(&self, req: Request<pb::CreateRequest>) -> Reply<pb::CreateResponse> {
        let r = req.into_inner();
        if r.id != self.task.id() {
            return Err(Error::InvalidArgument(format!(
                "id: this shim serves {:?}, not {:?}",
                self.task.id(),
                r.id
            ))
            .into());
        }
        let log = match r.log {
            Some(l) => Some(log_options(l, &r.stdout, &r.stderr)?),
            None => None,
        };
        if r.open_stdin && (log.is_none() || !r.stdin.is_empty()) {
            return Err(
                Error::InvalidArgument("open_stdin: needs a log file and no stdin".into()).into(),
            );
        }
        let mut opts = CreateOpts {
            rootfs: r.rootfs,
            paths: StdioPaths {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                terminal: r.terminal,
                log,
                open_stdin: r.open_stdin,
                stdin_once: r.stdin_once,
            },
            runtime_binary: r.runtime_binary,
            runtime_root: None,
        };
        if let Some(any) = r.options.filter(|a| !a.value.is_empty()) {
            let o = berth_api::runc::decode_options(&any)
                .map_err(|e| Error::InvalidArgument(e.to_string()))?;
            if opts.runtime_binary.is_empty() {
                opts.runtime_binary = o.binary_name;
            }
            opts.runtime_root = Some(o.root).filter(|r| !r.is_empty());
            if o.systemd_cgroup {
                tracing::warn!(
                    "systemd_cgroup requested; using the cgroupfs driver (no systemd here)"
                );
            }
        }
        let task = self.task.clone();
        let pid = to_the_end(async move { task.create(opts).await }).await?;
        ok(pb::CreateResponse { pid })
    }

    async fn start(&self, req: Request<pb::ProcessRequest>) -> Reply<pb::StartResponse> {
        let (task, exec_id) = (self.task.clone(), req.into_inner().exec_id);
        let pid = to_the_end(async move { task.start(&exec_id).await }).await?;
        crate::sys::release_freed_memory();
        ok(pb::StartResponse { pid })
    }

    async fn state(&self, req: Request<pb::ProcessRequest>) -> Reply<pb::StateResponse> {
        let p = self.task.state(&req.into_inner().exec_id)?;
        ok(state_of(&self.task, p))
    }

    async fn kill(&self, req: Request<pb::KillRequest>) -> Reply<()> {
        let r = req.into_inner();
        self.task.kill(&r.exec_id, r.signal, r.all).await?;
        ok(())
    }

    async fn exec(&self, req: Request<pb::ExecRequest>) -> Reply<()> {
        let r = req.into_inner();
        let spec = r.spec.map(|a| a.value).unwrap_or_default();
        let paths = StdioPaths {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr,
            terminal: r.terminal,
            ..Default::default()
        };
        let task = self.task.clone();
        to_the_end(async move { task.exec(&r.exec_id, paths, spec).await }).await?;
        ok(())
    }

    async fn resize_pty(&self, req: Request<pb::ResizePtyRequest>) -> Reply<()> {
        let r = req.into_inner();
        self.task.resize_pty(&r.exec_id, r.width, r.height)?;
        ok(())
    }

    async fn close_io(&self, req: Request<pb::CloseIoRequest>) -> Reply<()> {
        let r = req.into_inner();
        if r.stdin {
            self.task.close_stdin(&r.exec_id)?;
        }
        ok(())
    }

    async fn pause(&self, _: Request<()>) -> Reply<()> {
        self.task.pause().await?;
        ok(())
    }

    async fn resume(&self, _: Request<()>) -> Reply<()> {
        self.task.resume().await?;
        ok(())
    }

    async fn pids(&self, _: Request<()>) -> Reply<pb::PidsResponse> {
        ok(pb::PidsResponse {
            processes: self.task.pids().await?,
        })
    }

    async fn stats(&self, _: Request<()>) -> Reply<pb::StatsResponse> {
        ok(pb::StatsResponse {
            stats: Some(self.task.stats()?),
        })
    }

    async fn update(&self, req: Request<pb::UpdateRequest>) -> Reply<()> {
        let r = req.into_inner();
        let resources = r.resources.map(|a| a.value).unwrap_or_default();
        self.task.update(&resources).await?;
        ok(())
    }

    async fn wait(&self, req: Request<pb::ProcessRequest>) -> Reply<pb::WaitResponse> {
        let exit = self.task.wait(&req.into_inner().exec_id).await?;
        ok(pb::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(ts(exit.at)),
        })
    }

    async fn delete(&self, req: Request<pb::ProcessRequest>) -> Reply<pb::DeleteResponse> {
        let (task, exec_id) = (self.task.clone(), req.into_inner().exec_id);
        let (pid, exit) = to_the_end(async move { task.delete(&exec_id).await }).await?;
        ok(pb::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(ts(exit.at)),
        })
    }

    async fn handshake(&self, _: Request<()>) -> Reply<pb::HandshakeResponse> {
        ok(pb::HandshakeResponse {
            shim_pid: std::process::id(),
            task_pid: self.task.init_pid(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        })
    }

    /// containerd semantics: a shim that still has a task ignores a
    /// non-forced shutdown; `now` exits at once (a live container keeps
    /// running, unsupervised).
    async fn shutdown(&self, req: Request<pb::ShutdownRequest>) -> Reply<()> {
        let now = req.into_inner().now;
        if now || self.task.is_empty() {
            self.task.exit_after_drain(now);
        }
        ok(())
    }

    async fn list_processes(&self, _: Request<()>) -> Reply<pb::ListProcessesResponse> {
        let processes = self
            .task
            .list()
            .into_iter()
            .map(|p| state_of(&self.task, p))
            .collect();
        ok(pb::ListProcessesResponse { processes })
    }

    type EventsStream = ReceiverStream<Result<pb::ShimEvent, Status>>;

    async fn events(&self, req: Request<pb::EventsRequest>) -> Reply<Self::EventsStream> {
        let mut last = req.into_inner().after;
        let (tx, rx) = mpsc::channel(64);
        let task = Arc::clone(&self.task);
        tokio::spawn(async move {
            let mut changes = task.events.subscribe();
            let mut exiting = task.exit_signal();
            loop {
                changes.borrow_and_update();
                for e in task.events.after(last) {
                    last = e.seq;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = tx.closed() => return,
                    _ = exiting.wait_for(|x| *x) => return,
                }
            }
        });
        ok(ReceiverStream::new(rx))
    }

    async fn ack_events(&self, req: Request<pb::AckEventsRequest>) -> Reply<()> {
        self.task.events.ack(req.into_inner().upto);
        ok(())
    }

    async fn reopen_log(&self, _: Request<()>) -> Reply<()> {
        self.task.reopen_log()?;
        ok(())
    }

    type AttachStream = AttachReplies;

    async fn attach(&self, req: Request<Streaming<pb::AttachInput>>) -> Reply<AttachReplies> {
        let mut input = req.into_inner();
        let first = input
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("attach: no request"))?;
        let want = Want {
            stdin: first.stdin,
            stdout: first.stdout,
            stderr: first.stderr,
        };
        let (stdin_tx, stdin_rx) = mpsc::channel(16);
        let output = self.task.attach(&first.exec_id, want, stdin_rx)?;
        tokio::spawn(async move {
            if !first.data.is_empty() && stdin_tx.send(first.data).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    m = input.message() => match m {
                        Ok(Some(m)) => {
                            if !m.data.is_empty() && stdin_tx.send(m.data).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) | Err(_) => return,
                    },
                    _ = stdin_tx.closed() => return,
                }
            }
        });
        let out = ReceiverStream::new(output).map(|c| {
            Ok(pb::AttachOutput {
                stream: match c.stream {
                    Stream::Stdout => pb::AttachStream::Stdout as i32,
                    Stream::Stderr => pb::AttachStream::Stderr as i32,
                },
                data: c.data,
            })
        });
        ok(Box::pin(out))
    }
}

type AttachReplies =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::AttachOutput, Status>> + Send>>;

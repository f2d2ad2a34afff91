//! berth.containers.v1.Containers: the Docker-style container workflow
//! over [`Engine`]. Each handler decodes the request, makes one engine
//! call and encodes the reply; errors map through `status.rs`.

use std::collections::BTreeMap;
use std::pin::Pin;

use berth_api::berth_containers::v1 as pb;
use futures::Stream;
use pb::containers_server::Containers;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::namespace;
use super::registry::{credentials, pull_progress};
use crate::engine::{
    self, AttachInput, AttachOutput, ContainerConfig, CreateRequest, DeviceSpec, Engine, ExecInput,
    ExecOutput, ExecRequest, LogEntry, LogOptions, LogQuery, LogStream, MountSpec, PortSpec,
    PullPolicy, Record, RestartPolicy, Status as CStatus, Ulimit,
};

/// The Containers service.
pub struct ContainersService {
    engine: Engine,
}

impl ContainersService {
    /// Serves the workflow of `engine`.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

type RpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[allow(clippy::result_large_err)]
fn invalid(field: &str, e: impl std::fmt::Display) -> Status {
    Status::invalid_argument(format!("{field}: {e}"))
}

/// `10m`, `512k`, `1g`, `1024` as bytes (log max-size).
#[allow(clippy::result_large_err)]
fn size(field: &str, v: &str) -> Result<u64, Status> {
    let v = v.trim().to_ascii_lowercase();
    let v = v.strip_suffix('b').unwrap_or(&v);
    let (num, mul) = match v.chars().last() {
        Some('k') => (&v[..v.len() - 1], 1u64 << 10),
        Some('m') => (&v[..v.len() - 1], 1 << 20),
        Some('g') => (&v[..v.len() - 1], 1 << 30),
        _ => (v, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mul))
        .ok_or_else(|| invalid(field, format!("{v:?} is not a size such as 10m")))
}

#[allow(clippy::result_large_err)]
fn log_options(l: Option<pb::LogConfig>) -> Result<LogOptions, Status> {
    let l = l.unwrap_or_default();
    if !l.driver.is_empty() && l.driver != "json-file" {
        return Err(invalid(
            "log.driver",
            format!("{:?}: only json-file is served", l.driver),
        ));
    }
    let mut out = LogOptions::default();
    for (k, v) in &l.options {
        match k.as_str() {
            "max-size" => out.max_size = size("log-opt max-size", v)?,
            "max-file" => {
                out.max_files =
                    v.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        invalid("log-opt max-file", format!("{v:?}: a count >= 1"))
                    })?
            }
            other => return Err(invalid("log-opt", format!("{other:?} is not known"))),
        }
    }
    Ok(out)
}

#[allow(clippy::result_large_err)]
fn config(c: pb::ContainerConfig) -> Result<ContainerConfig, Status> {
    let restart = c.restart.unwrap_or_default();
    let restart = RestartPolicy::parse(&restart.name, restart.max_retries)
        .map_err(Status::invalid_argument)?;
    let mut ports = Vec::new();
    for p in c.ports {
        let port = |v: u32, what: &str| {
            u16::try_from(v).map_err(|_| invalid(what, format!("{v} is out of range")))
        };
        ports.push(PortSpec {
            host_ip: match p.host_ip.as_str() {
                "" => None,
                ip => Some(ip.parse().map_err(|_| invalid("ports.host_ip", ip))?),
            },
            host_port: port(p.host_port, "ports.host_port")?,
            container_port: port(p.container_port, "ports.container_port")?,
            protocol: if p.protocol.is_empty() {
                "tcp".into()
            } else {
                p.protocol
            },
        });
    }
    let mut seccomp_unconfined = false;
    let mut no_new_privileges = true;
    for o in &c.security_opt {
        match o.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => seccomp_unconfined = true,
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {
                no_new_privileges = true
            }
            "no-new-privileges=false" | "no-new-privileges:false" => no_new_privileges = false,
            s if s.starts_with("seccomp=") || s.starts_with("seccomp:") => {}
            other => return Err(invalid("security-opt", format!("{other:?} is not known"))),
        }
    }
    Ok(ContainerConfig {
        name: c.name,
        image: c.image,
        cmd: c.cmd,
        entrypoint: c.entrypoint_set.then_some(c.entrypoint),
        env: c.env,
        working_dir: c.working_dir,
        user: c.user,
        hostname: c.hostname,
        tty: c.tty,
        tty_size: (c.tty_width > 0 && c.tty_height > 0).then(|| {
            (
                c.tty_width.min(u16::MAX.into()) as u16,
                c.tty_height.min(u16::MAX.into()) as u16,
            )
        }),
        open_stdin: c.open_stdin,
        memory: (c.memory != 0).then_some(c.memory),
        cpus: (c.cpus != 0.0).then_some(c.cpus),
        pids_limit: (c.pids_limit != 0).then_some(c.pids_limit),
        cap_add: c.cap_add,
        cap_drop: c.cap_drop,
        privileged: c.privileged,
        devices: c
            .devices
            .into_iter()
            .map(|d| DeviceSpec {
                container_path: if d.container_path.is_empty() {
                    d.host_path.clone()
                } else {
                    d.container_path
                },
                host_path: d.host_path,
                permissions: if d.permissions.is_empty() {
                    "rwm".into()
                } else {
                    d.permissions
                },
            })
            .collect(),
        ulimits: c
            .ulimits
            .into_iter()
            .map(|u| Ulimit {
                name: u.name,
                soft: u.soft,
                hard: u.hard,
            })
            .collect(),
        read_only: c.read_only,
        labels: c.labels.into_iter().collect::<BTreeMap<_, _>>(),
        seccomp_unconfined,
        seccomp_profile: (!c.seccomp_profile.is_empty()).then_some(c.seccomp_profile),
        no_new_privileges,
        restart,
        auto_remove: c.auto_remove,
        networks: c.networks,
        network_aliases: c.network_aliases,
        ports,
        publish_all: c.publish_all,
        log: log_options(c.log)?,
        mounts: c
            .mounts
            .into_iter()
            .map(|m| MountSpec {
                kind: m.r#type,
                source: m.source,
                target: m.target,
                readonly: m.readonly,
                options: m.options,
            })
            .collect(),
        stop_signal: c.stop_signal,
        stop_timeout: (c.stop_timeout_set && c.stop_timeout >= 0).then_some(c.stop_timeout as u32),
        platform: c.platform,
        snapshotter: c.snapshotter,
        runtime_binary: c.runtime_binary,
    })
}

fn wire_port(p: &PortSpec) -> pb::PortMapping {
    pb::PortMapping {
        host_ip: p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
        host_port: p.host_port.into(),
        container_port: p.container_port.into(),
        protocol: p.protocol.clone(),
    }
}

fn state(s: CStatus) -> pb::State {
    match s {
        CStatus::Created => pb::State::Created,
        CStatus::Running => pb::State::Running,
        CStatus::Paused => pb::State::Paused,
        CStatus::Restarting => pb::State::Restarting,
        CStatus::Exited => pb::State::Exited,
        CStatus::Removing => pb::State::Removing,
    }
}

fn summary(r: Record) -> pb::ContainerSummary {
    pb::ContainerSummary {
        command: r.command_line(),
        created_at: Some(r.created_at.into()),
        state: state(r.state.status) as i32,
        exit_code: r.state.exit_code,
        started_at: r.state.started_at.map(Into::into),
        finished_at: r.state.finished_at.map(Into::into),
        ports: if r.state.status.is_running() {
            r.state.ports.iter().map(wire_port).collect()
        } else {
            Vec::new()
        },
        labels: r.config.labels.clone().into_iter().collect(),
        networks: r.config.networks.clone(),
        restart_count: r.state.restart_count,
        pid: r.state.pid,
        id: r.id,
        name: r.name,
        image: r.image,
    }
}

fn wire_entries(v: Vec<LogEntry>) -> pb::LogsResponse {
    pb::LogsResponse {
        entries: v
            .into_iter()
            .map(|e| pb::LogEntry {
                stream: match e.stream {
                    LogStream::Stdout => pb::Stream::Stdout,
                    LogStream::Stderr => pb::Stream::Stderr,
                } as i32,
                time_unix_nano: e.time,
                data: e.data,
            })
            .collect(),
    }
}

fn timeout(set: bool, t: i32) -> Option<u32> {
    (set && t >= 0).then_some(t as u32)
}

fn tty(w: u32, h: u32) -> Option<(u16, u16)> {
    (w > 0 && h > 0).then(|| (w.min(u16::MAX.into()) as u16, h.min(u16::MAX.into()) as u16))
}

#[tonic::async_trait]
impl Containers for ContainersService {
    type CreateStream = RpcStream<pb::CreateProgress>;
    type LogsStream = RpcStream<pb::LogsResponse>;
    type AttachStream = RpcStream<pb::AttachResponse>;
    type ExecStream = RpcStream<pb::ExecResponse>;
    type StatsStream = RpcStream<pb::StatsResponse>;

    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<Self::CreateStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let config = config(r.config.ok_or_else(|| invalid("config", "required"))?)?;
        let pull = match pb::PullPolicy::try_from(r.pull) {
            Ok(pb::PullPolicy::PullAlways) => PullPolicy::Always,
            Ok(pb::PullPolicy::PullNever) => PullPolicy::Never,
            _ => PullPolicy::Missing,
        };
        let request = CreateRequest {
            config,
            pull,
            credentials: credentials(r.credentials),
            plain_http: r.plain_http,
        };
        let (tx, rx) = mpsc::channel(16);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let progress_tx = tx.clone();
            let on_progress = move |p: &crate::registry::Progress| {
                // Best effort: a slow client misses intermediate states.
                let _ = progress_tx.try_send(Ok(pb::CreateProgress {
                    msg: Some(pb::create_progress::Msg::Pull(pull_progress(p, false))),
                }));
            };
            let done = engine.create(&ns, request, &on_progress).await;
            let msg = done.map_err(Status::from).map(|c| pb::CreateProgress {
                msg: Some(pb::create_progress::Msg::Created(pb::Created {
                    id: c.id,
                    name: c.name,
                    image: c.image,
                    warnings: c.warnings,
                })),
            });
            let _ = tx.send(msg).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn start(
        &self,
        req: Request<pb::StartRequest>,
    ) -> Result<Response<pb::StartResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let (id, pid) = self
            .engine
            .start(&ns, &r.container, tty(r.tty_width, r.tty_height))
            .await?;
        Ok(Response::new(pb::StartResponse { id, pid }))
    }

    async fn stop(
        &self,
        req: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let id = self
            .engine
            .stop(&ns, &r.container, timeout(r.timeout_set, r.timeout))
            .await?;
        Ok(Response::new(pb::StopResponse { id }))
    }

    async fn restart(
        &self,
        req: Request<pb::RestartRequest>,
    ) -> Result<Response<pb::RestartResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let (id, pid) = self
            .engine
            .restart(&ns, &r.container, timeout(r.timeout_set, r.timeout))
            .await?;
        Ok(Response::new(pb::RestartResponse { id, pid }))
    }

    async fn kill(
        &self,
        req: Request<pb::KillRequest>,
    ) -> Result<Response<pb::KillResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let id = self.engine.kill(&ns, &r.container, &r.signal).await?;
        Ok(Response::new(pb::KillResponse { id }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let id = self
            .engine
            .remove_with_volumes(&ns, &r.container, r.force, r.volumes)
            .await?;
        Ok(Response::new(pb::RemoveResponse { id }))
    }

    async fn wait(
        &self,
        req: Request<pb::WaitRequest>,
    ) -> Result<Response<pb::WaitResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let exit_code = self.engine.wait(&ns, &r.container).await?;
        Ok(Response::new(pb::WaitResponse { exit_code }))
    }

    async fn pause(
        &self,
        req: Request<pb::PauseRequest>,
    ) -> Result<Response<pb::PauseResponse>, Status> {
        let ns = namespace(&req)?;
        let id = self.engine.pause(&ns, &req.into_inner().container).await?;
        Ok(Response::new(pb::PauseResponse { id }))
    }

    async fn unpause(
        &self,
        req: Request<pb::UnpauseRequest>,
    ) -> Result<Response<pb::UnpauseResponse>, Status> {
        let ns = namespace(&req)?;
        let id = self
            .engine
            .unpause(&ns, &req.into_inner().container)
            .await?;
        Ok(Response::new(pb::UnpauseResponse { id }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let all = self.engine.list(&ns, r.all, &r.filters)?;
        Ok(Response::new(pb::ListResponse {
            containers: all.into_iter().map(summary).collect(),
        }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let ns = namespace(&req)?;
        let rec = self.engine.get(&ns, &req.into_inner().container)?;
        let json = engine::inspect_json(&rec).to_string();
        Ok(Response::new(pb::InspectResponse { id: rec.id, json }))
    }

    async fn logs(
        &self,
        req: Request<pb::LogsRequest>,
    ) -> Result<Response<Self::LogsStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let q = LogQuery {
            tail: u64::try_from(r.tail).ok(),
            since: (r.since_unix_nano != 0).then_some(r.since_unix_nano),
            until: (r.until_unix_nano != 0).then_some(r.until_unix_nano),
            stdout: r.stdout,
            stderr: r.stderr,
            coalesce: r.coalesce,
            ..Default::default()
        };
        let rx = self.engine.logs(&ns, &r.container, q, r.follow)?;
        let s = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(futures::StreamExt::map(s, |v| {
            Ok(wire_entries(v))
        }))))
    }

    async fn attach(
        &self,
        req: Request<Streaming<pb::AttachRequest>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let ns = namespace(&req)?;
        let mut incoming = req.into_inner();
        let first = incoming.message().await?;
        let Some(pb::AttachRequest {
            msg: Some(pb::attach_request::Msg::Start(start)),
        }) = first
        else {
            return Err(invalid("attach", "the first message must be start"));
        };
        let (in_tx, in_rx) = mpsc::channel(16);
        let out = self
            .engine
            .attach(&ns, &start.container, start.stdin, start.logs, in_rx)?;
        // The client's messages, until it goes away (which only detaches).
        tokio::spawn(async move {
            while let Ok(Some(m)) = incoming.message().await {
                let input = match m.msg {
                    Some(pb::attach_request::Msg::Stdin(b)) => AttachInput::Stdin(b),
                    Some(pb::attach_request::Msg::CloseStdin(_)) => AttachInput::CloseStdin,
                    Some(pb::attach_request::Msg::Resize(r)) => {
                        let (w, h) = tty(r.width, r.height).unwrap_or((0, 0));
                        AttachInput::Resize(w, h)
                    }
                    _ => continue,
                };
                if in_tx.send(input).await.is_err() {
                    return;
                }
            }
        });
        let s = ReceiverStream::new(out);
        Ok(Response::new(Box::pin(futures::StreamExt::map(s, |o| {
            Ok(pb::AttachResponse {
                msg: Some(match o {
                    AttachOutput::Ready(id) => pb::attach_response::Msg::Ready(id),
                    AttachOutput::Output(v) => pb::attach_response::Msg::Output(wire_entries(v)),
                    AttachOutput::Exit { code, removed } => {
                        pb::attach_response::Msg::Exit(pb::AttachExit {
                            exit_code: code,
                            removed,
                        })
                    }
                }),
            })
        }))))
    }

    async fn exec(
        &self,
        req: Request<Streaming<pb::ExecRequest>>,
    ) -> Result<Response<Self::ExecStream>, Status> {
        let ns = namespace(&req)?;
        let mut incoming = req.into_inner();
        let Some(pb::ExecRequest {
            msg: Some(pb::exec_request::Msg::Start(start)),
        }) = incoming.message().await?
        else {
            return Err(invalid("exec", "the first message must be start"));
        };
        let (in_tx, in_rx) = mpsc::channel(16);
        let r = ExecRequest {
            cmd: start.cmd,
            env: start.env,
            working_dir: start.working_dir,
            user: start.user,
            tty: start.tty,
            stdin: start.stdin,
            tty_size: tty(start.tty_width, start.tty_height),
        };
        let out = self.engine.exec(&ns, &start.container, r, in_rx).await?;
        tokio::spawn(async move {
            while let Ok(Some(m)) = incoming.message().await {
                let input = match m.msg {
                    Some(pb::exec_request::Msg::Stdin(b)) => ExecInput::Stdin(b),
                    Some(pb::exec_request::Msg::CloseStdin(_)) => ExecInput::CloseStdin,
                    Some(pb::exec_request::Msg::Resize(r)) => match tty(r.width, r.height) {
                        Some((w, h)) => ExecInput::Resize(w, h),
                        None => continue,
                    },
                    _ => continue,
                };
                if in_tx.send(input).await.is_err() {
                    return;
                }
            }
        });
        let s = ReceiverStream::new(out);
        Ok(Response::new(Box::pin(futures::StreamExt::map(s, |o| {
            Ok(pb::ExecResponse {
                msg: Some(match o {
                    ExecOutput::Started { exec_id, pid } => {
                        pb::exec_response::Msg::Started(pb::ExecStarted { exec_id, pid })
                    }
                    ExecOutput::Output(stream, data) => {
                        pb::exec_response::Msg::Output(pb::ExecOutput {
                            stream: match stream {
                                LogStream::Stdout => pb::Stream::Stdout,
                                LogStream::Stderr => pb::Stream::Stderr,
                            } as i32,
                            data,
                        })
                    }
                    ExecOutput::Exit(code) => pb::exec_response::Msg::ExitCode(code),
                }),
            })
        }))))
    }

    async fn top(&self, req: Request<pb::TopRequest>) -> Result<Response<pb::TopResponse>, Status> {
        let ns = namespace(&req)?;
        let t = self.engine.top(&ns, &req.into_inner().container).await?;
        Ok(Response::new(pb::TopResponse {
            titles: t.titles,
            processes: t
                .rows
                .into_iter()
                .map(|fields| pb::TopRow { fields })
                .collect(),
        }))
    }

    async fn stats(
        &self,
        req: Request<pb::StatsRequest>,
    ) -> Result<Response<Self::StatsStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let rx = self.engine.stats(&ns, &r.containers, r.stream)?;
        let s = ReceiverStream::new(rx);
        Ok(Response::new(Box::pin(futures::StreamExt::map(s, |v| {
            Ok(pb::StatsResponse {
                stats: v
                    .into_iter()
                    .map(|s| pb::ContainerStats {
                        id: s.id,
                        name: s.name,
                        cpu_percent: s.cpu_percent,
                        memory_usage: s.memory_usage,
                        memory_limit: s.memory_limit,
                        net_rx_bytes: s.net_rx,
                        net_tx_bytes: s.net_tx,
                        block_read_bytes: s.block_read,
                        block_write_bytes: s.block_write,
                        pids: s.pids,
                    })
                    .collect(),
            })
        }))))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        let ns = namespace(&req)?;
        let removed = self.engine.prune(&ns, &req.into_inner().filters).await?;
        Ok(Response::new(pb::PruneResponse { removed }))
    }
}

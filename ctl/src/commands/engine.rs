//! The Docker-shaped lifecycle over `berth.containers.v1`: start, stop,
//! restart, kill, rm, wait, ps, logs, inspect. Containers are named by
//! name, full ID or a unique ID prefix; berthd resolves them.

use std::time::{Duration, SystemTime};

use berth_api::berth_containers::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Error, Result, RpcContext};
use crate::output::{render_table, rfc3339, system_time, write_stdout};
use crate::workflows::engine;

/// `stop` and `restart`'s grace period.
#[derive(Debug, Clone, clap::Args)]
pub struct StopArgs {
    /// seconds to wait before SIGKILL (default: the container's, 10)
    #[arg(short = 't', long = "time")]
    pub time: Option<i32>,
    /// containers
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `ps` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct PsArgs {
    /// every container (default: running ones)
    #[arg(short = 'a', long)]
    pub all: bool,
    /// IDs only
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// full IDs and commands
    #[arg(long = "no-trunc")]
    pub no_trunc: bool,
    /// KEY=VALUE: id, name, label, status, exited, network, ancestor (repeatable)
    #[arg(short = 'f', long = "filter")]
    pub filters: Vec<String>,
}

/// `logs` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct LogsArgs {
    /// keep following the output while the container runs
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// the last N lines only ("all" for every line)
    #[arg(long = "tail", default_value = "all")]
    pub tail: String,
    /// lines since a time: RFC 3339 or a duration before now (10m)
    #[arg(long)]
    pub since: Option<String>,
    /// lines before a time: RFC 3339 or a duration before now
    #[arg(long)]
    pub until: Option<String>,
    /// show each line's time
    #[arg(short = 't', long)]
    pub timestamps: bool,
    /// the container
    pub container: String,
}

/// A time as `--since` takes it, in ns since the epoch.
fn time_arg(what: &str, v: &str) -> Result<i64> {
    let t = match humantime::parse_duration(v) {
        Ok(d) => SystemTime::now() - d,
        Err(_) => match v.parse::<i64>() {
            Ok(secs) => SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64),
            Err(_) => humantime::parse_rfc3339_weak(v).map_err(|_| {
                Error::Input(format!(
                    "{what} {v:?}: expected an RFC 3339 time, UNIX seconds or a duration (10m)"
                ))
            })?,
        },
    };
    Ok(t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64)
}

/// Docker's rough durations: "Less than a second", "5 seconds", "About a
/// minute", "3 minutes", "About an hour", "2 hours", "3 days", ...
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match s {
        0 => "Less than a second".into(),
        s if s < 60 => plural(s, "second"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => plural(s / 3600, "hour"),
        s if s < 14 * 86_400 => plural(s / 86_400, "day"),
        s if s < 90 * 86_400 => plural(s / (7 * 86_400), "week"),
        s if s < 2 * 365 * 86_400 => plural(s / (30 * 86_400), "month"),
        s => plural(s / (365 * 86_400), "year"),
    }
}

fn since(t: Option<&prost_types::Timestamp>, now: SystemTime) -> Duration {
    system_time(t)
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or_default()
}

/// `ps`'s STATUS column: `Up 3 minutes`, `Exited (7) 2 minutes ago`, ...
pub fn status_text(c: &pb::ContainerSummary, now: SystemTime) -> String {
    let state = pb::State::try_from(c.state).unwrap_or(pb::State::Created);
    match state {
        pb::State::Created => "Created".into(),
        pb::State::Running => format!("Up {}", human_duration(since(c.started_at.as_ref(), now))),
        pb::State::Paused => format!(
            "Up {} (Paused)",
            human_duration(since(c.started_at.as_ref(), now))
        ),
        pb::State::Restarting => format!(
            "Restarting ({}) {} ago",
            c.exit_code,
            human_duration(since(c.finished_at.as_ref(), now))
        ),
        pb::State::Exited => format!(
            "Exited ({}) {} ago",
            c.exit_code,
            human_duration(since(c.finished_at.as_ref(), now))
        ),
        pb::State::Removing => "Removal In Progress".into(),
    }
}

fn state_name(s: i32) -> &'static str {
    match pb::State::try_from(s).unwrap_or(pb::State::Created) {
        pb::State::Created => "created",
        pb::State::Running => "running",
        pb::State::Paused => "paused",
        pb::State::Restarting => "restarting",
        pb::State::Exited => "exited",
        pb::State::Removing => "removing",
    }
}

fn port_text(p: &pb::PortMapping) -> String {
    let ip = if p.host_ip.is_empty() {
        "0.0.0.0"
    } else {
        &p.host_ip
    };
    format!("{ip}:{}->{}/{}", p.host_port, p.container_port, p.protocol)
}

/// One container as `ps -o json` lists it.
#[derive(Debug, Serialize)]
struct PsRow {
    id: String,
    name: String,
    image: String,
    command: String,
    created_at: Option<String>,
    state: &'static str,
    status: String,
    exit_code: i32,
    ports: Vec<String>,
    networks: Vec<String>,
    restart_count: u32,
    pid: u32,
}

async fn ps(ctx: &Ctx, a: PsArgs) -> Result<()> {
    let list = ctx
        .client
        .engine()
        .list(pb::ListRequest {
            all: a.all,
            filters: a.filters.clone(),
        })
        .await
        .context("list containers")?
        .into_inner()
        .containers;
    let short = |id: &str| {
        if a.no_trunc {
            id.to_string()
        } else {
            id.chars().take(12).collect()
        }
    };
    if a.quiet {
        return ctx.out.lines(list.iter().map(|c| short(&c.id)));
    }
    let now = SystemTime::now();
    if ctx.out.json() {
        let rows: Vec<PsRow> = list
            .iter()
            .map(|c| PsRow {
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                command: c.command.clone(),
                created_at: rfc3339(c.created_at.as_ref()),
                state: state_name(c.state),
                status: status_text(c, now),
                exit_code: c.exit_code,
                ports: c.ports.iter().map(port_text).collect(),
                networks: c.networks.clone(),
                restart_count: c.restart_count,
                pid: c.pid,
            })
            .collect();
        return ctx.out.json_value(&rows);
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|c| {
            let mut cmd = c.command.clone();
            if !a.no_trunc && cmd.chars().count() > 20 {
                cmd = format!("{}…", cmd.chars().take(19).collect::<String>());
            }
            vec![
                short(&c.id),
                c.image.clone(),
                format!("\"{cmd}\""),
                format!("{} ago", human_duration(since(c.created_at.as_ref(), now))),
                status_text(c, now),
                c.ports.iter().map(port_text).collect::<Vec<_>>().join(", "),
                c.name.clone(),
            ]
        })
        .collect();
    write_stdout(&render_table(
        &[
            "CONTAINER ID",
            "IMAGE",
            "COMMAND",
            "CREATED",
            "STATUS",
            "PORTS",
            "NAMES",
        ],
        &rows,
    ))
}

fn timeout(t: Option<i32>) -> (i32, bool) {
    (t.unwrap_or(0), t.is_some())
}

/// `start`.
pub async fn start(ctx: &Ctx, containers: Vec<String>) -> Result<()> {
    for_each(ctx, &containers, |c| {
        let c = c.clone();
        async move {
            ctx.client
                .engine()
                .start(pb::StartRequest {
                    container: c.clone(),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("start container {c:?}"))?;
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `stop`.
pub async fn stop(ctx: &Ctx, a: StopArgs) -> Result<()> {
    let (t, set) = timeout(a.time);
    for_each(ctx, &a.containers, |c| {
        let c = c.clone();
        async move {
            ctx.client
                .engine()
                .stop(pb::StopRequest {
                    container: c.clone(),
                    timeout: t,
                    timeout_set: set,
                })
                .await
                .with_context(|| format!("stop container {c:?}"))?;
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `restart`.
pub async fn restart(ctx: &Ctx, a: StopArgs) -> Result<()> {
    let (t, set) = timeout(a.time);
    for_each(ctx, &a.containers, |c| {
        let c = c.clone();
        async move {
            ctx.client
                .engine()
                .restart(pb::RestartRequest {
                    container: c.clone(),
                    timeout: t,
                    timeout_set: set,
                })
                .await
                .with_context(|| format!("restart container {c:?}"))?;
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `kill`.
pub async fn kill(ctx: &Ctx, signal: String, containers: Vec<String>) -> Result<()> {
    let signal = &signal;
    for_each(ctx, &containers, |c| {
        let c = c.clone();
        async move {
            ctx.client
                .engine()
                .kill(pb::KillRequest {
                    container: c.clone(),
                    signal: signal.clone(),
                })
                .await
                .with_context(|| format!("kill container {c:?}"))?;
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `rm`.
pub async fn rm(ctx: &Ctx, force: bool, volumes: bool, containers: Vec<String>) -> Result<()> {
    for_each(ctx, &containers, |c| {
        let c = c.clone();
        async move {
            ctx.client
                .engine()
                .remove(pb::RemoveRequest {
                    container: c.clone(),
                    force,
                    volumes,
                })
                .await
                .with_context(|| format!("remove container {c:?}"))?;
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `wait`: prints each exit code.
pub async fn wait(ctx: &Ctx, containers: Vec<String>) -> Result<()> {
    for_each(ctx, &containers, |c| {
        let c = c.clone();
        async move {
            let code = ctx
                .client
                .engine()
                .wait(pb::WaitRequest {
                    container: c.clone(),
                })
                .await
                .with_context(|| format!("wait for container {c:?}"))?
                .into_inner()
                .exit_code;
            Ok(Done {
                line: code.to_string(),
                json: serde_json::json!({"container": c, "exit_code": code}),
            })
        }
    })
    .await
}

/// The inspect document of container `c`.
async fn inspect_doc(ctx: &Ctx, c: &str) -> Result<serde_json::Value> {
    let r = ctx
        .client
        .engine()
        .inspect(pb::InspectRequest {
            container: c.to_string(),
        })
        .await
        .with_context(|| format!("inspect container {c:?}"))?
        .into_inner();
    serde_json::from_str(&r.json)
        .map_err(|e| Error::Protocol(format!("inspect {c:?}: bad JSON from berthd: {e}")))
}

/// `port`: `80/tcp -> 0.0.0.0:32768` lines, or the host addresses of
/// one container port.
pub async fn port(ctx: &Ctx, container: String, port: Option<&str>) -> Result<()> {
    let doc = inspect_doc(ctx, &container).await?;
    let want = port.map(|p| {
        if p.contains('/') {
            p.to_string()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut rows = Vec::new();
    if let Some(ports) = doc["NetworkSettings"]["Ports"].as_object() {
        let mut keys: Vec<&String> = ports.keys().collect();
        keys.sort_by_key(|k| {
            let (n, proto) = k.split_once('/').unwrap_or((k, ""));
            (n.parse::<u32>().unwrap_or(0), proto.to_string())
        });
        for k in keys {
            if want.as_ref().is_some_and(|w| w != k) {
                continue;
            }
            for b in ports[k].as_array().into_iter().flatten() {
                let host = format!(
                    "{}:{}",
                    b["HostIp"].as_str().unwrap_or("0.0.0.0"),
                    b["HostPort"].as_str().unwrap_or("")
                );
                rows.push((k.clone(), host));
            }
        }
    }
    if let (Some(w), true) = (&want, rows.is_empty()) {
        return Err(Error::Input(format!(
            "container {container:?}: no public port {w} published"
        )));
    }
    if ctx.out.json() {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(k, h)| serde_json::json!({"container_port": k, "host": h}))
            .collect();
        return ctx.out.json_value(&v);
    }
    ctx.out.lines(rows.into_iter().map(|(k, h)| {
        if want.is_some() {
            h
        } else {
            format!("{k} -> {h}")
        }
    }))
}

/// `inspect`: a JSON array of the containers' documents, or each
/// rendered by `format`.
pub async fn inspect(ctx: &Ctx, format: Option<&str>, containers: Vec<String>) -> Result<()> {
    if let Some(f) = format {
        let t = crate::template::Template::parse(f)?;
        let mut out = String::new();
        for c in &containers {
            out.push_str(&t.render(&inspect_doc(ctx, c).await?)?);
            out.push('\n');
        }
        return write_stdout(&out);
    }
    let mut docs = Vec::new();
    for c in &containers {
        docs.push(inspect_doc(ctx, c).await?);
    }
    ctx.out.json_value(&docs)
}

/// `logs`.
pub async fn logs(ctx: &Ctx, a: LogsArgs) -> Result<()> {
    let tail = match a.tail.as_str() {
        "all" | "-1" => -1,
        n => n
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::Input(format!("tail {n:?}: a line count or \"all\"")))?,
    };
    let req = pb::LogsRequest {
        container: a.container.clone(),
        follow: a.follow,
        tail,
        since_unix_nano: a
            .since
            .as_deref()
            .map(|v| time_arg("since", v))
            .transpose()?
            .unwrap_or(0),
        until_unix_nano: a
            .until
            .as_deref()
            .map(|v| time_arg("until", v))
            .transpose()?
            .unwrap_or(0),
        stdout: false,
        stderr: false,
        coalesce: !a.timestamps,
    };
    engine::logs(&ctx.client, req, a.timestamps).await
}

/// Runs `ps`.
pub async fn run_ps(ctx: &Ctx, a: PsArgs) -> Result<()> {
    ps(ctx, a).await
}

/// `pause` and `unpause`.
pub async fn pause(ctx: &Ctx, pause: bool, containers: Vec<String>) -> Result<()> {
    for_each(ctx, &containers, |c| {
        let c = c.clone();
        async move {
            let what = format!(
                "{} container {c:?}",
                if pause { "pause" } else { "unpause" }
            );
            if pause {
                ctx.client
                    .engine()
                    .pause(pb::PauseRequest {
                        container: c.clone(),
                    })
                    .await
                    .context(what)?;
            } else {
                ctx.client
                    .engine()
                    .unpause(pb::UnpauseRequest {
                        container: c.clone(),
                    })
                    .await
                    .context(what)?;
            }
            Ok(Done::named("container", &c))
        }
    })
    .await
}

/// `top`: the container's processes.
pub async fn top(ctx: &Ctx, container: String) -> Result<()> {
    let t = ctx
        .client
        .engine()
        .top(pb::TopRequest {
            container: container.clone(),
        })
        .await
        .with_context(|| format!("top of container {container:?}"))?
        .into_inner();
    if ctx.out.json() {
        let rows: Vec<serde_json::Map<String, serde_json::Value>> = t
            .processes
            .iter()
            .map(|r| {
                t.titles
                    .iter()
                    .cloned()
                    .zip(r.fields.iter().map(|f| serde_json::Value::from(f.clone())))
                    .collect()
            })
            .collect();
        return ctx.out.json_value(&rows);
    }
    let titles: Vec<&str> = t.titles.iter().map(String::as_str).collect();
    let rows: Vec<Vec<String>> = t.processes.into_iter().map(|r| r.fields).collect();
    write_stdout(&render_table(&titles, &rows))
}

/// `stats`: one sample per running container (`--no-stream`), or a new
/// table every second.
pub async fn stats(ctx: &Ctx, no_stream: bool, containers: Vec<String>) -> Result<()> {
    let mut s = ctx
        .client
        .engine()
        .stats(pb::StatsRequest {
            containers,
            stream: !no_stream,
        })
        .await
        .context("container stats")?
        .into_inner();
    while let Some(batch) = s.message().await.context("container stats")? {
        if ctx.out.json() {
            let rows: Vec<serde_json::Value> = batch
                .stats
                .iter()
                .map(|c| {
                    serde_json::json!({
                        "id": c.id, "name": c.name, "cpu_percent": c.cpu_percent,
                        "memory_usage": c.memory_usage, "memory_limit": c.memory_limit,
                        "net_rx_bytes": c.net_rx_bytes, "net_tx_bytes": c.net_tx_bytes,
                        "block_read_bytes": c.block_read_bytes,
                        "block_write_bytes": c.block_write_bytes, "pids": c.pids,
                    })
                })
                .collect();
            ctx.out.json_value(&rows)?;
            continue;
        }
        let size = |n: u64| crate::output::human_size(n as i64);
        let rows: Vec<Vec<String>> = batch
            .stats
            .iter()
            .map(|c| {
                vec![
                    c.id.chars().take(12).collect(),
                    c.name.clone(),
                    format!("{:.2}%", c.cpu_percent),
                    format!("{} / {}", size(c.memory_usage), size(c.memory_limit)),
                    format!("{} / {}", size(c.net_rx_bytes), size(c.net_tx_bytes)),
                    format!(
                        "{} / {}",
                        size(c.block_read_bytes),
                        size(c.block_write_bytes)
                    ),
                    c.pids.to_string(),
                ]
            })
            .collect();
        write_stdout(&render_table(
            &[
                "CONTAINER ID",
                "NAME",
                "CPU %",
                "MEM USAGE / LIMIT",
                "NET I/O",
                "BLOCK I/O",
                "PIDS",
            ],
            &rows,
        ))?;
    }
    Ok(())
}

/// `container prune`: removes every stopped container; their IDs.
pub async fn prune(ctx: &Ctx, filters: Vec<String>) -> Result<()> {
    let removed = ctx
        .client
        .engine()
        .prune(pb::PruneRequest { filters })
        .await
        .context("prune containers")?
        .into_inner()
        .removed;
    ctx.out.lines(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_dockers() {
        let d = |s| human_duration(Duration::from_secs(s));
        assert_eq!(d(0), "Less than a second");
        assert_eq!(d(1), "1 second");
        assert_eq!(d(42), "42 seconds");
        assert_eq!(d(90), "About a minute");
        assert_eq!(d(180), "3 minutes");
        assert_eq!(d(4000), "About an hour");
        assert_eq!(d(5 * 3600), "5 hours");
        assert_eq!(d(3 * 86_400), "3 days");
    }

    #[test]
    fn statuses() {
        let now = SystemTime::now();
        let ago = |s| Some((now - Duration::from_secs(s)).into());
        let c = pb::ContainerSummary {
            state: pb::State::Exited as i32,
            exit_code: 7,
            finished_at: ago(130),
            ..Default::default()
        };
        assert_eq!(status_text(&c, now), "Exited (7) 2 minutes ago");
        let c = pb::ContainerSummary {
            state: pb::State::Running as i32,
            started_at: ago(185),
            ..Default::default()
        };
        assert_eq!(status_text(&c, now), "Up 3 minutes");
    }
}

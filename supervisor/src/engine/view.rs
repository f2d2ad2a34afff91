//! `ps` and `inspect`: containers as records, filtered, and one container
//! as a Docker-shaped JSON document.

use std::time::SystemTime;

use serde_json::{json, Value};

use super::model::{Record, Status};
use super::{Engine, Error, Result};

/// A `ps` filter: `key=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// ID prefix
    Id(String),
    /// name substring
    Name(String),
    /// `label=KEY` or `label=KEY=VALUE`
    Label(String, Option<String>),
    /// created, running, paused, restarting, exited, removing
    Status(String),
    /// exit code
    Exited(i32),
    /// on this network
    Network(String),
    /// made from this image
    Ancestor(String),
}

impl Filter {
    /// Parses `key=value`.
    pub fn parse(s: &str) -> Result<Self> {
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Error::InvalidArgument(format!("filter {s:?}: expected key=value")))?;
        Ok(match k {
            "id" => Filter::Id(v.into()),
            "name" => Filter::Name(v.into()),
            "label" => match v.split_once('=') {
                Some((a, b)) => Filter::Label(a.into(), Some(b.into())),
                None => Filter::Label(v.into(), None),
            },
            "status" => {
                const OK: &[&str] = &[
                    "created",
                    "running",
                    "paused",
                    "restarting",
                    "exited",
                    "removing",
                ];
                if !OK.contains(&v) {
                    return Err(Error::InvalidArgument(format!(
                        "filter status={v:?}: one of {}",
                        OK.join(", ")
                    )));
                }
                Filter::Status(v.into())
            }
            "exited" => Filter::Exited(v.parse().map_err(|_| {
                Error::InvalidArgument(format!("filter exited={v:?}: an exit code"))
            })?),
            "network" => Filter::Network(v.into()),
            "ancestor" => Filter::Ancestor(v.into()),
            _ => {
                return Err(Error::InvalidArgument(format!(
                    "filter {k:?}: one of id, name, label, status, exited, network, ancestor"
                )))
            }
        })
    }

    fn matches(&self, r: &Record) -> bool {
        match self {
            Filter::Id(p) => r.id.starts_with(p.as_str()),
            Filter::Name(n) => r.name.contains(n.as_str()),
            Filter::Label(k, v) => match (r.config.labels.get(k), v) {
                (Some(have), Some(want)) => have == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
            Filter::Status(s) => r.state.status.name() == s,
            Filter::Exited(c) => r.state.status == Status::Exited && r.state.exit_code == *c,
            Filter::Network(n) => r.config.networks.iter().any(|x| x == n),
            Filter::Ancestor(i) => {
                r.image == *i || r.image == super::normalise_reference(i) || r.image_digest == *i
            }
        }
    }
}

impl Engine {
    /// Containers of `ns` (running ones unless `all`) that every filter
    /// matches, newest first.
    pub fn list(&self, ns: &str, all: bool, filters: &[String]) -> Result<Vec<Record>> {
        let filters: Vec<Filter> = filters
            .iter()
            .map(|f| Filter::parse(f))
            .collect::<Result<_>>()?;
        let mut out: Vec<Record> = self
            .all(ns)
            .iter()
            .map(|s| s.record())
            .filter(|r| all || r.state.status.is_running() || r.state.status == Status::Restarting)
            .filter(|r| filters.iter().all(|f| f.matches(r)))
            .collect();
        out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.name.cmp(&b.name)));
        Ok(out)
    }
}

fn time(t: Option<SystemTime>) -> Value {
    match t {
        Some(t) => json!(humantime::format_rfc3339_nanos(t).to_string()),
        None => json!("0001-01-01T00:00:00Z"),
    }
}

/// The Docker-shaped document `inspect` prints.
pub fn inspect_json(r: &Record) -> Value {
    let s = &r.state;
    let mut ports = serde_json::Map::new();
    for p in &s.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let entry = json!({
            "HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()),
            "HostPort": p.host_port.to_string(),
        });
        match ports.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(entry),
            None => {
                ports.insert(key, json!([entry]));
            }
        }
    }
    let mut networks = serde_json::Map::new();
    for n in &r.config.networks {
        let ep = s.endpoints.iter().find(|e| &e.network == n);
        networks.insert(
            n.clone(),
            json!({
                "IPAddress": ep.and_then(|e| e.ip).map(|i| i.addr().to_string()).unwrap_or_default(),
                "IPPrefixLen": ep.and_then(|e| e.ip).map(|i| i.prefix_len()).unwrap_or(0),
                "Gateway": ep.and_then(|e| e.gateway).map(|g| g.to_string()).unwrap_or_default(),
                "MacAddress": ep.and_then(|e| e.mac.clone()).unwrap_or_default(),
                "Interface": ep.map(|e| e.ifname.clone()).unwrap_or_default(),
                "Aliases": r.config.network_aliases,
            }),
        );
    }
    let first_ip = s
        .endpoints
        .first()
        .and_then(|e| e.ip)
        .map(|i| i.addr().to_string())
        .unwrap_or_default();
    let mounts: Vec<Value> = r
        .config
        .mounts
        .iter()
        .map(|m| {
            json!({"Type": m.kind, "Source": m.source, "Destination": m.target, "RW": !m.readonly})
        })
        .collect();
    json!({
        "Id": r.id,
        "Name": format!("/{}", r.name),
        "Created": time(Some(r.created_at)),
        "Path": r.command.first().cloned().unwrap_or_default(),
        "Args": r.command.iter().skip(1).collect::<Vec<_>>(),
        "State": {
            "Status": s.status.name(),
            "Running": s.status.is_running(),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": time(s.started_at),
            "FinishedAt": time(s.finished_at),
        },
        "Image": r.image_digest,
        "ImageName": r.image,
        "LogPath": r.log_path().display().to_string(),
        "HostnamePath": r.dir.join("hostname").display().to_string(),
        "HostsPath": r.dir.join("hosts").display().to_string(),
        "ResolvConfPath": r.dir.join("resolv.conf").display().to_string(),
        "RestartCount": s.restart_count,
        "Driver": r.snapshotter,
        "HostConfig": {
            "RestartPolicy": {
                "Name": r.config.restart.name(),
                "MaximumRetryCount": match r.config.restart {
                    super::RestartPolicy::OnFailure { max_retries } => max_retries,
                    _ => 0,
                },
            },
            "AutoRemove": r.config.auto_remove,
            "NetworkMode": r.config.networks.first().cloned().unwrap_or_default(),
            "PortBindings": r.config.ports.iter().map(|p| p.display()).collect::<Vec<_>>(),
            "PublishAllPorts": r.config.publish_all,
            "Memory": r.config.memory.unwrap_or(0),
            "NanoCpus": r.config.cpus.map(|c| (c * 1e9) as i64).unwrap_or(0),
            "PidsLimit": r.config.pids_limit.unwrap_or(0),
            "CapAdd": r.config.cap_add,
            "CapDrop": r.config.cap_drop,
            "Privileged": r.config.privileged,
            "ReadonlyRootfs": r.config.read_only,
            "LogConfig": {
                "Type": "json-file",
                "Config": {
                    "max-size": r.config.log.max_size.to_string(),
                    "max-file": r.config.log.max_files.to_string(),
                },
            },
            "Runtime": if r.config.runtime_binary.is_empty() { "runc" } else { &r.config.runtime_binary },
        },
        "Config": {
            "Hostname": r.state_hostname(),
            "User": r.config.user,
            "Tty": r.config.tty,
            "OpenStdin": r.config.open_stdin,
            "Env": r.config.env,
            "Cmd": r.config.cmd,
            "Entrypoint": r.config.entrypoint,
            "Image": r.image,
            "WorkingDir": r.config.working_dir,
            "Labels": r.config.labels,
            "StopSignal": r.stop_signal,
            "StopTimeout": r.stop_timeout(),
            "ExposedPorts": r.exposed,
        },
        "Mounts": mounts,
        "NetworkSettings": {
            "IPAddress": first_ip,
            "Ports": ports,
            "Networks": networks,
        },
    })
}

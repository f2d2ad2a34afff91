//! The engine's own types: what a container is asked to be
//! ([`ContainerConfig`]) and what it is ([`Record`]: its config, its image,
//! its state). No wire type appears here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// When to pull the image at create.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// when it is not present
    #[default]
    Missing,
    /// every time
    Always,
    /// never: a missing image is NotFound
    Never,
}

/// Docker's restart policies, enforced by berthd.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    /// never restarted
    #[default]
    No,
    /// after a non-zero exit, at most `max_retries` times (0: no limit)
    OnFailure {
        /// restarts allowed
        max_retries: u32,
    },
    /// after every exit; also at berthd's start
    Always,
    /// after every exit, unless stopped by a user (also across berthd's
    /// restarts)
    UnlessStopped,
}

impl RestartPolicy {
    /// Parses a policy name and count; the message names the field.
    pub fn parse(name: &str, max_retries: i32) -> Result<Self, String> {
        if max_retries < 0 {
            return Err(format!(
                "restart policy: max retries {max_retries} is negative"
            ));
        }
        match name {
            "" | "no" => Ok(RestartPolicy::No),
            "on-failure" => Ok(RestartPolicy::OnFailure {
                max_retries: max_retries as u32,
            }),
            "always" | "unless-stopped" if max_retries > 0 => Err(format!(
                "restart policy {name:?}: a maximum retry count applies to on-failure only"
            )),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            other => Err(format!(
                "restart policy {other:?}: expected no, on-failure[:N], always or unless-stopped"
            )),
        }
    }

    /// Its name as Docker writes it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }
}

/// A published port as asked for (host port 0: chosen by berthd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortSpec {
    /// The host address; `None` for every one.
    pub host_ip: Option<IpAddr>,
    /// The host port (0: a free one).
    pub host_port: u16,
    /// The container port.
    pub container_port: u16,
    /// `tcp`, `udp` or `sctp`.
    pub protocol: String,
}

impl PortSpec {
    /// `127.0.0.1:8080->80/tcp`, as `ps` shows it.
    pub fn display(&self) -> String {
        let ip = self
            .host_ip
            .map(|i| i.to_string())
            .unwrap_or_else(|| "0.0.0.0".into());
        format!(
            "{ip}:{}->{}/{}",
            self.host_port, self.container_port, self.protocol
        )
    }
}

/// A mount as asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// `bind` or `tmpfs`.
    pub kind: String,
    /// A host path for a bind.
    pub source: String,
    /// The path in the container.
    pub target: String,
    /// Read-only.
    pub readonly: bool,
    /// Extra options.
    pub options: Vec<String>,
}

/// A device of the host made available in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// The host's device node.
    pub host_path: String,
    /// Its path in the container.
    pub container_path: String,
    /// Any of `rwm`.
    pub permissions: String,
}

/// A resource limit of the container's processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Lower case without `RLIMIT_`: `nofile`.
    pub name: String,
    /// Soft limit.
    pub soft: i64,
    /// Hard limit.
    pub hard: i64,
}

/// The log file's rotation (json-file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogOptions {
    /// Rotate before the file passes this many bytes (0: never).
    pub max_size: u64,
    /// Files kept (0 or 1: one).
    pub max_files: u32,
}

/// What a container is asked to be: the create request in domain terms.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerConfig {
    /// Its name; empty at create: generated.
    pub name: String,
    /// The image reference as given.
    pub image: String,
    /// Replaces the image's CMD.
    pub cmd: Vec<String>,
    /// Replaces the image's ENTRYPOINT when set.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=value` over the image's.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: String,
    /// `user[:group]`.
    pub user: String,
    /// Hostname (default: the first 12 digits of the id).
    pub hostname: String,
    /// A terminal.
    pub tty: bool,
    /// Its size at create, if known.
    pub tty_size: Option<(u16, u16)>,
    /// Keep stdin open for attach.
    pub open_stdin: bool,
    /// Memory limit in bytes.
    pub memory: Option<i64>,
    /// CPUs.
    pub cpus: Option<f64>,
    /// Most processes.
    pub pids_limit: Option<i64>,
    /// Capabilities added.
    pub cap_add: Vec<String>,
    /// Capabilities dropped.
    pub cap_drop: Vec<String>,
    /// Every capability of the host's bounding set and every device.
    pub privileged: bool,
    /// Devices.
    pub devices: Vec<DeviceSpec>,
    /// Limits.
    pub ulimits: Vec<Ulimit>,
    /// Read-only rootfs.
    pub read_only: bool,
    /// Labels (also on the containerd record).
    pub labels: BTreeMap<String, String>,
    /// No seccomp filter.
    pub seccomp_unconfined: bool,
    /// A seccomp profile of the client's (OCI or Docker JSON).
    pub seccomp_profile: Option<String>,
    /// no_new_privileges (on by default, as containerd's).
    pub no_new_privileges: bool,
    /// The restart policy.
    pub restart: RestartPolicy,
    /// Removed on exit.
    pub auto_remove: bool,
    /// Networks, in order (the first gets `eth0` and the published ports).
    pub networks: Vec<String>,
    /// Aliases on user networks.
    pub network_aliases: Vec<String>,
    /// Published ports.
    pub ports: Vec<PortSpec>,
    /// Publish every exposed port.
    pub publish_all: bool,
    /// Log rotation.
    pub log: LogOptions,
    /// Mounts.
    pub mounts: Vec<MountSpec>,
    /// Stop signal (name or number); empty: the image's or SIGTERM.
    pub stop_signal: String,
    /// Seconds before SIGKILL at stop.
    pub stop_timeout: Option<u32>,
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Snapshotter.
    pub snapshotter: String,
    /// OCI runtime binary.
    pub runtime_binary: String,
}

/// A container's status, as `ps` shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// made, never started
    #[default]
    Created,
    /// its task runs
    Running,
    /// its task is frozen
    Paused,
    /// waiting to be started again by its restart policy
    Restarting,
    /// not running (its task is gone)
    Exited,
    /// being removed
    Removing,
}

impl Status {
    /// The name Docker uses.
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Removing => "removing",
        }
    }

    /// Whether a task is alive.
    pub fn is_running(self) -> bool {
        matches!(self, Status::Running | Status::Paused)
    }
}

/// One network the container is on while it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointState {
    /// The network.
    pub network: String,
    /// The interface in the container.
    pub ifname: String,
    /// Its address with prefix.
    #[serde(with = "opt_ipnet")]
    pub ip: Option<IpNet>,
    /// Its gateway.
    pub gateway: Option<IpAddr>,
    /// Its MAC.
    pub mac: Option<String>,
}

mod opt_ipnet {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<IpNet>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(n) => s.serialize_some(&n.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<IpNet>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| s.parse().map_err(serde::de::Error::custom))
            .transpose()
    }
}

/// What a container is now.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct State {
    /// Its status.
    pub status: Status,
    /// The main process's pid while it runs.
    pub pid: u32,
    /// The last exit code.
    pub exit_code: i32,
    /// Why the last start failed, if it did.
    pub error: String,
    /// When it last started.
    pub started_at: Option<SystemTime>,
    /// When it last stopped.
    pub finished_at: Option<SystemTime>,
    /// Restarts made by its policy since a user last started it.
    pub restart_count: u32,
    /// Stopped (or killed) by a user: no restart by policy.
    pub manually_stopped: bool,
    /// The published ports of this run (host ports chosen).
    pub ports: Vec<PortSpec>,
    /// Its networks while it runs.
    pub endpoints: Vec<EndpointState>,
    /// How many times it was started (its runs, counted from 1).
    pub runs: u64,
}

/// A container as berthd keeps it (tree `berth.containers`, key `ns/id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// 64 hex digits; also the containerd container's id.
    pub id: String,
    /// Unique in its namespace.
    pub name: String,
    /// The image reference, short names expanded.
    pub image: String,
    /// The image's target digest when created.
    pub image_digest: String,
    /// The process it runs (entrypoint + cmd), for display.
    pub command: Vec<String>,
    /// What it was asked to be (networks as they are now: connect and
    /// disconnect change them).
    pub config: ContainerConfig,
    /// The signal `stop` sends.
    pub stop_signal: String,
    /// Ports the image exposes (`80/tcp`), for `-P`.
    pub exposed: Vec<String>,
    /// Its directory (`ROOT/containers/ID`): log, hosts, resolv.conf.
    pub dir: PathBuf,
    /// The snapshotter of its rootfs (snapshot key = id).
    pub snapshotter: String,
    /// When it was created.
    pub created_at: SystemTime,
    /// Its state.
    pub state: State,
}

impl Record {
    /// The json-file log.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join(format!("{}-json.log", self.id))
    }

    /// Seconds `stop` waits before SIGKILL.
    pub fn stop_timeout(&self) -> u32 {
        self.config.stop_timeout.unwrap_or(10)
    }

    /// The command line, quoted for a human.
    pub fn command_line(&self) -> String {
        self.command.join(" ")
    }

    /// Its hostname (the first 12 digits of its ID unless one was given).
    pub fn state_hostname(&self) -> String {
        if self.config.hostname.is_empty() {
            self.id[..12.min(self.id.len())].to_string()
        } else {
            self.config.hostname.clone()
        }
    }

    /// Whether it has a network namespace of its own (all but `host`).
    pub fn uses_netns(&self) -> bool {
        !self.config.networks.iter().any(|n| n == super::HOST)
    }
}

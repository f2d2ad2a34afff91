//! CNI networking for berthd: network namespaces, CNI config loading,
//! plugin execution and the attachment cache. Shared by the two adapters
//! that give containers networks: the Kubernetes CRI (pod sandboxes) and
//! berth's Docker-style networks. It imports no adapter, no tonic and no
//! generated type; the adapters call [`Networks`] and map [`ErrorKind`].
//!
//! # Pieces
//!
//! - [`netns`]: named network namespaces bind-mounted under a dir berthd
//!   gives (`STATE/netns/NAME`), entered on a dedicated thread.
//! - [`conf`]: libcni's rules for the conf dir (`*.conflist`, `*.conf`,
//!   `*.json` in name order, the first valid one wins) and validation.
//! - plugin execution per the CNI spec (ADD/CHECK/DEL, CNI_* environment,
//!   `prevResult` and capability `runtimeConfig` on stdin, a time limit, the
//!   plugin's error document as [`Error::Plugin`]).
//! - [`CniResult`]: results of cniVersion 0.3.x/0.4.0 and 1.0.0 in one type.
//! - the attachment cache under `ROOT/network/cache` (see below).
//! - [`bridge`]: the conflist of a berth-owned bridge network.
//!
//! # Contract
//!
//! - [`Network::attach`] (CNI ADD): before any plugin runs, every plugin of
//!   the list is found and the netns is checked, so a missing plugin or
//!   netns fails with nothing done. Then an `adding` cache entry (the
//!   plugin list, CNI_ARGS, capability args, netns) is written durably, the
//!   plugins run, and the result replaces the entry, durably, before
//!   `attach` returns. If a plugin fails, the list is DELeted at once (as
//!   the CRI does) and the entry removed; if that DEL fails too, the
//!   `adding` entry stays for a later [`Networks::detach`].
//! - After a crash at any point, an attachment either has no entry (no
//!   plugin ran) or has one, `adding` or `added`, that [`Networks::attachments`]
//!   lists and [`Networks::detach`] undoes.
//! - [`Networks::detach`] (CNI DEL) is idempotent and may be retried. It
//!   runs the plugin list the ADD ran (from the cache; the conf dir's
//!   current list of that name when nothing is cached) in reverse, with
//!   the cached result as `prevResult` and the ADD's CNI_ARGS and
//!   capability args. A netns that no longer exists is replaced, for the
//!   DEL, by a stand-in at the same path holding the cached addresses
//!   (the bridge plugin finds the masquerading rules to remove only
//!   there), removed afterwards; with no cached addresses it is passed as
//!   an empty CNI_NETNS (plugins then clean up host-side state only). Plugin
//!   answers that something is already gone (code 3, "not found") are not
//!   failures. The cache entry is removed, durably, only once every plugin
//!   succeeded; on failure it stays and the error is returned, so the call
//!   can be repeated. With neither a cache entry nor a config of that name
//!   there is nothing to undo and detach succeeds.
//! - [`Networks::check`] (CNI CHECK) needs an `added` entry and a list at
//!   version 0.4.0 or later (`disableCheck` makes it succeed at once).
//! - The conf dir is re-read when it changed (one readdir and a stat per
//!   file on every status or lookup), so [`Networks::status`] turns ready
//!   as soon as a valid conflist appears.
//! - berthd may keep two [`Networks`]: one on `cni_conf_dir` for the CRI
//!   and one on its own conf dir for named networks ([`bridge`]); they may
//!   share a cache dir, whose entries are keyed by network name.
//! - Calls for the same network, container and interface are serialised;
//!   others run concurrently. Blocking filesystem work runs on tokio's
//!   blocking pool; namespace work on short-lived dedicated threads.

pub mod bridge;
mod cache;
pub mod conf;
mod error;
mod exec;
mod locks;
mod netlink;
pub mod netns;
mod networks;
mod plugins;
mod result;
mod standin;
mod sys;

#[cfg(test)]
mod tests;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

pub use cache::AttachState;
pub use conf::{ConfList, PluginConf};
pub use error::{Error, ErrorKind};
pub use netns::NetNs;
pub use networks::{Network, Networks};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};

/// Result alias for network calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where plugins are looked for when the config names no dirs
/// (Debian installs them in the first).
pub const DEFAULT_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

/// How long one plugin call may take by default.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the module reads and keeps things.
#[derive(Debug, Clone)]
pub struct NetworkOptions {
    /// The conf dir scanned for network configs (`cni_conf_dir`).
    pub conf_dir: PathBuf,
    /// Dirs searched for plugin binaries, in order (`cni_bin_dirs`).
    pub bin_dirs: Vec<PathBuf>,
    /// The attachment cache (berthd: `ROOT/network/cache`).
    pub cache_dir: PathBuf,
    /// The limit for one plugin call.
    pub plugin_timeout: Duration,
}

impl NetworkOptions {
    /// Options with the default bin dirs and timeout.
    pub fn new(conf_dir: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        NetworkOptions {
            conf_dir: conf_dir.into(),
            bin_dirs: DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
            cache_dir: cache_dir.into(),
            plugin_timeout: DEFAULT_PLUGIN_TIMEOUT,
        }
    }
}

/// The Kubernetes pod an attachment is for (CNI_ARGS K8S_POD_*).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodRef {
    /// K8S_POD_NAMESPACE
    pub namespace: String,
    /// K8S_POD_NAME
    pub name: String,
    /// K8S_POD_UID, when known
    pub uid: Option<String>,
}

/// A port mapping protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// tcp
    #[default]
    Tcp,
    /// udp
    Udp,
    /// sctp
    Sctp,
}

impl Protocol {
    /// The name the portmap plugin expects.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One published port (the `portMappings` capability).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortMapping {
    /// The port on the host.
    pub host_port: u16,
    /// The port in the container.
    pub container_port: u16,
    /// The protocol.
    pub protocol: Protocol,
    /// The host address to bind; `None` for every address.
    pub host_ip: Option<IpAddr>,
}

impl PortMapping {
    fn to_value(self) -> Value {
        let mut o = Map::new();
        o.insert("hostPort".into(), self.host_port.into());
        o.insert("containerPort".into(), self.container_port.into());
        o.insert("protocol".into(), self.protocol.as_str().into());
        if let Some(ip) = self.host_ip {
            o.insert("hostIP".into(), ip.to_string().into());
        }
        Value::Object(o)
    }
}

/// What an ADD needs.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    /// The container (or pod sandbox) ID: CNI_CONTAINERID.
    pub container_id: String,
    /// The netns path: CNI_NETNS.
    pub netns: PathBuf,
    /// The interface to create in it: CNI_IFNAME (usually "eth0").
    pub ifname: String,
    /// The pod, for a CRI sandbox: adds IgnoreUnknown=1 and K8S_POD_*.
    pub pod: Option<PodRef>,
    /// Published ports, passed to plugins declaring `portMappings`.
    pub port_mappings: Vec<PortMapping>,
    /// Extra CNI_ARGS pairs.
    pub args: Vec<(String, String)>,
    /// Other capability args (`bandwidth`, `ipRanges`, `mac`, ...), passed
    /// to the plugins that declare them.
    pub capabilities: Map<String, Value>,
}

/// What a DEL or CHECK needs; the ADD's own arguments come from the cache.
#[derive(Debug, Clone, Default)]
pub struct DetachRequest {
    /// The network name the container was attached to.
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
    /// The netns, if still known; a missing one is passed as empty.
    pub netns: Option<PathBuf>,
    /// The pod, used for CNI_ARGS only when nothing is cached.
    pub pod: Option<PodRef>,
}

/// A successful attachment.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// The network name.
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name in the container.
    pub ifname: String,
    /// The netns path.
    pub netns: PathBuf,
    /// What the plugins reported.
    pub result: CniResult,
}

impl Attachment {
    /// The container's addresses (no prefix), for a pod status or inspect.
    pub fn ips(&self) -> Vec<IpAddr> {
        self.result
            .container_ips()
            .iter()
            .map(|n| n.addr())
            .collect()
    }
}

/// An attachment as the cache knows it (also after a restart).
#[derive(Debug, Clone, PartialEq)]
pub struct CachedAttachment {
    /// The network name.
    pub network: String,
    /// The container ID.
    pub container_id: String,
    /// The interface name.
    pub ifname: String,
    /// The netns path the ADD was given.
    pub netns: PathBuf,
    /// `Adding` for a set-up a crash (or a failed cleanup) cut short:
    /// detach it.
    pub state: AttachState,
    /// The result, once added.
    pub result: Option<CniResult>,
}

/// Whether the node's default network can be used (the CRI's NetworkReady).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkStatus {
    /// A valid network config is loaded and its plugins are installed.
    Ready {
        /// The default network's name.
        network: String,
    },
    /// No usable network.
    NotReady {
        /// A short CamelCase reason ("NetworkPluginNotReady").
        reason: String,
        /// What is wrong, for a human.
        message: String,
    },
}

impl NetworkStatus {
    /// Whether it is [`NetworkStatus::Ready`].
    pub fn is_ready(&self) -> bool {
        matches!(self, NetworkStatus::Ready { .. })
    }
}

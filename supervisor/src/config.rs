//! berthd's configuration: a TOML file whose every key is also a flag
//! (`grpc.uid` is `--grpc-uid`), checked whole before berthd starts.
//!
//! Each error is one line naming the file, the line and what is wrong, so
//! `berthd --config FILE` and `berthd config check FILE` can print it as is.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where berthd looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

/// The snapshotters berthd serves (the first is the default).
pub const SNAPSHOTTERS: &[&str] = &["overlayfs", "native"];

/// The longest path a unix socket address can hold (`sun_path` less its
/// terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Everything berthd can be told; every field has a default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Persistent data: blobs, metadata, snapshots.
    pub root: PathBuf,
    /// Runtime state: shim sockets, bundles, fifos.
    pub state: PathBuf,
    /// The gRPC unix socket.
    pub address: PathBuf,
    /// `error`, `warn`, `info`, `debug`, `trace` (berth's own crates; the
    /// transport and storage crates stay at `info`) or a full tracing
    /// filter such as `info,berth_supervisor=trace,h2=debug`.
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Snapshotter used when a client names none.
    pub default_snapshotter: String,
    /// OCI runtime binary used when a container's options name none.
    pub runtime_binary: String,
    /// Registry hosts (`host[:port]`) pulled from and pushed to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Extra CA file (PEM) per registry host, trusted on top of the system roots.
    pub registry_ca_files: BTreeMap<String, PathBuf>,
    /// Directory of per-registry `HOST/hosts.toml` files (containerd's
    /// layout: mirrors, plain-HTTP endpoints, CAs); a missing directory or
    /// host means the registry is reached directly.
    pub registry_config_path: PathBuf,
    /// The gRPC socket's owner.
    pub grpc: Grpc,
    /// `IP:PORT` serving Prometheus metrics at `/v1/metrics` and `/healthz`
    /// over HTTP (e.g. `127.0.0.1:1338`); empty: off.
    pub metrics_address: String,
    /// The Kubernetes CRI (`[cri]`).
    pub cri: CriConfig,
    /// berthd's own (Docker-style) networks (`[network]`).
    pub network: NetworkConfig,
}

/// The `[network]` table: berthd's own bridge networks (`berthctl network`,
/// `berthctl run --network`). Plugins come from `[cri] cni_bin_dirs`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// The bridge device of the default network `bridge`.
    pub default_bridge: String,
    /// The default network's subnet.
    pub default_subnet: String,
    /// Where `network create` without `--subnet` takes a free /24 from.
    pub subnet_pool: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            default_bridge: "berth0".into(),
            default_subnet: "172.30.0.0/16".into(),
            subnet_pool: "172.31.0.0/16".into(),
        }
    }
}

/// The `[cri]` table: what the Kubernetes CRI adapter needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct CriConfig {
    /// Image whose process holds a pod's shared namespaces where one is
    /// needed; pulled on first use and pinned.
    pub sandbox_image: String,
    /// Directories searched, in order, for CNI plugin binaries.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// Directory of CNI network configs; the first (sorted) is used.
    pub cni_conf_dir: PathBuf,
    /// Clamp a container's `oom_score_adj` to no less than berthd's own
    /// (for hosts where lowering it is refused, even for root).
    pub restrict_oom_score_adj: bool,
    /// Address the streaming server (exec, attach, port-forward) listens on.
    pub stream_address: String,
    /// Its port; 0 picks any free port.
    pub stream_port: u16,
    /// Serve it over TLS with a self-signed certificate made at start-up
    /// (URLs are then `https://`; the certificate is written to
    /// `STATE/.cri/stream.crt`).
    pub stream_tls: bool,
}

impl Default for CriConfig {
    fn default() -> Self {
        Self {
            sandbox_image: "registry.k8s.io/pause:3.10".into(),
            cni_bin_dirs: vec!["/usr/lib/cni".into(), "/opt/cni/bin".into()],
            cni_conf_dir: "/etc/cni/net.d".into(),
            restrict_oom_score_adj: false,
            stream_address: "127.0.0.1".into(),
            stream_port: 0,
            stream_tls: false,
        }
    }
}

/// `[grpc]`: who owns the socket (mode 0660), as in containerd's config:
/// members of `gid` may call berthd.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Grpc {
    /// Owner uid of the socket.
    pub uid: u32,
    /// Owner gid of the socket.
    pub gid: u32,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: "/var/lib/berth".into(),
            state: "/run/berth".into(),
            address: "/run/berth/berthd.sock".into(),
            log_level: "info".into(),
            log_format: LogFormat::Text,
            default_snapshotter: SNAPSHOTTERS[0].into(),
            runtime_binary: "runc".into(),
            insecure_registries: Vec::new(),
            registry_ca_files: BTreeMap::new(),
            registry_config_path: "/etc/berth/certs.d".into(),
            grpc: Grpc::default(),
            metrics_address: String::new(),
            cri: CriConfig::default(),
            network: NetworkConfig::default(),
        }
    }
}

/// Why a configuration cannot be used. Each is one line, complete (no
/// source to append).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("config {}: cannot read it: {reason}", path.display())]
    Read {
        /// the file
        path: PathBuf,
        /// why, from the OS
        reason: String,
    },
    /// The file is not TOML, or a key or value does not fit.
    #[error("config {}{}: {message}", path.display(), at.as_deref().map(|a| format!(", {a}")).unwrap_or_default())]
    Parse {
        /// the file
        path: PathBuf,
        /// `line N (text)` when known
        at: Option<String>,
        /// what the parser said
        message: String,
    },
    /// A value parses but cannot work.
    #[error("{}{key}: {message}", source_prefix(.path.as_deref()))]
    Invalid {
        /// the file, when the value came from one
        path: Option<PathBuf>,
        /// the key (or flag) at fault
        key: String,
        /// what is wrong with it
        message: String,
    },
}

fn source_prefix(path: Option<&Path>) -> String {
    path.map(|p| format!("config {}: ", p.display()))
        .unwrap_or_default()
}

impl Error {
    /// An invalid value for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: None,
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Config {
    /// Loads `path`; a missing file at the default path means defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, Error> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default())
            }
            Err(e) => {
                return Err(Error::Read {
                    path,
                    reason: io_reason(&e),
                })
            }
        };
        Self::parse(&text, &path)
    }

    /// Parses a config document; `path` only names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Parse {
            path: path.to_path_buf(),
            at: e.span().map(|s| where_in(text, s.start)),
            message: one_line(e.message()),
        })
    }

    /// Checks what parsing cannot: paths absolute, the socket path short
    /// enough, a known snapshotter, a runtime named, registry hosts and CA
    /// files usable. (The log level is checked where logging is set up.)
    pub fn validate(&self) -> Result<(), Error> {
        for (key, p) in [
            ("root", &self.root),
            ("state", &self.state),
            ("address", &self.address),
        ] {
            if !p.is_absolute() {
                return Err(Error::invalid(
                    key,
                    format!("{}: must be an absolute path", p.display()),
                ));
            }
        }
        let len = self.address.as_os_str().len();
        if len > MAX_SOCKET_PATH {
            return Err(Error::invalid(
                "address",
                format!(
                    "{}: {len} bytes, longer than a unix socket path can be ({MAX_SOCKET_PATH})",
                    self.address.display()
                ),
            ));
        }
        if !SNAPSHOTTERS.contains(&self.default_snapshotter.as_str()) {
            return Err(Error::invalid(
                "default_snapshotter",
                format!(
                    "{:?}: unknown (berthd serves {})",
                    self.default_snapshotter,
                    SNAPSHOTTERS.join(", ")
                ),
            ));
        }
        if self.runtime_binary.trim().is_empty() {
            return Err(Error::invalid(
                "runtime_binary",
                "must name a runtime (runc, crun or a path)",
            ));
        }
        for host in self
            .insecure_registries
            .iter()
            .chain(self.registry_ca_files.keys())
        {
            if host.is_empty() || host.contains('/') || host.contains(char::is_whitespace) {
                return Err(Error::invalid(
                    "insecure_registries",
                    format!("{host:?}: expected host[:port], without a scheme or path"),
                ));
            }
        }
        if !self.metrics_address.is_empty()
            && self
                .metrics_address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(Error::invalid(
                "metrics_address",
                format!(
                    "{:?}: expected IP:PORT, such as 127.0.0.1:1338 (or empty: off)",
                    self.metrics_address
                ),
            ));
        }
        for (key, v) in [
            ("network.default_subnet", &self.network.default_subnet),
            ("network.subnet_pool", &self.network.subnet_pool),
        ] {
            if v.parse::<ipnet::IpNet>().is_err() {
                return Err(Error::invalid(
                    key,
                    format!("{v:?}: expected a CIDR such as 172.30.0.0/16"),
                ));
            }
        }
        for (host, file) in &self.registry_ca_files {
            if let Err(e) = std::fs::File::open(file) {
                return Err(Error::invalid(
                    format!("registry_ca_files.{host:?}"),
                    format!("{}: {}", file.display(), io_reason(&e)),
                ));
            }
        }
        Ok(())
    }

    /// The defaults as a TOML document (`berthd config default`).
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Self::default()).expect("default config serialises")
    }
}

/// Names the file an [`Error::Invalid`] came from.
pub fn in_file(e: Error, file: &Path) -> Error {
    match e {
        Error::Invalid { key, message, .. } => Error::Invalid {
            path: Some(file.to_path_buf()),
            key,
            message,
        },
        other => other,
    }
}

/// `line N (text of the line)` for a byte offset into `text`.
fn where_in(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_no = text[..offset].matches('\n').count() + 1;
    let line = text.lines().nth(line_no - 1).unwrap_or("").trim();
    if line.is_empty() {
        format!("line {line_no}")
    } else {
        format!("line {line_no} ({line})")
    }
}

/// An I/O error's text without the `(os error N)` suffix.
fn io_reason(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_unknown_keys_are_refused() {
        let text = Config::default_toml();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(back, Config::default());
        assert!(toml::from_str::<Config>("rooot = \"/x\"").is_err());
        let partial: Config = toml::from_str("root = \"/x\"").unwrap();
        assert_eq!(partial.root, PathBuf::from("/x"));
        assert_eq!(partial.state, Config::default().state);
        Config::default().validate().unwrap();
    }

    #[test]
    fn errors_are_one_line_naming_file_line_and_key() {
        let p = Path::new("/etc/b.toml");
        let e = Config::parse("root = \"/x\"\nrooot = \"/y\"\n", p).unwrap_err();
        let s = e.to_string();
        assert!(
            s.starts_with("config /etc/b.toml, line 2 (rooot = \"/y\"): unknown field `rooot`"),
            "{s}"
        );
        assert_eq!(s.lines().count(), 1, "{s}");
        let s = Config::parse("log_format = \"xml\"", p)
            .unwrap_err()
            .to_string();
        assert!(
            s.contains("line 1 (log_format = \"xml\")") && s.contains("xml"),
            "{s}"
        );
        let s = Config::parse("[grpc]\ngid = -1\n", p)
            .unwrap_err()
            .to_string();
        assert!(s.contains("line 2 (gid = -1)"), "{s}");
        let c = Config::parse("[grpc]\ngid = 42\n", p).unwrap();
        assert_eq!(c.grpc, Grpc { uid: 0, gid: 42 });
        let s = Config::load(Some(Path::new("/nonexistent/b.toml")))
            .unwrap_err()
            .to_string();
        assert_eq!(
            s,
            "config /nonexistent/b.toml: cannot read it: No such file or directory"
        );
    }

    #[test]
    fn validate_names_the_key() {
        let c = Config {
            root: "rel".into(),
            ..Config::default()
        };
        let s = in_file(c.validate().unwrap_err(), Path::new("/c.toml")).to_string();
        assert_eq!(s, "config /c.toml: root: rel: must be an absolute path");
        let c = Config {
            default_snapshotter: "zfs".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("zfs"));
        let c = Config {
            insecure_registries: vec!["http://x".into()],
            ..Config::default()
        };
        assert!(c.validate().is_err());
        let c = Config {
            address: PathBuf::from(format!("/{}", "a".repeat(120))),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("address: "));
        let c = Config {
            metrics_address: "localhost".into(),
            ..Config::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("metrics_address: \"localhost\": expected IP:PORT"));
        let c = Config {
            metrics_address: "127.0.0.1:1338".into(),
            ..Config::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn cri_keys_are_the_documented_ones() {
        let text = Config::default_toml();
        for line in [
            "registry_config_path = \"/etc/berth/certs.d\"",
            "[cri]",
            "sandbox_image = \"registry.k8s.io/pause:3.10\"",
            "cni_conf_dir = \"/etc/cni/net.d\"",
            "restrict_oom_score_adj = false",
            "stream_address = \"127.0.0.1\"",
            "stream_port = 0",
            "stream_tls = false",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        let c: Config = toml::from_str(
            "registry_config_path = \"/d\"\n[cri]\nrestrict_oom_score_adj = true\nstream_port = 10010\ncni_bin_dirs = [\"/x\"]\n",
        )
        .unwrap();
        assert_eq!(c.registry_config_path, PathBuf::from("/d"));
        assert!(c.cri.restrict_oom_score_adj);
        assert_eq!(c.cri.stream_port, 10010);
        assert_eq!(c.cri.cni_bin_dirs, vec![PathBuf::from("/x")]);
        assert_eq!(c.cri.sandbox_image, CriConfig::default().sandbox_image);
        assert!(toml::from_str::<Config>("[cri]\nsandbox = \"x\"").is_err());
    }
}

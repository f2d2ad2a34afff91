//! berthd's configuration: TOML file keys mirror the command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where berthd looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

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
    /// `error`, `warn`, `info`, `debug`, `trace` or a tracing filter.
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
    pub registry_ca_files: std::collections::BTreeMap<String, PathBuf>,
    /// Directory of per-registry `HOST/hosts.toml` files (containerd's
    /// layout: mirrors, plain-HTTP endpoints, CAs); a missing directory or
    /// host means the registry is reached directly.
    pub registry_config_path: PathBuf,
    /// The Kubernetes CRI (`[cri]`).
    pub cri: CriConfig,
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
        }
    }
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
            default_snapshotter: "overlayfs".into(),
            runtime_binary: "runc".into(),
            insecure_registries: Vec::new(),
            registry_ca_files: Default::default(),
            registry_config_path: "/etc/berth/certs.d".into(),
            cri: CriConfig::default(),
        }
    }
}

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the file could not be read
    #[error("reading config {path}: {source}")]
    Read {
        /// the file
        path: PathBuf,
        /// the cause
        source: std::io::Error,
    },
    /// the file is not valid TOML for [`Config`]
    #[error("parsing config {path}: {source}")]
    Parse {
        /// the file
        path: PathBuf,
        /// the cause
        source: toml::de::Error,
    },
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
            Err(source) => return Err(Error::Read { path, source }),
        };
        toml::from_str(&text).map_err(|source| Error::Parse { path, source })
    }

    /// The defaults as a TOML document (`berthd config default`).
    pub fn default_toml() -> String {
        toml::to_string_pretty(&Self::default()).expect("default config serialises")
    }
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

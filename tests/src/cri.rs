//! A Kubernetes CRI client for the end-to-end tests: the `k8s-cri` crate's
//! generated `runtime.v1` clients over berthd's unix socket, and a berthd
//! started with a `[cri]` config of the test's choosing.

use std::path::{Path, PathBuf};

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::Berthd;

/// The two CRI services on one connection.
#[derive(Clone)]
pub struct CriClient {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub images: ImageServiceClient<Channel>,
}

impl CriClient {
    /// Connects to the CRI on `socket` (berthd's own socket).
    pub async fn connect(socket: &Path) -> Self {
        let channel = crate::grpc::channel(socket).await;
        Self {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        }
    }
}

/// A berthd with a config file holding the given `[cri]` table and
/// top-level keys, on temp dirs (removed with it).
pub struct CriDaemon {
    /// The daemon (dropped first: it stops and cleans up its dir).
    pub berthd: Berthd,
    /// Holds the config file and what the test puts beside it (CNI confs).
    pub dir: tempfile::TempDir,
}

impl CriDaemon {
    /// Starts berthd with `config` (TOML) as its config file. `config` may
    /// name `{dir}`, replaced by this daemon's config directory.
    pub fn start(config: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir()
            .expect("temp dir");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write config");
        let berthd = Berthd::start_with(&["--config", path.to_str().unwrap()]);
        Self { berthd, dir }
    }

    /// The config directory (for CNI confs and the like).
    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A CRI client on this daemon.
    pub async fn client(&self) -> CriClient {
        CriClient::connect(&self.berthd.address()).await
    }
}

//! The Kubernetes CRI (`runtime.v1` RuntimeService and ImageService): a
//! second adapter over berthd's domain, as containerd's CRI plugin sits over
//! containerd's own services. It is served on berthd's socket beside the
//! containerd API, and every CRI object lives in the containerd namespace
//! [`NAMESPACE`], so `ctr -n k8s.io containers ls` shows pods and containers.
//!
//! Shape (containerd's and CRI-O's): one file per RPC group adding methods
//! to [`Cri`]; `runtime_service.rs` and `image_service.rs` only route the
//! generated traits to them; `helpers.rs` holds the steps several RPCs
//! share; `convert/` turns CRI configs into an OCI runtime spec and pod
//! files without touching the system.

mod container_create;
pub use container_create::CREATE_LEASE_PREFIX;
mod container_run;
mod container_status;
mod container_update;
pub mod convert;
mod events;
mod exec_sync;
mod helpers;
mod image_resolve;
mod image_service;
mod images;
pub mod metadata;
mod pid_holder;
mod runtime_info;
mod runtime_service;
mod sandbox_run;
mod sandbox_status;
mod sandbox_stop;
mod spec_inputs;
pub mod state;
mod stats;
pub mod streaming;

use std::sync::{Arc, Mutex};

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;

use crate::config::CriConfig;
use crate::containers::Containers;

/// The containerd namespace every CRI object lives in (containerd's choice,
/// which tools such as `ctr -n k8s.io` and `nerdctl -n k8s.io` rely on).
pub const NAMESPACE: &str = "k8s.io";

/// The CRI's dir under berthd's state dir (see [`Cri::state_dir`]).
pub const STATE_DIR: &str = ".cri";

/// The CRI API version served.
pub const API_VERSION: &str = "v1";

/// The CRI adapter. Cheap to clone; one per daemon.
#[derive(Clone)]
pub struct Cri {
    inner: Arc<Inner>,
}

struct Inner {
    config: CriConfig,
    /// The domain services berthd's other adapters use too.
    deps: Deps,
    /// The pod CIDR the kubelet last gave through UpdateRuntimeConfig.
    pod_cidr: Mutex<String>,
    /// CNI: the pods' networks and the node's network status.
    networks: crate::network::Networks,
    /// Pods and containers, rebuilt from the metadata store at start.
    stores: state::Stores,
    /// One writer of container metadata at a time (each writes the latest).
    persist: tokio::sync::Mutex<()>,
    /// The last CPU sample of each container and pod (for CPU rates).
    cpu_samples: stats::CpuSamples,
    /// CRI container events, to every GetContainerEvents caller.
    events: tokio::sync::broadcast::Sender<k8s_cri::v1::ContainerEventResponse>,
    /// The streaming server's URLs handed out and not used yet.
    tokens: streaming::Tokens,
}

/// The domain services the CRI calls, handed over by the composition root.
#[derive(Clone)]
pub struct Deps {
    /// Container records (pods and CRI containers are records in `k8s.io`).
    pub containers: Containers,
    /// Tasks (a CRI container's processes).
    pub tasks: crate::tasks::Tasks,
    /// Snapshots (containers' rootfs).
    pub snapshots: crate::snapshots::Snapshots,
    /// Image records.
    pub images: crate::images::Images,
    /// Blobs (manifests and configs).
    pub content: crate::content::ContentStore,
    /// Registry pulls.
    pub transfers: crate::registry::inflight::Transfers,
    /// Leases (a container's rootfs is held by one while it is created).
    pub leases: crate::leases::Leases,
    /// The event bus (task starts, exits and OOMs).
    pub events: crate::events::Events,
    /// berthd's persistent root.
    pub root: std::path::PathBuf,
    /// berthd's state dir.
    pub state: std::path::PathBuf,
}

impl Cri {
    /// The adapter over `deps`, configured by berthd's `[cri]` table, with
    /// its pods and containers loaded from the `k8s.io` records.
    pub fn open(config: CriConfig, deps: Deps) -> Result<Self, crate::containers::Error> {
        let stores = state::load(deps.containers.list(NAMESPACE, &[])?);
        let networks = crate::network::Networks::new(crate::network::NetworkOptions {
            conf_dir: config.cni_conf_dir.clone(),
            bin_dirs: config.cni_bin_dirs.clone(),
            cache_dir: deps.root.join("cri").join("cni-cache"),
            plugin_timeout: crate::network::DEFAULT_PLUGIN_TIMEOUT,
        });
        tracing::info!(
            sandboxes = stores.sandboxes.list().len(),
            containers = stores.containers.list().len(),
            "cri: state loaded"
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                deps,
                pod_cidr: Mutex::new(String::new()),
                networks,
                stores,
                persist: tokio::sync::Mutex::new(()),
                cpu_samples: Default::default(),
                events: events::channel(),
                tokens: Default::default(),
            }),
        })
    }

    /// `runtime.v1.RuntimeService`, ready to add to the router.
    pub fn runtime_server(&self) -> RuntimeServiceServer<Self> {
        RuntimeServiceServer::new(self.clone())
    }

    /// `runtime.v1.ImageService`, ready to add to the router.
    pub fn image_server(&self) -> ImageServiceServer<Self> {
        ImageServiceServer::new(self.clone())
    }

    /// The CRI's pods and containers by state, for the metrics.
    pub fn figures(&self) -> crate::metrics::CriFigures {
        let mut f = crate::metrics::CriFigures::default();
        for p in self.inner.stores.sandboxes.list() {
            let s = if p.ready { "ready" } else { "notready" };
            *f.pods.entry(s.to_string()).or_default() += 1;
        }
        for s in self.container_states() {
            let s = match s {
                k8s_cri::v1::ContainerState::ContainerCreated => "created",
                k8s_cri::v1::ContainerState::ContainerRunning => "running",
                k8s_cri::v1::ContainerState::ContainerExited => "exited",
                k8s_cri::v1::ContainerState::ContainerUnknown => "unknown",
            };
            *f.containers.entry(s.to_string()).or_default() += 1;
        }
        f
    }

    /// The CRI's own dir under berthd's state dir: `STATE/.cri` (a name no
    /// containerd namespace can have, so the tasks' bundle scan and orphan
    /// sweep at start-up never take it for theirs).
    pub(super) fn state_dir(&self) -> std::path::PathBuf {
        self.inner.deps.state.join(STATE_DIR)
    }

    fn config(&self) -> &CriConfig {
        &self.inner.config
    }
}

//! The composition root: builds berthd's domain services from its config
//! and wires each to the narrow set of neighbours it needs. Nothing else
//! knows how they are wired; the gRPC adapters get the finished
//! [`App`] and call into it.
//!
//! Build order follows the arrows: metadata and blobs first, the
//! snapshotters, the collector over them, the snapshots service (which
//! holds the collector's guard), then images, tasks and containers, and the
//! registry transfers on top.

use tokio_util::sync::CancellationToken;

use crate::containers::{self, Containers};
use crate::content::ContentStore;
use crate::cri::{self, Cri};
use crate::engine::{self, Engine};
use crate::events::Events;
use crate::gc::{self, Gc};
use crate::images::{self, Archives, Differ, Images, Unpacker};
use crate::leases::Leases;
use crate::metrics::Metrics;
use crate::namespaces::Namespaces;
use crate::netman::{self, NetworkManager};
use crate::registry::{self, inflight::Transfers};
use crate::snapshots::{self, Snapshots, Snapshotters};
use crate::store::{self, Store};
use crate::tasks::{self, Tasks};
use crate::volumes::Volumes;
use crate::Config;

/// Why the domain could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the metadata store failed to open
    #[error(transparent)]
    Store(#[from] store::Error),
    /// the snapshotters failed to open
    #[error("opening snapshotters: {0}")]
    Snapshots(#[from] snapshots::Error),
    /// the content store failed to open
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// a `[network]` key is not a CIDR
    #[error("[network]: {0}")]
    Network(String),
    /// the CRI's records could not be read
    #[error("loading the CRI's pods and containers: {0}")]
    Cri(#[from] crate::containers::Error),
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, Error> {
    s.parse()
        .map_err(|_| Error::Network(format!("{s:?} is not a CIDR")))
}

/// berthd's domain services, built once and shared by every adapter.
/// Cheap to clone.
#[derive(Clone)]
pub struct App {
    /// Metadata (for the flush at shutdown).
    pub store: Store,
    /// The event bus.
    pub events: Events,
    /// The collector.
    pub gc: Gc,
    /// Namespaces.
    pub namespaces: Namespaces,
    /// Leases.
    pub leases: Leases,
    /// Blobs and ingests.
    pub content: ContentStore,
    /// Snapshots (lease, GC guard and events around every snapshotter call).
    pub snapshots: Snapshots,
    /// Layer apply and diff.
    pub differ: Differ,
    /// Image records.
    pub images: Images,
    /// Archive import and export.
    pub archives: Archives,
    /// Registry pulls and pushes.
    pub transfers: Transfers,
    /// Containers.
    pub containers: Containers,
    /// Tasks.
    pub tasks: Tasks,
    /// The Kubernetes CRI adapter, over the services above.
    pub cri: Cri,
    /// berthd's own networks (Docker's bridge driver over CNI).
    pub networks: NetworkManager,
    /// The Docker-style container workflow (names, logs, restart
    /// policies, networks and published ports).
    pub engine: Engine,
    /// berthd's volumes (Docker's local driver).
    pub volumes: Volumes,
    /// The persistent root.
    pub root: std::path::PathBuf,
    /// The metrics registry: services report through handles taken from
    /// it (the CRI adapter through [`Metrics::cri`]); the metrics
    /// endpoint renders it.
    pub metrics: Metrics,
}

impl App {
    /// Opens the stores under `config.root` and builds every service.
    pub fn open(config: &Config) -> Result<Self, Error> {
        let store = Store::open(&config.root)?;
        let metrics = Metrics::new();
        let events = Events::new();
        let content = ContentStore::open(&config.root, store.clone())?;
        let backends = Snapshotters::open(&config.root, &config.default_snapshotter)?;
        let gc = Gc::new(gc::Deps {
            store: store.clone(),
            content: content.clone(),
            snapshotters: backends.handles(),
        })
        .reporting_to(metrics.gc());
        let snapshots = Snapshots::new(
            backends,
            snapshots::Deps {
                store: store.clone(),
                gc: gc.clone(),
                events: events.clone(),
            },
        );
        let images = Images::new(images::service::Deps {
            store: store.clone(),
            gc: gc.clone(),
            events: events.clone(),
        });
        let unpacker = Unpacker::new(content.clone(), snapshots.clone(), gc.clone());
        let archives = Archives::new(
            images::import::Deps {
                store: store.clone(),
                content: content.clone(),
                gc: gc.clone(),
                images: images.clone(),
                unpacker: unpacker.clone(),
            },
            images::export::Deps {
                content: content.clone(),
                images: images.clone(),
            },
        );
        let transfers = Transfers::new(registry::pull::Deps {
            content: content.clone(),
            store: store.clone(),
            options: registry::Options::from_config(config),
            images: images.clone(),
            unpacker: unpacker.clone(),
            metrics: metrics.pull(),
        });
        let tasks = Tasks::new(
            tasks::Config {
                state: config.state.clone(),
                address: config.address.clone(),
                default_runtime: config.runtime_binary.clone(),
                // Pods' and containers' network namespaces, the CRI's pod
                // namespaces, berthd's networks and the engine's fifos.
                foreign: ["netns", "cri", "networks", "engine"]
                    .iter()
                    .map(|d| config.state.join(d))
                    .collect(),
            },
            tasks::Deps {
                store: store.clone(),
                events: events.clone(),
            },
        );
        let containers = Containers::new(containers::Deps {
            store: store.clone(),
            events: events.clone(),
            gc: gc.clone(),
            tasks: tasks.clone(),
        });
        let leases = Leases::new(store.clone(), gc.clone());
        let cri = Cri::open(
            config.cri.clone(),
            cri::Deps {
                containers: containers.clone(),
                tasks: tasks.clone(),
                snapshots: snapshots.clone(),
                images: images.clone(),
                content: content.clone(),
                transfers: transfers.clone(),
                leases: leases.clone(),
                events: events.clone(),
                root: config.root.clone(),
                state: config.state.clone(),
            },
        )?;
        let source = cri.clone();
        metrics.cri().set_source(move || source.figures());
        let networks = NetworkManager::new(
            netman::Options {
                conf_dir: config.root.join("networks").join("conf"),
                cache_dir: config.state.join("networks").join("cache"),
                ipam_dir: config.state.join("networks").join("ipam"),
                bin_dirs: config.cri.cni_bin_dirs.clone(),
                default_bridge: config.network.default_bridge.clone(),
                default_subnet: parse_net(&config.network.default_subnet)?,
                pool: parse_net(&config.network.subnet_pool)?,
            },
            store.clone(),
        );
        let differ = Differ::new(content.clone(), config.root.clone());
        let volumes = Volumes::new(config.root.join("volumes"), store.clone());
        let engine = Engine::new(
            engine::Config {
                root: config.root.clone(),
                state: config.state.clone(),
                default_network: netman::DEFAULT_NETWORK.into(),
                default_snapshotter: config.default_snapshotter.clone(),
            },
            engine::Deps {
                store: store.clone(),
                images: images.clone(),
                content: content.clone(),
                snapshots: snapshots.clone(),
                unpacker,
                transfers: transfers.clone(),
                containers: containers.clone(),
                tasks: tasks.clone(),
                leases: leases.clone(),
                networks: networks.clone(),
                volumes: volumes.clone(),
                differ: differ.clone(),
            },
        );
        Ok(Self {
            cri,
            networks,
            engine,
            volumes,
            namespaces: Namespaces::new(store.clone(), snapshots.clone()),
            leases,
            differ,
            store,
            events,
            gc,
            content,
            snapshots,
            images,
            archives,
            transfers,
            containers,
            tasks,
            root: config.root.clone(),
            metrics,
        })
    }

    /// Reattaches to the shims of a previous run and drops the leases of
    /// imports and CRI creates it left (before serving); a collection then
    /// reclaims what only they held. Pull leases stay: a retried pull
    /// resumes from the blobs they hold, and they expire by themselves
    /// (24 h, as containerd's).
    pub async fn recover(&self) {
        self.tasks.recover().await;
        self.engine.recover().await;
        let prefixes = [
            crate::images::import::LEASE_PREFIX,
            crate::cri::CREATE_LEASE_PREFIX,
            crate::engine::CREATE_LEASE_PREFIX,
            crate::engine::COMMIT_LEASE_PREFIX,
        ];
        match crate::store::leases::delete_with_prefix(&self.store, &prefixes).await {
            Ok(gone) if gone.is_empty() => {}
            Ok(gone) => {
                for (namespace, lease) in &gone {
                    tracing::info!(
                        namespace,
                        lease,
                        "deleted lease of an interrupted import or pull"
                    );
                }
                self.gc.schedule();
            }
            Err(e) => {
                tracing::warn!(error = %e, "clearing leases of interrupted imports and pulls")
            }
        }
    }

    /// Starts the background collector and the CRI's event follower,
    /// until `stop`.
    pub fn start(&self, stop: CancellationToken) {
        self.cri.spawn(stop.clone());
        if let Err(e) = self.cri.spawn_streaming(stop.clone()) {
            tracing::error!(error = %e, "cri: the streaming server cannot listen; exec and port-forward will fail");
        }
        self.gc.spawn(stop);
    }
}

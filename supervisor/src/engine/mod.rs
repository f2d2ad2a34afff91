//! The Docker-style container workflow, done by berthd so that every
//! client gets it: containers with a name unique in their namespace (or
//! an ID prefix), created from an image (pulled when missing, short names
//! expanded), started on berthd's networks with published ports and a log
//! file the shim writes, stopped, restarted by their policy, removed on
//! exit. One file per verb adds to `impl Engine`.
//!
//! # Over the domain below
//!
//! A container is an ordinary containerd container record (its ID, a
//! snapshot keyed by that ID, an OCI spec) plus the engine's own record
//! ([`Record`]: config, image, state) in the metadata store's tree
//! `berth.containers`. Its runs are tasks ([`crate::tasks`]); its networks
//! are [`crate::netman`]'s; its files (log, hosts, resolv.conf, hostname)
//! live in `ROOT/containers/ID`.
//!
//! # Contract
//!
//! - Lifecycle calls on one container (start, stop, restart, kill, pause,
//!   remove, connect) are serialised by its own lock; calls on different
//!   containers run side by side.
//! - Each run is watched by a monitor (see `monitor`): when the task
//!   exits, the monitor deletes it, detaches its networks, frees its
//!   ports, records the exit, then removes the container (`auto_remove`)
//!   or restarts it by its policy, after a back-off. Callers waiting on a
//!   run (stop, wait, attach) are told only after that, so "stopped" means
//!   no task, no network attachment and no port left.
//! - State is durable before a call returns. After berthd restarts (kill
//!   -9 included) every record is loaded again, running containers are
//!   watched again (they kept running, with their addresses and ports),
//!   exits during the downtime are handled as if seen live, and
//!   `always`/`unless-stopped` containers are started.
//! - A create or start that fails leaves nothing of what it began (no
//!   snapshot, record, task, attachment or port).

mod attach;
mod changes;
mod commit;
mod connect;
mod copy;
mod create;
mod error;
mod exec;
mod files;
mod fsdiff;
mod image;
mod logs;
mod model;
mod monitor;
mod names;
mod ports;
mod records;
mod recover;
mod remove;
mod rootfs;
mod rootfs_sys;
mod security;
mod spec;
mod start;
mod stats;
mod stop;
mod users;
mod view;
mod volumes;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

pub use attach::{AttachInput, AttachOutput};
pub use commit::{CommitRequest, Committed, COMMIT_LEASE_PREFIX};
pub use create::{CreateRequest, Created, CREATE_LEASE_PREFIX};
pub use error::Error;
pub use exec::{ExecInput, ExecOutput, ExecRequest};
pub use fsdiff::FsChange;
pub use image::normalise_reference;
pub use logs::{LogEntry, LogQuery, LogStream};
pub use model::{
    ContainerConfig, DeviceSpec, EndpointState, LogOptions, MountSpec, PortSpec, PullPolicy,
    Record, RestartPolicy, State, Status, Ulimit,
};
pub use stats::{Sample, Top};
pub use view::{inspect_json, Filter};

use crate::containers::Containers;
use crate::content::ContentStore;
use crate::images::{Images, Unpacker};
use crate::leases::Leases;
use crate::netman::NetworkManager;
use crate::registry::inflight::Transfers;
use crate::snapshots::Snapshots;
use crate::store::Store;
use crate::tasks::Tasks;

pub use crate::netman::{HOST, NONE};

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the engine keeps things and what it defaults to.
#[derive(Debug, Clone)]
pub struct Config {
    /// berthd's root: containers' files go under `ROOT/containers`.
    pub root: PathBuf,
    /// berthd's state dir: network namespaces under `STATE/netns`, stdin
    /// fifos under `STATE/engine`.
    pub state: PathBuf,
    /// The network a container joins when it names none.
    pub default_network: String,
    /// The snapshotter used when a container names none.
    pub default_snapshotter: String,
}

/// What the engine needs from the rest of berthd.
#[derive(Clone)]
pub struct Deps {
    /// Metadata.
    pub store: Store,
    /// Image records.
    pub images: Images,
    /// Blobs (manifests and configs).
    pub content: ContentStore,
    /// Snapshots.
    pub snapshots: Snapshots,
    /// Unpacks an image that is present but not unpacked.
    pub unpacker: Unpacker,
    /// Registry pulls.
    pub transfers: Transfers,
    /// containerd container records.
    pub containers: Containers,
    /// Tasks.
    pub tasks: Tasks,
    /// Leases (held while a create is half done).
    pub leases: Leases,
    /// Networks.
    pub networks: NetworkManager,
    /// Volumes.
    pub volumes: crate::volumes::Volumes,
    /// Layer diffs (commit).
    pub differ: crate::images::Differ,
}

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    deps: Deps,
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
    /// Names taken by creates still running: (namespace, name).
    reserved: Mutex<std::collections::HashSet<(String, String)>>,
}

/// Where a container's runs are: bumped by every start and every exit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunMark {
    /// The current (or last) run, counted from 1; 0: never started.
    pub run: u64,
    /// Whether that run's task is alive.
    pub running: bool,
    /// Its exit code, once it ended.
    pub exit_code: i32,
    /// The container was removed (on exit, or by a user).
    pub removed: bool,
}

/// One container in memory: its record, its lifecycle lock, its runs,
/// the ports it holds and its stdin.
pub(crate) struct Slot {
    ns: String,
    id: String,
    rec: Mutex<Record>,
    op: tokio::sync::Mutex<()>,
    run: watch::Sender<RunMark>,
    ports: Mutex<Vec<ports::Held>>,
    stdin: Mutex<Option<Arc<std::fs::File>>>,
    /// Set by the first removal; later ones find nothing to do.
    removing: std::sync::atomic::AtomicBool,
    /// The last restart back-off.
    backoff: Mutex<std::time::Duration>,
    /// Its removal takes its anonymous volumes too (`rm -v`).
    remove_volumes: std::sync::atomic::AtomicBool,
}

impl Slot {
    fn new(ns: &str, rec: Record) -> Arc<Self> {
        let mark = RunMark {
            run: rec.state.runs,
            running: rec.state.status.is_running(),
            exit_code: rec.state.exit_code,
            removed: false,
        };
        Arc::new(Slot {
            ns: ns.to_string(),
            id: rec.id.clone(),
            rec: Mutex::new(rec),
            op: tokio::sync::Mutex::new(()),
            run: watch::Sender::new(mark),
            ports: Mutex::new(Vec::new()),
            stdin: Mutex::new(None),
            removing: Default::default(),
            backoff: Mutex::new(std::time::Duration::ZERO),
            remove_volumes: Default::default(),
        })
    }

    /// A copy of the record.
    pub(crate) fn record(&self) -> Record {
        self.rec.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn edit<T>(&self, f: impl FnOnce(&mut Record) -> T) -> T {
        f(&mut self.rec.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Engine {
    /// The engine over `deps`. Nothing is loaded until [`Engine::recover`].
    pub fn new(cfg: Config, deps: Deps) -> Self {
        Engine {
            inner: Arc::new(Inner {
                cfg,
                deps,
                slots: Mutex::new(HashMap::new()),
                reserved: Mutex::new(Default::default()),
            }),
        }
    }

    fn deps(&self) -> &Deps {
        &self.inner.deps
    }

    fn differ(&self) -> &crate::images::Differ {
        &self.inner.deps.differ
    }

    fn cfg(&self) -> &Config {
        &self.inner.cfg
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Arc<Slot>>> {
        self.inner.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every container of `ns`.
    fn all(&self, ns: &str) -> Vec<Arc<Slot>> {
        self.slots()
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|(_, s)| Arc::clone(s))
            .collect()
    }

    /// Every container of every namespace.
    fn everywhere(&self) -> Vec<Arc<Slot>> {
        self.slots().values().cloned().collect()
    }

    /// The container `what` names in `ns`: its full ID, its name, or a
    /// unique prefix of its ID.
    pub(crate) fn find(&self, ns: &str, what: &str) -> Result<Arc<Slot>> {
        let what = what.strip_prefix('/').unwrap_or(what);
        if what.is_empty() {
            return Err(Error::InvalidArgument(
                "container: a name or ID is required".into(),
            ));
        }
        let all = self.all(ns);
        if let Some(s) = all.iter().find(|s| s.id == what) {
            return Ok(Arc::clone(s));
        }
        if let Some(s) = all.iter().find(|s| s.record().name == what) {
            return Ok(Arc::clone(s));
        }
        let hits: Vec<_> = all.iter().filter(|s| s.id.starts_with(what)).collect();
        match hits.len() {
            1 => Ok(Arc::clone(hits[0])),
            0 => Err(Error::NotFound(format!("no such container: {what}"))),
            n => Err(Error::InvalidArgument(format!(
                "container {what:?}: the ID prefix matches {n} containers; give more of it"
            ))),
        }
    }

    /// Saves a slot's record, durably.
    async fn save(&self, slot: &Slot) -> Result<()> {
        let rec = slot.record();
        records::put(&self.deps().store, &slot.ns, &rec).await
    }

    /// Changes a slot's record and saves it.
    async fn update(&self, slot: &Slot, f: impl FnOnce(&mut Record)) -> Result<Record> {
        slot.edit(f);
        self.save(slot).await?;
        Ok(slot.record())
    }

    /// The container's record (for adapters: names, state).
    pub fn get(&self, ns: &str, what: &str) -> Result<Record> {
        Ok(self.find(ns, what)?.record())
    }

    /// The run watch of a container, for callers following its runs.
    pub fn runs(&self, ns: &str, what: &str) -> Result<watch::Receiver<RunMark>> {
        Ok(self.find(ns, what)?.run.subscribe())
    }

    /// The name of container `id` of `ns`, if the engine knows it.
    pub fn name_of(&self, ns: &str, id: &str) -> Option<String> {
        self.slots()
            .get(&(ns.to_string(), id.to_string()))
            .map(|s| s.record().name)
    }

    /// The namespace and name of container `id` in any namespace.
    pub fn owner_of(&self, id: &str) -> Option<(String, String)> {
        self.slots()
            .iter()
            .find(|((_, i), _)| i == id)
            .map(|((ns, _), s)| (ns.clone(), s.record().name))
    }
}

//! Thin gRPC adapters, one file per service: decode the request, call the
//! domain module, encode the reply. No logic lives here.

pub mod containers;
pub mod content;
pub mod convert;
pub mod diff;
pub mod events;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespaces;
pub mod registry;
pub mod rpc_log;
pub mod snapshots;
pub mod status;
pub mod tasks;
pub mod transfer;
pub mod version;

use tonic::{Request, Status};

use crate::store::Store;

/// What every service adapter may reach. Cheap to clone.
#[derive(Clone)]
pub struct Context {
    /// Metadata database.
    pub store: Store,
    /// Content store (blobs and ingests).
    pub content: crate::content::ContentStore,
    /// Persistent root directory.
    pub root: std::path::PathBuf,
    /// Runtime state directory.
    pub state: std::path::PathBuf,
    /// Snapshotters by name.
    pub snapshotters: crate::snapshots::Snapshotters,
    /// Garbage collector: its guard and trigger.
    pub gc: crate::gc::Gc,
    /// The event bus: `ctx.events.publish(ns, topic, &msg)`.
    pub events: crate::events::Events,
    /// The task table (one shim per task).
    pub tasks: crate::runtime::TaskManager,
}

/// The namespace of a call, from the `containerd-namespace` metadata key.
/// Missing: FailedPrecondition (as containerd); malformed: InvalidArgument.
#[allow(clippy::result_large_err)]
pub fn namespace<T>(req: &Request<T>) -> Result<String, Status> {
    let ns = req
        .metadata()
        .get(berth_api::namespace::GRPC_HEADER)
        .ok_or_else(|| Status::failed_precondition("namespace is required"))?;
    let ns = ns
        .to_str()
        .map_err(|_| Status::invalid_argument("namespace: not valid ASCII"))?;
    berth_api::identifiers::validate("namespace", ns)
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ns.to_string())
}

/// The filter strings of a List request, parsed.
#[allow(clippy::result_large_err)]
pub fn parse_filters(filters: &[String]) -> Result<crate::filters::Filter, Status> {
    crate::filters::Filter::parse(filters).map_err(|e| Status::invalid_argument(e.to_string()))
}

impl Context {
    /// Whether any snapshotter still holds snapshots in `ns` (a namespace
    /// with snapshots cannot be deleted).
    pub async fn namespace_has_snapshots(&self, ns: &str) -> Result<bool, Status> {
        Ok(self.snapshotters.namespace_has_snapshots(ns).await?)
    }

    /// Runs garbage collection: now (and waits for it) when `sync`, else
    /// soon, debounced, in the background.
    pub async fn collect_garbage(&self, sync: bool) -> Result<(), Status> {
        if sync {
            self.gc.run(self).await?;
        } else {
            self.gc.schedule();
        }
        Ok(())
    }
}

//! containerd v1 gRPC adapters (and Berth's own image services), one file
//! per service over the domain services of [`crate::app::App`]: decode the
//! request, make one domain call, encode the reply. Conversions live in
//! [`convert`], the one error map in [`status`], the wiring (and the
//! plugin list Introspection reports) in [`router`].

pub mod berth_containers;
pub mod berth_files;
pub mod berth_networks;
pub mod berth_volumes;
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
pub mod router;
pub mod rpc_log;
pub mod snapshots;
pub mod status;
pub mod tasks;
pub mod transfer;
pub mod version;

pub use router::router;

use tonic::{Request, Status};

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

/// The lease a call runs under (`containerd-lease` metadata), if any.
pub fn lease_of<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get(berth_api::lease::GRPC_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

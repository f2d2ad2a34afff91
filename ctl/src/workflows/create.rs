//! Creating a container from an image: a snapshot on the image's unpacked
//! chain (held by the container's own lease), an OCI spec built from the
//! image config and the options, and the container record. Everything made
//! is removed again when a later step fails.

use std::collections::HashMap;

use berth_api::oci::Platform;
use berth_api::services::containers::v1 as cpb;
use berth_api::services::leases::v1 as lpb;
use berth_api::services::snapshots::v1 as spb;

use super::containers::{container_lease, LEASE_LABEL};
use crate::client::Client;
use crate::error::{Error, Result, RpcContext};
use crate::resolve;
use crate::spec::{self, RunSpec, Users};

/// The runtime berthd maps to berth-shim.
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";

/// The snapshotter berthctl names when given none (`--snapshotter`,
/// `BERTH_SNAPSHOTTER`), as `ctr` names `overlayfs`: berthd, like
/// containerd, refuses a Snapshots call that names none.
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// What to create. `spec.id` is the container id, `spec.namespace` is
/// filled from the client.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    /// image name (as `images ls` shows it)
    pub image: String,
    /// the process and its limits, on top of the image config
    pub spec: RunSpec,
    /// runtime name ([`DEFAULT_RUNTIME`] when empty)
    pub runtime: String,
    /// OCI runtime binary for this container: runc, crun or a path
    pub runtime_binary: Option<String>,
    /// snapshotter ([`DEFAULT_SNAPSHOTTER`] when empty)
    pub snapshotter: String,
    /// platform of the image to run (this machine's when None)
    pub platform: Option<String>,
    /// container labels
    pub labels: HashMap<String, String>,
}

/// Creates the container described by `o`.
pub async fn create(client: &Client, o: &CreateOptions) -> Result<()> {
    let filled;
    let o = if o.snapshotter.is_empty() {
        filled = CreateOptions {
            snapshotter: DEFAULT_SNAPSHOTTER.into(),
            ..o.clone()
        };
        &filled
    } else {
        o
    };
    let id = o.spec.id.as_str();
    berth_api::identifiers::validate("container id", id)
        .map_err(|e| Error::Input(e.to_string()))?;
    let img = super::images::get(client, &o.image).await?;
    let platform = match &o.platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let target = resolve::descriptor(img.target.as_ref())?;
    let resolved = resolve::resolve(client, &target, &platform).await?;
    let chain = resolved
        .chain_id()
        .ok_or_else(|| Error::Input(format!("image {:?}: its config lists no layers", o.image)))?;
    let mut snaps = client.snapshots();
    snaps
        .stat(spb::StatSnapshotRequest {
            snapshotter: o.snapshotter.clone(),
            key: chain.clone(),
        })
        .await
        .with_context(|| {
            format!(
                "image {:?} is not unpacked in snapshotter {:?} (snapshot {chain})",
                o.image, o.snapshotter
            )
        })?;
    let image_user = resolved.config.config.as_ref().and_then(|c| c.user.clone());
    let user = o.spec.user.clone().or(image_user).filter(|u| !u.is_empty());
    let users = match user.as_deref() {
        Some(u) if spec::needs_users(u) => {
            let f = crate::rootfs::read_files(
                client,
                &o.snapshotter,
                &chain,
                &["etc/passwd", "etc/group"],
            )
            .await?;
            Users::parse(&f[0], &f[1])
        }
        _ => Users::default(),
    };
    let run = RunSpec {
        namespace: client.namespace().to_string(),
        ..o.spec.clone()
    };
    let exec = resolved.config.config.clone().unwrap_or_default();
    let spec = spec::build(&exec, &run, &users)?;

    ensure_namespace(client).await?;
    // The container's own lease holds its snapshot for the container's
    // lifetime (`containers rm` deletes it). containerd relies on the
    // container record alone to root the snapshot; the lease also keeps it
    // safe from a collector that runs between Prepare and Create.
    let mut leases = client.leases();
    let lease_id = container_lease(id);
    let lease = leases
        .create(lpb::CreateRequest {
            id: lease_id.clone(),
            labels: HashMap::from([(LEASE_LABEL.to_string(), id.to_string())]),
        })
        .await
        .with_context(|| format!("create lease {lease_id:?}"))?
        .into_inner()
        .lease
        .unwrap_or_default();
    let leased = client.with_lease(&lease.id)?;
    let result = async {
        leased
            .snapshots()
            .prepare(spb::PrepareSnapshotRequest {
                snapshotter: o.snapshotter.clone(),
                key: id.to_string(),
                parent: chain.clone(),
                labels: HashMap::new(),
            })
            .await
            .with_context(|| format!("prepare snapshot {id:?}"))?;
        let options = o.runtime_binary.as_ref().map(|b| {
            berth_api::runc::encode_options(&berth_api::runc::v1::Options {
                binary_name: b.clone(),
                ..Default::default()
            })
        });
        let runtime = if o.runtime.is_empty() {
            DEFAULT_RUNTIME.to_string()
        } else {
            o.runtime.clone()
        };
        let created = leased
            .containers()
            .create(cpb::CreateContainerRequest {
                container: Some(cpb::Container {
                    id: id.to_string(),
                    labels: o.labels.clone(),
                    image: o.image.clone(),
                    runtime: Some(cpb::container::Runtime {
                        name: runtime,
                        options,
                    }),
                    spec: Some(spec::to_any(&spec)?),
                    snapshotter: o.snapshotter.clone(),
                    snapshot_key: id.to_string(),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("create container {id:?}"));
        if created.is_err() {
            let _ = snaps
                .remove(spb::RemoveSnapshotRequest {
                    snapshotter: o.snapshotter.clone(),
                    key: id.to_string(),
                })
                .await;
        }
        created.map(|_| ())
    }
    .await;
    if result.is_err() {
        let _ = leases
            .delete(lpb::DeleteRequest {
                id: lease.id,
                sync: false,
            })
            .await;
    }
    result
}

/// Makes sure the namespace has a record, as containerd creates one
/// implicitly for anything stored in it: berthd's garbage collector walks
/// namespace records to find the containers that root their snapshots.
async fn ensure_namespace(client: &Client) -> Result<()> {
    use berth_api::services::namespaces::v1 as npb;
    let name = client.namespace().to_string();
    let r = client
        .namespaces()
        .create(npb::CreateNamespaceRequest {
            namespace: Some(npb::Namespace {
                name: name.clone(),
                labels: HashMap::new(),
            }),
        })
        .await;
    match r {
        Err(s) if s.code() != tonic::Code::AlreadyExists => Err(Error::Rpc {
            what: format!("create namespace {name:?}"),
            status: s,
        }),
        _ => Ok(()),
    }
}

//! Container records: read one, read its spec, remove one with everything
//! berthctl made for it (snapshot, lease, fifos).

use berth_api::services::containers::v1 as pb;
use berth_api::services::leases::v1 as lpb;
use berth_api::services::snapshots::v1 as spb;

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Label naming the container a berthctl lease belongs to.
pub const LEASE_LABEL: &str = "berthctl/container";

/// Gets one container record.
pub async fn get(client: &Client, id: &str) -> Result<pb::Container> {
    client
        .containers()
        .get(pb::GetContainerRequest { id: id.into() })
        .await
        .with_context(|| format!("get container {id:?}"))?
        .into_inner()
        .container
        .ok_or_else(|| Error::Protocol(format!("get container {id:?}: empty reply")))
}

/// The container's OCI spec as JSON.
pub fn spec_json(c: &pb::Container) -> Result<serde_json::Value> {
    match &c.spec {
        Some(any) => serde_json::from_slice(&any.value)
            .map_err(|e| Error::Protocol(format!("container {:?}: spec is not JSON: {e}", c.id))),
        None => Ok(serde_json::Value::Null),
    }
}

/// The id of the lease that holds container `id`'s snapshot.
/// (Long ids are hashed so the lease id stays a valid identifier.)
pub fn container_lease(id: &str) -> String {
    let name = format!("berthctl.container.{id}");
    if name.len() <= berth_api::identifiers::MAX_LEN {
        return name;
    }
    use sha2::Digest as _;
    let h = hex::encode(sha2::Sha256::digest(id.as_bytes()));
    format!("berthctl.container.{}", &h[..32])
}

/// Removes a container record, then (unless `keep_snapshot`) its
/// snapshot, and its lease and fifos. Its task must be gone.
pub async fn remove(client: &Client, id: &str, keep_snapshot: bool) -> Result<()> {
    let c = get(client, id).await?;
    client
        .containers()
        .delete(pb::DeleteContainerRequest { id: id.into() })
        .await
        .with_context(|| format!("remove container {id:?}"))?;
    if !keep_snapshot && !c.snapshot_key.is_empty() {
        let r = client
            .snapshots()
            .remove(spb::RemoveSnapshotRequest {
                snapshotter: c.snapshotter.clone(),
                key: c.snapshot_key.clone(),
            })
            .await;
        match r {
            Err(s) if s.code() != tonic::Code::NotFound => {
                return Err(Error::Rpc {
                    what: format!("remove snapshot {:?} of container {id:?}", c.snapshot_key),
                    status: s,
                })
            }
            _ => {}
        }
    }
    let _ = client
        .leases()
        .delete(lpb::DeleteRequest {
            id: container_lease(id),
            sync: false,
        })
        .await;
    crate::stdio::remove_fifos(client.namespace(), id);
    Ok(())
}

//! containerd.services.snapshots.v1.Snapshots over [`Snapshots`], as
//! rust-extensions' `wrap.rs` does it: unwrap the request, call the
//! domain, wrap the reply. The snapshotter is the request's `snapshotter`
//! field (empty: InvalidArgument, as containerd); a `containerd-lease` header
//! names the lease what a call creates joins.

use std::pin::Pin;

use berth_api::services::snapshots::v1 as pb;
use berth_snapshotter::{Info, Kind};
use futures::Stream;
use pb::snapshots_server::Snapshots as Service;
use tonic::{Request, Response, Status};

use super::{convert, lease_of, namespace};
use crate::snapshots::{NewSnapshot, Snapshots};

/// How many infos one List reply carries.
const LIST_BATCH: usize = 100;

/// The Snapshots service.
pub struct SnapshotsService {
    snapshots: Snapshots,
}

impl SnapshotsService {
    /// Serves `snapshots`.
    pub fn new(snapshots: Snapshots) -> Self {
        Self { snapshots }
    }
}

fn wire_kind(k: Kind) -> pb::Kind {
    match k {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

fn to_wire(i: Info) -> pb::Info {
    pb::Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: wire_kind(i.kind) as i32,
        created_at: Some(i.created_at.into()),
        updated_at: Some(i.updated_at.into()),
        labels: i.labels,
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Service for SnapshotsService {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn prepare(
        &self,
        req: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let new = NewSnapshot {
            snapshotter: r.snapshotter,
            key: r.key,
            parent: r.parent,
            labels: r.labels,
        };
        let m = self.snapshots.prepare(&ns, lease.as_deref(), new).await?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: convert::wire_mounts(m),
        }))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn view(
        &self,
        req: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let new = NewSnapshot {
            snapshotter: r.snapshotter,
            key: r.key,
            parent: r.parent,
            labels: r.labels,
        };
        let m = self.snapshots.view(&ns, lease.as_deref(), new).await?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: convert::wire_mounts(m),
        }))
    }

    async fn mounts(
        &self,
        req: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let m = self.snapshots.mounts(&ns, &r.snapshotter, &r.key).await?;
        Ok(Response::new(pb::MountsResponse {
            mounts: convert::wire_mounts(m),
        }))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key, name = %req.get_ref().name))]
    async fn commit(
        &self,
        req: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        self.snapshots
            .commit(
                &ns,
                lease.as_deref(),
                &r.snapshotter,
                &r.name,
                &r.key,
                r.labels,
            )
            .await?;
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn remove(
        &self,
        req: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.snapshots.remove(&ns, &r.snapshotter, &r.key).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let info = self.snapshots.stat(&ns, &r.snapshotter, &r.key).await?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(to_wire(info)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let wire = r
            .info
            .ok_or_else(|| Status::invalid_argument("info: required"))?;
        let paths = convert::mask_paths(r.update_mask);
        let info = self
            .snapshots
            .update(&ns, &r.snapshotter, wire.name, wire.labels, paths)
            .await?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(to_wire(info)),
        }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let all = self.snapshots.list(&ns, &r.snapshotter, &r.filters).await?;
        let infos: Vec<pb::Info> = all.into_iter().map(to_wire).collect();
        let batches: Vec<Result<pb::ListSnapshotsResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|c| Ok(pb::ListSnapshotsResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    async fn usage(
        &self,
        req: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let u = self.snapshots.usage(&ns, &r.snapshotter, &r.key).await?;
        Ok(Response::new(pb::UsageResponse {
            size: i64::try_from(u.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, req: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        namespace(&req)?;
        let r = req.into_inner();
        let n = self.snapshots.cleanup(&r.snapshotter).await?;
        tracing::info!(snapshotter = %r.snapshotter, removed = n, "snapshot cleanup");
        Ok(Response::new(()))
    }
}

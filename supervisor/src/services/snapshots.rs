//! containerd.services.snapshots.v1.Snapshots over berth-snapshotter.
//!
//! The snapshotter is chosen by the request's `snapshotter` field (empty:
//! the configured default). A call carrying a `containerd-lease` header adds
//! the snapshot it creates (Prepare, View) or names (Commit) to that lease,
//! under a GC guard and before the snapshot exists.

use std::collections::HashMap;
use std::pin::Pin;

use berth_api::services::snapshots::v1 as pb;
use berth_api::types::Mount as WireMount;
use berth_snapshotter::{Info, Kind, Mount};
use futures::Stream;
use pb::snapshots_server::Snapshots;
use tonic::{Request, Response, Status};

use super::{convert, namespace, Context};
use crate::filters::{label_field, Fields};

/// How many infos one List reply carries.
const LIST_BATCH: usize = 100;

/// The Snapshots service.
pub struct SnapshotsService {
    ctx: Context,
}

impl SnapshotsService {
    /// Serves snapshots from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

/// The lease a call runs under (`containerd-lease` metadata), if any.
pub fn lease_of<T>(req: &Request<T>) -> Option<String> {
    req.metadata()
        .get(crate::gc::LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Domain mounts → wire mounts.
pub fn wire_mounts(m: Vec<Mount>) -> Vec<WireMount> {
    m.into_iter()
        .map(|m| WireMount {
            r#type: m.kind,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

/// Wire mounts → domain mounts.
pub fn mounts(m: Vec<WireMount>) -> Vec<Mount> {
    m.into_iter()
        .map(|m| Mount {
            kind: m.r#type,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

fn wire_kind(k: Kind) -> pb::Kind {
    match k {
        Kind::View => pb::Kind::View,
        Kind::Active => pb::Kind::Active,
        Kind::Committed => pb::Kind::Committed,
    }
}

fn kind_name(k: Kind) -> &'static str {
    match k {
        Kind::View => "view",
        Kind::Active => "active",
        Kind::Committed => "committed",
    }
}

fn to_wire(i: Info) -> pb::Info {
    pb::Info {
        name: i.name,
        parent: i.parent.unwrap_or_default(),
        kind: wire_kind(i.kind) as i32,
        created_at: Some(convert::timestamp(i.created_at)),
        updated_at: Some(convert::timestamp(i.updated_at)),
        labels: i.labels,
    }
}

struct Filterable<'a>(&'a Info, std::collections::BTreeMap<String, String>);

impl Fields for Filterable<'_> {
    fn field(&self, path: &[String]) -> Option<String> {
        let one = path.len() == 1;
        match path.first()?.as_str() {
            "name" if one => Some(self.0.name.clone()),
            // Always present, as containerd's adaptor has it: `parent==""`
            // selects the snapshots without one.
            "parent" if one => Some(self.0.parent.clone().unwrap_or_default()),
            "kind" if one => Some(kind_name(self.0.kind).to_string()),
            "labels" => label_field(&self.1, &path[1..]),
            _ => None,
        }
    }
}

#[allow(clippy::result_large_err)]
fn check_labels(labels: &HashMap<String, String>) -> Result<(), Status> {
    crate::store::labels::validate(&labels.clone().into_iter().collect())
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

/// What Prepare and View carry.
struct NewSnapshot {
    snapshotter: String,
    key: String,
    parent: String,
    labels: HashMap<String, String>,
}

type ListStream = Pin<Box<dyn Stream<Item = Result<pb::ListSnapshotsResponse, Status>> + Send>>;

impl SnapshotsService {
    async fn create(
        &self,
        ns: String,
        lease: Option<String>,
        new: NewSnapshot,
        view: bool,
    ) -> Result<Vec<WireMount>, Status> {
        let NewSnapshot {
            snapshotter,
            key,
            parent,
            labels,
        } = new;
        check_labels(&labels)?;
        let sns = &self.ctx.snapshotters;
        let (name, _) = sns.resolve(&snapshotter)?;
        crate::store::namespaces::ensure(&self.ctx.store, &ns).await?;
        let _hold = self.ctx.gc.hold().await;
        sns.lease(&self.ctx.store, &ns, lease.as_deref(), &name, &key)
            .await?;
        let event = berth_api::events::SnapshotPrepare {
            key: key.clone(),
            parent: parent.clone(),
        };
        let parent = (!parent.is_empty()).then_some(parent);
        let ns2 = ns.clone();
        let m = sns
            .run(&name, move |s| {
                if view {
                    s.view(&ns2, &key, parent.as_deref(), labels)
                } else {
                    s.prepare(&ns2, &key, parent.as_deref(), labels)
                }
            })
            .await?;
        self.ctx.events.publish(&ns, "/snapshot/prepare", &event);
        Ok(wire_mounts(m))
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn prepare(
        &self,
        req: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let mounts = self
            .create(
                ns,
                lease,
                NewSnapshot {
                    snapshotter: r.snapshotter,
                    key: r.key,
                    parent: r.parent,
                    labels: r.labels,
                },
                false,
            )
            .await?;
        Ok(Response::new(pb::PrepareSnapshotResponse { mounts }))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn view(
        &self,
        req: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let mounts = self
            .create(
                ns,
                lease,
                NewSnapshot {
                    snapshotter: r.snapshotter,
                    key: r.key,
                    parent: r.parent,
                    labels: r.labels,
                },
                true,
            )
            .await?;
        Ok(Response::new(pb::ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        req: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let key = r.key;
        let m = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, move |s| s.mounts(&ns, &key))
            .await?;
        Ok(Response::new(pb::MountsResponse {
            mounts: wire_mounts(m),
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
        check_labels(&r.labels)?;
        let sns = &self.ctx.snapshotters;
        let (name, _) = sns.resolve(&r.snapshotter)?;
        let _hold = self.ctx.gc.hold().await;
        sns.lease(&self.ctx.store, &ns, lease.as_deref(), &name, &r.name)
            .await?;
        let event = berth_api::events::SnapshotCommit {
            key: r.key.clone(),
            name: r.name.clone(),
        };
        let (key, cname, labels, ns2) = (r.key, r.name, r.labels, ns.clone());
        sns.run(&name, move |s| s.commit(&ns2, &cname, &key, labels))
            .await?;
        self.ctx.events.publish(&ns, "/snapshot/commit", &event);
        Ok(Response::new(()))
    }

    #[tracing::instrument(skip_all, fields(key = %req.get_ref().key))]
    async fn remove(
        &self,
        req: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let event = berth_api::events::SnapshotRemove { key: r.key.clone() };
        let (key, ns2) = (r.key, ns.clone());
        {
            let _hold = self.ctx.gc.hold().await;
            self.ctx
                .snapshotters
                .run(&r.snapshotter, move |s| s.remove(&ns2, &key))
                .await?;
        }
        self.ctx.events.publish(&ns, "/snapshot/remove", &event);
        self.ctx.collect_garbage(false).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let key = r.key;
        let info = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, move |s| s.stat(&ns, &key))
            .await?;
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
        check_labels(&wire.labels)?;
        let paths = convert::mask_paths(r.update_mask);
        let now = std::time::SystemTime::now();
        let info = Info {
            name: wire.name,
            parent: None,
            kind: Kind::Committed,
            labels: wire.labels,
            created_at: now,
            updated_at: now,
        };
        let _hold = self.ctx.gc.hold().await;
        let info = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, move |s| s.update(&ns, info, &paths))
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
        let filter = super::parse_filters(&r.filters)?;
        let all = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, move |s| s.list(&ns))
            .await?;
        let matching: Vec<pb::Info> = all
            .into_iter()
            .filter(|i| {
                let labels = i.labels.clone().into_iter().collect();
                filter.matches(&Filterable(i, labels))
            })
            .map(to_wire)
            .collect();
        let batches: Vec<Result<pb::ListSnapshotsResponse, Status>> = matching
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
        let key = r.key;
        let u = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, move |s| s.usage(&ns, &key))
            .await?;
        Ok(Response::new(pb::UsageResponse {
            size: i64::try_from(u.size).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, req: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        namespace(&req)?;
        let r = req.into_inner();
        let n = self
            .ctx
            .snapshotters
            .run(&r.snapshotter, |s| s.cleanup())
            .await?;
        tracing::info!(snapshotter = %r.snapshotter, removed = n, "snapshot cleanup");
        Ok(Response::new(()))
    }
}

//! containerd.services.leases.v1.Leases.

use berth_api::services::leases::v1 as pb;
use pb::leases_server::Leases;
use tonic::{Request, Response, Status};

use super::{convert, namespace, Context};
use crate::filters::{label_field, Fields};
use crate::store::leases::{self, Lease, Resource};

/// The Leases service.
pub struct LeasesService {
    ctx: Context,
}

impl LeasesService {
    /// Serves leases from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

fn to_wire(l: &Lease) -> pb::Lease {
    pb::Lease {
        id: l.id.clone(),
        created_at: Some(convert::timestamp(l.created_at)),
        labels: convert::wire_labels(&l.labels),
    }
}

#[allow(clippy::result_large_err)]
fn resource(r: Option<pb::Resource>) -> Result<Resource, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("resource: required"))?;
    Ok(Resource {
        id: r.id,
        kind: r.r#type,
    })
}

impl Fields for Lease {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" if path.len() == 1 => Some(self.id.clone()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl Leases for LeasesService {
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        // As containerd: an empty id asks the server to choose one.
        let id = match req.id.as_str() {
            "" => uuid::Uuid::new_v4().simple().to_string(),
            id => id.to_string(),
        };
        let lease = leases::create(&self.ctx.store, &ns, &id, convert::labels(req.labels)).await?;
        tracing::debug!(namespace = %ns, lease = %lease.id, "lease created");
        Ok(Response::new(pb::CreateResponse {
            lease: Some(to_wire(&lease)),
        }))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        leases::delete(&self.ctx.store, &ns, &req.id).await?;
        self.ctx.collect_garbage(req.sync).await?;
        Ok(Response::new(()))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = super::parse_filters(&req.get_ref().filters)?;
        let all = leases::list(&self.ctx.store, &ns)?;
        let leases = all
            .iter()
            .filter(|l| filter.matches(*l))
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListResponse { leases }))
    }

    async fn add_resource(
        &self,
        req: Request<pb::AddResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        leases::add_resource(&self.ctx.store, &ns, &req.id, resource(req.resource)?).await?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        req: Request<pb::DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        leases::delete_resource(&self.ctx.store, &ns, &req.id, resource(req.resource)?).await?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let ns = namespace(&req)?;
        let list = leases::resources(&self.ctx.store, &ns, &req.get_ref().id)?;
        let resources = list
            .into_iter()
            .map(|r| pb::Resource {
                id: r.id,
                r#type: r.kind,
            })
            .collect();
        Ok(Response::new(pb::ListResourcesResponse { resources }))
    }
}

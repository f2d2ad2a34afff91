//! containerd.services.leases.v1.Leases over [`Leases`].

use berth_api::services::leases::v1 as pb;
use pb::leases_server::Leases as Service;
use tonic::{Request, Response, Status};

use super::{convert, namespace};
use crate::leases::Leases;
use crate::store::leases::{Lease, Resource};

/// The Leases service.
pub struct LeasesService {
    leases: Leases,
}

impl LeasesService {
    /// Serves `leases`.
    pub fn new(leases: Leases) -> Self {
        Self { leases }
    }
}

fn to_wire(l: &Lease) -> pb::Lease {
    pb::Lease {
        id: l.id.clone(),
        created_at: Some(l.created_at.into()),
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

#[tonic::async_trait]
impl Service for LeasesService {
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let labels = convert::labels(req.labels);
        let lease = self.leases.create(&ns, &req.id, labels).await?;
        Ok(Response::new(pb::CreateResponse {
            lease: Some(to_wire(&lease)),
        }))
    }

    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        self.leases.delete(&ns, &req.id, req.sync).await?;
        Ok(Response::new(()))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let ns = namespace(&req)?;
        let all = self.leases.list(&ns, &req.get_ref().filters)?;
        Ok(Response::new(pb::ListResponse {
            leases: all.iter().map(to_wire).collect(),
        }))
    }

    async fn add_resource(
        &self,
        req: Request<pb::AddResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let r = resource(req.resource)?;
        self.leases.add_resource(&ns, &req.id, r).await?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        req: Request<pb::DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let r = resource(req.resource)?;
        self.leases.delete_resource(&ns, &req.id, r).await?;
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        req: Request<pb::ListResourcesRequest>,
    ) -> Result<Response<pb::ListResourcesResponse>, Status> {
        let ns = namespace(&req)?;
        let list = self.leases.resources(&ns, &req.get_ref().id)?;
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

//! containerd.services.namespaces.v1.Namespaces over [`Namespaces`].

use berth_api::services::namespaces::v1 as pb;
use pb::namespaces_server::Namespaces as Service;
use tonic::{Request, Response, Status};

use super::convert;
use crate::namespaces::Namespaces;
use crate::store::namespaces::Namespace;

/// The Namespaces service.
pub struct NamespacesService {
    namespaces: Namespaces,
}

impl NamespacesService {
    /// Serves `namespaces`.
    pub fn new(namespaces: Namespaces) -> Self {
        Self { namespaces }
    }
}

fn to_wire(ns: &Namespace) -> pb::Namespace {
    pb::Namespace {
        name: ns.name.clone(),
        labels: convert::wire_labels(&ns.labels),
    }
}

fn from_wire(ns: Option<pb::Namespace>) -> Namespace {
    let ns = ns.unwrap_or_default();
    Namespace {
        name: ns.name,
        labels: convert::labels(ns.labels),
    }
}

#[tonic::async_trait]
impl Service for NamespacesService {
    #[tracing::instrument(skip_all, fields(namespace = %req.get_ref().name))]
    async fn get(
        &self,
        req: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::GetNamespaceResponse>, Status> {
        let ns = self.namespaces.get(&req.get_ref().name)?;
        Ok(Response::new(pb::GetNamespaceResponse {
            namespace: Some(to_wire(&ns)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let list = self.namespaces.list(&req.get_ref().filter)?;
        Ok(Response::new(pb::ListNamespacesResponse {
            namespaces: list.iter().map(to_wire).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        req: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        let ns = from_wire(req.into_inner().namespace);
        let ns = self.namespaces.create(ns).await?;
        Ok(Response::new(pb::CreateNamespaceResponse {
            namespace: Some(to_wire(&ns)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateNamespaceRequest>,
    ) -> Result<Response<pb::UpdateNamespaceResponse>, Status> {
        let req = req.into_inner();
        let paths = convert::mask_paths(req.update_mask);
        let ns = self
            .namespaces
            .update(from_wire(req.namespace), &paths)
            .await?;
        Ok(Response::new(pb::UpdateNamespaceResponse {
            namespace: Some(to_wire(&ns)),
        }))
    }

    #[tracing::instrument(skip_all, fields(namespace = %req.get_ref().name))]
    async fn delete(
        &self,
        req: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        self.namespaces.delete(&req.into_inner().name).await?;
        Ok(Response::new(()))
    }
}

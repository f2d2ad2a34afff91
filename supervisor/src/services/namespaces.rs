//! containerd.services.namespaces.v1.Namespaces.

use berth_api::services::namespaces::v1 as pb;
use pb::namespaces_server::Namespaces;
use tonic::{Request, Response, Status};

use super::{convert, Context};
use crate::filters::{label_field, Fields};
use crate::store::namespaces::{self, Namespace};

/// The Namespaces service.
pub struct NamespacesService {
    ctx: Context,
}

impl NamespacesService {
    /// Serves namespaces from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
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

impl Fields for Namespace {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "name" if path.len() == 1 => Some(self.name.clone()),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    #[tracing::instrument(skip_all, fields(namespace = %req.get_ref().name))]
    async fn get(
        &self,
        req: Request<pb::GetNamespaceRequest>,
    ) -> Result<Response<pb::GetNamespaceResponse>, Status> {
        let ns = namespaces::get(&self.ctx.store, &req.get_ref().name)?;
        Ok(Response::new(pb::GetNamespaceResponse {
            namespace: Some(to_wire(&ns)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListNamespacesRequest>,
    ) -> Result<Response<pb::ListNamespacesResponse>, Status> {
        let filter = req.into_inner().filter;
        let filter = super::parse_filters(std::slice::from_ref(&filter))?;
        let list = namespaces::list(&self.ctx.store)?;
        let namespaces = list
            .iter()
            .filter(|n| filter.matches(*n))
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListNamespacesResponse { namespaces }))
    }

    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        req: Request<pb::CreateNamespaceRequest>,
    ) -> Result<Response<pb::CreateNamespaceResponse>, Status> {
        let ns = namespaces::create(&self.ctx.store, from_wire(req.into_inner().namespace)).await?;
        tracing::info!(namespace = %ns.name, "namespace created");
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
        let ns = namespaces::update(&self.ctx.store, from_wire(req.namespace), &paths).await?;
        Ok(Response::new(pb::UpdateNamespaceResponse {
            namespace: Some(to_wire(&ns)),
        }))
    }

    #[tracing::instrument(skip_all, fields(namespace = %req.get_ref().name))]
    async fn delete(
        &self,
        req: Request<pb::DeleteNamespaceRequest>,
    ) -> Result<Response<()>, Status> {
        let name = req.into_inner().name;
        let snapshots = self.ctx.namespace_has_snapshots(&name).await?;
        namespaces::delete(&self.ctx.store, &name, snapshots).await?;
        tracing::info!(namespace = %name, "namespace deleted");
        Ok(Response::new(()))
    }
}

//! containerd.services.containers.v1.Containers.

use std::pin::Pin;

use berth_api::events as ev;
use berth_api::services::containers::v1 as pb;
use futures::Stream;
use pb::containers_server::Containers;
use tonic::{Request, Response, Status};

use super::{convert, namespace, Context};
use crate::filters::{label_field, Fields};
use crate::store::containers::{self, AnyRec, Container, Runtime};

/// The Containers service.
pub struct ContainersService {
    ctx: Context,
}

impl ContainersService {
    /// Serves containers from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Fields for Container {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "id" if path.len() == 1 => non_empty(&self.id),
            "image" if path.len() == 1 => non_empty(&self.image),
            "runtime" if path.len() == 2 && path[1] == "name" => non_empty(&self.runtime.name),
            "labels" => label_field(&self.labels, &path[1..]),
            _ => None,
        }
    }
}

/// Wire container → record (times are set by the store).
pub fn from_wire(c: pb::Container) -> Container {
    let runtime = c.runtime.unwrap_or_default();
    Container {
        id: c.id,
        labels: convert::labels(c.labels),
        image: c.image,
        runtime: Runtime {
            name: runtime.name,
            options: runtime.options.map(AnyRec::from),
        },
        spec: c.spec.map(AnyRec::from),
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
        extensions: c
            .extensions
            .into_iter()
            .map(|(k, v)| (k, AnyRec::from(v)))
            .collect(),
        sandbox: String::new(),
    }
}

/// Record → wire container.
pub fn to_wire(c: &Container) -> pb::Container {
    pb::Container {
        id: c.id.clone(),
        labels: convert::wire_labels(&c.labels),
        image: c.image.clone(),
        runtime: Some(pb::container::Runtime {
            name: c.runtime.name.clone(),
            options: c.runtime.options.clone().map(Into::into),
        }),
        spec: c.spec.clone().map(Into::into),
        snapshotter: c.snapshotter.clone(),
        snapshot_key: c.snapshot_key.clone(),
        created_at: Some(convert::timestamp(c.created_at)),
        updated_at: Some(convert::timestamp(c.updated_at)),
        extensions: c
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
    }
}

impl ContainersService {
    #[allow(clippy::result_large_err)]
    fn matching(&self, ns: &str, filters: &[String]) -> Result<Vec<Container>, Status> {
        let filter = super::parse_filters(filters)?;
        let all = containers::list(&self.ctx.store, ns)?;
        Ok(all.into_iter().filter(|c| filter.matches(c)).collect())
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn get(
        &self,
        req: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::GetContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let c = containers::get(&self.ctx.store, &ns, &req.get_ref().id)?;
        Ok(Response::new(pb::GetContainerResponse {
            container: Some(to_wire(&c)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let ns = namespace(&req)?;
        let containers = self
            .matching(&ns, &req.get_ref().filters)?
            .iter()
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    type ListStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::ListContainerMessage, Status>> + Send>>;

    async fn list_stream(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = namespace(&req)?;
        let all = self.matching(&ns, &req.get_ref().filters)?;
        let stream = futures::stream::iter(all.into_iter().map(|c| {
            Ok(pb::ListContainerMessage {
                container: Some(to_wire(&c)),
            })
        }));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn create(
        &self,
        req: Request<pb::CreateContainerRequest>,
    ) -> Result<Response<pb::CreateContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let c = req
            .into_inner()
            .container
            .ok_or_else(|| Status::invalid_argument("container: required"))?;
        let c = containers::create(&self.ctx.store, &ns, from_wire(c)).await?;
        tracing::debug!(namespace = %ns, id = %c.id, "container created");
        self.ctx.events.publish(
            &ns,
            "/containers/create",
            &ev::ContainerCreate {
                id: c.id.clone(),
                image: c.image.clone(),
                runtime: Some(ev::container_create::Runtime {
                    name: c.runtime.name.clone(),
                    options: c.runtime.options.clone().map(Into::into),
                }),
            },
        );
        Ok(Response::new(pb::CreateContainerResponse {
            container: Some(to_wire(&c)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateContainerRequest>,
    ) -> Result<Response<pb::UpdateContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let c = req
            .container
            .ok_or_else(|| Status::invalid_argument("container: required"))?;
        let paths = convert::mask_paths(req.update_mask);
        let c = containers::update(&self.ctx.store, &ns, from_wire(c), &paths).await?;
        self.ctx.events.publish(
            &ns,
            "/containers/update",
            &ev::ContainerUpdate {
                id: c.id.clone(),
                image: c.image.clone(),
                labels: convert::wire_labels(&c.labels),
                snapshot_key: c.snapshot_key.clone(),
            },
        );
        Ok(Response::new(pb::UpdateContainerResponse {
            container: Some(to_wire(&c)),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let id = req.into_inner().id;
        if self.ctx.tasks.exists(&ns, &id) {
            return Err(Status::failed_precondition(format!(
                "container {id:?}: cannot delete a container while its task exists; delete the task first"
            )));
        }
        containers::delete(&self.ctx.store, &ns, &id).await?;
        self.ctx.events.publish(
            &ns,
            "/containers/delete",
            &ev::ContainerDelete { id: id.clone() },
        );
        self.ctx.collect_garbage(false).await?;
        Ok(Response::new(()))
    }
}

//! containerd.services.containers.v1.Containers over [`Containers`].

use std::pin::Pin;

use berth_api::services::containers::v1 as pb;
use futures::Stream;
use pb::containers_server::Containers as Service;
use tonic::{Request, Response, Status};

use super::{convert, namespace};
use crate::containers::Containers;
use crate::store::containers::{AnyRec, Container, Runtime};

/// The Containers service.
pub struct ContainersService {
    containers: Containers,
}

impl ContainersService {
    /// Serves `containers`.
    pub fn new(containers: Containers) -> Self {
        Self { containers }
    }
}

/// Wire container → record (times are set by the store).
fn from_wire(c: pb::Container) -> Container {
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
fn to_wire(c: &Container) -> pb::Container {
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
        created_at: Some(c.created_at.into()),
        updated_at: Some(c.updated_at.into()),
        extensions: c
            .extensions
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect(),
    }
}

#[allow(clippy::result_large_err)]
fn required(c: Option<pb::Container>) -> Result<Container, Status> {
    c.map(from_wire)
        .ok_or_else(|| Status::invalid_argument("container: required"))
}

#[tonic::async_trait]
impl Service for ContainersService {
    async fn get(
        &self,
        req: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::GetContainerResponse>, Status> {
        let ns = namespace(&req)?;
        let c = self.containers.get(&ns, &req.get_ref().id)?;
        Ok(Response::new(pb::GetContainerResponse {
            container: Some(to_wire(&c)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let ns = namespace(&req)?;
        let all = self.containers.list(&ns, &req.get_ref().filters)?;
        Ok(Response::new(pb::ListContainersResponse {
            containers: all.iter().map(to_wire).collect(),
        }))
    }

    type ListStreamStream =
        Pin<Box<dyn Stream<Item = Result<pb::ListContainerMessage, Status>> + Send>>;

    async fn list_stream(
        &self,
        req: Request<pb::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let ns = namespace(&req)?;
        let all = self.containers.list(&ns, &req.get_ref().filters)?;
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
        let c = required(req.into_inner().container)?;
        let c = self.containers.create(&ns, c).await?;
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
        let c = required(req.container)?;
        let paths = convert::mask_paths(req.update_mask);
        let c = self.containers.update(&ns, c, &paths).await?;
        Ok(Response::new(pb::UpdateContainerResponse {
            container: Some(to_wire(&c)),
        }))
    }

    async fn delete(
        &self,
        req: Request<pb::DeleteContainerRequest>,
    ) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        self.containers.delete(&ns, &req.into_inner().id).await?;
        Ok(Response::new(()))
    }
}

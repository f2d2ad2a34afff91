//! berth.volumes.v1.Volumes: berthd's volumes over [`Volumes`]: decode,
//! one call, encode.

use berth_api::berth_volumes::v1 as pb;
use pb::volumes_server::Volumes as VolumesApi;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::volumes::{label_match, VolumeRecord, Volumes};

/// The Volumes service.
pub struct VolumesService {
    volumes: Volumes,
    /// Names the containers using a volume.
    engine: Engine,
}

impl VolumesService {
    /// Serves `volumes`; container names come from `engine`.
    pub fn new(volumes: Volumes, engine: Engine) -> Self {
        Self { volumes, engine }
    }

    fn wire(&self, r: VolumeRecord) -> pb::Volume {
        pb::Volume {
            mountpoint: self.volumes.data_path(&r.name).display().to_string(),
            users: r
                .users
                .iter()
                .map(|u| {
                    let (namespace, id) = u.split_once('/').unwrap_or(("", u));
                    pb::User {
                        container_name: self.engine.name_of(namespace, id).unwrap_or_default(),
                        namespace: namespace.to_string(),
                        container_id: id.to_string(),
                    }
                })
                .collect(),
            name: r.name,
            driver: r.driver,
            labels: r.labels.into_iter().collect(),
            created_at: Some(r.created_at.into()),
            anonymous: r.anonymous,
        }
    }
}

#[tonic::async_trait]
impl VolumesApi for VolumesService {
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let r = req.into_inner();
        let rec = self
            .volumes
            .create(&r.name, &r.driver, r.labels.into_iter().collect())
            .await?;
        Ok(Response::new(pb::CreateResponse {
            volume: Some(self.wire(rec)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        let mut labels = Vec::new();
        let mut names = Vec::new();
        let mut dangling = None;
        for f in &r.filters {
            match f.split_once('=') {
                Some(("label", v)) => labels.push(v.to_string()),
                Some(("name", v)) => names.push(v.to_string()),
                Some(("dangling", "true" | "1")) => dangling = Some(true),
                Some(("dangling", "false" | "0")) => dangling = Some(false),
                _ => {
                    return Err(Status::invalid_argument(format!(
                        "volume filter {f:?}: name=, label=KEY[=VALUE] or dangling=true|false"
                    )))
                }
            }
        }
        let volumes = self
            .volumes
            .list()
            .await?
            .into_iter()
            .filter(|v| label_match(v, &labels))
            .filter(|v| names.is_empty() || names.iter().any(|n| v.name.contains(n.as_str())))
            .filter(|v| dangling.is_none_or(|d| d == v.users.is_empty()))
            .map(|v| self.wire(v))
            .collect();
        Ok(Response::new(pb::ListResponse { volumes }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let rec = self.volumes.get(&req.into_inner().name).await?;
        Ok(Response::new(pb::InspectResponse {
            volume: Some(self.wire(rec)),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let name = self.volumes.remove(&req.into_inner().name).await?;
        Ok(Response::new(pb::RemoveResponse { name }))
    }

    async fn prune(
        &self,
        req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        let removed = self.volumes.prune(&req.into_inner().filters).await?;
        Ok(Response::new(pb::PruneResponse { removed }))
    }
}

//! berth.networks.v1.Networks: berthd's own networks over
//! [`NetworkManager`]: decode, one call, encode.

use berth_api::berth_networks::v1 as pb;
use pb::networks_server::Networks;
use tonic::{Request, Response, Status};

use crate::engine::Engine;
use crate::netman::{NetworkManager, NetworkRecord, NewNetwork};

/// The Networks service.
pub struct NetworksService {
    networks: NetworkManager,
    /// Names the containers attached to a network.
    engine: Engine,
}

impl NetworksService {
    /// Serves `networks`; container names come from `engine`.
    pub fn new(networks: NetworkManager, engine: Engine) -> Self {
        Self { networks, engine }
    }

    async fn wire(&self, r: NetworkRecord) -> Result<pb::Network, Status> {
        let endpoints = if r.driver == "bridge" {
            self.networks.endpoints(&r.name).await?
        } else {
            Vec::new()
        };
        Ok(pb::Network {
            endpoints: endpoints
                .into_iter()
                .map(|a| {
                    let (namespace, container_name) =
                        self.engine.owner_of(&a.container_id).unwrap_or_default();
                    pb::Endpoint {
                        ip: a
                            .result
                            .as_ref()
                            .and_then(|res| res.container_ips().first().map(|n| n.to_string()))
                            .unwrap_or_default(),
                        container_id: a.container_id,
                        container_name,
                        namespace,
                        ifname: a.ifname,
                    }
                })
                .collect(),
            subnet: if r.driver == "bridge" {
                r.subnet.to_string()
            } else {
                String::new()
            },
            gateway: if r.driver == "bridge" {
                r.gateway.to_string()
            } else {
                String::new()
            },
            name: r.name,
            id: r.id,
            driver: r.driver,
            bridge: r.bridge,
            labels: r.labels.into_iter().collect(),
            created_at: Some(r.created_at.into()),
            builtin: r.builtin,
            internal: r.internal,
        })
    }
}

#[allow(clippy::result_large_err)]
fn invalid(field: &str, v: &str) -> Status {
    Status::invalid_argument(format!("{field}: {v:?} is not valid"))
}

#[tonic::async_trait]
impl Networks for NetworksService {
    async fn create(
        &self,
        req: Request<pb::CreateRequest>,
    ) -> Result<Response<pb::CreateResponse>, Status> {
        let r = req.into_inner();
        let new = NewNetwork {
            name: r.name,
            driver: r.driver,
            subnet: match r.subnet.as_str() {
                "" => None,
                s => Some(s.parse().map_err(|_| invalid("subnet", s))?),
            },
            gateway: match r.gateway.as_str() {
                "" => None,
                s => Some(s.parse().map_err(|_| invalid("gateway", s))?),
            },
            bridge: (!r.bridge.is_empty()).then_some(r.bridge),
            labels: r.labels.into_iter().collect(),
            internal: r.internal,
        };
        let rec = self.networks.create(new).await?;
        Ok(Response::new(pb::CreateResponse {
            network: Some(self.wire(rec).await?),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let r = req.into_inner();
        let mut networks = Vec::new();
        for rec in self.networks.list().await? {
            let keep = r.filters.iter().all(|f| match f.split_once('=') {
                Some(("name", v)) => rec.name == v,
                Some(("id", v)) => rec.id.starts_with(v),
                Some(("driver", v)) => rec.driver == v,
                Some(("label", v)) => match v.split_once('=') {
                    Some((k, val)) => rec.labels.get(k).map(String::as_str) == Some(val),
                    None => rec.labels.contains_key(v),
                },
                _ => false,
            });
            if keep {
                networks.push(self.wire(rec).await?);
            }
        }
        Ok(Response::new(pb::ListResponse { networks }))
    }

    async fn inspect(
        &self,
        req: Request<pb::InspectRequest>,
    ) -> Result<Response<pb::InspectResponse>, Status> {
        let rec = self.networks.get(&req.into_inner().name).await?;
        Ok(Response::new(pb::InspectResponse {
            network: Some(self.wire(rec).await?),
        }))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveRequest>,
    ) -> Result<Response<pb::RemoveResponse>, Status> {
        let name = self.networks.remove(&req.into_inner().name).await?;
        Ok(Response::new(pb::RemoveResponse { name }))
    }

    async fn prune(
        &self,
        _req: Request<pb::PruneRequest>,
    ) -> Result<Response<pb::PruneResponse>, Status> {
        let removed = self.networks.prune().await?;
        Ok(Response::new(pb::PruneResponse { removed }))
    }

    async fn connect_container(
        &self,
        req: Request<pb::ConnectRequest>,
    ) -> Result<Response<pb::ConnectResponse>, Status> {
        let ns = super::namespace(&req)?;
        let r = req.into_inner();
        let ip = self.engine.connect(&ns, &r.container, &r.network).await?;
        Ok(Response::new(pb::ConnectResponse {
            ip: ip.map(|i| i.to_string()).unwrap_or_default(),
        }))
    }

    async fn disconnect_container(
        &self,
        req: Request<pb::DisconnectRequest>,
    ) -> Result<Response<pb::DisconnectResponse>, Status> {
        let ns = super::namespace(&req)?;
        let r = req.into_inner();
        self.engine
            .disconnect(&ns, &r.container, &r.network)
            .await?;
        Ok(Response::new(pb::DisconnectResponse {}))
    }
}

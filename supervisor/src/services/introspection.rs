//! containerd.services.introspection.v1.Introspection.

use berth_api::services::introspection::v1 as pb;
use pb::introspection_server::Introspection;
use tonic::{Request, Response, Status};

use crate::filters::{Fields, Filter};

/// One served plugin, as Introspection reports it.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// e.g. `io.containerd.grpc.v1`.
    pub kind: String,
    /// e.g. `content`.
    pub id: String,
    /// Capabilities, e.g. `remap-ids` for snapshotters.
    pub capabilities: Vec<String>,
}

impl Fields for PluginInfo {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "type" => Some(self.kind.clone()),
            "id" => Some(self.id.clone()),
            "capabilities" => Some(self.capabilities.join(",")),
            _ => None,
        }
    }
}

/// Lists what berthd serves and its stable server UUID.
pub struct IntrospectionService {
    plugins: Vec<PluginInfo>,
    uuid: String,
}

impl IntrospectionService {
    /// `plugins` must be exactly what the daemon registered (see
    /// [`super::router`]).
    pub fn new(plugins: Vec<PluginInfo>, uuid: String) -> Self {
        Self { plugins, uuid }
    }
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(
        &self,
        req: Request<pb::PluginsRequest>,
    ) -> Result<Response<pb::PluginsResponse>, Status> {
        let filter = Filter::parse(&req.get_ref().filters)?;
        let host = berth_api::oci::Platform::host();
        let platform = berth_api::types::Platform {
            os: host.os,
            architecture: host.architecture,
            variant: host.variant,
        };
        let plugins = self
            .plugins
            .iter()
            .filter(|p| filter.matches(*p))
            .map(|p| pb::Plugin {
                r#type: p.kind.clone(),
                id: p.id.clone(),
                platforms: if p.kind.contains("snapshotter") || p.kind.contains("runtime") {
                    vec![platform.clone()]
                } else {
                    vec![]
                },
                capabilities: p.capabilities.clone(),
                ..Default::default()
            })
            .collect();
        Ok(Response::new(pb::PluginsResponse { plugins }))
    }

    async fn server(&self, _: Request<()>) -> Result<Response<pb::ServerResponse>, Status> {
        Ok(Response::new(pb::ServerResponse {
            uuid: self.uuid.clone(),
        }))
    }
}

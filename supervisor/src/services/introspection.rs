//! containerd.services.introspection.v1.Introspection.

use berth_api::services::introspection::v1 as pb;
use pb::introspection_server::Introspection;
use tonic::{Request, Response, Status};

use crate::filters::Fields;

/// One served plugin, as Introspection reports it.
#[derive(Debug, Clone)]
pub struct PluginInfo {
    /// e.g. `io.containerd.grpc.v1`.
    pub kind: &'static str,
    /// e.g. `content`.
    pub id: &'static str,
    /// Capabilities, e.g. `remap-ids` for snapshotters.
    pub capabilities: Vec<&'static str>,
}

impl Fields for PluginInfo {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "type" => Some(self.kind.to_string()),
            "id" => Some(self.id.to_string()),
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
    /// `plugins` must be exactly what the daemon registered.
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
        let filter = super::parse_filters(&req.get_ref().filters)?;
        let platform = berth_api::types::Platform {
            os: "linux".into(),
            architecture: std::env::consts::ARCH
                .replace("x86_64", "amd64")
                .replace("aarch64", "arm64"),
            variant: String::new(),
        };
        let plugins = self
            .plugins
            .iter()
            .filter(|p| filter.matches(*p))
            .map(|p| pb::Plugin {
                r#type: p.kind.to_string(),
                id: p.id.to_string(),
                platforms: if p.kind.contains("snapshotter") || p.kind.contains("runtime") {
                    vec![platform.clone()]
                } else {
                    vec![]
                },
                capabilities: p.capabilities.iter().map(|c| c.to_string()).collect(),
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

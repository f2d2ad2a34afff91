//! containerd.services.version.v1.Version.

use berth_api::services::version::v1::{version_server::Version, VersionResponse};
use tonic::{Request, Response, Status};

/// Reports berthd's version and the commit it was built from.
#[derive(Debug, Default)]
pub struct VersionService;

/// The version string clients see.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: format!("v{VERSION}"),
            revision: option_env!("BERTH_REVISION").unwrap_or("berth").to_string(),
        }))
    }
}

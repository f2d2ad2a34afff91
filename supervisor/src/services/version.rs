//! containerd.services.version.v1.Version.

use berth_api::services::version::v1::{version_server::Version, VersionResponse};
use tonic::{Request, Response, Status};

use crate::build_info::{REVISION, VERSION};

/// Reports berthd's version and the commit it was built from.
#[derive(Debug, Default)]
pub struct VersionService;

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: format!("v{VERSION}"),
            revision: REVISION.to_string(),
        }))
    }
}

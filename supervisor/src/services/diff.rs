//! containerd.services.diff.v1.Diff over [`Differ`]: apply a layer blob
//! from the content store onto a snapshot's mounts, and make a layer from
//! two mount sets.

use berth_api::services::diff::v1 as pb;
use berth_api::types::Descriptor;
use berth_api::Digest;
use pb::diff_server::Diff;
use tonic::{Request, Response, Status};

use super::{convert, lease_of, namespace};
use crate::images::Differ;

/// The Diff service.
pub struct DiffService {
    differ: Differ,
}

impl DiffService {
    /// Serves `differ`.
    pub fn new(differ: Differ) -> Self {
        Self { differ }
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    #[tracing::instrument(skip_all, fields(digest = tracing::field::Empty))]
    async fn apply(
        &self,
        req: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let desc = r
            .diff
            .ok_or_else(|| Status::invalid_argument("diff: descriptor required"))?;
        tracing::Span::current().record("digest", desc.digest.as_str());
        let digest: Digest = desc
            .digest
            .parse()
            .map_err(|e| Status::invalid_argument(format!("diff.digest {:?}: {e}", desc.digest)))?;
        let mounts = convert::mounts(r.mounts);
        let diff_id = self
            .differ
            .apply(&ns, &digest, &desc.media_type, mounts)
            .await?;
        Ok(Response::new(pb::ApplyResponse {
            applied: Some(Descriptor {
                media_type: berth_api::oci::OCI_LAYER.to_string(),
                digest: diff_id.to_string(),
                size: 0,
                annotations: Default::default(),
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn diff(
        &self,
        req: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let ns = namespace(&req)?;
        let lease = lease_of(&req);
        let r = req.into_inner();
        let d = self
            .differ
            .diff(
                &ns,
                lease,
                convert::mounts(r.left),
                convert::mounts(r.right),
                &r.media_type,
                r.labels.into_iter().collect(),
            )
            .await?;
        Ok(Response::new(pb::DiffResponse {
            diff: Some(Descriptor {
                media_type: d.media_type,
                digest: d.digest.to_string(),
                size: i64::try_from(d.size).unwrap_or(i64::MAX),
                annotations: Default::default(),
            }),
        }))
    }
}

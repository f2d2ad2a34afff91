//! containerd.services.diff.v1.Diff: apply a layer blob from the content
//! store onto a snapshot's mounts, and make a layer from two mount sets.

use berth_api::services::diff::v1 as pb;
use berth_api::types::Descriptor;
use berth_api::Digest;
use pb::diff_server::Diff;
use tonic::{Request, Response, Status};

use super::snapshots::{lease_of, mounts};
use super::{namespace, Context};
use crate::images::layers;

/// The Diff service.
pub struct DiffService {
    ctx: Context,
}

impl DiffService {
    /// Serves diffs from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
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
        let applied = layers::apply_blob(
            &self.ctx.content,
            &ns,
            &digest,
            &desc.media_type,
            mounts(r.mounts),
        )
        .await?;
        Ok(Response::new(pb::ApplyResponse {
            applied: Some(Descriptor {
                media_type: layers::UNCOMPRESSED_OCI.to_string(),
                digest: applied.diff_id.to_string(),
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
        let media_type = if r.media_type.is_empty() {
            layers::GZIP_OCI.to_string()
        } else {
            r.media_type
        };
        let content = self.ctx.content.with_lease(lease);
        let labels = r.labels.into_iter().collect();
        let d = layers::diff_to_content(
            &content,
            &self.ctx.root,
            &ns,
            mounts(r.left),
            mounts(r.right),
            &media_type,
            labels,
        )
        .await?;
        Ok(Response::new(pb::DiffResponse {
            diff: Some(Descriptor {
                media_type,
                digest: d.digest.to_string(),
                size: i64::try_from(d.size).unwrap_or(i64::MAX),
                annotations: Default::default(),
            }),
        }))
    }
}

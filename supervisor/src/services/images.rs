//! containerd.services.images.v1.Images over [`crate::store::images`].
//!
//! Reference-changing calls hold a GC guard; Delete schedules a collection
//! (or runs one before replying when `sync` is set).

use berth_api::services::images::v1 as pb;
use berth_api::types::Descriptor;
use pb::images_server::Images;
use tonic::{Request, Response, Status};

use super::{convert, namespace, Context};
use crate::filters::{label_field, non_empty, Fields};
use crate::store::images::{self, Image, Target};

/// The Images service.
pub struct ImagesService {
    ctx: Context,
}

impl ImagesService {
    /// Serves images from `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

/// A stored target → a wire descriptor.
pub fn wire_descriptor(t: &Target) -> Descriptor {
    Descriptor {
        media_type: t.media_type.clone(),
        digest: t.digest.clone(),
        size: t.size,
        annotations: t
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A wire descriptor → a stored target.
pub fn target(d: Option<Descriptor>) -> Target {
    let d = d.unwrap_or_default();
    Target {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
        annotations: d.annotations.into_iter().collect(),
    }
}

fn to_wire(i: &Image) -> pb::Image {
    pb::Image {
        name: i.name.clone(),
        labels: convert::wire_labels(&i.labels),
        target: Some(wire_descriptor(&i.target)),
        created_at: Some(convert::timestamp(i.created_at)),
        updated_at: Some(convert::timestamp(i.updated_at)),
    }
}

fn from_wire(i: Option<pb::Image>) -> Image {
    let i = i.unwrap_or_default();
    Image {
        name: i.name,
        labels: convert::labels(i.labels),
        target: target(i.target),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    }
}

/// As containerd's image adaptor: name and target fields are present only
/// when set; `annotations` are the target's.
impl Fields for Image {
    fn field(&self, path: &[String]) -> Option<String> {
        let one = path.len() == 1;
        match path.first()?.as_str() {
            "name" if one => non_empty(&self.name),
            "labels" => label_field(&self.labels, &path[1..]),
            "annotations" => label_field(&self.target.annotations, &path[1..]),
            "target" => match (path.get(1).map(String::as_str), path.len()) {
                (Some("digest"), 2) => non_empty(&self.target.digest),
                (Some("mediatype" | "media_type"), 2) => non_empty(&self.target.media_type),
                (Some("annotations"), _) => label_field(&self.target.annotations, &path[2..]),
                _ => None,
            },
            _ => None,
        }
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    #[tracing::instrument(skip_all, fields(image = %req.get_ref().name))]
    async fn get(
        &self,
        req: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        let ns = namespace(&req)?;
        let img = images::get(&self.ctx.store, &ns, &req.get_ref().name)?;
        Ok(Response::new(pb::GetImageResponse {
            image: Some(to_wire(&img)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let ns = namespace(&req)?;
        let filter = super::parse_filters(&req.get_ref().filters)?;
        let images = images::list(&self.ctx.store, &ns)?
            .iter()
            .filter(|i| filter.matches(*i))
            .map(to_wire)
            .collect();
        Ok(Response::new(pb::ListImagesResponse { images }))
    }

    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        req: Request<pb::CreateImageRequest>,
    ) -> Result<Response<pb::CreateImageResponse>, Status> {
        let ns = namespace(&req)?;
        let img = from_wire(req.into_inner().image);
        let img = {
            let _hold = self.ctx.gc.hold().await;
            images::create(&self.ctx.store, &ns, img).await?
        };
        tracing::debug!(namespace = %ns, image = %img.name, "image created");
        crate::images::events::created(&self.ctx, &ns, &img).await;
        Ok(Response::new(pb::CreateImageResponse {
            image: Some(to_wire(&img)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        req: Request<pb::UpdateImageRequest>,
    ) -> Result<Response<pb::UpdateImageResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let paths = convert::mask_paths(r.update_mask);
        let img = from_wire(r.image);
        let img = {
            let _hold = self.ctx.gc.hold().await;
            images::update(&self.ctx.store, &ns, img, &paths).await?
        };
        crate::images::events::updated(&self.ctx, &ns, &img).await;
        self.ctx.collect_garbage(false).await?;
        Ok(Response::new(pb::UpdateImageResponse {
            image: Some(to_wire(&img)),
        }))
    }

    #[tracing::instrument(skip_all, fields(image = %req.get_ref().name))]
    async fn delete(&self, req: Request<pb::DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        {
            let _hold = self.ctx.gc.hold().await;
            images::delete(&self.ctx.store, &ns, &r.name).await?;
        }
        crate::images::events::deleted(&self.ctx, &ns, &r.name).await;
        self.ctx.collect_garbage(r.sync).await?;
        Ok(Response::new(()))
    }
}

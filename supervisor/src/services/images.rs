//! containerd.services.images.v1.Images over [`Images`].

use berth_api::services::images::v1 as pb;
use pb::images_server::Images as Service;
use tonic::{Request, Response, Status};

use super::{convert, namespace};
use crate::images::Images;
use crate::store::images::Image;

/// The Images service.
pub struct ImagesService {
    images: Images,
}

impl ImagesService {
    /// Serves `images`.
    pub fn new(images: Images) -> Self {
        Self { images }
    }
}

fn to_wire(i: &Image) -> pb::Image {
    pb::Image {
        name: i.name.clone(),
        labels: convert::wire_labels(&i.labels),
        target: Some(convert::wire_descriptor(&i.target)),
        created_at: Some(i.created_at.into()),
        updated_at: Some(i.updated_at.into()),
    }
}

fn from_wire(i: Option<pb::Image>) -> Image {
    let i = i.unwrap_or_default();
    Image {
        name: i.name,
        labels: convert::labels(i.labels),
        target: convert::target(i.target),
        created_at: std::time::UNIX_EPOCH,
        updated_at: std::time::UNIX_EPOCH,
    }
}

#[tonic::async_trait]
impl Service for ImagesService {
    #[tracing::instrument(skip_all, fields(image = %req.get_ref().name))]
    async fn get(
        &self,
        req: Request<pb::GetImageRequest>,
    ) -> Result<Response<pb::GetImageResponse>, Status> {
        let ns = namespace(&req)?;
        let img = self.images.get(&ns, &req.get_ref().name)?;
        Ok(Response::new(pb::GetImageResponse {
            image: Some(to_wire(&img)),
        }))
    }

    async fn list(
        &self,
        req: Request<pb::ListImagesRequest>,
    ) -> Result<Response<pb::ListImagesResponse>, Status> {
        let ns = namespace(&req)?;
        let all = self.images.list(&ns, &req.get_ref().filters)?;
        Ok(Response::new(pb::ListImagesResponse {
            images: all.iter().map(to_wire).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create(
        &self,
        req: Request<pb::CreateImageRequest>,
    ) -> Result<Response<pb::CreateImageResponse>, Status> {
        let ns = namespace(&req)?;
        let img = from_wire(req.into_inner().image);
        let img = self.images.create(&ns, img).await?;
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
        let img = self.images.update(&ns, from_wire(r.image), &paths).await?;
        Ok(Response::new(pb::UpdateImageResponse {
            image: Some(to_wire(&img)),
        }))
    }

    #[tracing::instrument(skip_all, fields(image = %req.get_ref().name))]
    async fn delete(&self, req: Request<pb::DeleteImageRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        self.images.delete(&ns, &r.name, r.sync).await?;
        Ok(Response::new(()))
    }
}

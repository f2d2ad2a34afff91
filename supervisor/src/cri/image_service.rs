//! Routes `runtime.v1.ImageService` to the [`Cri`] methods of the image
//! files; no logic here.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::Cri;

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Ok(Response::new(
            Cri::list_images(self, req.into_inner()).await?,
        ))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        Ok(Response::new(
            Cri::image_status(self, req.into_inner()).await?,
        ))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let deadline = super::helpers::caller_deadline(req.metadata());
        let pull = Cri::pull_image(self, req.into_inner());
        Ok(Response::new(
            super::helpers::within(deadline, "PullImage", pull).await?,
        ))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Ok(Response::new(
            Cri::remove_image(self, req.into_inner()).await?,
        ))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Ok(Response::new(Cri::image_fs_info(self).await?))
    }
}

//! Routes `runtime.v1.ImageService` to the [`Cri`] methods of the image
//! files; no logic here.

use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::helpers::not_served;
use super::Cri;

#[tonic::async_trait]
impl ImageService for Cri {
    async fn list_images(
        &self,
        _req: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        Err(not_served("ListImages"))
    }

    async fn image_status(
        &self,
        _req: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        Err(not_served("ImageStatus"))
    }

    async fn pull_image(
        &self,
        _req: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        Err(not_served("PullImage"))
    }

    async fn remove_image(
        &self,
        _req: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        Err(not_served("RemoveImage"))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        Err(not_served("ImageFsInfo"))
    }
}

//! Image records, as the container workflow reads them.

use berth_api::services::images::v1 as pb;

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Gets one image record.
pub async fn get(client: &Client, name: &str) -> Result<pb::Image> {
    client
        .images()
        .get(pb::GetImageRequest { name: name.into() })
        .await
        .with_context(|| format!("get image {name:?}"))?
        .into_inner()
        .image
        .ok_or_else(|| Error::Protocol(format!("get image {name:?}: empty reply")))
}

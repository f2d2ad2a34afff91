//! `/images/create`, `/images/update`, `/images/delete` events, with the
//! payload types containerd uses (`containerd.services.images.v1.Image*`).

use berth_api::services::images::v1 as pb;
use prost::Message as _;

use crate::events::Envelope;
use crate::services::{convert, Context};
use crate::store::images::Image;

fn publish(ctx: &Context, ns: &str, topic: &str, name: &str, value: Vec<u8>) {
    let env = Envelope {
        timestamp: std::time::SystemTime::now(),
        namespace: ns.to_string(),
        topic: topic.to_string(),
        event: prost_types::Any {
            type_url: format!("containerd.services.images.v1.{name}"),
            value,
        },
    };
    if let Err(e) = ctx.events.forward(env) {
        tracing::error!(error = %e, topic, "image event dropped");
    }
}

/// An image was created.
pub async fn created(ctx: &Context, ns: &str, img: &Image) {
    let m = pb::ImageCreate {
        name: img.name.clone(),
        labels: convert::wire_labels(&img.labels),
    };
    publish(ctx, ns, "/images/create", "ImageCreate", m.encode_to_vec());
}

/// An image was updated.
pub async fn updated(ctx: &Context, ns: &str, img: &Image) {
    let m = pb::ImageUpdate {
        name: img.name.clone(),
        labels: convert::wire_labels(&img.labels),
    };
    publish(ctx, ns, "/images/update", "ImageUpdate", m.encode_to_vec());
}

/// An image was deleted.
pub async fn deleted(ctx: &Context, ns: &str, name: &str) {
    let m = pb::ImageDelete {
        name: name.to_string(),
    };
    publish(ctx, ns, "/images/delete", "ImageDelete", m.encode_to_vec());
}

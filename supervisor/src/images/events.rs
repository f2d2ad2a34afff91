//! `/images/create`, `/images/update`, `/images/delete` events.
//!
//! The event bus is not wired into the daemon yet; until it is, these only
//! log (at debug) what they would publish.

use crate::services::Context;
use crate::store::images::Image;

/// An image was created.
pub async fn created(_ctx: &Context, ns: &str, img: &Image) {
    tracing::debug!(namespace = %ns, image = %img.name, topic = "/images/create", "event");
}

/// An image was updated.
pub async fn updated(_ctx: &Context, ns: &str, img: &Image) {
    tracing::debug!(namespace = %ns, image = %img.name, topic = "/images/update", "event");
}

/// An image was deleted.
pub async fn deleted(_ctx: &Context, ns: &str, name: &str) {
    tracing::debug!(namespace = %ns, image = %name, topic = "/images/delete", "event");
}

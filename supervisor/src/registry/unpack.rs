//! The layer unpacker pulls use: each layer, as soon as it and the ones
//! below it are present, applied into the committed snapshot named by its
//! chain ID (through the images module's unpack code).

use std::sync::Arc;

use super::pull::LayerUnpacker;
use crate::services::Context;

/// The unpacker over `ctx`'s snapshotters; None while unpacking is not
/// available in this build.
pub fn unpacker(_ctx: &Context) -> Option<Arc<dyn LayerUnpacker>> {
    None
}

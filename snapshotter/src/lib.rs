//! berth-snapshotter: containerd-style snapshotters (`overlayfs`, `native`),
//! the mount helpers that perform their mount specs, and layer apply/diff.
//!
//! Without the default `full` feature only [`mount`] is built (nix/libc only),
//! which is all `berth-shim` needs to mount a container's rootfs.

pub mod mount;
mod sys;

pub use mount::{mount_all, unmount, Mount, MountError};

#[cfg(feature = "full")]
mod error;
#[cfg(feature = "full")]
mod fsutil;
#[cfg(feature = "full")]
pub mod snapshot;

#[cfg(feature = "full")]
pub use error::{Error, ErrorKind, Result};
#[cfg(feature = "full")]
pub use snapshot::{Backend, Info, Kind, Snapshotter, Usage, MAX_LAYERS};
#[cfg(feature = "full")]
pub mod layer;
#[cfg(feature = "full")]
pub use layer::{
    apply_layer, apply_layer_staged, diff_layer, Applied, Compression, Written, MAX_DEPTH,
    MAX_PATH_BYTES,
};

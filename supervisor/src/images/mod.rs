//! Images beyond their records: events, layer apply/diff against the
//! content store, archive import and unpack.

pub mod archive;
pub mod events;
pub mod export;
pub mod import;
pub mod layers;
pub mod oci;
pub mod unpack;

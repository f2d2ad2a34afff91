//! Images: their records as a service ([`Images`]), layer apply/diff
//! against the content store ([`layers`]), unpack into snapshots
//! ([`Unpacker`]), and archive import/export ([`Archives`]).

pub mod archive;
pub mod archives;
pub mod export;
pub mod import;
pub mod layers;
pub mod service;
pub mod unpack;

pub use archives::Archives;
pub use layers::Differ;
pub use service::Images;
pub use unpack::Unpacker;

//! Images beyond their records: events, archive import/export and unpack.

pub mod events;

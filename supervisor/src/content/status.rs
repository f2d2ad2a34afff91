//! What an ingest reports (Status, ListStatuses), and the unix-nanosecond
//! form its times take on disk (`startedat`, `updatedat`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_api::Digest;

use crate::filters::Fields;

/// The state of one ingest, as Status and ListStatuses report it.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestStatus {
    /// The client's ref.
    pub reference: String,
    /// Bytes written so far.
    pub offset: u64,
    /// Expected total size (0: unknown).
    pub total: u64,
    /// Expected digest, when given at creation.
    pub expected: Option<Digest>,
    /// When the ingest began.
    pub started_at: SystemTime,
    /// When data was last written.
    pub updated_at: SystemTime,
}

impl Fields for IngestStatus {
    fn field(&self, path: &[String]) -> Option<String> {
        match path.first()?.as_str() {
            "ref" if path.len() == 1 => Some(self.reference.clone()),
            _ => None,
        }
    }
}

/// A time as the unix nanoseconds written to `startedat` / `updatedat`.
pub(crate) fn nanos(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// Reads a time written by [`nanos`]; None when it does not parse.
pub(crate) fn from_nanos(s: &str) -> Option<SystemTime> {
    let n: u128 = s.trim().parse().ok()?;
    let secs = u64::try_from(n / 1_000_000_000).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, (n % 1_000_000_000) as u32))
}

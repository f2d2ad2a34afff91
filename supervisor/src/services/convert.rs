//! Conversions between wire types and domain types.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prost_types::Timestamp;

/// SystemTime → protobuf Timestamp.
pub fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// protobuf Timestamp → SystemTime (None for an absent or negative one).
pub fn system_time(t: Option<&Timestamp>) -> Option<SystemTime> {
    let t = t?;
    if t.seconds < 0 || t.nanos < 0 {
        return None;
    }
    Some(UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32))
}

/// A wire label map → our ordered map.
pub fn labels(m: std::collections::HashMap<String, String>) -> crate::store::labels::Labels {
    m.into_iter().collect()
}

/// Our ordered map → a wire label map.
pub fn wire_labels(m: &crate::store::labels::Labels) -> std::collections::HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The paths of an optional field mask.
pub fn mask_paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

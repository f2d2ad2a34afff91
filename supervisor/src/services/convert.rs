//! Conversions between wire types and domain types, in one place (times
//! convert with prost-types' own `From`/`TryFrom`).

use std::collections::HashMap;

use berth_api::types::{Descriptor, Mount as WireMount};
use berth_snapshotter::Mount;

use crate::store::images::Target;
use crate::store::labels::Labels;

/// A wire label map → our ordered map.
pub fn labels(m: HashMap<String, String>) -> Labels {
    m.into_iter().collect()
}

/// Our ordered map → a wire label map.
pub fn wire_labels(m: &Labels) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The paths of an optional field mask.
pub fn mask_paths(mask: Option<prost_types::FieldMask>) -> Vec<String> {
    mask.map(|m| m.paths).unwrap_or_default()
}

/// Domain mounts → wire mounts.
pub fn wire_mounts(m: Vec<Mount>) -> Vec<WireMount> {
    m.into_iter()
        .map(|m| WireMount {
            r#type: m.kind,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

/// Wire mounts → domain mounts.
pub fn mounts(m: Vec<WireMount>) -> Vec<Mount> {
    m.into_iter()
        .map(|m| Mount {
            kind: m.r#type,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

/// A stored target → a wire descriptor.
pub fn wire_descriptor(t: &Target) -> Descriptor {
    Descriptor {
        media_type: t.media_type.clone(),
        digest: t.digest.clone(),
        size: t.size,
        annotations: t
            .annotations
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

/// A wire descriptor → a stored target.
pub fn target(d: Option<Descriptor>) -> Target {
    let d = d.unwrap_or_default();
    Target {
        media_type: d.media_type,
        digest: d.digest,
        size: d.size,
        annotations: d.annotations.into_iter().collect(),
    }
}

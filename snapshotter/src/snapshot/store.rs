//! Snapshot records in sled: key layout and (de)serialisation.
//!
//! One tree, two key families:
//! - `s\0<namespace>\0<key>` → JSON [`Record`]
//! - `c\0<namespace>\0<parent>\0<child>` → empty (children index, so removing
//!   a parent with children is refused without a scan)
//!
//! Keys and namespaces never contain NUL (validated on entry), so the
//! separators are unambiguous.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Info, Kind};
use crate::error::{Error, Result};

/// What sled stores for one snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: u64,
    pub(crate) kind: Kind,
    pub(crate) parent: Option<String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) created_ns: u128,
    pub(crate) updated_ns: u128,
    /// Disk usage measured at commit (committed snapshots only).
    pub(crate) size: Option<u64>,
    pub(crate) inodes: Option<u64>,
}

impl Record {
    pub(crate) fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_owned(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone().into_iter().collect(),
            created_at: from_ns(self.created_ns),
            updated_at: from_ns(self.updated_ns),
        }
    }

    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::Store(format!("encode record: {e}")))
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| Error::Store(format!("decode record: {e}")))
    }
}

pub(crate) fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn from_ns(ns: u128) -> SystemTime {
    let secs = u64::try_from(ns / 1_000_000_000).unwrap_or(u64::MAX);
    UNIX_EPOCH + Duration::new(secs, (ns % 1_000_000_000) as u32)
}

pub(crate) fn snap_key(ns: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(3 + ns.len() + key.len());
    k.extend_from_slice(b"s\0");
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn snap_prefix(ns: &str) -> Vec<u8> {
    let mut k = snap_key(ns, "");
    k.truncate(k.len());
    k
}

pub(crate) fn child_key(ns: &str, parent: &str, child: &str) -> Vec<u8> {
    let mut k = child_prefix(ns, parent);
    k.extend_from_slice(child.as_bytes());
    k
}

pub(crate) fn child_prefix(ns: &str, parent: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + ns.len() + parent.len());
    k.extend_from_slice(b"c\0");
    k.extend_from_slice(ns.as_bytes());
    k.push(0);
    k.extend_from_slice(parent.as_bytes());
    k.push(0);
    k
}

/// Validates a namespace (containerd identifier rules).
pub(crate) fn check_namespace(ns: &str) -> Result<()> {
    berth_api::identifiers::validate("namespace", ns)
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Validates a snapshot key or name: non-empty, no NUL, at most 4096 bytes.
pub(crate) fn check_key(field: &str, key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{field}: must not be empty"
        )));
    }
    if key.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{field}: {} contains NUL",
            berth_api::echo::Echo(key)
        )));
    }
    if key.len() > 4096 {
        return Err(Error::InvalidArgument(format!(
            "{field}: longer than 4096 bytes"
        )));
    }
    Ok(())
}

//! Network records in the metadata store (tree `berth.networks`, keyed by
//! name; JSON), flushed before a write returns.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::SystemTime;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{Error, Result};
use crate::store::Store;

const TREE: &str = "berth.networks";

/// One network as berthd keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Its name (also the CNI network name).
    pub name: String,
    /// 64 hex digits.
    pub id: String,
    /// `bridge`, or `host`/`null` for the built-in ones.
    pub driver: String,
    /// Its subnet (unused for host and none).
    #[serde(with = "ipnet_text")]
    pub subnet: IpNet,
    /// Its gateway, the bridge's address.
    pub gateway: IpAddr,
    /// The bridge device.
    pub bridge: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// When it was created.
    pub created_at: SystemTime,
    /// No masquerading out of the subnet.
    pub internal: bool,
    /// berthd's own (bridge, host, none).
    pub builtin: bool,
}

/// An `IpNet` as its text (`10.91.0.0/24`).
pub(crate) mod ipnet_text {
    use ipnet::IpNet;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &IpNet, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<IpNet, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// A fresh id.
pub(super) fn new_id() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// The record shown for `host` and `none`.
pub(super) fn builtin(name: &str, driver: &str) -> NetworkRecord {
    use sha2::{Digest as _, Sha256};
    NetworkRecord {
        name: name.into(),
        id: hex::encode(Sha256::digest(format!("berth network {name}"))),
        driver: driver.into(),
        subnet: IpNet::V4(Default::default()),
        gateway: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        bridge: String::new(),
        labels: BTreeMap::new(),
        created_at: SystemTime::UNIX_EPOCH,
        internal: false,
        builtin: true,
    }
}

/// A network name: 1-64 of `[A-Za-z0-9_.-]`, starting alphanumeric (it is
/// also a CNI network name and a file name).
pub(super) fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "network name {name:?}: 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )));
    }
    Ok(())
}

/// The record of `name`, if any.
pub(super) fn get(store: &Store, name: &str) -> Result<Option<NetworkRecord>> {
    let raw = store.tree(TREE)?.get(name.as_bytes())?;
    raw.map(|b| serde_json::from_slice(&b).map_err(|e| Error::Internal(e.to_string())))
        .transpose()
}

/// Every record, by name.
pub(super) fn all(store: &Store) -> Result<Vec<NetworkRecord>> {
    let mut out = Vec::new();
    for kv in store.tree(TREE)?.iter() {
        let (_, v) = kv.map_err(crate::store::Error::from)?;
        match serde_json::from_slice(&v) {
            Ok(r) => out.push(r),
            Err(e) => tracing::warn!(error = %e, "unreadable network record skipped"),
        }
    }
    Ok(out)
}

/// Writes a record, durably.
pub(super) async fn put(store: &Store, rec: &NetworkRecord) -> Result<()> {
    let bytes = serde_json::to_vec(rec).map_err(|e| Error::Internal(e.to_string()))?;
    store.tree(TREE)?.insert(rec.name.as_bytes(), bytes)?;
    store.flush().await?;
    Ok(())
}

/// Deletes a record, durably.
pub(super) async fn delete(store: &Store, name: &str) -> Result<()> {
    store.tree(TREE)?.remove(name.as_bytes())?;
    store.flush().await?;
    Ok(())
}

//! Key layout and JSON encoding shared by the record modules.

use serde::{de::DeserializeOwned, Serialize};

use super::Result;

/// `"{ns}/{id}"`.
pub fn ns_key(ns: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(ns.len() + 1 + id.len());
    k.extend_from_slice(ns.as_bytes());
    k.push(b'/');
    k.extend_from_slice(id.as_bytes());
    k
}

/// `"{ns}/"`: the prefix of every record of a namespace.
pub fn ns_prefix(ns: &str) -> Vec<u8> {
    ns_key(ns, "")
}

/// The id part of a namespaced key.
pub(crate) fn id_of(key: &[u8], ns: &str) -> String {
    String::from_utf8_lossy(&key[ns.len() + 1..]).into_owned()
}

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(v)?)
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(b)?)
}

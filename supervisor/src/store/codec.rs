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

/// A record's bytes, once the disk has room to write them (see
/// [`super::Store::room_for`]).
pub(crate) fn encode<T: Serialize>(store: &super::Store, v: &T) -> Result<Vec<u8>> {
    let bytes = serde_json::to_vec(v)?;
    store.room_for(bytes.len() as u64)?;
    Ok(bytes)
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(b)?)
}

/// The record at `key` of `tree`; NotFound naming `kind` and `id` when
/// there is none.
pub(crate) fn get<T: DeserializeOwned>(
    store: &super::Store,
    tree: &str,
    key: &[u8],
    kind: &'static str,
    id: &str,
) -> Result<T> {
    let raw = store.tree(tree)?.get(key)?;
    decode(&raw.ok_or_else(|| super::Error::NotFound {
        kind,
        id: id.into(),
    })?)
}

/// Every record of `tree` whose key starts with `prefix`, in key order,
/// with the rest of its key.
pub(crate) fn scan<T: DeserializeOwned>(
    store: &super::Store,
    tree: &str,
    prefix: &[u8],
) -> Result<Vec<(String, T)>> {
    let mut out = Vec::new();
    for kv in store.tree(tree)?.scan_prefix(prefix) {
        let (k, v) = kv?;
        let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
        out.push((rest, decode(&v)?));
    }
    Ok(out)
}

/// Every record of a namespaced tree, as (namespace, id, record).
pub(crate) fn scan_all<T: DeserializeOwned>(
    store: &super::Store,
    tree: &str,
) -> Result<Vec<(String, String, T)>> {
    Ok(scan(store, tree, b"")?
        .into_iter()
        .filter_map(|(key, v)| {
            let (ns, id) = key.split_once('/')?;
            Some((ns.to_string(), id.to_string(), v))
        })
        .collect())
}

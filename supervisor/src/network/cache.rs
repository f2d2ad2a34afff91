//! The attachment cache: one JSON file per attachment,
//! `ROOT/network/cache/<network>/<container id>/<ifname>.json`, holding
//! what an ADD was given (the plugin list, CNI_ARGS, capability args, the
//! netns) and, once it succeeded, its result. (A directory per container
//! instead of libcni's `<id>-<ifname>` file name: IDs and interface names
//! may both contain '-', and the two must never collide.)
//!
//! An entry is written before the plugins run ([`AttachState::Adding`])
//! and again with the result ([`AttachState::Added`]); so after a crash at
//! any point there is either no entry (nothing ran) or one that tells a
//! DEL what to undo. Every write is durable before it returns: temp file,
//! fsync, rename, fsync of the directory. All calls here are blocking.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::Error;
use super::Result;

/// The `kind` of entries written by this module.
pub(crate) const KIND: &str = "berth-cni-cache-v1";

/// How far an attachment got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachState {
    /// ADD was started (and may have been cut short): DEL it to clean up
    Adding,
    /// ADD succeeded; `result` is set
    Added,
}

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    /// Always [`KIND`].
    pub(crate) kind: String,
    /// The network name.
    pub(crate) network: String,
    /// The container (or pod sandbox) ID.
    pub(crate) container_id: String,
    /// The interface name in the container.
    pub(crate) if_name: String,
    /// The netns path the ADD was given.
    pub(crate) netns: String,
    /// The plugin list the ADD ran, in the conflist form.
    pub(crate) config: Value,
    /// The CNI_ARGS pairs the ADD was given.
    #[serde(default)]
    pub(crate) cni_args: Vec<(String, String)>,
    /// The capability args (runtimeConfig) the ADD was given.
    #[serde(default)]
    pub(crate) capability_args: Map<String, Value>,
    /// How far it got.
    pub(crate) state: AttachState,
    /// The ADD's result, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) result: Option<Value>,
}

/// The cache rooted at one directory.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    root: PathBuf,
}

impl Cache {
    pub(crate) fn new(root: PathBuf) -> Self {
        Cache { root }
    }

    fn container_dir(&self, network: &str, container_id: &str) -> PathBuf {
        self.root.join(network).join(container_id)
    }

    /// The entry's path; the names were validated by the caller (network
    /// and container ID by libcni's rule, ifname with no '/').
    pub(crate) fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.container_dir(network, container_id)
            .join(format!("{ifname}.json"))
    }

    /// Writes `entry` durably, replacing any earlier one.
    pub(crate) fn write(&self, entry: &CacheEntry) -> Result<()> {
        let dir = self.container_dir(&entry.network, &entry.container_id);
        make_dirs(&self.root, &[&entry.network, &entry.container_id])?;
        let path = self.path(&entry.network, &entry.container_id, &entry.if_name);
        let tmp = dir.join(format!(".{}.json.tmp", entry.if_name));
        let bytes = serde_json::to_vec_pretty(entry)
            .map_err(|e| Error::io("encode cache entry", &path, io::Error::other(e)))?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io("create", &tmp, e))?;
        f.write_all(&bytes)
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("write", &tmp, e))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename into place", &path, e))?;
        sync_dir(&dir)
    }

    /// The entry, if there is a readable one. A damaged entry is reported
    /// in the log and treated as absent (a DEL must still be possible).
    pub(crate) fn read(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CacheEntry>> {
        let path = self.path(network, container_id, ifname);
        read_entry(&path)
    }

    /// Removes the entry durably; a missing one is fine.
    pub(crate) fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let dir = self.container_dir(network, container_id);
        let path = self.path(network, container_id, ifname);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("remove cache entry", &path, e)),
        }
        sync_dir(&dir)?;
        // the container's dir goes with its last entry
        if fs::remove_dir(&dir).is_ok() {
            sync_dir(&self.root.join(network))?;
        }
        Ok(())
    }

    /// Every readable entry, of every network.
    pub(crate) fn list(&self) -> Result<Vec<CacheEntry>> {
        let mut out = Vec::new();
        for network in subdirs(&self.root)? {
            for container in subdirs(&network)? {
                let files =
                    fs::read_dir(&container).map_err(|e| Error::io("read", &container, e))?;
                for file in files.flatten() {
                    let path = file.path();
                    let name = file.file_name();
                    let name = name.to_string_lossy();
                    if name.starts_with('.') || !name.ends_with(".json") {
                        continue;
                    }
                    if let Some(entry) = read_entry(&path)? {
                        out.push(entry);
                    }
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.network, &a.container_id, &a.if_name).cmp(&(
                &b.network,
                &b.container_id,
                &b.if_name,
            ))
        });
        Ok(out)
    }
}

fn read_entry(path: &Path) -> Result<Option<CacheEntry>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("read cache entry", path, e)),
    };
    match serde_json::from_slice::<CacheEntry>(&bytes) {
        Ok(entry) if entry.kind == KIND => Ok(Some(entry)),
        Ok(entry) => {
            tracing::warn!(path = %path.display(), kind = %entry.kind, "cni cache entry of unknown kind ignored");
            Ok(None)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "damaged cni cache entry ignored");
            Ok(None)
        }
    }
}

fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read", dir, e)),
    };
    Ok(entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect())
}

/// Creates `root/a/b/...` (0700), fsyncing each parent a new dir was made in.
fn make_dirs(root: &Path, parts: &[&str]) -> Result<()> {
    if !root.is_dir() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io("create cache dir", root, e))?;
    }
    let mut dir = root.to_path_buf();
    for part in parts {
        let next = dir.join(part);
        match fs::DirBuilder::new().mode(0o700).create(&next) {
            Ok(()) => sync_dir(&dir)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(Error::io("create cache dir", &next, e)),
        }
        dir = next;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(network: &str, id: &str, ifname: &str) -> CacheEntry {
        CacheEntry {
            kind: KIND.into(),
            network: network.into(),
            container_id: id.into(),
            if_name: ifname.into(),
            netns: "/run/berth/netns/x".into(),
            config: serde_json::json!({"name": network}),
            cni_args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: Map::new(),
            state: AttachState::Adding,
            result: None,
        }
    }

    #[test]
    fn write_read_replace_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("cache"));
        assert_eq!(cache.read("net", "c1", "eth0").unwrap(), None);
        let mut e = entry("net", "c1", "eth0");
        cache.write(&e).unwrap();
        assert_eq!(cache.read("net", "c1", "eth0").unwrap(), Some(e.clone()));
        e.state = AttachState::Added;
        e.result = Some(serde_json::json!({"cniVersion": "1.0.0"}));
        cache.write(&e).unwrap();
        assert_eq!(cache.read("net", "c1", "eth0").unwrap(), Some(e.clone()));
        let path = cache.path("net", "c1", "eth0");
        assert!(path.ends_with("cache/net/c1/eth0.json"));
        // no temp file left behind
        let names: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        cache.remove("net", "c1", "eth0").unwrap();
        assert_eq!(cache.read("net", "c1", "eth0").unwrap(), None);
        assert!(
            !path.parent().unwrap().exists(),
            "container dir removed with its last entry"
        );
        cache.remove("net", "c1", "eth0").unwrap();
    }

    #[test]
    fn ids_with_dashes_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        cache.write(&entry("net", "a-b", "c")).unwrap();
        cache.write(&entry("net", "a", "b-c")).unwrap();
        assert_eq!(cache.list().unwrap().len(), 2);
    }

    #[test]
    fn list_skips_damaged_entries() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf());
        cache.write(&entry("n1", "c1", "eth0")).unwrap();
        cache.write(&entry("n2", "c2", "eth1")).unwrap();
        fs::write(dir.path().join("n2/c2/eth9.json"), b"{broken").unwrap();
        let all = cache.list().unwrap();
        let keys: Vec<_> = all
            .iter()
            .map(|e| (e.network.as_str(), e.if_name.as_str()))
            .collect();
        assert_eq!(keys, [("n1", "eth0"), ("n2", "eth1")]);
        assert_eq!(cache.read("n2", "c2", "eth9").unwrap(), None);
    }
}

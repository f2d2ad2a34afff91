//! Shared test helpers: tar building with raw names, mount guards, trees.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use std::collections::HashMap;

use berth_snapshotter::{apply_layer, mount_all, unmount, Mount, Snapshotter};

pub const MTIME: u64 = 1_600_000_000;

/// Builds a layer tar entry by entry; names and link names are written raw
/// (the tar crate would refuse hostile ones).
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

impl Layer {
    pub fn new() -> Self {
        Self {
            b: tar::Builder::new(Vec::new()),
        }
    }

    pub fn raw(
        &mut self,
        kind: tar::EntryType,
        name: &str,
        link: &str,
        mode: u32,
        uid: u64,
        data: &[u8],
    ) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_size(data.len() as u64);
        h.set_mtime(MTIME);
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(tar::EntryType::Directory, name, "", mode, 0, b"")
    }
    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(tar::EntryType::Regular, name, "", 0o644, 0, data)
    }
    pub fn file_mode(&mut self, name: &str, mode: u32, uid: u64, data: &[u8]) -> &mut Self {
        self.raw(tar::EntryType::Regular, name, "", mode, uid, data)
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(tar::EntryType::Symlink, name, target, 0o777, 0, b"")
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(tar::EntryType::Link, name, target, 0o644, 0, b"")
    }
    pub fn whiteout(&mut self, name: &str) -> &mut Self {
        self.raw(tar::EntryType::Regular, name, "", 0o600, 0, b"")
    }
    pub fn fifo(&mut self, name: &str) -> &mut Self {
        self.raw(tar::EntryType::Fifo, name, "", 0o640, 0, b"")
    }
    pub fn chardev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Char);
        h.set_mode(0o666);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(MTIME);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        h.set_path(name).unwrap();
        h.set_cksum();
        self.b.append(&h, &b""[..]).unwrap();
        self
    }
    /// A file with a `user.` xattr carried as a PAX SCHILY.xattr record.
    pub fn file_xattr(&mut self, name: &str, key: &str, value: &[u8], data: &[u8]) -> &mut Self {
        let k = format!("SCHILY.xattr.{key}");
        self.b.append_pax_extensions([(k.as_str(), value)]).unwrap();
        self.file(name, data)
    }
    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

/// Unmounts on drop.
pub struct MountGuard {
    pub path: PathBuf,
}

impl MountGuard {
    pub fn new(mounts: &[Mount], path: &Path) -> Self {
        fs::create_dir_all(path).unwrap();
        mount_all(mounts, path).unwrap();
        Self {
            path: path.to_owned(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.path) {
            eprintln!("unmount {}: {e}", self.path.display());
        }
    }
}

/// A recursive description of a tree (type, mode, owner, content/target),
/// to assert a directory is byte-for-byte unchanged.
pub fn snapshot_tree(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let p = root.join(rel);
    let m = fs::symlink_metadata(&p).unwrap();
    let ft = m.file_type();
    let desc = if ft.is_dir() {
        "dir".to_string()
    } else if ft.is_symlink() {
        format!("link:{}", fs::read_link(&p).unwrap().display())
    } else if ft.is_file() {
        format!("file:{:?}", fs::read(&p).unwrap())
    } else if ft.is_char_device() || ft.is_block_device() {
        format!("dev:{}", m.rdev())
    } else {
        "other".into()
    };
    out.insert(
        rel.to_owned(),
        format!(
            "{desc} mode={:o} uid={} gid={} mtime={}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime()
        ),
    );
    if ft.is_dir() {
        let mut names: Vec<_> = fs::read_dir(&p)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for n in names {
            walk(root, &rel.join(n), out);
        }
    }
}

/// Skips loudly unless we are root (mounts, chown, trusted xattrs).
pub fn need_root() -> bool {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("SKIPPING: this test needs root (mounts, chown, trusted.* xattrs)");
        return false;
    }
    true
}

/// Prepare → apply → commit each layer, one after the other (namespace
/// `default`, keys `<prefix>-extract-<i>`, names `<prefix>-layer-<i>`);
/// returns the top committed name.
pub fn unpack(s: &Snapshotter, prefix: &str, layers: &[Vec<u8>], mt: &str) -> String {
    let mut parent: Option<String> = None;
    for (i, l) in layers.iter().enumerate() {
        let key = format!("{prefix}-extract-{i}");
        let name = format!("{prefix}-layer-{i}");
        let m = s
            .prepare("default", &key, parent.as_deref(), HashMap::new())
            .unwrap();
        apply_layer(&m, &l[..], mt).unwrap_or_else(|e| panic!("layer {i}: {e}"));
        s.commit("default", &name, &key, HashMap::new()).unwrap();
        parent = Some(name);
    }
    parent.unwrap()
}

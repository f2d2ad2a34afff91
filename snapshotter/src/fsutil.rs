//! Filesystem helpers over trees we own (snapshot dirs): faithful recursive
//! copy for the native snapshotter, disk usage, metadata copying.
//!
//! These walk trusted trees under the snapshotter root and never follow
//! symlinks (`symlink_metadata`, `lchown`, `utimensat(AT_SYMLINK_NOFOLLOW)`).

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;

use crate::error::{Error, Result};
use crate::sys;

/// Copies owner, mode, xattrs and times of `meta` (read from `src`) to `dst`.
/// Symlinks get owner, xattrs and times only.
pub(crate) fn copy_metadata(src: &Path, meta: &fs::Metadata, dst: &Path) -> Result<()> {
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))
        .map_err(|e| Error::io("chown", dst, e))?;
    let is_link = meta.file_type().is_symlink();
    if !is_link {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| Error::io("chmod", dst, e))?;
    }
    copy_xattrs(src, dst)?;
    set_times(
        dst,
        meta.atime(),
        meta.atime_nsec(),
        meta.mtime(),
        meta.mtime_nsec(),
    )
}

/// Copies every xattr of `src` to `dst` (final symlinks not followed).
pub(crate) fn copy_xattrs(src: &Path, dst: &Path) -> Result<()> {
    let names = sys::llistxattr(src.as_os_str()).map_err(|e| Error::io("listxattr", src, e))?;
    for name in names {
        let name = std::ffi::OsStr::from_bytes_ext(&name);
        if let Some(v) =
            sys::lgetxattr(src.as_os_str(), name).map_err(|e| Error::io("getxattr", src, e))?
        {
            sys::lsetxattr(dst.as_os_str(), name, &v).map_err(|e| Error::io("setxattr", dst, e))?;
        }
    }
    Ok(())
}

trait FromBytesExt {
    fn from_bytes_ext(b: &[u8]) -> &Self;
}
impl FromBytesExt for std::ffi::OsStr {
    fn from_bytes_ext(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

/// Sets atime/mtime of `path` without following a final symlink.
pub(crate) fn set_times(path: &Path, asec: i64, ansec: i64, msec: i64, mnsec: i64) -> Result<()> {
    let a = TimeSpec::new(asec, ansec);
    let m = TimeSpec::new(msec, mnsec);
    nix::sys::stat::utimensat(
        None,
        path,
        &a,
        &m,
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| Error::io("utimensat", path, e.into()))
}

/// Recursively copies the contents of `src` into the existing dir `dst`,
/// keeping owners, modes, xattrs, times, symlinks, hard links (within the
/// tree), devices, fifos and sockets. `dst`'s own metadata is set from `src`.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links = HashMap::new();
    copy_dir(src, dst, &mut links)?;
    let meta = fs::symlink_metadata(src).map_err(|e| Error::io("stat", src, e))?;
    copy_metadata(src, &meta, dst)
}

fn copy_dir(
    src: &Path,
    dst: &Path,
    links: &mut HashMap<(u64, u64), std::path::PathBuf>,
) -> Result<()> {
    let rd = fs::read_dir(src).map_err(|e| Error::io("readdir", src, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("readdir", src, e))?;
        let s = ent.path();
        let d = dst.join(ent.file_name());
        let meta = fs::symlink_metadata(&s).map_err(|e| Error::io("stat", &s, e))?;
        let ft = meta.file_type();
        if !ft.is_dir() && meta.nlink() > 1 {
            if let Some(first) = links.get(&(meta.dev(), meta.ino())) {
                fs::hard_link(first, &d).map_err(|e| Error::io("link", &d, e))?;
                continue;
            }
            links.insert((meta.dev(), meta.ino()), d.clone());
        }
        if ft.is_dir() {
            fs::create_dir(&d).map_err(|e| Error::io("mkdir", &d, e))?;
            copy_dir(&s, &d, links)?;
        } else if ft.is_file() {
            fs::copy(&s, &d).map_err(|e| Error::io("copy", &d, e))?;
        } else if ft.is_symlink() {
            let t = fs::read_link(&s).map_err(|e| Error::io("readlink", &s, e))?;
            std::os::unix::fs::symlink(&t, &d).map_err(|e| Error::io("symlink", &d, e))?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_fifo() {
                SFlag::S_IFIFO
            } else {
                SFlag::S_IFSOCK
            };
            nix::sys::stat::mknod(&d, kind, Mode::from_bits_truncate(0o600), meta.rdev())
                .map_err(|e| Error::io("mknod", &d, e.into()))?;
        }
        copy_metadata(&s, &meta, &d)?;
    }
    Ok(())
}

/// Disk usage of a tree: bytes in allocated blocks and inode count (hard
/// links counted once).
pub(crate) fn disk_usage(root: &Path) -> Result<(u64, u64)> {
    let mut seen = HashSet::new();
    let mut size = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = match fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io("stat", &p, e)),
        };
        if seen.insert((meta.dev(), meta.ino())) {
            inodes += 1;
            size += meta.blocks() * 512;
        }
        if meta.is_dir() {
            let rd = fs::read_dir(&p).map_err(|e| Error::io("readdir", &p, e))?;
            for ent in rd {
                let ent = ent.map_err(|e| Error::io("readdir", &p, e))?;
                stack.push(ent.path());
            }
        }
    }
    Ok((size, inodes))
}

/// fsyncs `dir` (after a rename into it, to make the rename durable).
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = fs::File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    f.sync_all().map_err(|e| Error::io("fsync", dir, e))
}

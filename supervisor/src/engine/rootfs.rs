//! A container's filesystem seen from berthd, confined to it: paths are
//! resolved with `openat2(RESOLVE_IN_ROOT)` from a directory fd on the
//! container's root (so `..` and symlinks, absolute ones too, never leave
//! it, as in a chroot), then read and written only through fds and
//! `/proc/self/fd/N/NAME` paths, without following a symlink at the last
//! component. Paths given by a client that name `..` are refused outright.
//!
//! The root is `/proc/PID/root` of a running container (its volumes and
//! other mounts included) or, for a stopped one, its snapshot mounted on a
//! private temporary directory ([`Mounted`]). Everything here blocks.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use berth_snapshotter::Mount;
use nix::fcntl::OFlag;

use super::rootfs_sys::open_in_root;
use super::{Error, Result};

/// A client's path in a container, as components below `/` (empty: `/`);
/// `..`, NUL and an empty path are refused.
pub(super) fn clean(path: &str) -> Result<Vec<OsString>> {
    if path.is_empty() || path.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "container path {path:?}: must be a non-empty path"
        )));
    }
    let mut out = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                return Err(Error::InvalidArgument(format!(
                    "container path {path:?}: \"..\" is not allowed"
                )))
            }
            c => out.push(OsString::from(c)),
        }
    }
    Ok(out)
}

/// The path a component list names (`/a/b`).
pub(super) fn display(comps: &[OsString]) -> String {
    let mut s = String::new();
    for c in comps {
        s.push('/');
        s.push_str(&c.to_string_lossy());
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// `/proc/self/fd/N`: a path syscalls resolve to the fd's file itself.
pub(super) fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A container's root directory, held open.
pub(super) struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens the directory at `path` (berthd's own path: followed).
    pub(super) fn open(path: &Path) -> io::Result<Root> {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Root { fd: f.into() })
    }

    /// Opens `comps` inside the root with `flags` (`O_PATH` to look).
    pub(super) fn resolve(&self, comps: &[OsString], flags: OFlag) -> io::Result<OwnedFd> {
        let mut p = OsString::from("/");
        for (i, c) in comps.iter().enumerate() {
            if i > 0 {
                p.push("/");
            }
            p.push(c);
        }
        open_in_root(self.fd.as_fd(), &p, flags)
    }

    /// Opens the directory `comps` for listing and writing.
    pub(super) fn dir(&self, comps: &[OsString]) -> io::Result<OwnedFd> {
        self.resolve(comps, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
    }
}

/// A snapshot's mounts on a temporary directory, unmounted on drop.
pub(super) struct Mounted {
    dir: tempfile::TempDir,
}

impl Mounted {
    /// Mounts `mounts` on a new directory under `parent`.
    pub(super) fn new(mounts: &[Mount], parent: &Path) -> Result<Mounted> {
        fs::create_dir_all(parent).map_err(Error::io("create", parent))?;
        let dir = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(parent)
            .map_err(Error::io("create temporary dir", parent))?;
        berth_snapshotter::mount::mount_all(mounts, dir.path())
            .map_err(|e| Error::Internal(format!("mount rootfs: {e}")))?;
        Ok(Mounted { dir })
    }

    /// Where the rootfs is.
    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Err(e) = berth_snapshotter::mount::unmount(self.dir.path()) {
            tracing::warn!(path = %self.dir.path().display(), error = %e, "unmount of a temporary rootfs failed");
        }
    }
}

/// Opens entry `name` of directory `dir` without following a symlink.
pub(super) fn open_child(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    directory: bool,
) -> io::Result<OwnedFd> {
    let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC;
    if directory {
        flags |= libc::O_DIRECTORY;
    }
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags)
        .open(fd_path(dir).join(name))?;
    Ok(f.into())
}

/// Sorted entry names of the directory `dir`.
pub(super) fn entries(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut v = fs::read_dir(fd_path(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()?;
    v.sort();
    Ok(v)
}

/// Copies the tree below directory `src` into the existing directory
/// `dst` (Docker's copy-up of an image's content into a new volume):
/// directories, regular files and symlinks with their modes, owners and
/// times; other kinds are skipped. `dst` takes `src`'s mode and owner.
pub(super) fn copy_tree(src: BorrowedFd<'_>, dst: &Path) -> io::Result<()> {
    let m = fs::metadata(fd_path(src))?;
    copy_meta(dst, &m, false)?;
    for name in entries(src)? {
        let from = fd_path(src).join(&name);
        let to = dst.join(&name);
        let m = fs::symlink_metadata(&from)?;
        let ft = m.file_type();
        if ft.is_dir() {
            fs::create_dir(&to)?;
            let child = open_child(src, &name, true)?;
            copy_tree(child.as_fd(), &to)?;
        } else if ft.is_file() {
            let mut r = fs::File::from(open_child(src, &name, false)?);
            let mut w = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&to)?;
            io::copy(&mut r, &mut w)?;
            copy_meta(&to, &m, false)?;
        } else if ft.is_symlink() {
            let target = fs::read_link(&from)?;
            std::os::unix::fs::symlink(&target, &to)?;
            copy_meta(&to, &m, true)?;
        }
    }
    Ok(())
}

/// Mode, owner and times of `m` onto `p` (a symlink: owner and times).
fn copy_meta(p: &Path, m: &fs::Metadata, symlink: bool) -> io::Result<()> {
    std::os::unix::fs::lchown(p, Some(m.uid()), Some(m.gid()))?;
    if !symlink {
        fs::set_permissions(p, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    let ts = [
        nix::sys::time::TimeSpec::new(m.atime(), m.atime_nsec()),
        nix::sys::time::TimeSpec::new(m.mtime(), m.mtime_nsec()),
    ];
    nix::sys::stat::utimensat(
        None,
        p,
        &ts[0],
        &ts[1],
        nix::sys::stat::UtimensatFlags::NoFollowSymlink,
    )
    .map_err(io::Error::from)
}

/// Whether `e` says the path is not there (or not a directory on the way).
pub(super) fn is_missing(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_paths_are_cleaned_and_dotdot_refused() {
        assert_eq!(clean("/a//b/./c").unwrap(), vec!["a", "b", "c"]);
        assert!(clean("/").unwrap().is_empty());
        assert!(clean("/a/../b").is_err());
        assert!(clean("").is_err());
        assert_eq!(display(&clean("a/b").unwrap()), "/a/b");
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(t.path().join("canary"), "host").unwrap();
        std::os::unix::fs::symlink("/", root.join("up")).unwrap();
        std::os::unix::fs::symlink("../../..", root.join("etc/rel")).unwrap();
        let r = Root::open(&root).unwrap();
        // "/up/etc" is the root's own etc, never the host's.
        let fd = r.dir(&clean("/up/etc").unwrap()).unwrap();
        let m = fs::metadata(fd_path(fd.as_fd())).unwrap();
        assert_eq!(m.ino(), fs::metadata(root.join("etc")).unwrap().ino());
        let fd = r.dir(&clean("/etc/rel").unwrap()).unwrap();
        assert_eq!(
            fs::metadata(fd_path(fd.as_fd())).unwrap().ino(),
            fs::metadata(&root).unwrap().ino()
        );
        assert!(r
            .resolve(&clean("/up/canary").unwrap(), OFlag::O_PATH)
            .is_err());
    }

    #[test]
    fn copy_tree_copies_files_dirs_and_links() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("d")).unwrap();
        fs::write(src.join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("l")).unwrap();
        let dst = t.path().join("dst");
        fs::create_dir(&dst).unwrap();
        let r = Root::open(&src).unwrap();
        copy_tree(r.fd.as_fd(), &dst).unwrap();
        assert_eq!(fs::read_to_string(dst.join("d/f")).unwrap(), "x");
        assert_eq!(
            fs::read_link(dst.join("l")).unwrap(),
            PathBuf::from("/etc/passwd")
        );
    }
}

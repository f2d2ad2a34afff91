//! The one system call the rootfs module needs that std and nix do not
//! wrap safely: `openat2` with `RESOLVE_IN_ROOT`, returning an owned fd.
#![allow(unsafe_code)]

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

/// Opens `path` below `root` as if `root` were `/`: `..` and absolute
/// symlinks stay inside it, magic links (`/proc/*/fd`) are refused.
pub(super) fn open_in_root(
    root: BorrowedFd<'_>,
    path: &OsStr,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let fd = nix::fcntl::openat2(root.as_raw_fd(), path, how).map_err(io::Error::from)?;
    // SAFETY: `fd` was just returned by a successful openat2 and nothing
    // else knows it, so this OwnedFd is its only owner.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

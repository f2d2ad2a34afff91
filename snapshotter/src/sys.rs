//! The few raw syscalls nix 0.29 does not wrap safely: `openat` returning an
//! owned fd, the new mount API (`fsopen`/`fsconfig`/`fsmount`/`move_mount`)
//! and extended attributes.
#![allow(unsafe_code)]
#![cfg_attr(not(feature = "full"), allow(dead_code))]

use std::ffi::{CStr, CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = check(ret)?;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Plain `openat`, returning an owned fd.
pub(crate) fn openat(
    dir: Option<BorrowedFd<'_>>,
    path: &OsStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> io::Result<OwnedFd> {
    let p = cstr(path)?;
    let dirfd = dir.map_or(libc::AT_FDCWD, |d| d.as_raw_fd());
    // SAFETY: `p` is a valid NUL-terminated path that outlives the call.
    let ret = unsafe { libc::openat(dirfd, p.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    owned(ret.into())
}

/// `fsopen(fstype, FSOPEN_CLOEXEC)`.
pub(crate) fn fsopen(fstype: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: fstype is a valid C string; flags are a constant.
    let ret = unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) };
    owned(ret)
}

/// `fsconfig(fd, cmd, key, value, 0)`; key/value may be absent.
pub(crate) fn fsconfig(
    fd: BorrowedFd<'_>,
    cmd: libc::c_uint,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> io::Result<()> {
    let k = key.map_or(std::ptr::null(), CStr::as_ptr);
    let v = value.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: key and value are null or valid C strings living across the call;
    // aux is 0 as the commands we use require.
    let ret = unsafe { libc::syscall(libc::SYS_fsconfig, fd.as_raw_fd(), cmd, k, v, 0) };
    check(ret).map(|_| ())
}

/// `fsmount(fd, FSMOUNT_CLOEXEC, attrs)`.
pub(crate) fn fsmount(fd: BorrowedFd<'_>, attrs: libc::c_uint) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attrs,
        )
    };
    owned(ret)
}

/// Attaches a detached mount `fd` at `target` (`move_mount` with an empty from-path).
pub(crate) fn move_mount(fd: BorrowedFd<'_>, target: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let empty = c"";
    // SAFETY: both strings are valid C strings living across the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(ret).map(|_| ())
}

/// Sets xattr `name` on the open file `fd`.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let n = cstr(name)?;
    // SAFETY: `n` is a valid C string; value pointer/len describe a live slice.
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(ret.into()).map(|_| ())
}

/// Sets xattr `name` on `path` without following a final symlink.
pub(crate) fn lsetxattr(path: &OsStr, name: &OsStr, value: &[u8]) -> io::Result<()> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    // SAFETY: valid C strings; value pointer/len describe a live slice.
    let ret = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    check(ret.into()).map(|_| ())
}

/// Reads xattr `name` of `path` (final symlink not followed); None if absent.
pub(crate) fn lgetxattr(path: &OsStr, name: &OsStr) -> io::Result<Option<Vec<u8>>> {
    let p = cstr(path)?;
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buf is a live writable buffer of buf.len() bytes.
        let ret =
            unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if ret >= 0 {
            buf.truncate(ret as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 8, 0),
            _ => return Err(e),
        }
    }
}

/// Lists xattr names of `path` (final symlink not followed).
pub(crate) fn llistxattr(path: &OsStr) -> io::Result<Vec<Vec<u8>>> {
    let p = cstr(path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: valid C string; buf is a live writable buffer of buf.len() bytes.
        let ret = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if ret >= 0 {
            buf.truncate(ret as usize);
            return Ok(buf
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(<[u8]>::to_vec)
                .collect());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if buf.len() < 1 << 20 => buf.resize(buf.len() * 8, 0),
            _ => return Err(e),
        }
    }
}

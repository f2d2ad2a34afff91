//! How apply reports a failure: a refused entry (the layer's fault,
//! InvalidArgument naming it by a shortened path) or an I/O error on a path.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use berth_api::echo::EchoBytes;

use super::safe::join;
use crate::error::Error;

/// An I/O failure on the entry at `path` while doing `what`.
pub(super) fn io_err<'a>(
    what: &'static str,
    path: &'a [OsString],
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(what, join(path), e)
}

/// Like [`io_err`] for a nix call.
pub(super) fn nix_err<'a>(
    what: &'static str,
    path: &'a [OsString],
) -> impl FnOnce(nix::errno::Errno) -> Error + 'a {
    move |e| Error::io(what, join(path), e.into())
}

/// A layer's xattr the kernel refuses for what it is (a malformed
/// `security.capability`, an unknown namespace, a name or value too long) is
/// the layer's fault: InvalidArgument naming the entry and the xattr. Other
/// failures (no space, I/O) stay internal.
pub(super) fn xattr_err<'a>(
    key: &'a OsStr,
    path: &'a [OsString],
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| match e.raw_os_error() {
        // EPERM: an xattr namespace even root may not write here (a
        // layer's `trusted.`/`security.` name the kernel refuses).
        Some(libc::EINVAL | libc::ERANGE | libc::E2BIG | libc::EOPNOTSUPP | libc::EPERM) => refuse(
            join(path).as_os_str().as_bytes(),
            format!(
                "xattr {} refused by the kernel: {e}",
                EchoBytes(key.as_bytes())
            ),
        ),
        _ => Error::io("setxattr", join(path), e),
    }
}

/// The entry `path` refused as the layer's fault, saying why.
pub(super) fn refuse(path: &[u8], why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("layer entry {} refused: {why}", EchoBytes(path)))
}

//! Confined filesystem access for layer apply.
//!
//! Every entry path is split into plain components (`..` and absolute
//! paths are refused) and resolved one component at a time with
//! `openat(O_NOFOLLOW|O_DIRECTORY)` from a directory fd of the target root,
//! so no symlink is ever followed: a symlink where a directory is needed is
//! refused, whether it was planted by this layer or lies in a lower layer.
//! The only paths handed to path-based syscalls are `/proc/self/fd/N/NAME`
//! with a single final component, whose only link is the magic link to a
//! directory we opened safely.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, SFlag};

use crate::error::{Error, Result};
use crate::sys;

/// Splits a tar path into plain components. `.` and empty components are
/// dropped; `..`, a leading `/` and NUL are refused.
pub(crate) fn clean(raw: &[u8]) -> std::result::Result<Vec<OsString>, &'static str> {
    if raw.first() == Some(&b'/') {
        return Err("absolute paths are not allowed");
    }
    if raw.contains(&0) {
        return Err("NUL in path");
    }
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("`..` components are not allowed"),
            c => out.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(out)
}

/// Joins components for messages and sets.
pub(crate) fn join(comps: &[OsString]) -> PathBuf {
    comps.iter().collect()
}

/// Components joined for a message, shortened (`berth_api::echo`).
pub(crate) fn echo_path(comps: &[OsString]) -> String {
    berth_api::echo::EchoBytes(join(comps).as_os_str().as_bytes()).to_string()
}

/// `/proc/self/fd/<dir>/<name>`: a path naming `name` inside an fd we opened.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if !name.is_empty() {
        p.push(name);
    }
    p
}

/// Opens directory `name` in `dir` without following a symlink.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    sys::openat(
        Some(dir),
        name,
        libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        0,
    )
}

/// Opens a directory by absolute path (trusted: a snapshot dir of ours).
pub(crate) fn open_root(path: &Path) -> Result<OwnedFd> {
    sys::openat(
        None,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
    .map_err(|e| Error::io("open", path, e))
}

/// lstat of `name` in `dir`; None if absent.
pub(crate) fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<FileStat>> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub(crate) fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

pub(crate) fn is_dir(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFDIR
}

/// An overlay whiteout: a 0/0 character device.
pub(crate) fn is_whiteout(st: &FileStat) -> bool {
    file_type(st) == SFlag::S_IFCHR && st.st_rdev == 0
}

/// Removes `name` in `dir`, recursively if it is a directory; never
/// follows symlinks. Absent is fine.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match lstat_at(dir, name)? {
        None => Ok(()),
        Some(st) if is_dir(&st) => std::fs::remove_dir_all(proc_path(dir, name)),
        Some(_) => nix::unistd::unlinkat(
            Some(dir.as_raw_fd()),
            name,
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        )
        .map_err(Into::into),
    }
}

/// Whether `trusted.overlay.opaque=y` is set on directory `name` in `dir`.
pub(crate) fn is_opaque(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<bool> {
    let v = sys::lgetxattr(
        proc_path(dir, name).as_os_str(),
        OsStr::new("trusted.overlay.opaque"),
    )?;
    Ok(v.as_deref() == Some(b"y"))
}

/// The read-only lower layers of an overlay, top first, for looking up
/// what exists below the upper dir being written.
///
/// Only their paths are kept: a lookup opens one layer at a time and holds
/// at most two directory fds of it, so an image of hundreds of layers never
/// holds one fd per layer (the roots are trusted snapshot dirs of ours; what
/// lies below them is resolved as everywhere here, `O_NOFOLLOW` one
/// component at a time).
pub(crate) struct Lowers {
    roots: Vec<PathBuf>,
    /// staged apply: the lowers exist but are not known yet
    unknown: bool,
}

/// Where a path was found among the lowers.
pub(crate) struct LowerHit {
    /// directory fd holding the found entry
    pub(crate) parent: OwnedFd,
    /// stat of the found entry
    pub(crate) stat: FileStat,
}

/// What one layer holds at one depth of a looked-up path.
enum Seen {
    /// a directory; `opaque` hides the same path in the layers below
    Dir { opaque: bool },
    /// a whiteout: the path is deleted for this layer and those below
    Whiteout,
    /// anything else (file, symlink, device): ends the path here
    Other,
}

impl Lowers {
    pub(crate) fn open(dirs: &[PathBuf]) -> Result<Self> {
        Ok(Self {
            roots: dirs.to_vec(),
            unknown: false,
        })
    }

    /// Lowers that exist but are not known yet (a staged apply): every
    /// lookup is [`Error::NeedsLowers`].
    pub(crate) fn unknown() -> Self {
        Self {
            roots: Vec::new(),
            unknown: true,
        }
    }

    /// Like [`Lowers::lookup`], failing with NeedsLowers when unknown.
    pub(crate) fn find(&self, comps: &[OsString]) -> Result<Option<LowerHit>> {
        if self.unknown {
            return Err(Error::NeedsLowers(echo_path(comps)));
        }
        self.lookup(comps)
            .map_err(|e| Error::io("lookup in lower layers", join(comps), e))
    }

    /// Resolves `comps` through the lowers with overlay semantics (the top
    /// entry wins; whiteouts delete; a non-directory or an opaque directory
    /// hides everything below it). Returns the visible entry, if any.
    /// A symlink (or any non-directory) where a parent is needed means the
    /// path does not exist below.
    ///
    /// The layers are walked one after the other, top first. `closed` is
    /// the shallowest depth at which a layer above has hidden the layers
    /// below (a whiteout, a non-directory, an opaque directory): lower
    /// layers only take part above that depth. `seen[d]` records that some
    /// layer above already showed an entry at depth `d`, so a lower
    /// non-directory there is hidden rather than visible.
    pub(crate) fn lookup(&self, comps: &[OsString]) -> io::Result<Option<LowerHit>> {
        let Some(last) = comps.len().checked_sub(1) else {
            return Ok(None);
        };
        let mut closed = comps.len();
        let mut seen = vec![false; comps.len()];
        for root in &self.roots {
            if closed == 0 {
                break;
            }
            let mut dir = match open_root_io(root) {
                Ok(d) => d,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            };
            let mut closes = closed;
            for (depth, name) in comps.iter().enumerate().take(closed) {
                let Some(st) = lstat_at(dir.as_fd(), name)? else {
                    break;
                };
                let what = if is_whiteout(&st) {
                    Seen::Whiteout
                } else if is_dir(&st) {
                    Seen::Dir {
                        opaque: is_opaque(dir.as_fd(), name)?,
                    }
                } else {
                    Seen::Other
                };
                let first = !seen[depth];
                match what {
                    Seen::Whiteout => {
                        closes = closes.min(depth);
                        break;
                    }
                    Seen::Other => {
                        closes = closes.min(depth);
                        if first && depth == last {
                            return Ok(Some(LowerHit {
                                parent: dir,
                                stat: st,
                            }));
                        }
                        // A non-directory on the path, or one hidden by an
                        // entry above: nothing below resolves.
                        break;
                    }
                    Seen::Dir { opaque } => {
                        if first && depth == last {
                            return Ok(Some(LowerHit {
                                parent: dir,
                                stat: st,
                            }));
                        }
                        seen[depth] = true;
                        if opaque {
                            closes = closes.min(depth);
                        }
                        if depth == last {
                            break;
                        }
                        dir = match open_dir_at(dir.as_fd(), name) {
                            Ok(d) => d,
                            Err(e)
                                if matches!(
                                    e.raw_os_error(),
                                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                                ) =>
                            {
                                break
                            }
                            Err(e) => return Err(e),
                        };
                    }
                }
            }
            closed = closes;
        }
        Ok(None)
    }
}

/// Opens a lower layer's root (a trusted snapshot dir of ours).
fn open_root_io(path: &Path) -> io::Result<OwnedFd> {
    sys::openat(
        None,
        path.as_os_str(),
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
}

//! Resolving an entry's parent directories during apply, with bounded
//! resources.
//!
//! Limits (refused with InvalidArgument, the message naming the entry by a
//! shortened path):
//! - an entry path (or hard-link target) longer than [`MAX_PATH_BYTES`]
//!   (4095: `PATH_MAX` less its NUL; no program in the container could name
//!   a longer path in one call, and containerd's unpack, which works on full
//!   paths, fails on them with ENAMETOOLONG);
//! - a component longer than [`MAX_NAME_BYTES`] (255, `NAME_MAX`; the
//!   kernel's ENAMETOOLONG would otherwise surface as an internal error);
//! - more than [`MAX_DEPTH`] components (1024, half what `PATH_MAX` can
//!   spell as `a/a/a/...`).
//!
//! Memory is linear in the entries: the directories whose times are set at
//! the end are kept as one byte string each, and the cache of open
//! directories ([`Level`]) keeps names for every level but holds an fd only
//! for the first [`FD_LEVELS`] levels and the deepest one, so an apply holds
//! at most `FD_LEVELS + 2` fds whatever the depth; a deeper level whose fd
//! was dropped is reopened from the nearest one held, one component at a
//! time with `O_NOFOLLOW` as everywhere (see [`super::safe`]).

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use nix::sys::stat::Mode;
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::apply::{io_err, nix_err, refuse, Applier};
use super::safe::{self, echo_path, is_dir, join, open_dir_at, proc_path};
use crate::error::{Error, Result};
use crate::sys;

/// Longest entry path or link target accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4095;

/// Longest component (`NAME_MAX`: no filesystem here takes a longer name).
pub(crate) const MAX_NAME_BYTES: usize = 255;

/// Most components an entry path or link target may have.
pub const MAX_DEPTH: usize = 1024;

/// Levels of the directory cache that keep their fd open.
const FD_LEVELS: usize = 32;

/// One open level of the directory cache: its name and, for the first
/// [`FD_LEVELS`] levels and the deepest one, its fd.
pub(super) struct Level {
    name: OsString,
    fd: Option<OwnedFd>,
}

/// Splits `path` (the path of entry `raw`, or its link target) into
/// components, refusing paths beyond the limits above; errors name `raw`.
pub(super) fn components(path: &[u8], raw: &[u8], what: &str) -> Result<Vec<OsString>> {
    if path.len() > MAX_PATH_BYTES {
        return Err(refuse(
            raw,
            format!(
                "{what} is {} bytes long, more than the {MAX_PATH_BYTES} allowed",
                path.len()
            ),
        ));
    }
    let comps = safe::clean(path).map_err(|w| refuse(raw, format!("{what}: {w}")))?;
    if let Some(c) = comps.iter().find(|c| c.len() > MAX_NAME_BYTES) {
        return Err(refuse(
            raw,
            format!(
                "{what} has a component of {} bytes, more than the {MAX_NAME_BYTES} allowed",
                c.len()
            ),
        ));
    }
    if comps.len() > MAX_DEPTH {
        return Err(refuse(
            raw,
            format!(
                "{what} is {} levels deep, more than the {MAX_DEPTH} allowed",
                comps.len()
            ),
        ));
    }
    Ok(comps)
}

/// A directory's path as kept until the end of the apply: the components
/// joined by `/` in one allocation.
pub(super) fn pack(comps: &[OsString]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(comps.iter().map(|c| c.len() + 1).sum());
    for (i, c) in comps.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(c.as_bytes());
    }
    out.into_boxed_slice()
}

/// The components of a path made by [`pack`].
pub(super) fn unpack(packed: &[u8]) -> Vec<OsString> {
    packed
        .split(|b| *b == b'/')
        .map(|c| OsString::from_vec(c.to_vec()))
        .collect()
}

impl Applier {
    /// Opens (creating as needed) the directory `comps` under the root,
    /// never following a symlink.
    pub(super) fn parent_dir(&mut self, comps: &[OsString], raw: &[u8]) -> Result<OwnedFd> {
        self.walk(comps, raw, true)?
            .ok_or_else(|| Error::Internal(format!("directory {} vanished", echo_path(comps))))
    }

    /// The fd of cache level `i`, reopening it from the nearest level that
    /// still holds one when it was dropped.
    fn level_fd(&mut self, i: usize, raw: &[u8]) -> Result<BorrowedFd<'_>> {
        if self.stack[i].fd.is_none() {
            let held = (0..i).rev().find(|j| self.stack[*j].fd.is_some());
            let start = held.map_or(0, |j| j + 1);
            let mut cur: Option<OwnedFd> = None;
            for j in start..=i {
                let from = match (&cur, held) {
                    (Some(fd), _) => fd.as_fd(),
                    (None, Some(h)) => self.stack[h]
                        .fd
                        .as_ref()
                        .map(AsFd::as_fd)
                        .ok_or_else(|| Error::Internal("directory cache lost an fd".into()))?,
                    (None, None) => self.root.as_fd(),
                };
                let next = open_dir_at(from, &self.stack[j].name).map_err(|e| {
                    if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) {
                        refuse(raw, "a parent directory was replaced by a non-directory")
                    } else {
                        let names: Vec<OsString> =
                            self.stack[..=j].iter().map(|l| l.name.clone()).collect();
                        Error::io("open", join(&names), e)
                    }
                })?;
                cur = Some(next);
            }
            self.stack[i].fd = cur;
        }
        self.stack[i]
            .fd
            .as_ref()
            .map(AsFd::as_fd)
            .ok_or_else(|| Error::Internal("directory cache lost an fd".into()))
    }

    /// Like [`Applier::parent_dir`]; with `create` false a missing
    /// component gives None instead of being created.
    pub(super) fn walk(
        &mut self,
        comps: &[OsString],
        raw: &[u8],
        create: bool,
    ) -> Result<Option<OwnedFd>> {
        let mut k = 0;
        while k < self.stack.len() && k < comps.len() && self.stack[k].name == comps[k] {
            k += 1;
        }
        self.stack.truncate(k);
        for i in k..comps.len() {
            let name = &comps[i];
            if i > 0 {
                // Make sure the parent level is open before descending.
                self.level_fd(i - 1, raw)?;
            }
            let (fd, time) = {
                let cur = if i == 0 {
                    self.root.as_fd()
                } else {
                    self.stack[i - 1]
                        .fd
                        .as_ref()
                        .map(AsFd::as_fd)
                        .ok_or_else(|| Error::Internal("directory cache lost an fd".into()))?
                };
                match open_dir_at(cur, name) {
                    Ok(fd) => (fd, None),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !create => return Ok(None),
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                        let t = self.implicit_dir(cur, &comps[..=i], raw)?;
                        (
                            open_dir_at(cur, name).map_err(io_err("open", &comps[..=i]))?,
                            t,
                        )
                    }
                    Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                        return Err(refuse(
                            raw,
                            format!(
                                "parent {} is a symlink or not a directory",
                                echo_path(&comps[..=i])
                            ),
                        ))
                    }
                    Err(e) => return Err(Error::io("open", join(&comps[..=i]), e)),
                }
            };
            if let Some(t) = time {
                self.dir_times.push((pack(&comps[..=i]), t));
            }
            // Only the first levels and the deepest keep their fd.
            if i > FD_LEVELS {
                self.stack[i - 1].fd = None;
            }
            self.stack.push(Level {
                name: name.clone(),
                fd: Some(fd),
            });
        }
        if comps.is_empty() {
            return self
                .root
                .try_clone()
                .map(Some)
                .map_err(io_err("dup", comps));
        }
        let last = comps.len() - 1;
        self.level_fd(last, raw)?
            .try_clone_to_owned()
            .map(Some)
            .map_err(io_err("dup", comps))
    }

    /// Creates a directory the layer needs but does not list: with the
    /// metadata of the lower layers' directory on overlay, else 0755 root.
    fn implicit_dir(
        &self,
        cur: BorrowedFd<'_>,
        comps: &[OsString],
        raw: &[u8],
    ) -> Result<Option<TimeSpec>> {
        let name = &comps[comps.len() - 1];
        let lower = if self.overlay {
            self.lowers.find(comps)?
        } else {
            None
        };
        if let Some(hit) = &lower {
            if !is_dir(&hit.stat) {
                return Err(refuse(
                    raw,
                    format!(
                        "parent {} is a symlink or file in a lower layer",
                        echo_path(comps)
                    ),
                ));
            }
        }
        let mode = lower.as_ref().map_or(0o755, |h| h.stat.st_mode & 0o7777);
        nix::sys::stat::mkdirat(
            Some(cur.as_raw_fd()),
            name.as_os_str(),
            Mode::from_bits_truncate(mode),
        )
        .map_err(nix_err("mkdir", comps))?;
        if let Some(hit) = lower {
            let fd = open_dir_at(cur, name).map_err(io_err("open", comps))?;
            nix::unistd::fchown(
                fd.as_raw_fd(),
                Some(Uid::from_raw(hit.stat.st_uid)),
                Some(Gid::from_raw(hit.stat.st_gid)),
            )
            .map_err(nix_err("chown", comps))?;
            nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(nix_err("chmod", comps))?;
            let src = proc_path(hit.parent.as_fd(), name);
            for k in sys::llistxattr(src.as_os_str()).map_err(io_err("listxattr", comps))? {
                let k = std::ffi::OsStr::from_bytes(&k);
                if k.as_bytes().starts_with(b"trusted.overlay.") {
                    continue;
                }
                if let Some(v) =
                    sys::lgetxattr(src.as_os_str(), k).map_err(io_err("getxattr", comps))?
                {
                    sys::fsetxattr(fd.as_fd(), k, &v).map_err(io_err("setxattr", comps))?;
                }
            }
            // Restored after children are written (dir_times is replayed in reverse).
            return Ok(Some(TimeSpec::new(
                hit.stat.st_mtime,
                hit.stat.st_mtime_nsec,
            )));
        }
        Ok(None)
    }
}

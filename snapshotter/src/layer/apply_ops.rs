//! Whiteouts, opaque directories, hard links and the final pass of apply.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::apply::{io_err, nix_err, refuse, Applier};
use super::safe::{self, file_type, is_dir, join, lstat_at, proc_path};
use super::walk::{components, unpack};
use crate::error::{Error, Result};
use crate::sys;

impl Applier {
    /// `.wh..wh..opq` in `comps`: overlay marks the directory opaque; native
    /// deletes every child this layer did not write.
    pub(super) fn opaque(&mut self, comps: &[OsString], raw: &[u8]) -> Result<()> {
        let d = self.parent_dir(comps, raw)?;
        if self.overlay {
            return sys::fsetxattr(d.as_fd(), OsStr::new("trusted.overlay.opaque"), b"y")
                .map_err(io_err("setxattr", comps));
        }
        let base = join(comps);
        let listing = proc_path(d.as_fd(), OsStr::new(""));
        let rd = std::fs::read_dir(&listing).map_err(io_err("readdir", comps))?;
        for ent in rd {
            let ent = ent.map_err(io_err("readdir", comps))?;
            let name = ent.file_name();
            if !self.created.contains(&base.join(&name)) {
                safe::remove_at(d.as_fd(), &name).map_err(io_err("remove", comps))?;
            }
        }
        Ok(())
    }

    /// `.wh.NAME` in `parent`: overlay writes a 0/0 character device;
    /// native deletes NAME.
    pub(super) fn whiteout(
        &mut self,
        parent: &[OsString],
        target: &OsStr,
        raw: &[u8],
    ) -> Result<()> {
        let d = self.parent_dir(parent, raw)?;
        let mut comps = parent.to_vec();
        comps.push(target.to_owned());
        self.replace(d.as_fd(), target, &comps)?;
        if self.overlay {
            nix::sys::stat::mknodat(
                Some(d.as_raw_fd()),
                target,
                SFlag::S_IFCHR,
                Mode::empty(),
                0,
            )
            .map_err(nix_err("mknod whiteout", &comps))?;
        }
        Ok(())
    }

    /// A hard link `comps` → `target` (a path inside the layer root). The
    /// target must exist in this snapshot or, on overlay, in a lower layer
    /// (then it is copied up first, as overlayfs would); it is resolved
    /// without following symlinks and must not be a directory.
    pub(super) fn hard_link(
        &mut self,
        d: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
        target: &[u8],
        raw: &[u8],
    ) -> Result<()> {
        let tcomps = components(target, raw, "hard link target")?;
        let Some((tname, tparent)) = tcomps.split_last() else {
            return Err(refuse(raw, "hard link to the root"));
        };
        if tcomps == comps {
            return Ok(());
        }
        let tdir = self.walk(tparent, raw, false)?;
        let here = match &tdir {
            Some(td) => lstat_at(td.as_fd(), tname).map_err(io_err("stat", &tcomps))?,
            None => None,
        };
        let tdir = match (here, tdir) {
            (Some(st), _) if is_dir(&st) => return Err(refuse(raw, "hard link to a directory")),
            (Some(_), Some(td)) => td,
            _ if self.overlay => self.copy_up(&tcomps, raw)?,
            _ => {
                return Err(refuse(
                    raw,
                    "hard link target not found in this layer or below",
                ))
            }
        };
        self.replace(d, name, comps)?;
        nix::unistd::linkat(
            Some(tdir.as_raw_fd()),
            tname.as_os_str(),
            Some(d.as_raw_fd()),
            name,
            AtFlags::empty(),
        )
        .map_err(nix_err("link", comps))
    }

    /// Copies a regular file visible in the lowers into the upper dir at the
    /// same path; returns the upper directory holding it.
    fn copy_up(&mut self, tcomps: &[OsString], raw: &[u8]) -> Result<std::os::fd::OwnedFd> {
        let (tname, tparent) = tcomps
            .split_last()
            .ok_or_else(|| refuse(raw, "empty link target"))?;
        let hit = self
            .lowers
            .find(tcomps)?
            .ok_or_else(|| refuse(raw, "hard link target not found in this layer or below"))?;
        if file_type(&hit.stat) != SFlag::S_IFREG {
            return Err(refuse(
                raw,
                "hard link target in a lower layer is not a regular file",
            ));
        }
        let src = sys::openat(
            Some(hit.parent.as_fd()),
            tname,
            libc::O_RDONLY | libc::O_NOFOLLOW,
            0,
        )
        .map_err(io_err("open lower", tcomps))?;
        let tdir = self.parent_dir(tparent, raw)?;
        let dst = sys::openat(
            Some(tdir.as_fd()),
            tname,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
            0o600,
        )
        .map_err(io_err("create", tcomps))?;
        let mut dst = File::from(dst);
        std::io::copy(&mut File::from(src), &mut dst).map_err(io_err("copy up", tcomps))?;
        let fd = dst.as_raw_fd();
        nix::unistd::fchown(
            fd,
            Some(Uid::from_raw(hit.stat.st_uid)),
            Some(Gid::from_raw(hit.stat.st_gid)),
        )
        .map_err(nix_err("chown", tcomps))?;
        nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(hit.stat.st_mode & 0o7777))
            .map_err(nix_err("chmod", tcomps))?;
        let srcp = proc_path(hit.parent.as_fd(), tname);
        for k in sys::llistxattr(srcp.as_os_str()).map_err(io_err("listxattr", tcomps))? {
            let k = OsStr::from_bytes(&k);
            if let Some(v) =
                sys::lgetxattr(srcp.as_os_str(), k).map_err(io_err("getxattr", tcomps))?
            {
                sys::fsetxattr(dst.as_fd(), k, &v).map_err(io_err("setxattr", tcomps))?;
            }
        }
        let t = TimeSpec::new(hit.stat.st_mtime, hit.stat.st_mtime_nsec);
        nix::sys::stat::futimens(fd, &t, &t).map_err(nix_err("utimens", tcomps))?;
        Ok(tdir)
    }

    /// Sets directory mtimes (children first) and syncs the filesystem.
    pub(super) fn finish(mut self) -> Result<()> {
        let times = std::mem::take(&mut self.dir_times);
        for (packed, t) in times.iter().rev() {
            let comps = unpack(packed);
            let Some((name, parent)) = comps.split_last() else {
                continue;
            };
            let Ok(Some(d)) = self.walk(parent, b"", false) else {
                continue;
            };
            match nix::sys::stat::utimensat(
                Some(d.as_raw_fd()),
                name.as_os_str(),
                t,
                t,
                UtimensatFlags::NoFollowSymlink,
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => return Err(Error::io("utimens", join(&comps), e.into())),
            }
        }
        self.stack.clear();
        nix::unistd::syncfs(self.root.as_raw_fd())
            .map_err(|e| Error::io("syncfs", "layer root", e.into()))
    }
}

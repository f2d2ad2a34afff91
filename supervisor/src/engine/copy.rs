//! `cp`: a container's files out as a tar stream, and a tar stream in,
//! through its root as [`super::rootfs`] confines it: the running
//! container's `/proc/PID/root` (its volumes included) or, for a stopped
//! one, its snapshot mounted for the call (the container cannot start
//! meanwhile: its lifecycle lock is held).
//!
//! Extraction is confined like layer apply: entry names are cleaned (`..`
//! refused), every directory on the way is opened with `O_NOFOLLOW` from
//! the destination's fd (a symlink planted there is refused, never
//! followed), a leaf is replaced, never written through, and hard links
//! must name an entry inside the destination.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use super::error::blocking;
use super::rootfs::{self, fd_path, open_child, Mounted, Root};
use super::{Engine, Error, Result, Slot};

/// A container's root opened for a copy, with what keeps it valid.
pub(super) struct Opened {
    pub(super) root: Root,
    _mounted: Option<Mounted>,
}

impl Engine {
    /// Opens the root of `slot`'s container (see the module doc); the
    /// caller holds its lifecycle lock while it uses it.
    pub(super) async fn open_rootfs(&self, slot: &Arc<Slot>) -> Result<Opened> {
        let rec = slot.record();
        if rec.state.status.is_running() && rec.state.pid > 0 {
            let proc_root = PathBuf::from(format!("/proc/{}/root", rec.state.pid));
            let root =
                blocking(move || Root::open(&proc_root).map_err(Error::io("open", &proc_root)))
                    .await?;
            return Ok(Opened {
                root,
                _mounted: None,
            });
        }
        let mounts = self
            .deps()
            .snapshots
            .mounts(&slot.ns, &rec.snapshotter, &rec.id)
            .await?;
        let scratch = self.cfg().state.join("engine").join("mnt");
        let (root, mounted) = blocking(move || {
            let m = Mounted::new(&mounts, &scratch)?;
            let r = Root::open(m.path()).map_err(Error::io("open", m.path()))?;
            Ok((r, m))
        })
        .await?;
        Ok(Opened {
            root,
            _mounted: Some(mounted),
        })
    }

    /// Writes `path` of container `what` as a tar stream into `out`; the
    /// entries written.
    pub async fn copy_from(
        &self,
        ns: &str,
        what: &str,
        path: &str,
        out: impl Write + Send + 'static,
    ) -> Result<u64> {
        let comps = rootfs::clean(path)?;
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let opened = self.open_rootfs(&slot).await?;
        let shown = rootfs::display(&comps);
        blocking(move || {
            let (dir, name) = leaf(&opened.root, &comps).map_err(|e| not_found(&shown, e))?;
            let mut tar = tar::Builder::new(out);
            tar.follow_symlinks(false);
            let mut n = 0;
            append(&mut tar, dir.as_fd(), &name, &PathBuf::from(&name), &mut n)
                .map_err(|e| not_found(&shown, e))?;
            tar.into_inner()
                .and_then(|mut w| w.flush())
                .map_err(|e| Error::Internal(format!("writing the tar stream: {e}")))?;
            drop(opened);
            Ok(n)
        })
        .await
    }

    /// Extracts the tar stream `input` to `path` of container `what`: into
    /// it when it is a directory, else as it (the top entry renamed); the
    /// entries written.
    pub async fn copy_to(
        &self,
        ns: &str,
        what: &str,
        path: &str,
        input: impl Read + Send + 'static,
    ) -> Result<u64> {
        let comps = rootfs::clean(path)?;
        let slot = self.find(ns, what)?;
        let _op = slot.op.lock().await;
        let opened = self.open_rootfs(&slot).await?;
        let shown = rootfs::display(&comps);
        blocking(move || {
            let (dest, rename) = match opened.root.dir(&comps) {
                Ok(fd) => (fd, None),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && !comps.is_empty() => {
                    let parent = &comps[..comps.len() - 1];
                    let fd = opened.root.dir(parent).map_err(|e| {
                        Error::NotFound(format!(
                            "copy to {shown}: its directory {}: {e}",
                            rootfs::display(parent)
                        ))
                    })?;
                    (fd, Some(comps[comps.len() - 1].clone()))
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(Error::FailedPrecondition(format!(
                        "copy to {shown}: not a directory (copy into the directory holding it)"
                    )))
                }
                Err(e) => return Err(Error::NotFound(format!("copy to {shown}: {e}"))),
            };
            let n = extract(dest.as_fd(), rename.as_deref(), input)?;
            drop(opened);
            Ok(n)
        })
        .await
    }
}

fn not_found(shown: &str, e: io::Error) -> Error {
    if rootfs::is_missing(&e) {
        Error::NotFound(format!(
            "{shown}: no such file or directory in the container"
        ))
    } else {
        Error::Internal(format!("{shown}: {e}"))
    }
}

/// The directory holding `comps` (resolved in the root) and the last
/// component's name; `/` is its own parent, named `.`.
fn leaf(root: &Root, comps: &[OsString]) -> io::Result<(OwnedFd, OsString)> {
    match comps.split_last() {
        None => Ok((root.dir(&[])?, OsString::from("."))),
        Some((last, parent)) => Ok((root.dir(parent)?, last.clone())),
    }
}

/// Appends entry `name` of directory `dir` as `as_path` (recursively).
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    as_path: &PathBuf,
    n: &mut u64,
) -> io::Result<()> {
    let full = fd_path(dir).join(name);
    let m = fs::symlink_metadata(&full)?;
    let ft = m.file_type();
    let mut h = tar::Header::new_gnu();
    h.set_metadata_in_mode(&m, tar::HeaderMode::Complete);
    *n += 1;
    if ft.is_dir() {
        h.set_size(0);
        tar.append_data(&mut h, as_path, io::empty())?;
        let child = if name == "." {
            fs::File::open(&full)?.into()
        } else {
            open_child(dir, name, true)?
        };
        for e in rootfs::entries(child.as_fd())? {
            append(tar, child.as_fd(), &e, &as_path.join(&e), n)?;
        }
    } else if ft.is_file() {
        let f = fs::File::from(open_child(dir, name, false)?);
        h.set_size(m.len());
        tar.append_data(&mut h, as_path, f)?;
    } else if ft.is_symlink() {
        let target = fs::read_link(&full)?;
        h.set_size(0);
        tar.append_link(&mut h, as_path, target)?;
    } else {
        *n -= 1;
    }
    Ok(())
}

/// Opens (creating when missing) the directories `comps` below `dest`,
/// never following a symlink.
fn walk_dirs(dest: BorrowedFd<'_>, comps: &[OsString]) -> Result<OwnedFd> {
    let mut cur: OwnedFd = fs::File::open(fd_path(dest))
        .map_err(|e| Error::Internal(format!("reopen destination: {e}")))?
        .into();
    for c in comps {
        let next = match open_child(cur.as_fd(), c, true) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                fs::create_dir(fd_path(cur.as_fd()).join(c))
                    .map_err(|e| Error::InvalidArgument(format!("create {c:?}: {e}")))?;
                open_child(cur.as_fd(), c, true)
                    .map_err(|e| Error::InvalidArgument(format!("open {c:?}: {e}")))?
            }
            Err(e) => {
                return Err(Error::InvalidArgument(format!(
                    "{c:?} is not a directory (a symlink is never followed): {e}"
                )))
            }
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` unless it is a directory and
/// `keep_dir`.
fn clear(dir: BorrowedFd<'_>, name: &OsStr, keep_dir: bool) -> io::Result<()> {
    let p = fd_path(dir).join(name);
    match fs::symlink_metadata(&p) {
        Ok(m) if m.is_dir() && keep_dir => Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
        Ok(_) => fs::remove_file(&p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Extracts `input` into `dest` (the first component renamed to `rename`).
fn extract(dest: BorrowedFd<'_>, rename: Option<&OsStr>, input: impl Read) -> Result<u64> {
    let bad = |e: io::Error| Error::InvalidArgument(format!("tar stream: {e}"));
    let mut ar = tar::Archive::new(input);
    let mut n = 0;
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw = entry.path_bytes().into_owned();
        let mut comps = clean_entry(&raw)?;
        if comps.is_empty() {
            continue;
        }
        if let Some(r) = rename {
            comps[0] = r.to_os_string();
        }
        let (name, parents) = comps.split_last().expect("not empty");
        let dir = walk_dirs(dest, parents)?;
        let h = entry.header().clone();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0) as u32, h.gid().unwrap_or(0) as u32);
        let at = fd_path(dir.as_fd()).join(name);
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let io_err = |e: io::Error| Error::InvalidArgument(format!("{shown}: {e}"));
        match h.entry_type() {
            tar::EntryType::Directory => {
                clear(dir.as_fd(), name, true).map_err(io_err)?;
                if fs::symlink_metadata(&at).is_err() {
                    fs::create_dir(&at).map_err(io_err)?;
                }
                let _ = std::os::unix::fs::lchown(&at, Some(uid), Some(gid));
                fs::set_permissions(&at, fs::Permissions::from_mode(mode)).map_err(io_err)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                clear(dir.as_fd(), name, false).map_err(io_err)?;
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .mode(0o600)
                    .open(&at)
                    .map_err(io_err)?;
                io::copy(&mut entry, &mut f).map_err(io_err)?;
                let _ = std::os::unix::fs::fchown(&f, Some(uid), Some(gid));
                f.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(io_err)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(bad)?.ok_or_else(|| {
                    Error::InvalidArgument(format!("{shown}: symlink without a target"))
                })?;
                clear(dir.as_fd(), name, false).map_err(io_err)?;
                std::os::unix::fs::symlink(&target, &at).map_err(io_err)?;
                let _ = std::os::unix::fs::lchown(&at, Some(uid), Some(gid));
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!("{shown}: hard link without a target"))
                    })?
                    .into_owned();
                let mut tcomps = clean_entry(&target)?;
                if let (Some(r), false) = (rename, tcomps.is_empty()) {
                    tcomps[0] = r.to_os_string();
                }
                let (tname, tparents) = tcomps
                    .split_last()
                    .ok_or_else(|| Error::InvalidArgument(format!("{shown}: empty link target")))?;
                let tdir = walk_dirs(dest, tparents)?;
                let src = fd_path(tdir.as_fd()).join(tname);
                let m = fs::symlink_metadata(&src).map_err(io_err)?;
                if !m.is_file() {
                    return Err(Error::InvalidArgument(format!(
                        "{shown}: a hard link must name a file written before it"
                    )));
                }
                clear(dir.as_fd(), name, false).map_err(io_err)?;
                fs::hard_link(&src, &at).map_err(io_err)?;
            }
            _ => continue,
        }
        n += 1;
    }
    Ok(n)
}

/// An entry name as components: a leading `/` and `.` dropped, `..`
/// refused.
fn clean_entry(raw: &[u8]) -> Result<Vec<OsString>> {
    let mut out = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                return Err(Error::InvalidArgument(format!(
                    "tar entry {:?}: \"..\" is not allowed",
                    String::from_utf8_lossy(raw)
                )))
            }
            c if c.contains(&0) => {
                return Err(Error::InvalidArgument("tar entry: NUL in a name".into()))
            }
            c => out.push(OsStr::from_bytes(c).to_os_string()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data, link) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_path(name).unwrap_or_else(|_| {
                // set_path refuses "..": write the raw name.
                let n = name.as_bytes();
                h.as_old_mut().name[..n.len()].copy_from_slice(n);
            });
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn extraction_stays_in_the_destination() {
        let t = tempfile::tempdir().unwrap();
        let dest = t.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, dest.join("evil")).unwrap();
        let d: OwnedFd = fs::File::open(&dest).unwrap().into();
        // Through a planted symlink: refused, nothing outside.
        let tar = tar_of(&[("evil/x", tar::EntryType::Regular, b"x", None)]);
        assert!(extract(d.as_fd(), None, &tar[..]).is_err());
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // A leaf symlink is replaced, not written through.
        let tar = tar_of(&[("evil", tar::EntryType::Regular, b"safe", None)]);
        extract(d.as_fd(), None, &tar[..]).unwrap();
        assert_eq!(fs::read_to_string(dest.join("evil")).unwrap(), "safe");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        // ".." refused.
        let tar = tar_of(&[("../up", tar::EntryType::Regular, b"x", None)]);
        assert!(extract(d.as_fd(), None, &tar[..]).is_err());
        assert!(!t.path().join("up").exists());
        // Renamed top entry, nested files, a hard link.
        let tar = tar_of(&[
            ("src", tar::EntryType::Directory, b"", None),
            ("src/a", tar::EntryType::Regular, b"A", None),
            ("src/b", tar::EntryType::Link, b"", Some("src/a")),
        ]);
        assert_eq!(
            extract(d.as_fd(), Some(OsStr::new("copy")), &tar[..]).unwrap(),
            3
        );
        assert_eq!(fs::read_to_string(dest.join("copy/b")).unwrap(), "A");
        assert_eq!(
            fs::metadata(dest.join("copy/a")).unwrap().ino(),
            fs::metadata(dest.join("copy/b")).unwrap().ino()
        );
    }

    #[test]
    fn copy_out_writes_a_tree_named_after_its_leaf() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("r/d/sub")).unwrap();
        fs::write(t.path().join("r/d/sub/f"), "F").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", t.path().join("r/d/l")).unwrap();
        let root = Root::open(&t.path().join("r")).unwrap();
        let comps = rootfs::clean("/d").unwrap();
        let (dir, name) = leaf(&root, &comps).unwrap();
        let mut tar = tar::Builder::new(Vec::new());
        let mut n = 0;
        append(&mut tar, dir.as_fd(), &name, &PathBuf::from(&name), &mut n).unwrap();
        let bytes = tar.into_inner().unwrap();
        let mut names = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let e = e.unwrap();
            names.push(e.path().unwrap().display().to_string());
        }
        assert_eq!(names, ["d", "d/l", "d/sub", "d/sub/f"]);
        assert_eq!(n, 4);
    }
}

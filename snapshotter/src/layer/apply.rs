//! Applying a layer tar onto a snapshot directory.
//!
//! On an overlay mount spec the entries are written into the upperdir and
//! whiteouts become overlay whiteouts (0/0 character devices, the
//! `trusted.overlay.opaque=y` xattr); the lowerdirs (top first) are consulted
//! to copy the metadata of directories that must be created in the upperdir
//! and to copy up hard-link targets. On a bind mount spec (native
//! snapshotter) entries are written into the source directory and whiteouts
//! are real deletions.
//!
//! Confinement: see [`super::safe`]. Entries whose parent is a symlink —
//! planted by this layer or present in a lower layer — are refused with
//! InvalidArgument (containerd instead resolves such parents inside the
//! root; we prefer refusing to following any link). Hard-link targets are
//! resolved the same way. The caller removes the snapshot of a refused layer.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use berth_api::echo::EchoBytes;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FchmodatFlags, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};
use tar::EntryType;

use super::pipe::{self, ChanReader};
use super::safe::{self, is_dir, join, lstat_at, open_dir_at, proc_path, Lowers};
use super::sparse::Sparse;
use super::walk::{components, pack, Level};
use super::{compression_of, Applied, Compression, HashReader};
use crate::error::{Error, Result};
use crate::mount::{layer_dirs, Mount};
use crate::sys;

const BUF: usize = 1 << 20;

/// Applies the layer `reader` (of `media_type`) onto the snapshot described
/// by `mounts` (an overlay spec with an upperdir, or a writable bind), in one
/// streaming pass that also computes both digests. Refused content and
/// malformed streams (truncated, trailing garbage) are InvalidArgument; the
/// target may then hold partial content and must be discarded by the caller.
/// On success the written tree is synced (`syncfs`) before returning.
pub fn apply_layer(mounts: &[Mount], reader: impl Read, media_type: &str) -> Result<Applied> {
    let bad_spec = || {
        Error::InvalidArgument(
            "apply needs one overlay mount with an upperdir or one writable bind mount".into(),
        )
    };
    let (upper, lowers) = layer_dirs(mounts).ok_or_else(bad_spec)?;
    let upper = upper.ok_or_else(bad_spec)?;
    let overlay = mounts.first().is_some_and(|m| m.kind == "overlay");
    let lowers = Lowers::open(&lowers)?;
    apply_into(&upper, overlay, lowers, reader, media_type)
}

/// Applies the layer `reader` into `upper`, the empty upper directory of an
/// overlay snapshot whose lower layers are not known yet (so that layers of
/// one image can be written in parallel and stacked afterwards, see
/// [`crate::Snapshotter::rebase`]). Whiteouts are written as overlay
/// whiteouts. A layer that needs its lowers — a parent directory it does
/// not list (its metadata comes from below), a hard link to a lower file —
/// fails with [`Error::NeedsLowers`]; the caller then discards `upper` and
/// applies the layer with [`apply_layer`] once its parent is committed.
pub fn apply_layer_staged(upper: &Path, reader: impl Read, media_type: &str) -> Result<Applied> {
    apply_into(upper, true, Lowers::unknown(), reader, media_type)
}

fn apply_into(
    upper: &Path,
    overlay: bool,
    lowers: Lowers,
    reader: impl Read,
    media_type: &str,
) -> Result<Applied> {
    let compression = compression_of(media_type)?;
    let applier = Applier {
        root: safe::open_root(upper)?,
        overlay,
        lowers,
        stack: Vec::new(),
        created: HashSet::new(),
        dir_times: Vec::new(),
        buf: vec![0; BUF],
    };
    let stream_err = |e: std::io::Error| Error::InvalidArgument(format!("layer stream: {e}"));
    // An uncompressed layer's digest is its diff ID: hash it once.
    let mut compressed = if compression == Compression::None {
        HashReader::counting(reader)
    } else {
        HashReader::new(reader)
    };
    let (tx, rx) = mpsc::sync_channel(pipe::DEPTH);
    let (recycle_tx, recycle_rx) = mpsc::channel();
    // Decompression and hashing run on this thread; tar parsing and file
    // writes on a scoped helper, so CPU and filesystem work overlap.
    let (produced, consumed) = std::thread::scope(|sc| {
        let consumer = sc.spawn(move || applier.consume(ChanReader::new(rx, recycle_tx)));
        let produced = pipe::produce(&mut compressed, compression, tx, recycle_rx);
        let consumed = consumer
            .join()
            .unwrap_or_else(|_| Err(Error::Internal("layer apply thread panicked".into())));
        (produced, consumed)
    });
    // A broken stream explains a consumer failure better than the consumer can.
    let (produced, applier) = match (produced, consumed) {
        (Err(e), _) => return Err(e),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(None), Ok(_)) => {
            return Err(Error::Internal("layer apply stopped reading early".into()))
        }
        (Ok(Some(p)), Ok(a)) => (p, a),
    };
    if produced.trailing_zeros < 1024 {
        return Err(Error::InvalidArgument(
            "layer stream: truncated tar (no end-of-archive marker)".into(),
        ));
    }
    let diff_id = produced.diff_id;
    let mut one = [0u8; 1];
    if compressed.read(&mut one).map_err(stream_err)? != 0 {
        return Err(Error::InvalidArgument(
            "layer stream: trailing data after the compressed stream".into(),
        ));
    }
    let (digest, compressed_size) = compressed.finish();
    let compressed_digest = digest.unwrap_or_else(|| diff_id.clone());
    applier.finish()?;
    Ok(Applied {
        diff_id,
        compressed_digest,
        compressed_size,
    })
}

/// Owner, mode, times and xattrs of one entry.
pub(super) struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
    /// GNU sparse (PAX) description of a regular file
    sparse: Option<Sparse>,
}

pub(super) struct Applier {
    pub(super) root: OwnedFd,
    pub(super) overlay: bool,
    pub(super) lowers: Lowers,
    /// Open directories of the last parent path resolved (see [`super::walk`]).
    pub(super) stack: Vec<Level>,
    /// Paths written by this layer (native opaque handling keeps them).
    pub(super) created: HashSet<PathBuf>,
    /// Directory mtimes to set once all children are written (paths packed
    /// by [`super::walk::pack`]: memory linear in the entries).
    pub(super) dir_times: Vec<(Box<[u8]>, TimeSpec)>,
    pub(super) buf: Vec<u8>,
}

pub(super) fn io_err<'a>(
    what: &'static str,
    path: &'a [OsString],
) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(what, join(path), e)
}

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
        Some(libc::EINVAL | libc::ERANGE | libc::E2BIG | libc::EOPNOTSUPP) => refuse(
            join(path).as_os_str().as_bytes(),
            format!(
                "xattr {} refused by the kernel: {e}",
                EchoBytes(key.as_bytes())
            ),
        ),
        _ => Error::io("setxattr", join(path), e),
    }
}

pub(super) fn refuse(path: &[u8], why: impl std::fmt::Display) -> Error {
    Error::InvalidArgument(format!("layer entry {} refused: {why}", EchoBytes(path)))
}

fn parse_pax_time(v: &str) -> Option<TimeSpec> {
    let (s, frac) = v.split_once('.').unwrap_or((v, ""));
    let secs: i64 = s.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    Some(TimeSpec::new(
        secs,
        if secs < 0 && nanos > 0 { -nanos } else { nanos },
    ))
}

/// The real name of a GNU sparse (PAX) entry, whose header name is a
/// stand-in (see [`super::sparse`]).
fn sparse_name<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Option<Vec<u8>>> {
    let Ok(Some(pax)) = entry.pax_extensions() else {
        return Ok(None); // meta_of reports a malformed PAX header
    };
    for ext in pax.flatten() {
        if ext.key_bytes() == b"GNU.sparse.name" {
            return Ok(Some(ext.value_bytes().to_vec()));
        }
    }
    Ok(None)
}

fn meta_of<R: Read>(entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<Meta> {
    let h = entry.header();
    let bad = |e: std::io::Error| refuse(raw, format!("bad header: {e}"));
    let mut m = Meta {
        uid: h.uid().map_err(bad)? as u32,
        gid: h.gid().map_err(bad)? as u32,
        mode: h.mode().map_err(bad)? & 0o7777,
        mtime: TimeSpec::new(h.mtime().map_err(bad)? as i64, 0),
        xattrs: Vec::new(),
        sparse: None,
    };
    if let Some(pax) = entry.pax_extensions().map_err(bad)? {
        for ext in pax {
            let ext = ext.map_err(bad)?;
            let Ok(key) = ext.key() else { continue };
            let val = ext.value().unwrap_or("");
            match key {
                "uid" => m.uid = val.parse().map_err(|_| refuse(raw, "bad pax uid"))?,
                "gid" => m.gid = val.parse().map_err(|_| refuse(raw, "bad pax gid"))?,
                "mtime" => {
                    m.mtime = parse_pax_time(val).ok_or_else(|| refuse(raw, "bad pax mtime"))?
                }
                k => {
                    if Sparse::record(&mut m.sparse, raw, k, ext.value_bytes())? {
                        continue;
                    }
                    if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                        // Overlay's own xattrs are ours to set, never a layer's.
                        if !name.starts_with("trusted.overlay.") {
                            m.xattrs.push((name.into(), ext.value_bytes().to_vec()));
                        }
                    }
                }
            }
        }
    }
    Ok(m)
}

impl Applier {
    /// Parses the tar from `reader` and applies every entry; afterwards
    /// only zero padding may remain in the stream.
    fn consume(mut self, reader: ChanReader) -> Result<Self> {
        let stream_err = |e: std::io::Error| Error::InvalidArgument(format!("layer stream: {e}"));
        let mut archive = tar::Archive::new(reader);
        for entry in archive.entries().map_err(stream_err)? {
            let mut entry = entry.map_err(stream_err)?;
            self.entry(&mut entry)?;
        }
        let mut rest = archive.into_inner();
        let mut tail = vec![0u8; 64 * 1024];
        loop {
            let n = rest.read(&mut tail).map_err(stream_err)?;
            if n == 0 {
                return Ok(self);
            }
            if tail[..n].iter().any(|b| *b != 0) {
                return Err(Error::InvalidArgument(
                    "layer stream: trailing data after the tar end marker".into(),
                ));
            }
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let et = entry.header().entry_type();
        if matches!(
            et,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = match sparse_name(entry)? {
            Some(real) => real,
            None => entry.path_bytes().into_owned(),
        };
        let comps = components(&raw, &raw, "path")?;
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root itself: its metadata belongs to the snapshot
        };
        if let Some(target) = name.as_bytes().strip_prefix(b".wh.") {
            if target == b".wh..opq" {
                return self.opaque(parent, &raw);
            }
            if target.starts_with(b".wh.") {
                return Ok(()); // aufs bookkeeping (.wh..wh.plnk, ...)
            }
            if target.is_empty() || target == b"." || target == b".." {
                return Err(refuse(&raw, "whiteout does not name an entry"));
            }
            return self.whiteout(parent, OsStr::from_bytes(target), &raw);
        }
        let mut meta = meta_of(entry, &raw)?;
        let dir = self.parent_dir(parent, &raw)?;
        let d = dir.as_fd();
        match et {
            EntryType::Directory => self.make_dir(d, &comps, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.replace(d, name, &comps)?;
                let fd = sys::openat(
                    Some(d),
                    name,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )
                .map_err(io_err("create", &comps))?;
                let mut f = File::from(fd);
                if let Some(sparse) = meta.sparse.take() {
                    sparse.write(&raw, entry, &f, &mut self.buf)?;
                }
                loop {
                    let n = entry
                        .read(&mut self.buf)
                        .map_err(|e| Error::InvalidArgument(format!("layer stream: {e}")))?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&self.buf[..n])
                        .map_err(io_err("write", &comps))?;
                }
                let fd = f.as_raw_fd();
                nix::unistd::fchown(
                    fd,
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                )
                .map_err(nix_err("chown", &comps))?;
                nix::sys::stat::fchmod(fd, Mode::from_bits_truncate(meta.mode))
                    .map_err(nix_err("chmod", &comps))?;
                for (k, v) in &meta.xattrs {
                    sys::fsetxattr(f.as_fd(), k, v).map_err(xattr_err(k, &comps))?;
                }
                nix::sys::stat::futimens(fd, &meta.mtime, &meta.mtime)
                    .map_err(nix_err("utimens", &comps))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&raw, "symlink without target"))?
                    .into_owned();
                self.replace(d, name, &comps)?;
                nix::unistd::symlinkat(
                    OsStr::from_bytes(&target),
                    Some(d.as_raw_fd()),
                    name.as_os_str(),
                )
                .map_err(nix_err("symlink", &comps))?;
                self.finish_node(d, name, &comps, &meta, false)?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refuse(&raw, "hard link without target"))?
                    .into_owned();
                self.hard_link(d, name, &comps, &target, &raw)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = entry.header();
                let dev = |v: std::io::Result<Option<u32>>| v.ok().flatten().unwrap_or(0);
                let rdev = nix::sys::stat::makedev(
                    u64::from(dev(h.device_major())),
                    u64::from(dev(h.device_minor())),
                );
                let kind = match et {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.replace(d, name, &comps)?;
                nix::sys::stat::mknodat(
                    Some(d.as_raw_fd()),
                    name.as_os_str(),
                    kind,
                    Mode::from_bits_truncate(0o600),
                    rdev,
                )
                .map_err(nix_err("mknod", &comps))?;
                self.finish_node(d, name, &comps, &meta, true)?;
            }
            other => return Err(refuse(&raw, format!("unsupported entry type {other:?}"))),
        }
        if !self.overlay {
            self.created.insert(join(&comps));
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of a node created by name.
    pub(super) fn finish_node(
        &self,
        d: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        nix::unistd::fchownat(
            Some(d.as_raw_fd()),
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(nix_err("chown", comps))?;
        if chmod {
            nix::sys::stat::fchmodat(
                Some(d.as_raw_fd()),
                name,
                Mode::from_bits_truncate(meta.mode),
                FchmodatFlags::FollowSymlink,
            )
            .map_err(nix_err("chmod", comps))?;
        }
        let p = proc_path(d, name);
        for (k, v) in &meta.xattrs {
            sys::lsetxattr(p.as_os_str(), k, v).map_err(xattr_err(k, comps))?;
        }
        nix::sys::stat::utimensat(
            Some(d.as_raw_fd()),
            name,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(nix_err("utimens", comps))
    }

    fn make_dir(&mut self, d: BorrowedFd<'_>, comps: &[OsString], meta: &Meta) -> Result<()> {
        let name = &comps[comps.len() - 1];
        match lstat_at(d, name).map_err(io_err("stat", comps))? {
            Some(st) if is_dir(&st) => {}
            Some(_) => {
                self.replace(d, name, comps)?;
                nix::sys::stat::mkdirat(
                    Some(d.as_raw_fd()),
                    name.as_os_str(),
                    Mode::from_bits_truncate(0o700),
                )
                .map_err(nix_err("mkdir", comps))?;
            }
            None => nix::sys::stat::mkdirat(
                Some(d.as_raw_fd()),
                name.as_os_str(),
                Mode::from_bits_truncate(0o700),
            )
            .map_err(nix_err("mkdir", comps))?,
        }
        let fd = open_dir_at(d, name).map_err(io_err("open", comps))?;
        nix::unistd::fchown(
            fd.as_raw_fd(),
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(nix_err("chown", comps))?;
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(meta.mode))
            .map_err(nix_err("chmod", comps))?;
        for (k, v) in &meta.xattrs {
            sys::fsetxattr(fd.as_fd(), k, v).map_err(xattr_err(k, comps))?;
        }
        self.dir_times.push((pack(comps), meta.mtime));
        Ok(())
    }

    /// Removes whatever is at `name` (recursively); forgets cached
    /// directories if a directory went away.
    pub(super) fn replace(
        &mut self,
        d: BorrowedFd<'_>,
        name: &OsStr,
        comps: &[OsString],
    ) -> Result<()> {
        if let Some(st) = lstat_at(d, name).map_err(io_err("stat", comps))? {
            if is_dir(&st) {
                self.stack.clear();
            }
            safe::remove_at(d, name).map_err(io_err("remove", comps))?;
        }
        Ok(())
    }
}

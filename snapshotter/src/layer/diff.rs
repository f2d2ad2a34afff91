//! Producing a layer tar from two mount sets.
//!
//! Fast path: when `upper` is one overlay mount whose lowerdirs are exactly
//! the directories `lower` stacks, the upperdir *is* the change set, read
//! directly (0/0 character devices become `.wh.NAME`, opaque directories get
//! `.wh..wh..opq`). Otherwise both sides are mounted read-only on temporary
//! directories (or read in place when a side is a single directory) and the
//! trees are compared: added/changed entries are written, entries missing
//! from `upper` become whiteouts.
//!
//! Entries are written in sorted order; hard links inside the written set
//! are kept as tar hard links; sockets are skipped.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Compression, HashWriter, Written};
use crate::error::{Error, Result};
use crate::mount::{layer_dirs, mount_all, unmount, Mount};
use crate::sys;

enum Encoder<W: Write> {
    Plain(W),
    Gzip(flate2::write::GzEncoder<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Encoder::Plain(w) => w.write(buf),
            Encoder::Gzip(w) => w.write(buf),
            Encoder::Zstd(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Plain(w) => w.flush(),
            Encoder::Gzip(w) => w.flush(),
            Encoder::Zstd(w) => w.flush(),
        }
    }
}

impl<W: Write> Encoder<W> {
    fn finish(self) -> std::io::Result<W> {
        match self {
            Encoder::Plain(w) => Ok(w),
            Encoder::Gzip(w) => w.finish(),
            Encoder::Zstd(w) => w.finish(),
        }
    }
}

/// A temporary read-only mount, unmounted (and its dir removed) on drop.
struct TempMount {
    dir: tempfile::TempDir,
}

impl Drop for TempMount {
    fn drop(&mut self) {
        if let Err(e) = unmount(self.dir.path()) {
            tracing::warn!(error = %e, "diff: unmount of temporary mount failed");
        }
    }
}

/// All directories a mount set stacks, top first.
fn stacked(mounts: &[Mount]) -> Option<Vec<PathBuf>> {
    let (upper, lowers) = layer_dirs(mounts)?;
    Some(upper.into_iter().chain(lowers).collect())
}

/// Makes the tree of `mounts` readable at a path: a single directory is
/// used in place, anything else is mounted read-only on a temp dir.
fn readable(mounts: &[Mount]) -> Result<(Option<PathBuf>, Option<TempMount>)> {
    let dirs = stacked(mounts);
    match dirs.as_deref() {
        Some([]) => return Ok((None, None)),
        Some([one]) => return Ok((Some(one.clone()), None)),
        _ => {}
    }
    let specs: Vec<Mount> = match dirs {
        Some(d) => vec![Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "ro".into(),
                "index=off".into(),
                format!(
                    "lowerdir={}",
                    d.iter()
                        .map(|p| p.to_string_lossy())
                        .collect::<Vec<_>>()
                        .join(":")
                ),
            ],
        }],
        None => mounts.to_vec(),
    };
    let dir = tempfile::Builder::new()
        .prefix("berth-diff-")
        .tempdir()
        .map_err(|e| Error::io("mkdtemp", std::env::temp_dir(), e))?;
    mount_all(&specs, dir.path())?;
    let path = dir.path().to_owned();
    Ok((Some(path), Some(TempMount { dir })))
}

/// Writes the changes from `lower` to `upper` as a layer tar compressed with
/// `compression` into `out`; returns its digests and size. `out` receives
/// the complete stream when this returns Ok.
pub fn diff_layer(
    lower: &[Mount],
    upper: &[Mount],
    compression: Compression,
    out: impl Write,
) -> Result<Written> {
    let counted = HashWriter::new(out);
    let enc = match compression {
        Compression::None => Encoder::Plain(counted),
        Compression::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(
            counted,
            flate2::Compression::new(6),
        )),
        Compression::Zstd => Encoder::Zstd(
            zstd::stream::write::Encoder::new(counted, 3)
                .map_err(|e| Error::Internal(format!("zstd: {e}")))?,
        ),
    };
    let mut w = Walker {
        tar: tar::Builder::new(HashWriter::new(enc)),
        links: HashMap::new(),
    };
    let direct = match (upper, layer_dirs(upper), stacked(lower)) {
        ([m], Some((Some(u), lowers)), Some(ll)) if m.kind == "overlay" && lowers == ll => Some(u),
        _ => None,
    };
    if let Some(u) = direct {
        w.upperdir(&u, Path::new(""))?;
    } else {
        let (a, _ga) = readable(lower)?;
        let (b, _gb) = readable(upper)?;
        let b = b.ok_or_else(|| Error::InvalidArgument("diff: upper mounts are empty".into()))?;
        w.compare(a.as_deref(), &b, Path::new(""))?;
    }
    let wr = |e: std::io::Error| Error::Internal(format!("writing layer: {e}"));
    let plain = w.tar.into_inner().map_err(wr)?;
    let (enc, diff_id, _) = plain.finish();
    let counted = enc.finish().map_err(wr)?;
    let (mut out, digest, size) = counted.finish();
    out.flush().map_err(wr)?;
    Ok(Written {
        diff_id,
        digest,
        size,
    })
}

struct Walker<W: Write> {
    tar: tar::Builder<W>,
    /// (dev, ino) of multiply-linked files already written → their path.
    links: HashMap<(u64, u64), PathBuf>,
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>> {
    let mut v = fs::read_dir(dir)
        .map_err(|e| Error::io("readdir", dir, e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::io("readdir", dir, e))?;
    v.sort();
    Ok(v)
}

fn lstat(p: &Path) -> Result<Option<Metadata>> {
    match fs::symlink_metadata(p) {
        Ok(m) => Ok(Some(m)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("stat", p, e)),
    }
}

fn xattrs(p: &Path) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in sys::llistxattr(p.as_os_str()).map_err(|e| Error::io("listxattr", p, e))? {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        if let Some(v) = sys::lgetxattr(p.as_os_str(), OsStr::from_bytes(&name))
            .map_err(|e| Error::io("getxattr", p, e))?
        {
            out.push((name, v));
        }
    }
    out.sort();
    Ok(out)
}

fn is_whiteout(m: &Metadata) -> bool {
    m.file_type().is_char_device() && m.rdev() == 0
}

fn same(a: &Path, ma: &Metadata, b: &Path, mb: &Metadata) -> Result<bool> {
    let (ta, tb) = (ma.file_type(), mb.file_type());
    let kind_same = (ta.is_dir() && tb.is_dir())
        || (ta.is_file() && tb.is_file())
        || (ta.is_symlink() && tb.is_symlink())
        || (ta.is_char_device() && tb.is_char_device())
        || (ta.is_block_device() && tb.is_block_device())
        || (ta.is_fifo() && tb.is_fifo())
        || (ta.is_socket() && tb.is_socket());
    if !kind_same
        || ma.mode() != mb.mode()
        || ma.uid() != mb.uid()
        || ma.gid() != mb.gid()
        || ma.rdev() != mb.rdev()
        || (!ta.is_dir() && ma.size() != mb.size())
        || ma.mtime() != mb.mtime()
        || ma.mtime_nsec() != mb.mtime_nsec()
    {
        return Ok(false);
    }
    if ta.is_symlink() && fs::read_link(a).ok() != fs::read_link(b).ok() {
        return Ok(false);
    }
    Ok(xattrs(a)? == xattrs(b)?)
}

impl<W: Write> Walker<W> {
    fn upperdir(&mut self, dir: &Path, rel: &Path) -> Result<()> {
        for name in sorted_names(dir)? {
            let p = dir.join(&name);
            let r = rel.join(&name);
            let Some(m) = lstat(&p)? else { continue };
            if is_whiteout(&m) {
                self.whiteout(rel, &name)?;
                continue;
            }
            self.emit(&p, &r, &m)?;
            if m.is_dir() {
                let opaque = sys::lgetxattr(p.as_os_str(), OsStr::new("trusted.overlay.opaque"))
                    .map_err(|e| Error::io("getxattr", &p, e))?;
                if opaque.as_deref() == Some(b"y") {
                    self.whiteout(&r, OsStr::new(".wh..opq"))?;
                }
                self.upperdir(&p, &r)?;
            }
        }
        Ok(())
    }

    fn compare(&mut self, a: Option<&Path>, b: &Path, rel: &Path) -> Result<()> {
        let bn = sorted_names(b)?;
        if let Some(a) = a {
            for name in sorted_names(a)? {
                if bn.binary_search(&name).is_err() {
                    self.whiteout(rel, &name)?;
                }
            }
        }
        for name in bn {
            let pb = b.join(&name);
            let r = rel.join(&name);
            let Some(mb) = lstat(&pb)? else { continue };
            let pa = a.map(|a| a.join(&name));
            let ma = match &pa {
                Some(p) => lstat(p)?,
                None => None,
            };
            match (&pa, ma) {
                (Some(pa), Some(ma)) if ma.is_dir() && mb.is_dir() => {
                    if !same(pa, &ma, &pb, &mb)? {
                        self.emit(&pb, &r, &mb)?;
                    }
                    self.compare(Some(pa), &pb, &r)?;
                }
                (Some(pa), Some(ma)) if same(pa, &ma, &pb, &mb)? => {}
                _ => {
                    self.emit(&pb, &r, &mb)?;
                    if mb.is_dir() {
                        self.compare(None, &pb, &r)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn whiteout(&mut self, rel: &Path, name: &OsStr) -> Result<()> {
        let mut wname = OsString::from(".wh.");
        wname.push(name);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(0);
        h.set_mode(0o600);
        h.set_mtime(0);
        self.tar
            .append_data(&mut h, rel.join(wname), std::io::empty())
            .map_err(|e| Error::Internal(format!("writing whiteout in {}: {e}", rel.display())))
    }

    fn emit(&mut self, p: &Path, rel: &Path, m: &Metadata) -> Result<()> {
        let ft = m.file_type();
        if ft.is_socket() {
            return Ok(());
        }
        let werr = |e: std::io::Error| Error::Internal(format!("writing {}: {e}", rel.display()));
        let mut h = tar::Header::new_gnu();
        h.set_mode(m.mode() & 0o7777);
        h.set_uid(u64::from(m.uid()));
        h.set_gid(u64::from(m.gid()));
        h.set_mtime(u64::try_from(m.mtime()).unwrap_or(0));
        h.set_size(0);
        let xa = xattrs(p)?;
        if !xa.is_empty() {
            let recs: Vec<(String, Vec<u8>)> = xa
                .into_iter()
                .map(|(k, v)| (format!("SCHILY.xattr.{}", String::from_utf8_lossy(&k)), v))
                .collect();
            self.tar
                .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        if !ft.is_dir() && m.nlink() > 1 {
            if let Some(first) = self.links.get(&(m.dev(), m.ino())) {
                h.set_entry_type(tar::EntryType::Link);
                let first = first.clone();
                return self.tar.append_link(&mut h, rel, first).map_err(werr);
            }
            self.links.insert((m.dev(), m.ino()), rel.to_owned());
        }
        if ft.is_dir() {
            h.set_entry_type(tar::EntryType::Directory);
            self.tar
                .append_data(&mut h, rel, std::io::empty())
                .map_err(werr)
        } else if ft.is_file() {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(m.size());
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(p)
                .map_err(|e| Error::io("open", p, e))?;
            self.tar
                .append_data(&mut h, rel, f.take(m.size()))
                .map_err(werr)
        } else if ft.is_symlink() {
            h.set_entry_type(tar::EntryType::Symlink);
            let t = fs::read_link(p).map_err(|e| Error::io("readlink", p, e))?;
            self.tar.append_link(&mut h, rel, t).map_err(werr)
        } else {
            h.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else if ft.is_block_device() {
                tar::EntryType::Block
            } else {
                tar::EntryType::Fifo
            });
            let rdev = m.rdev();
            h.set_device_major(nix::sys::stat::major(rdev) as u32)
                .map_err(werr)?;
            h.set_device_minor(nix::sys::stat::minor(rdev) as u32)
                .map_err(werr)?;
            self.tar
                .append_data(&mut h, rel, std::io::empty())
                .map_err(werr)
        }
    }
}

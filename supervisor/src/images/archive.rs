//! Reading an image archive (OCI image layout tar or `docker save` tar) in
//! one streaming pass, writing its blobs straight into the content store.
//!
//! Runs on a blocking thread; async content calls are driven with
//! `Handle::block_on`. Blobs whose digest is known from their path
//! (`blobs/<alg>/<hex>`) are verified against it on commit; other large
//! files (`docker save` layer tars) are committed under the digest they
//! hash to. Small files (index.json, manifest.json, configs) are kept in
//! memory for the caller.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use berth_api::Digest;
use tokio::runtime::Handle;

use crate::content::ContentStore;

/// Files up to this size (not under `blobs/`) are kept in memory.
const SMALL: u64 = 4 << 20;
/// Chunk size for streaming into the content store.
const CHUNK: usize = 1 << 20;

/// Why an archive could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the tar stream is malformed or truncated
    #[error("archive: {0}")]
    Tar(String),
    /// the content store refused a blob (e.g. digest mismatch)
    #[error("archive entry {path}: {source}")]
    Content {
        /// the entry
        path: String,
        /// why
        source: crate::content::Error,
    },
}

impl Error {
    /// The kind of failure: a malformed archive is InvalidArgument, a
    /// refused blob what the content store says.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Tar(_) => berth_api::ErrorKind::InvalidArgument,
            Error::Content { source, .. } => source.kind(),
        }
    }
}

/// A blob written from a non-`blobs/` entry.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// its digest
    pub digest: Digest,
    /// its size
    pub size: u64,
    /// first bytes, to sniff compression
    pub magic: [u8; 4],
}

/// What one pass over an archive found.
#[derive(Debug, Default)]
pub struct Contents {
    /// small files by normalised path
    pub small: HashMap<String, Vec<u8>>,
    /// large non-blob files committed to content, by path
    pub spooled: HashMap<String, Spooled>,
    /// `blobs/` entries committed to content
    pub blobs: HashMap<Digest, u64>,
    /// symlink / hard link entries: path → normalised target path
    pub links: HashMap<String, String>,
}

impl Contents {
    /// Follows link entries (at most 16 hops).
    pub fn resolve<'a>(&'a self, mut path: &'a str) -> &'a str {
        for _ in 0..16 {
            match self.links.get(path) {
                Some(t) => path = t,
                None => break,
            }
        }
        path
    }
}

/// Progress callbacks from the reading thread.
pub trait Progress: Send {
    /// `n` more bytes of the archive were consumed while writing `what`.
    fn blob(&mut self, what: &str, offset: u64, total: u64);
}

/// Normalises an archive path (`./a//b` → `a/b`); None for `..` or
/// absolute paths.
fn normalise(p: &Path) -> Option<String> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => out.push(s),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out.to_string_lossy().into_owned())
}

/// Reads the whole archive from `reader`, committing blobs into `ns` of
/// `cs`, which holds them in its lease (each known digest is added to the
/// lease, under the GC guard, before its bytes are written).
pub fn read(
    cs: &ContentStore,
    rt: &Handle,
    ns: &str,
    reader: impl Read,
    progress: &mut dyn Progress,
) -> Result<Contents, Error> {
    let mut ar = tar::Archive::new(reader);
    let mut out = Contents::default();
    let entries = ar.entries().map_err(|e| Error::Tar(e.to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| Error::Tar(e.to_string()))?;
        let raw = entry
            .path()
            .map_err(|e| Error::Tar(e.to_string()))?
            .into_owned();
        let Some(path) = normalise(&raw) else {
            return Err(Error::Tar(format!(
                "entry {raw:?}: path leaves the archive"
            )));
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            if let Ok(Some(t)) = entry.link_name() {
                let target = if kind.is_symlink() {
                    Path::new(&path).parent().unwrap_or(Path::new("")).join(t)
                } else {
                    t.into_owned()
                };
                if let Some(t) = normalise_dotdot(&target) {
                    out.links.insert(path, t);
                }
            }
            continue;
        }
        if !kind.is_file() {
            continue;
        }
        let size = entry.size();
        let blob = path
            .strip_prefix("blobs/")
            .and_then(|rest| rest.split_once('/'))
            .and_then(|(alg, hex)| format!("{alg}:{hex}").parse::<Digest>().ok());
        if let Some(d) = blob {
            write_blob(
                cs,
                rt,
                ns,
                &path,
                &mut entry,
                Some(d.clone()),
                size,
                progress,
            )?;
            out.blobs.insert(d, size);
        } else if size <= SMALL {
            let mut buf = Vec::with_capacity(size as usize);
            entry
                .read_to_end(&mut buf)
                .map_err(|e| Error::Tar(format!("{path}: {e}")))?;
            out.small.insert(path, buf);
        } else {
            let mut magic = [0u8; 4];
            let (digest, size) = {
                let mut peek = PeekReader {
                    inner: &mut entry,
                    magic: &mut magic,
                    seen: 0,
                };
                write_blob(cs, rt, ns, &path, &mut peek, None, size, progress)?
            };
            out.spooled.insert(
                path,
                Spooled {
                    digest,
                    size,
                    magic,
                },
            );
        }
    }
    Ok(out)
}

/// Records the first four bytes read through it.
struct PeekReader<'a, R> {
    inner: &'a mut R,
    magic: &'a mut [u8; 4],
    seen: usize,
}

impl<R: Read> Read for PeekReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        while self.seen < 4 && self.seen < n {
            self.magic[self.seen] = buf[self.seen];
            self.seen += 1;
        }
        Ok(n)
    }
}

fn normalise_dotdot(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(parts.join("/"))
}

/// Streams one entry into the content store; returns its digest and size.
#[allow(clippy::too_many_arguments)]
fn write_blob(
    cs: &ContentStore,
    rt: &Handle,
    ns: &str,
    path: &str,
    r: &mut dyn Read,
    expected: Option<Digest>,
    size: u64,
    progress: &mut dyn Progress,
) -> Result<(Digest, u64), Error> {
    let cerr = |source| Error::Content {
        path: path.to_string(),
        source,
    };
    if let Some(d) = &expected {
        rt.block_on(cs.lease_digest(ns, d)).map_err(cerr)?;
        if cs.info(ns, d).is_ok() {
            // Already here: skip the bytes (the tar reader discards them).
            return Ok((d.clone(), size));
        }
    }
    let reference = format!("berth-import-{}", uuid::Uuid::new_v4().simple());
    let mut w = match rt.block_on(cs.writer(ns, &reference, size, expected.clone())) {
        Ok(w) => w,
        Err(crate::content::Error::AlreadyExists(d)) => return Ok((d, size)),
        Err(e) => return Err(cerr(e)),
    };
    let mut offset = 0u64;
    loop {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = r
                .read(&mut buf[filled..])
                .map_err(|e| Error::Tar(format!("{path}: {e}")))?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        buf.truncate(filled);
        offset += filled as u64;
        if let Err(e) = rt.block_on(w.write(buf)) {
            drop(w);
            let _ = rt.block_on(cs.abort(ns, &reference));
            return Err(cerr(e));
        }
        progress.blob(path, offset, size);
        if filled < CHUNK {
            break;
        }
    }
    // Commit records and leases under the collector's guard itself.
    let committed = rt.block_on(w.commit(Some(size), expected.as_ref(), Default::default()));
    match committed {
        Ok(info) => Ok((info.digest, size)),
        Err(crate::content::Error::AlreadyExists(d)) => Ok((d, size)),
        Err(e) => {
            let _ = rt.block_on(cs.abort(ns, &reference));
            Err(cerr(e))
        }
    }
}

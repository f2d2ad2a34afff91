//! GNU sparse files in PAX form (GNU tar `--sparse --format=posix`),
//! expanded the way Go's archive/tar (and so containerd) reads them.
//!
//! Such an entry is a regular file whose PAX header carries `GNU.sparse.*`
//! keys; its header name is a stand-in (`DIR/GNUSparseFile.N/NAME`) and its
//! data holds only the non-hole chunks:
//! - 1.0 (`GNU.sparse.major=1`, `minor=0`): the data starts with the map
//!   in decimal text, one number per line (chunk count, then offset and size
//!   of each chunk), padded to a 512-byte block, then the chunks;
//!   `GNU.sparse.realsize` is the file's size, `GNU.sparse.name` its name;
//! - 0.1: the map is the PAX value `GNU.sparse.map` (`off,size,off,size...`);
//! - 0.0: the map is repeated `GNU.sparse.offset` / `GNU.sparse.numbytes`
//!   pairs; in both 0.x the size is `GNU.sparse.size`.
//!
//! The file is written under its real name, each chunk at its offset and
//! the rest left as holes; never the map as data. A map that is malformed,
//! out of order, overlapping, beyond the real size, longer than
//! [`MAX_CHUNKS`] or not matching the data is refused with InvalidArgument.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;

use super::apply::refuse;
use crate::error::{Error, Result};

/// Most chunks a sparse map may list (16 MiB of map in memory).
pub(super) const MAX_CHUNKS: usize = 1 << 20;

/// What the PAX header says about a sparse file.
#[derive(Debug, Default)]
pub(super) struct Sparse {
    /// the real name (`GNU.sparse.name`), when given
    pub(super) name: Option<Vec<u8>>,
    /// the file's size with its holes
    real_size: Option<u64>,
    /// `(major, minor)` when given
    version: Option<(u64, u64)>,
    /// the 0.x map (from the PAX keys)
    map: Vec<(u64, u64)>,
    /// a 0.0 offset waiting for its numbytes
    pending_offset: Option<u64>,
    /// the 0.0 `numblocks` count, checked against the map
    numblocks: Option<u64>,
}

fn number(raw: &[u8], key: &str, v: &str) -> Result<u64> {
    v.trim()
        .parse()
        .map_err(|_| refuse(raw, format!("bad {key} in GNU sparse header")))
}

impl Sparse {
    /// Takes one PAX record; returns false when the key is not a sparse one.
    pub(super) fn record(
        this: &mut Option<Self>,
        raw: &[u8],
        key: &str,
        value: &[u8],
    ) -> Result<bool> {
        let Some(k) = key.strip_prefix("GNU.sparse.") else {
            return Ok(false);
        };
        let s = this.get_or_insert_with(Self::default);
        let v = std::str::from_utf8(value).unwrap_or("");
        match k {
            "name" => s.name = Some(value.to_vec()),
            "realsize" | "size" => s.real_size = Some(number(raw, key, v)?),
            "major" => {
                let minor = s.version.map_or(0, |(_, m)| m);
                s.version = Some((number(raw, key, v)?, minor));
            }
            "minor" => {
                let major = s.version.map_or(0, |(m, _)| m);
                s.version = Some((major, number(raw, key, v)?));
            }
            "numblocks" => s.numblocks = Some(number(raw, key, v)?),
            "offset" => {
                if s.pending_offset.is_some() {
                    return Err(refuse(raw, "GNU sparse offset without its numbytes"));
                }
                s.pending_offset = Some(number(raw, key, v)?);
            }
            "numbytes" => {
                let off = s
                    .pending_offset
                    .take()
                    .ok_or_else(|| refuse(raw, "GNU sparse numbytes without its offset"))?;
                s.push(raw, off, number(raw, key, v)?)?;
            }
            "map" => {
                let nums = v
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| number(raw, key, p))
                    .collect::<Result<Vec<u64>>>()?;
                if nums.len() % 2 != 0 {
                    return Err(refuse(raw, "GNU sparse map has an odd count of numbers"));
                }
                for pair in nums.chunks(2) {
                    s.push(raw, pair[0], pair[1])?;
                }
            }
            _ => {}
        }
        Ok(true)
    }

    fn push(&mut self, raw: &[u8], off: u64, size: u64) -> Result<()> {
        if self.map.len() >= MAX_CHUNKS {
            return Err(refuse(
                raw,
                format!("GNU sparse map lists more than {MAX_CHUNKS} chunks"),
            ));
        }
        self.map.push((off, size));
        Ok(())
    }

    /// Writes the entry's data into `file` as the sparse file it describes.
    pub(super) fn write<R: Read>(
        mut self,
        raw: &[u8],
        entry: &mut R,
        file: &File,
        buf: &mut [u8],
    ) -> Result<()> {
        let real_size = self
            .real_size
            .ok_or_else(|| refuse(raw, "GNU sparse file without its real size"))?;
        match self.version {
            Some((1, 0)) => self.map = read_map(raw, entry)?,
            None | Some((0, 0 | 1)) => {
                if self.pending_offset.is_some() {
                    return Err(refuse(raw, "GNU sparse offset without its numbytes"));
                }
                if let Some(n) = self.numblocks {
                    if n != self.map.len() as u64 {
                        return Err(refuse(raw, "GNU sparse numblocks does not match its map"));
                    }
                }
            }
            Some((major, minor)) => {
                return Err(refuse(
                    raw,
                    format!("GNU sparse format {major}.{minor} is not supported"),
                ))
            }
        }
        let mut end = 0u64;
        for (off, size) in &self.map {
            let stop = off
                .checked_add(*size)
                .filter(|s| *off >= end && *s <= real_size)
                .ok_or_else(|| {
                    refuse(
                        raw,
                        "GNU sparse map is out of order, overlapping or beyond the file size",
                    )
                })?;
            let mut at = *off;
            while at < stop {
                let want = buf.len().min((stop - at) as usize);
                let n = entry.read(&mut buf[..want]).map_err(stream_err)?;
                if n == 0 {
                    return Err(refuse(raw, "GNU sparse data is shorter than its map"));
                }
                file.write_all_at(&buf[..n], at)
                    .map_err(|e| write_err(raw, e))?;
                at += n as u64;
            }
            end = stop;
        }
        if entry.read(&mut buf[..1]).map_err(stream_err)? != 0 {
            return Err(refuse(raw, "GNU sparse data is longer than its map"));
        }
        file.set_len(real_size).map_err(|e| write_err(raw, e))
    }
}

fn stream_err(e: std::io::Error) -> Error {
    Error::InvalidArgument(format!("layer stream: {e}"))
}

/// A size or offset the filesystem cannot hold is the layer's fault.
fn write_err(raw: &[u8], e: std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::EFBIG | libc::EINVAL) => refuse(raw, format!("GNU sparse file: {e}")),
        _ => Error::io(
            "write sparse file",
            std::path::PathBuf::from(String::from_utf8_lossy(raw).into_owned()),
            e,
        ),
    }
}

/// Reads the 1.0 map at the start of the data: decimal lines, then zero
/// padding to the end of its 512-byte block.
fn read_map<R: Read>(raw: &[u8], entry: &mut R) -> Result<Vec<(u64, u64)>> {
    let mut consumed = 0u64;
    let mut line = |consumed: &mut u64| -> Result<u64> {
        let mut digits = Vec::with_capacity(20);
        loop {
            let mut b = [0u8; 1];
            if entry.read(&mut b).map_err(stream_err)? == 0 {
                return Err(refuse(raw, "GNU sparse map is truncated"));
            }
            *consumed += 1;
            match b[0] {
                b'\n' => break,
                d @ b'0'..=b'9' if digits.len() < 20 => digits.push(d),
                _ => return Err(refuse(raw, "GNU sparse map is malformed")),
            }
        }
        std::str::from_utf8(&digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| refuse(raw, "GNU sparse map is malformed"))
    };
    let count = line(&mut consumed)?;
    if count > MAX_CHUNKS as u64 {
        return Err(refuse(
            raw,
            format!("GNU sparse map lists more than {MAX_CHUNKS} chunks"),
        ));
    }
    let mut map = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let off = line(&mut consumed)?;
        let size = line(&mut consumed)?;
        map.push((off, size));
    }
    let pad = (512 - consumed % 512) % 512;
    let mut skip = vec![0u8; pad as usize];
    entry.read_exact(&mut skip).map_err(stream_err)?;
    Ok(map)
}

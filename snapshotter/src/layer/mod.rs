//! Layer tars: apply (tar → snapshot dir, with overlay or native whiteouts)
//! and diff (two mount sets → tar), with gzip/zstd and digests computed in
//! the same streaming pass.

mod apply;
mod apply_ops;
mod diff;
mod pipe;
mod safe;
mod sparse;
mod walk;

use std::io::{self, Read, Write};

use sha2::{Digest as _, Sha256};

pub use apply::{apply_layer, apply_layer_staged};
pub use berth_api::Digest;
pub use diff::diff_layer;
pub use walk::{MAX_DEPTH, MAX_PATH_BYTES};

use crate::error::{Error, Result};

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// plain tar
    None,
    /// gzip (multi-member accepted on input)
    Gzip,
    /// zstd (multi-frame accepted on input)
    Zstd,
}

/// What [`apply_layer`] measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// sha256 of the uncompressed tar (the diff ID)
    pub diff_id: Digest,
    /// sha256 of the bytes read (equals `diff_id` for uncompressed layers)
    pub compressed_digest: Digest,
    /// number of bytes read
    pub compressed_size: u64,
}

/// What [`diff_layer`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// sha256 of the uncompressed tar
    pub diff_id: Digest,
    /// sha256 of the bytes written
    pub digest: Digest,
    /// number of bytes written
    pub size: u64,
}

/// The compression a layer media type implies. Accepts OCI and Docker layer
/// types, their non-distributable variants, and both zstd spellings; any
/// `;parameters` suffix is ignored. Unknown types are InvalidArgument.
pub fn compression_of(media_type: &str) -> Result<Compression> {
    let mt = media_type.split(';').next().unwrap_or("").trim();
    let c = match mt {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar" => Compression::None,
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Compression::Gzip,
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"
        | "application/vnd.docker.image.rootfs.diff.tar.zstd"
        | "application/vnd.docker.image.rootfs.diff.tar+zstd"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.zstd" => Compression::Zstd,
        other => {
            return Err(Error::InvalidArgument(format!(
                "media type {} is not a supported layer type (OCI or Docker layer tar, uncompressed, gzip or zstd)",
                berth_api::echo::Echo(other)
            )))
        }
    };
    Ok(c)
}

/// The OCI media type for a layer with `c` compression.
pub fn oci_media_type(c: Compression) -> &'static str {
    match c {
        Compression::None => "application/vnd.oci.image.layer.v1.tar",
        Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// A reader that hashes and counts what passes through, and remembers how
/// many zero bytes ended the stream so far (to check the tar end marker).
pub(crate) struct HashReader<R> {
    inner: R,
    /// None: count only (the digest would duplicate another one).
    hasher: Option<Sha256>,
    count: u64,
    trailing_zeros: u64,
}

impl<R: Read> HashReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Some(Sha256::new()),
            count: 0,
            trailing_zeros: 0,
        }
    }

    /// Counts without hashing.
    pub(crate) fn counting(inner: R) -> Self {
        Self {
            hasher: None,
            ..Self::new(inner)
        }
    }

    /// The digest (None when only counting) and the byte count.
    pub(crate) fn finish(self) -> (Option<Digest>, u64) {
        (self.hasher.map(Digest::from_hasher), self.count)
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let got = &buf[..n];
        if let Some(h) = &mut self.hasher {
            h.update(got);
        }
        self.count += n as u64;
        match got.iter().rposition(|b| *b != 0) {
            Some(i) => self.trailing_zeros = (n - i - 1) as u64,
            None => self.trailing_zeros += n as u64,
        }
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through.
pub(crate) struct HashWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, Digest::from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

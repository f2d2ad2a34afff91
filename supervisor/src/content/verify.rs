//! Reads that prove the bytes: a committed blob is checked against its
//! digest and recorded size as it is read, for everything that hands a blob
//! to someone else (export, push) or trusts a document's contents.
//!
//! A blob file can go bad after its commit (a disk error, an operator's
//! edit under `blobs/`). The commit path proves the bytes once; these reads
//! prove them again where a wrong byte would travel on unnoticed. Layer
//! applies need none of this: they hash the blob and its uncompressed
//! stream while they read (see `images::layers`).

use std::fs::File;
use std::io::{self, Read};

use berth_api::Digest;
use sha2::{Digest as _, Sha256};

use super::{ContentStore, Error, Result};

/// Why a blob's bytes were refused; carried inside an `io::Error` of kind
/// `InvalidData` by [`VerifiedBlob`], so it passes through `io::copy` and
/// tar writers and is recovered with [`corruption`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("content {digest} is corrupt: {detail}")]
pub struct Corrupt {
    /// the blob
    pub digest: Digest,
    /// what did not match
    pub detail: String,
}

/// The corruption an I/O error carries, if it is one.
pub fn corruption(e: &io::Error) -> Option<Corrupt> {
    e.get_ref()?.downcast_ref::<Corrupt>().cloned()
}

/// A committed blob opened for reading; its last read (the one returning
/// 0) fails with [`Corrupt`] unless the bytes hash to the digest and their
/// count is the recorded size. More bytes than recorded fail at once.
pub struct VerifiedBlob {
    file: File,
    hasher: Sha256,
    digest: Digest,
    size: u64,
    read: u64,
}

impl VerifiedBlob {
    /// The recorded size: what a complete read yields.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn corrupt(&self, detail: String) -> io::Error {
        io::Error::new(
            io::ErrorKind::InvalidData,
            Corrupt {
                digest: self.digest.clone(),
                detail,
            },
        )
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.read != self.size {
                return Err(self.corrupt(format!(
                    "{} bytes on disk, {} recorded",
                    self.read, self.size
                )));
            }
            let actual = Digest::from_hasher(self.hasher.clone());
            if actual != self.digest {
                return Err(self.corrupt(format!("bytes hash to {actual}")));
            }
            return Ok(0);
        }
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        if self.read > self.size {
            return Err(self.corrupt(format!(
                "more than the {} bytes recorded on disk",
                self.size
            )));
        }
        Ok(n)
    }
}

impl ContentStore {
    /// Opens the blob of `digest` for a read that verifies it (see
    /// [`VerifiedBlob`]); NotFound unless `ns` records it. Blocking (one
    /// open call).
    pub fn open_verified(&self, ns: &str, digest: &Digest) -> Result<VerifiedBlob> {
        let size = self.info(ns, digest)?.size;
        let file = self.open_blob(ns, digest)?;
        Ok(VerifiedBlob {
            file,
            hasher: Sha256::new(),
            digest: digest.clone(),
            size,
            read: 0,
        })
    }

    /// Reads the whole blob of `digest` through a verified read, refusing
    /// one larger than `limit` bytes (InvalidArgument) before reading it.
    /// Blocking.
    pub fn read_verified(&self, ns: &str, digest: &Digest, limit: u64) -> Result<Vec<u8>> {
        let mut blob = self.open_verified(ns, digest)?;
        if blob.size() > limit {
            return Err(Error::InvalidArgument(format!(
                "content {digest}: {} bytes, more than the {limit} read into memory",
                blob.size()
            )));
        }
        let mut buf = Vec::with_capacity(blob.size() as usize);
        blob.read_to_end(&mut buf)
            .map_err(|e| match corruption(&e) {
                Some(c) => Error::Corrupt(c),
                None => super::io("reading blob", &self.blob_path(digest))(e),
            })?;
        Ok(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::labels::Labels;
    use crate::store::Store;

    async fn stored(data: &[u8]) -> (tempfile::TempDir, ContentStore, Digest) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let cs = ContentStore::open(dir.path(), store).unwrap();
        let d = Digest::of(data);
        cs.ingest_from_reader(
            "ns",
            io::Cursor::new(data.to_vec()),
            &d,
            None,
            Labels::new(),
        )
        .await
        .unwrap();
        (dir, cs, d)
    }

    /// Rewrites a committed (read-only) blob file in place.
    fn overwrite(cs: &ContentStore, d: &Digest, bytes: &[u8]) {
        use std::os::unix::fs::PermissionsExt as _;
        let p = cs.blob_path(d);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&p, bytes).unwrap();
    }

    #[tokio::test]
    async fn intact_blob_reads_whole() {
        let data = b"intact".repeat(100_000);
        let (_d, cs, d) = stored(&data).await;
        let mut out = Vec::new();
        cs.open_verified("ns", &d)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, data);
        assert_eq!(cs.read_verified("ns", &d, 1 << 20).unwrap(), data);
    }

    #[tokio::test]
    async fn flipped_byte_is_data_loss() {
        let data = b"some blob bytes".to_vec();
        let (_d, cs, d) = stored(&data).await;
        let mut bad = data.clone();
        bad[3] ^= 1;
        overwrite(&cs, &d, &bad);
        let e = cs.read_verified("ns", &d, 1 << 20).unwrap_err();
        assert_eq!(e.kind(), berth_api::ErrorKind::DataLoss, "{e}");
        assert!(e.to_string().contains("corrupt"), "{e}");
        assert!(e.to_string().contains(&d.to_string()), "{e}");
        // Through io::copy, the corruption is recoverable from the io error.
        let mut r = cs.open_verified("ns", &d).unwrap();
        let e = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(corruption(&e).unwrap().digest, d);
    }

    #[tokio::test]
    async fn truncated_and_grown_blobs_are_refused() {
        let data = b"0123456789".to_vec();
        let (_d, cs, d) = stored(&data).await;
        overwrite(&cs, &d, &data[..4]);
        let e = cs.read_verified("ns", &d, 1 << 20).unwrap_err();
        assert!(
            e.to_string().contains("4 bytes on disk, 10 recorded"),
            "{e}"
        );
        overwrite(&cs, &d, b"0123456789ab");
        let e = cs.read_verified("ns", &d, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("more than the 10 bytes"), "{e}");
    }

    #[tokio::test]
    async fn limit_is_checked_before_reading() {
        let (_d, cs, d) = stored(b"0123456789").await;
        let e = cs.read_verified("ns", &d, 4).unwrap_err();
        assert_eq!(e.kind(), berth_api::ErrorKind::InvalidArgument, "{e}");
    }
}

//! Layer blobs ↔ snapshots: apply a blob from the content store onto
//! mounts (checking both digests), and write a diff between two mount sets
//! into the content store.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use berth_api::oci::{OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD};
use berth_api::Digest;
use berth_snapshotter::{Applied, Compression, Mount};

use crate::content::ContentStore;

/// Content label holding a compressed layer's diff ID.
pub const UNCOMPRESSED_LABEL: &str = "containerd.io/uncompressed";

/// Read buffer for layer blobs.
const READ_BUF: usize = 1 << 20;

/// Why a layer could not be applied or made.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the blob's bytes do not hash to its descriptor's digest
    #[error("layer {expected}: content digest is {actual}")]
    DigestMismatch {
        /// the descriptor's digest
        expected: Digest,
        /// what the bytes hash to
        actual: Digest,
    },
    /// the layer's uncompressed digest is not the diff ID the image names
    #[error("layer {layer}: diff ID is {actual}, image config says {expected}")]
    DiffIdMismatch {
        /// the layer blob
        layer: Digest,
        /// the config's diff ID
        expected: Digest,
        /// what was computed
        actual: Digest,
    },
    /// the content store failed (NotFound when the blob is absent)
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// the layer was refused or the apply failed
    #[error("layer {digest}: {source}")]
    Apply {
        /// the layer blob
        digest: String,
        /// why
        source: berth_snapshotter::Error,
    },
    /// a scratch file failed
    #[error("{what} {path}: {source}")]
    Io {
        /// what was being done
        what: &'static str,
        /// where
        path: std::path::PathBuf,
        /// why
        source: std::io::Error,
    },
    /// a blocking task died
    #[error("layer task failed: {0}")]
    Join(String),
}

impl Error {
    /// The kind of failure: bytes that do not match their digests are a
    /// FailedPrecondition, a refused layer is what the snapshotter says
    /// (a hostile one InvalidArgument).
    pub fn kind(&self) -> berth_api::ErrorKind {
        use berth_api::ErrorKind as K;
        match self {
            Error::DigestMismatch { .. } | Error::DiffIdMismatch { .. } => K::FailedPrecondition,
            Error::Content(e) => e.kind(),
            Error::Apply { source, .. } => source.kind(),
            Error::Io { .. } | Error::Join(_) => K::Internal,
        }
    }
}

/// The Diff service's two operations over the content store. Cheap to
/// clone.
#[derive(Clone)]
pub struct Differ {
    content: ContentStore,
    root: PathBuf,
}

impl Differ {
    /// A differ over `content`, writing scratch files under `root/tmp`.
    pub fn new(content: ContentStore, root: PathBuf) -> Self {
        Self { content, root }
    }

    /// Applies the layer blob `digest` of `ns` onto `mounts`; see
    /// [`apply_blob`]. Returns the layer's diff ID.
    pub async fn apply(
        &self,
        ns: &str,
        digest: &Digest,
        media_type: &str,
        mounts: Vec<Mount>,
    ) -> Result<Digest, Error> {
        Ok(apply_blob(&self.content, ns, digest, media_type, mounts)
            .await?
            .diff_id)
    }

    /// Writes the changes from `lower` to `upper` as a layer of
    /// `media_type` (empty: gzip) into the content store of `ns`, held by
    /// `lease`; see [`diff_to_content`].
    pub async fn diff(
        &self,
        ns: &str,
        lease: Option<String>,
        lower: Vec<Mount>,
        upper: Vec<Mount>,
        media_type: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Stored, Error> {
        let media_type = if media_type.is_empty() {
            OCI_LAYER_GZIP
        } else {
            media_type
        };
        let content = self.content.with_lease(lease);
        diff_to_content(&content, &self.root, ns, lower, upper, media_type, labels).await
    }
}

/// Applies the blob `digest` of `ns` (of `media_type`) onto `mounts`,
/// streaming, on the blocking pool. Checks that the bytes read hash to
/// `digest`. The caller discards the target snapshot on error.
pub async fn apply_blob(
    content: &ContentStore,
    ns: &str,
    digest: &Digest,
    media_type: &str,
    mounts: Vec<Mount>,
) -> Result<Applied, Error> {
    apply_blob_with(content, ns, digest, media_type, move |r, mt| {
        berth_snapshotter::apply_layer(&mounts, r, mt)
    })
    .await
}

/// Like [`apply_blob`], into the upper dir of a parentless overlay snapshot
/// whose parent comes later (see [`berth_snapshotter::apply_layer_staged`];
/// a layer that needs its lowers fails with `NeedsLowers` inside
/// [`Error::Apply`]).
pub async fn apply_blob_staged(
    content: &ContentStore,
    ns: &str,
    digest: &Digest,
    media_type: &str,
    upper: std::path::PathBuf,
) -> Result<Applied, Error> {
    apply_blob_with(content, ns, digest, media_type, move |r, mt| {
        berth_snapshotter::apply_layer_staged(&upper, r, mt)
    })
    .await
}

/// Whether `e` is a staged apply asking for the layers below.
pub fn needs_lowers(e: &Error) -> bool {
    matches!(
        e,
        Error::Apply {
            source: berth_snapshotter::Error::NeedsLowers(_),
            ..
        }
    )
}

async fn apply_blob_with(
    content: &ContentStore,
    ns: &str,
    digest: &Digest,
    media_type: &str,
    apply: impl FnOnce(BufReader<std::fs::File>, &str) -> berth_snapshotter::Result<Applied>
        + Send
        + 'static,
) -> Result<Applied, Error> {
    // Refuse unknown media types before touching anything.
    berth_snapshotter::layer::compression_of(media_type).map_err(|source| Error::Apply {
        digest: digest.to_string(),
        source,
    })?;
    let file = content.open_blob(ns, digest)?;
    let d = digest.clone();
    let applied = tokio::task::spawn_blocking(move || {
        let mt = sniffed_media_type(&file)?;
        apply(BufReader::with_capacity(READ_BUF, file), mt)
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))?
    .map_err(|source| Error::Apply {
        digest: d.to_string(),
        source,
    })?;
    if applied.compressed_digest != *digest {
        return Err(Error::DigestMismatch {
            expected: digest.clone(),
            actual: applied.compressed_digest,
        });
    }
    Ok(applied)
}

/// The layer media type matching what the blob's first bytes say, as
/// containerd decides (it sniffs the stream whatever the descriptor says;
/// containerd 1.6 labels zstd layers of `docker save` archives gzip).
fn sniffed_media_type(file: &std::fs::File) -> Result<&'static str, berth_snapshotter::Error> {
    use std::os::unix::fs::FileExt as _;
    let mut magic = [0u8; 4];
    let n = file
        .read_at(&mut magic, 0)
        .map_err(|e| berth_snapshotter::Error::Internal(format!("reading layer: {e}")))?;
    Ok(match &magic[..n] {
        [0x1f, 0x8b, ..] => OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => OCI_LAYER_ZSTD,
        _ => OCI_LAYER,
    })
}

/// What [`diff_to_content`] stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// its media type
    pub media_type: String,
    /// the blob's digest
    pub digest: Digest,
    /// its size
    pub size: u64,
    /// its diff ID
    pub diff_id: Digest,
}

/// Writes the changes from `lower` to `upper` as a layer of `media_type`
/// into the content store of `ns` (labels plus `containerd.io/uncompressed`).
pub async fn diff_to_content(
    content: &ContentStore,
    root: &Path,
    ns: &str,
    lower: Vec<Mount>,
    upper: Vec<Mount>,
    media_type: &str,
    mut labels: BTreeMap<String, String>,
) -> Result<Stored, Error> {
    let compression: Compression =
        berth_snapshotter::layer::compression_of(media_type).map_err(|source| Error::Apply {
            digest: "(new)".into(),
            source,
        })?;
    let tmp_dir = root.join("tmp");
    std::fs::create_dir_all(&tmp_dir).map_err(|source| Error::Io {
        what: "creating",
        path: tmp_dir.clone(),
        source,
    })?;
    let (written, file) = tokio::task::spawn_blocking(move || {
        let mut f = tempfile::tempfile_in(&tmp_dir).map_err(|source| Error::Io {
            what: "creating scratch file in",
            path: tmp_dir.clone(),
            source,
        })?;
        let w = berth_snapshotter::diff_layer(
            &lower,
            &upper,
            compression,
            std::io::BufWriter::with_capacity(READ_BUF, &mut f),
        )
        .map_err(|source| Error::Apply {
            digest: "(new)".into(),
            source,
        })?;
        use std::io::Seek as _;
        f.rewind().map_err(|source| Error::Io {
            what: "rewinding scratch file in",
            path: tmp_dir,
            source,
        })?;
        Ok::<_, Error>((w, f))
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))??;
    labels.insert(UNCOMPRESSED_LABEL.into(), written.diff_id.to_string());
    content
        .ingest_from_reader(ns, file, &written.digest, Some(written.size), labels)
        .await?;
    Ok(Stored {
        media_type: media_type.to_string(),
        digest: written.digest,
        size: written.size,
        diff_id: written.diff_id,
    })
}

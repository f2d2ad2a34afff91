//! Export: named images as an OCI image layout tar (what `ctr images
//! import` and our import read back), streamed to a writer.

use std::collections::BTreeSet;
use std::io::Write;

use berth_api::oci::{self, Descriptor, Index, Manifest, Platform};
use berth_api::Digest;

use super::service::{self, Images};
use super::unpack::{self, read_doc};
use crate::content::ContentStore;

/// What an export reads.
#[derive(Clone)]
pub struct Deps {
    /// The blobs.
    pub content: ContentStore,
    /// The image records.
    pub images: Images,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// an image could not be read (NotFound for an unknown one)
    #[error(transparent)]
    Images(#[from] service::Error),
    /// a document is unusable or content is missing
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    /// writing the tar failed
    #[error("writing archive: {0}")]
    Write(String),
}

impl Error {
    /// The kind of failure; a client that stopped reading is Unavailable.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Images(e) => e.kind(),
            Error::Unpack(e) => e.kind(),
            Error::Write(_) => berth_api::ErrorKind::Unavailable,
        }
    }
}

/// The blobs of one image: its target and (for the kept platforms)
/// everything below it.
async fn blobs_of(
    deps: &Deps,
    ns: &str,
    target: &Descriptor,
    want: Option<&Platform>,
    out: &mut BTreeSet<Digest>,
) -> Result<(), Error> {
    let mut stack = vec![target.clone()];
    while let Some(d) = stack.pop() {
        let digest = d.digest.clone();
        if !out.insert(digest.clone()) {
            continue;
        }
        if oci::is_index(&d.media_type) {
            let idx: Index = serde_json::from_slice(&read_doc(&deps.content, ns, &digest).await?)
                .map_err(|e| unpack::Error::Invalid(format!("index {digest}: {e}")))?;
            for m in idx.manifests {
                let keep = match (want, &m.platform) {
                    (Some(w), Some(p)) => w.matches(p),
                    _ => true,
                };
                if keep && deps.content.info(ns, &m.digest).is_ok() {
                    stack.push(m);
                }
            }
        } else if oci::is_manifest(&d.media_type) {
            let m: Manifest = serde_json::from_slice(&read_doc(&deps.content, ns, &digest).await?)
                .map_err(|e| unpack::Error::Invalid(format!("manifest {digest}: {e}")))?;
            out.insert(m.config.digest.clone());
            out.extend(m.layers.into_iter().map(|l| l.digest));
        }
    }
    Ok(())
}

/// Writes the images `names` of `ns` (one platform, or all) as an OCI
/// layout tar into `w`. Runs its file work on the blocking pool.
pub async fn export<W: Write + Send + 'static>(
    deps: &Deps,
    ns: &str,
    names: &[String],
    want: Option<Platform>,
    w: W,
) -> Result<(), Error> {
    let mut index = Index {
        schema_version: 2,
        media_type: oci::OCI_INDEX.into(),
        ..Default::default()
    };
    let mut blobs = BTreeSet::new();
    for name in names {
        let img = deps.images.get(ns, name)?;
        let digest = unpack::digest("target digest", &img.target.digest)?;
        let mut d = Descriptor::new(img.target.media_type.clone(), digest, img.target.size);
        d.annotations = img.target.annotations.clone();
        blobs_of(deps, ns, &d, want.as_ref(), &mut blobs).await?;
        d.annotations
            .insert(oci::ANNOTATION_IMAGE_NAME.into(), img.name.clone());
        let tag = img
            .name
            .rsplit_once(':')
            .map(|(_, t)| t)
            .unwrap_or("latest");
        if !tag.contains('/') {
            d.annotations
                .insert(oci::ANNOTATION_REF_NAME.into(), tag.to_string());
        }
        index.manifests.push(d);
    }
    let mut files = Vec::new();
    for d in blobs {
        let f = deps
            .content
            .open_blob(ns, &d)
            .map_err(unpack::Error::from)?;
        files.push((d, f));
    }
    let index_json = serde_json::to_vec(&index).map_err(|e| Error::Write(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        let werr = |e: std::io::Error| Error::Write(e.to_string());
        let mut tar = tar::Builder::new(w);
        let mut add = |path: &str, len: u64, r: &mut dyn std::io::Read| {
            let mut h = tar::Header::new_ustar();
            h.set_size(len);
            h.set_mode(0o444);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, path, r).map_err(werr)
        };
        let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;
        add("oci-layout", layout.len() as u64, &mut &layout[..])?;
        add("index.json", index_json.len() as u64, &mut &index_json[..])?;
        for (d, mut f) in files {
            let len = f.metadata().map_err(werr)?.len();
            let path = format!("blobs/{}/{}", d.algorithm(), d.hex());
            add(&path, len, &mut f)?;
        }
        tar.into_inner().map_err(werr)?.flush().map_err(werr)?;
        Ok(())
    })
    .await
    .map_err(|e| Error::Write(e.to_string()))?
}

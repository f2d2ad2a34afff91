//! Resolving an image in berthd's content store, over berth-api's one OCI
//! model ([`berth_api::oci`]): index → manifest (for a platform, following
//! nested indexes) → config. Manifests and indexes go through the model's
//! checked parse (schema 2, valid digests, size limit); what berthctl adds
//! is reading the blobs through the Content service.

use berth_api::oci::{
    self, chain_ids, Descriptor, Document, ImageConfig, Index, Manifest, Platform,
    MAX_DOCUMENT_SIZE,
};
use berth_api::services::content::v1 as pb;
use berth_api::Digest;

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// Deepest index nesting we follow.
const MAX_DEPTH: usize = 8;

impl From<oci::PlatformError> for Error {
    fn from(e: oci::PlatformError) -> Self {
        Error::Input(e.to_string())
    }
}

/// One platform's image, resolved.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// the manifest's descriptor
    pub manifest_desc: Descriptor,
    /// the manifest
    pub manifest: Manifest,
    /// the config
    pub config: ImageConfig,
}

impl Resolved {
    /// Bytes of manifest, config and layers (what this platform occupies).
    pub fn size(&self) -> i64 {
        self.manifest_desc.size
            + self.manifest.config.size
            + self.manifest.layers.iter().map(|l| l.size).sum::<i64>()
    }

    /// The chain ID of the top layer: the name of the committed snapshot
    /// the image unpacks to.
    pub fn chain_id(&self) -> Option<String> {
        chain_ids(&self.config.rootfs.diff_ids)
            .pop()
            .map(|d| d.to_string())
    }
}

/// A descriptor from the wire (an image record's target), its digest
/// checked.
pub fn descriptor(d: Option<&berth_api::types::Descriptor>) -> Result<Descriptor> {
    let d = d.ok_or_else(|| Error::Protocol("image record without a target".into()))?;
    let digest: Digest = d
        .digest
        .parse()
        .map_err(|e| Error::Protocol(format!("image target {:?}: {e}", d.digest)))?;
    let mut out = Descriptor::new(d.media_type.clone(), digest, d.size);
    out.annotations = d
        .annotations
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(out)
}

/// Reads a whole (small) blob: a manifest, index or config.
pub async fn read_blob(client: &Client, digest: &Digest) -> Result<Vec<u8>> {
    let mut c = client.content();
    let info = c
        .info(pb::InfoRequest {
            digest: digest.to_string(),
        })
        .await
        .with_context(|| format!("get content {digest}"))?
        .into_inner()
        .info
        .unwrap_or_default();
    let limit = MAX_DOCUMENT_SIZE as i64;
    if info.size > limit {
        return Err(Error::Protocol(format!(
            "content {digest}: {} bytes is too large for a manifest or config",
            info.size
        )));
    }
    let mut stream = c
        .read(pb::ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        })
        .await
        .with_context(|| format!("read content {digest}"))?
        .into_inner();
    let mut out = Vec::with_capacity(info.size.max(0) as usize);
    while let Some(chunk) = stream
        .message()
        .await
        .with_context(|| format!("read content {digest}"))?
    {
        out.extend_from_slice(&chunk.data);
        if out.len() as i64 > limit {
            return Err(Error::Protocol(format!("content {digest}: too large")));
        }
    }
    Ok(out)
}

/// Reads a manifest or index named by `desc`.
async fn read_document(client: &Client, desc: &Descriptor) -> Result<Document> {
    let bytes = read_blob(client, &desc.digest).await?;
    Document::parse(&bytes, Some(&desc.media_type))
        .map(|(_, doc)| doc)
        .map_err(|e| Error::Protocol(format!("content {}: {e}", desc.digest)))
}

async fn read_config(client: &Client, digest: &Digest) -> Result<ImageConfig> {
    let bytes = read_blob(client, digest).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("content {digest}: not an image config: {e}")))
}

/// The platforms an image target offers (from the index, or the config of a
/// single manifest).
pub async fn platforms(client: &Client, target: &Descriptor) -> Result<Vec<Platform>> {
    match read_document(client, target).await? {
        Document::Index(idx) => {
            let mut out: Vec<Platform> = idx
                .manifests
                .into_iter()
                .filter_map(|m| m.platform)
                .collect();
            out.sort_by_key(|p| p.to_string());
            out.dedup();
            Ok(out)
        }
        Document::Manifest(m) => Ok(vec![read_config(client, &m.config.digest)
            .await?
            .platform()]),
    }
}

/// The entry of `idx` to follow for `want`: a manifest serving it, else a
/// nested index (entries without a platform).
fn pick<'a>(idx: &'a Index, want: &Platform) -> Option<&'a Descriptor> {
    idx.select(want).or_else(|| {
        idx.manifests
            .iter()
            .find(|m| m.platform.is_none() && oci::is_index(&m.media_type))
    })
}

/// Resolves an image target to the manifest and config for `platform`,
/// following nested indexes. A single manifest is taken whatever its
/// platform (as containerd does for images without an index).
pub async fn resolve(
    client: &Client,
    target: &Descriptor,
    platform: &Platform,
) -> Result<Resolved> {
    let mut desc = target.clone();
    for _ in 0..MAX_DEPTH {
        match read_document(client, &desc).await? {
            Document::Index(idx) => {
                desc = pick(&idx, platform).cloned().ok_or_else(|| {
                    Error::Input(format!(
                        "image {}: no manifest for platform {platform}",
                        target.digest
                    ))
                })?;
            }
            Document::Manifest(manifest) => {
                let config = read_config(client, &manifest.config.digest).await?;
                return Ok(Resolved {
                    manifest_desc: desc,
                    manifest,
                    config,
                });
            }
        }
    }
    Err(Error::Protocol(format!(
        "image {}: indexes nested deeper than {MAX_DEPTH}",
        target.digest
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(media_type: &str, hex: char, platform: Option<&str>) -> Descriptor {
        let digest: Digest = format!("sha256:{}", hex.to_string().repeat(64))
            .parse()
            .unwrap();
        let mut out = Descriptor::new(media_type, digest, 1);
        out.platform = platform.map(|p| Platform::parse(p).unwrap());
        out
    }

    #[test]
    fn picks_the_platforms_manifest_else_a_nested_index() {
        let idx = Index {
            manifests: vec![
                d(oci::OCI_MANIFEST, 'a', Some("linux/arm64")),
                d(oci::OCI_INDEX, 'b', None),
                d(oci::OCI_MANIFEST, 'c', Some("linux/amd64")),
            ],
            ..Default::default()
        };
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(pick(&idx, &amd).unwrap().digest.hex(), "c".repeat(64));
        let s390 = Platform::parse("linux/s390x").unwrap();
        assert_eq!(pick(&idx, &s390).unwrap().digest.hex(), "b".repeat(64));
    }

    #[test]
    fn wire_targets_are_checked() {
        let wire = berth_api::types::Descriptor {
            media_type: oci::OCI_INDEX.into(),
            digest: "sha256:nothex".into(),
            size: 3,
            annotations: Default::default(),
        };
        assert!(descriptor(Some(&wire)).is_err());
        assert!(descriptor(None).is_err());
    }
}

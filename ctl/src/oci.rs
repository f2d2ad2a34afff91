//! Reading images from the content store: index → manifest (for a
//! platform) → config, with OCI and Docker schema 2 media types. Parsing is
//! lenient (unknown fields ignored) because real images carry many.

use std::collections::BTreeMap;

use berth_api::services::content::v1 as pb;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::error::{Error, Result, RpcContext};

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Largest manifest, index or config we read (they are small JSON).
const MAX_JSON: i64 = 16 << 20;
/// Deepest index nesting we follow.
const MAX_DEPTH: usize = 8;

/// An OCI platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// e.g. `linux`
    #[serde(default)]
    pub os: String,
    /// e.g. `amd64`
    #[serde(default)]
    pub architecture: String,
    /// e.g. `v8`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform this binary runs on, in OCI spelling.
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Self {
            os: std::env::consts::OS.into(),
            architecture: architecture.into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: String::new(),
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() => Ok(Self {
                os: (*os).into(),
                architecture: (*arch).into(),
                variant: (*variant).into(),
            }),
            _ => Err(Error::Input(format!(
                "platform {s:?}: expected os/arch[/variant]"
            ))),
        }
    }

    /// True when an image for `self` runs on `want` (a variant is only
    /// compared when both name one).
    pub fn matches(&self, want: &Platform) -> bool {
        self.os == want.os
            && self.architecture == want.architecture
            && (self.variant.is_empty() || want.variant.is_empty() || self.variant == want.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// A content descriptor as it appears in manifests and indexes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// media type
    #[serde(default)]
    pub media_type: String,
    /// `sha256:...`
    pub digest: String,
    /// bytes
    #[serde(default)]
    pub size: i64,
    /// for index entries
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// annotations
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl From<&berth_api::types::Descriptor> for Descriptor {
    fn from(d: &berth_api::types::Descriptor) -> Self {
        Self {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            platform: None,
            annotations: d
                .annotations
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

/// An index or manifest list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Index {
    /// the manifests
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Manifest {
    /// the config blob
    pub config: Descriptor,
    /// layers, base first
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The image config, as far as berthctl uses it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// e.g. `amd64`
    #[serde(default)]
    pub architecture: String,
    /// e.g. `linux`
    #[serde(default)]
    pub os: String,
    /// e.g. `v8`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
    /// how to run it
    #[serde(default)]
    pub config: Option<ExecConfig>,
    /// the layers' uncompressed digests
    #[serde(default)]
    pub rootfs: Option<RootFs>,
}

/// The execution part of an image config (Docker's capitalised names).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// `user`, `user:group`, `uid:gid`
    #[serde(default)]
    pub user: Option<String>,
    /// `KEY=value`
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// entrypoint
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// default arguments
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// working directory
    #[serde(default)]
    pub working_dir: Option<String>,
    /// labels
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// stop signal
    #[serde(default)]
    pub stop_signal: Option<String>,
}

/// The layers' diff IDs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`
    #[serde(default, rename = "type")]
    pub kind: String,
    /// uncompressed layer digests, base first
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl ImageConfig {
    /// The platform the config declares.
    pub fn platform(&self) -> Platform {
        Platform {
            os: self.os.clone(),
            architecture: self.architecture.clone(),
            variant: self.variant.clone(),
        }
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
        let diff_ids = &self.config.rootfs.as_ref()?.diff_ids;
        chain_ids(diff_ids).pop()
    }
}

/// Chain IDs of a layer stack: the first is the first diff ID, each next
/// one is `sha256(previous + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let h = Sha256::digest(format!("{prev} {d}").as_bytes());
                format!("sha256:{}", hex::encode(h))
            }
        };
        out.push(next);
    }
    out
}

/// Reads a whole (small) blob.
pub async fn read_blob(client: &Client, digest: &str) -> Result<Vec<u8>> {
    let mut c = client.content();
    let info = c
        .info(pb::InfoRequest {
            digest: digest.into(),
        })
        .await
        .with_context(|| format!("get content {digest}"))?
        .into_inner()
        .info
        .unwrap_or_default();
    if info.size > MAX_JSON {
        return Err(Error::Protocol(format!(
            "content {digest}: {} bytes is too large for a manifest or config",
            info.size
        )));
    }
    let mut stream = c
        .read(pb::ReadContentRequest {
            digest: digest.into(),
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
        if out.len() as i64 > MAX_JSON {
            return Err(Error::Protocol(format!("content {digest}: too large")));
        }
    }
    Ok(out)
}

/// Reads and parses a JSON blob.
pub async fn read_json<T: serde::de::DeserializeOwned>(client: &Client, digest: &str) -> Result<T> {
    let bytes = read_blob(client, digest).await?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("content {digest}: not valid image JSON: {e}")))
}

/// True for index / manifest-list media types.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// The platforms an image target offers (from the index, or the config of a
/// single manifest).
pub async fn platforms(client: &Client, target: &Descriptor) -> Result<Vec<Platform>> {
    if is_index(&target.media_type) {
        let idx: Index = read_json(client, &target.digest).await?;
        let mut out: Vec<Platform> = idx
            .manifests
            .into_iter()
            .filter_map(|m| m.platform)
            .collect();
        out.sort_by_key(|p| p.to_string());
        out.dedup();
        return Ok(out);
    }
    let m: Manifest = read_json(client, &target.digest).await?;
    let cfg: ImageConfig = read_json(client, &m.config.digest).await?;
    Ok(vec![cfg.platform()])
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
        if is_index(&desc.media_type) {
            let idx: Index = read_json(client, &desc.digest).await?;
            let pick = idx
                .manifests
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.matches(platform)))
                .or_else(|| {
                    // Entries without a platform (nested indexes) are followed.
                    idx.manifests.iter().find(|m| m.platform.is_none())
                })
                .cloned()
                .ok_or_else(|| {
                    Error::Input(format!(
                        "image {}: no manifest for platform {platform}",
                        target.digest
                    ))
                })?;
            desc = pick;
            continue;
        }
        let manifest: Manifest = read_json(client, &desc.digest).await?;
        let config: ImageConfig = read_json(client, &manifest.config.digest).await?;
        return Ok(Resolved {
            manifest_desc: desc,
            manifest,
            config,
        });
    }
    Err(Error::Protocol(format!(
        "image {}: indexes nested deeper than {MAX_DEPTH}",
        target.digest
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        let want = format!("sha256:{}", hex::encode(Sha256::digest(format!("{a} {b}"))));
        assert_eq!(ids[1], want);
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux/amd64")
            .unwrap()
            .matches(&Platform::parse("linux/amd64").unwrap()));
        assert!(!p.matches(&Platform::parse("linux/arm64/v7").unwrap()));
        assert!(p.matches(&Platform::parse("linux/arm64").unwrap()));
    }

    #[test]
    fn docker_config_parses() {
        let cfg: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1:2"},"rootfs":{"type":"layers","diff_ids":["sha256:x"]},"history":[]}"#,
        )
        .unwrap();
        let c = cfg.config.unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        assert_eq!(cfg.rootfs.unwrap().diff_ids.len(), 1);
    }
}

//! The few OCI / Docker image JSON documents import and unpack read, plus
//! platforms and chain IDs.

use std::collections::BTreeMap;

use berth_api::Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// OCI image index.
pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list.
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const MT_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Annotation containerd puts the image name in.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation for the reference name (a tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A descriptor in an index or manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// media type
    #[serde(default)]
    pub media_type: String,
    /// digest
    pub digest: String,
    /// size in bytes
    pub size: i64,
    /// annotations
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// platform (index entries)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

/// A platform as OCI writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Platform {
    /// e.g. `linux`
    pub os: String,
    /// e.g. `amd64`
    pub architecture: String,
    /// e.g. `v8`
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// The platform this daemon runs on (linux/amd64 on x86_64).
    pub fn host() -> Self {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            other => other,
        };
        Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]` (or just `os`, meaning the host arch).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('/');
        let os = parts.next().filter(|p| !p.is_empty())?.to_lowercase();
        let architecture = match parts.next() {
            Some(a) if !a.is_empty() => normalise_arch(a),
            _ => Self::host().architecture,
        };
        let variant = parts.next().unwrap_or_default().to_string();
        if parts.next().is_some() {
            return None;
        }
        Some(Platform {
            os,
            architecture,
            variant,
        })
    }

    /// Whether an index entry's platform satisfies this one (a missing
    /// variant on either side matches; arm64 defaults to v8).
    pub fn matches(&self, other: &Platform) -> bool {
        let v = |p: &Platform| {
            if p.architecture == "arm64" && p.variant.is_empty() {
                "v8".to_string()
            } else {
                p.variant.clone()
            }
        };
        self.os == other.os
            && self.architecture == normalise_arch(&other.architecture)
            && (self.variant.is_empty() || v(self) == v(other))
    }
}

fn normalise_arch(a: &str) -> String {
    match a.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        other => other.into(),
    }
}

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// schema version (2)
    #[serde(default)]
    pub schema_version: i64,
    /// media type, when written
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// the manifests
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An image manifest.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// schema version (2)
    #[serde(default)]
    pub schema_version: i64,
    /// media type, when written
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// the config blob
    pub config: Descriptor,
    /// the layer blobs, bottom first
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The part of an image config unpack needs.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    /// the layers' diff IDs
    #[serde(default)]
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    /// uncompressed layer digests, bottom first
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerEntry {
    /// path of the config file in the archive
    pub config: String,
    /// tags, e.g. `busybox:latest`
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    /// paths of the layer tars, bottom first
    pub layers: Vec<String>,
}

/// Whether `mt` is an index / manifest list.
pub fn is_index(mt: &str) -> bool {
    mt == MT_OCI_INDEX || mt == MT_DOCKER_LIST
}

/// Whether `mt` is an image manifest.
pub fn is_manifest(mt: &str) -> bool {
    mt == MT_OCI_MANIFEST || mt == MT_DOCKER_MANIFEST
}

/// containerd's chain IDs: chain[0] = diff[0]; chain[i] =
/// sha256(chain[i-1] + " " + diff[i]).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => {
                let mut h = Sha256::new();
                h.update(prev.to_string().as_bytes());
                h.update(b" ");
                h.update(d.to_string().as_bytes());
                Digest::from_hasher(h)
            }
        };
        out.push(next);
    }
    out
}

/// Normalises a Docker reference as docker does: `busybox` →
/// `docker.io/library/busybox:latest`, `me/app:1` → `docker.io/me/app:1`.
pub fn normalise_docker_ref(r: &str) -> String {
    let (name, tag) = match r.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n.to_string(), Some(t.to_string())),
        _ => (r.to_string(), None),
    };
    let (name, digest) = match name.split_once('@') {
        Some((n, d)) => (n.to_string(), Some(d.to_string())),
        None => (name, None),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_domain {
        name
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match (digest, tag) {
        (Some(d), Some(t)) => format!("{full}@{d}:{t}"),
        (None, Some(t)) => format!("{full}:{t}"),
        (Some(d), None) => format!("{full}@{d}"),
        (None, None) => format!("{full}:latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_refs() {
        assert_eq!(
            normalise_docker_ref("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalise_docker_ref("berthtest/a:docker"),
            "docker.io/berthtest/a:docker"
        );
        assert_eq!(
            normalise_docker_ref("localhost:5000/a:1"),
            "localhost:5000/a:1"
        );
        assert_eq!(normalise_docker_ref("quay.io/x/y"), "quay.io/x/y:latest");
    }

    #[test]
    fn platforms() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert!(p.matches(&Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: String::new()
        }));
        let amd = Platform::parse("linux/amd64").unwrap();
        assert!(!amd.matches(&p));
        assert!(Platform::parse("").is_none());
        assert!(Platform::parse("a/b/c/d").is_none());
    }

    #[test]
    fn chain_ids_follow_containerd() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        let want = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(c[1], want);
    }
}

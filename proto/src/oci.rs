//! The one OCI image model every side reads images with: descriptors with
//! typed digests, platforms, indexes, manifests and configs in their OCI
//! and Docker schema 2 spellings, chain IDs, and the checked parse of a
//! manifest or index as it comes from a registry or the content store.
//!
//! Parsing is lenient where real images vary (unknown fields are ignored,
//! optional parts default) and strict where a wrong value would be
//! followed: every digest must be a valid `sha256:` digest, sizes are not
//! negative, and a document larger than [`MAX_DOCUMENT_SIZE`] is refused.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::Digest;

/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker schema 2 manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker schema 2 manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Uncompressed OCI layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// gzip OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// zstd OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Every manifest media type a pull accepts, for the `Accept` header.
pub const ACCEPTED_MANIFESTS: &[&str] = &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

/// Largest manifest or index read (containerd uses the same bound).
pub const MAX_DOCUMENT_SIZE: u64 = 4 << 20;

/// Annotation containerd puts the image name in (OCI layouts).
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// OCI annotation for the reference name (a tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Whether `media_type` is an index or manifest list.
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// Whether `media_type` is an image manifest.
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor, as manifests and indexes carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Media type of the target.
    #[serde(default)]
    pub media_type: String,
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: i64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Platform, in index entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor of `digest` with nothing else but its type and size.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: i64) -> Self {
        Self {
            media_type: media_type.into(),
            digest,
            size,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// Why a platform string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("platform {0:?}: expected os/arch[/variant]")]
pub struct PlatformError(pub String);

/// A platform as OCI writes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
    /// The platform this process runs on, in OCI spelling
    /// (`linux/amd64` on x86_64 Linux).
    pub fn host() -> Self {
        Platform {
            os: std::env::consts::OS.to_string(),
            architecture: normalise_arch(std::env::consts::ARCH),
            variant: String::new(),
        }
    }

    /// Parses `os/arch[/variant]` (the architecture in Go's or Rust's
    /// spelling: `x86_64` is `amd64`).
    pub fn parse(s: &str) -> Result<Self, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.is_empty()) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform {
            os: parts[0].to_lowercase(),
            architecture: normalise_arch(parts[1]),
            variant: parts.get(2).map(|v| v.to_string()).unwrap_or_default(),
        })
    }

    /// Whether an image for `candidate` serves this (wanted) platform, as
    /// containerd matches: same OS and architecture; a variant is only
    /// compared when this one names it (arm64 without one is `v8`).
    pub fn matches(&self, candidate: &Platform) -> bool {
        let variant = |p: &Platform| {
            if p.architecture == "arm64" && p.variant.is_empty() {
                "v8".to_string()
            } else {
                p.variant.clone()
            }
        };
        self.os == candidate.os.to_lowercase()
            && self.architecture == normalise_arch(&candidate.architecture)
            && (self.variant.is_empty() || variant(self) == variant(candidate))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

/// An architecture in OCI (Go) spelling.
fn normalise_arch(a: &str) -> String {
    match a.to_lowercase().as_str() {
        "x86_64" | "x86-64" => "amd64".into(),
        "aarch64" => "arm64".into(),
        "x86" | "i386" => "386".into(),
        "powerpc64" => "ppc64le".into(),
        other => other.into(),
    }
}

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Schema version (2).
    #[serde(default)]
    pub schema_version: i64,
    /// Media type, when written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// The first entry that is a manifest serving `want` (containerd takes
    /// the first match).
    pub fn select(&self, want: &Platform) -> Option<&Descriptor> {
        self.manifests.iter().find(|d| {
            ACCEPTED_MANIFESTS.contains(&d.media_type.as_str())
                && d.platform.as_ref().is_some_and(|p| want.matches(p))
        })
    }
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Schema version (2).
    #[serde(default)]
    pub schema_version: i64,
    /// Media type, when written.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image config, as far as Berth reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// How to run it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ExecConfig>,
    /// The layers' diff IDs.
    #[serde(default)]
    pub rootfs: RootFs,
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

/// The execution part of an image config (Docker's capitalised names).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    /// `user`, `user:group`, `uid:gid`
    #[serde(default)]
    pub user: Option<String>,
    /// `KEY=value`
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Entrypoint.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default arguments.
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Labels.
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    /// Stop signal.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Ports the image declares (`"80/tcp": {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// Paths the image declares as volumes (`"/data": {}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
}

/// PATH for images that set none (Docker's and containerd's default).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

impl ExecConfig {
    /// The process arguments Docker's way: an `entrypoint` given replaces
    /// the image's ENTRYPOINT and drops its CMD; non-empty `cmd` replaces CMD.
    pub fn process_args(&self, entrypoint: Option<&[String]>, cmd: &[String]) -> Vec<String> {
        let entry = match entrypoint {
            Some(e) => e.to_vec(),
            None => self.entrypoint.clone().unwrap_or_default(),
        };
        let cmd = if !cmd.is_empty() {
            cmd.to_vec()
        } else if entrypoint.is_some() {
            Vec::new()
        } else {
            self.cmd.clone().unwrap_or_default()
        };
        entry.into_iter().chain(cmd).collect()
    }

    /// The environment from the image's (or PATH alone when it sets none)
    /// with `extra` merged over it, PATH defaulted when still missing.
    pub fn process_env(&self, extra: &[String]) -> Vec<String> {
        let image = self
            .env
            .clone()
            .unwrap_or_else(|| vec![DEFAULT_PATH.to_string()]);
        let mut env = merge_env(&image, extra);
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.insert(0, DEFAULT_PATH.into());
        }
        env
    }
}

/// Merges `KEY=value` lists: a later key replaces an earlier one in place,
/// new keys are appended (a bare `KEY` counts as a key).
pub fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    fn key(e: &str) -> &str {
        e.split_once('=').map(|(k, _)| k).unwrap_or(e)
    }
    let mut out: Vec<String> = Vec::new();
    for e in base.iter().chain(extra) {
        match out.iter_mut().find(|x| key(x) == key(e)) {
            Some(slot) => *slot = e.clone(),
            None => out.push(e.clone()),
        }
    }
    out
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`
    #[serde(default, rename = "type")]
    pub kind: String,
    /// Uncompressed layer digests, base first.
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

/// containerd's chain IDs: chain[0] = diff[0]; chain[i] =
/// sha256(chain[i-1] + " " + diff[i]). The last names the committed
/// snapshot an image unpacks to.
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

/// Why a manifest or index was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DocumentError {
    /// larger than [`MAX_DOCUMENT_SIZE`]
    #[error("manifest of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// its size
        size: u64,
        /// the limit
        limit: u64,
    },
    /// not a schema 2 manifest or index we can use
    #[error("bad manifest: {0}")]
    Malformed(String),
}

/// A manifest or index, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    /// An index (manifest list).
    Index(Index),
    /// An image manifest.
    Manifest(Manifest),
}

impl Document {
    /// Parses `bytes` as a manifest or index. `content_type` (a registry's
    /// answer, or a descriptor's media type) decides when the body carries
    /// no `mediaType`. Refuses schema 1, unknown media types, bad digests,
    /// negative sizes and documents over [`MAX_DOCUMENT_SIZE`]. Returns the
    /// media type with the document.
    pub fn parse(
        bytes: &[u8],
        content_type: Option<&str>,
    ) -> Result<(String, Document), DocumentError> {
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(DocumentError::TooLarge {
                size: bytes.len() as u64,
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        let bad = |m: String| DocumentError::Malformed(m);
        let probe: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest: {e}")))?;
        let schema = probe
            .get("schemaVersion")
            .and_then(serde_json::Value::as_i64);
        if schema != Some(2) {
            return Err(bad(format!(
                "schemaVersion {schema:?}: only schema 2 is supported"
            )));
        }
        let body_type = probe
            .get("mediaType")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let media_type = match (body_type, content_type) {
            (m, _) if !m.is_empty() => m.to_string(),
            (_, Some(c)) if ACCEPTED_MANIFESTS.contains(&c) => c.to_string(),
            _ if probe.get("manifests").is_some() => OCI_INDEX.to_string(),
            _ => OCI_MANIFEST.to_string(),
        };
        let check = |d: &Descriptor| {
            if d.size < 0 {
                return Err(bad(format!("descriptor {}: negative size", d.digest)));
            }
            Ok(())
        };
        let doc = if is_index(&media_type) {
            if probe.get("manifests").is_none() {
                return Err(bad("index without manifests".into()));
            }
            let index: Index =
                serde_json::from_value(probe).map_err(|e| bad(format!("index: {e}")))?;
            index.manifests.iter().try_for_each(check)?;
            Document::Index(index)
        } else if is_manifest(&media_type) {
            if probe.get("config").is_none() {
                return Err(bad("manifest without config".into()));
            }
            let m: Manifest =
                serde_json::from_value(probe).map_err(|e| bad(format!("manifest: {e}")))?;
            check(&m.config)?;
            m.layers.iter().try_for_each(check)?;
            Document::Manifest(m)
        } else {
            return Err(bad(format!(
                "media type {media_type:?} is not a schema 2 manifest or index"
            )));
        };
        Ok((media_type, doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    #[test]
    fn platforms_parse_and_match() {
        let arm = p("linux/arm64/v8");
        assert_eq!(arm.to_string(), "linux/arm64/v8");
        assert!(arm.matches(&p("linux/arm64")));
        assert!(!arm.matches(&p("linux/arm64/v7")));
        assert!(!arm.matches(&p("linux/amd64")));
        assert!(p("linux/amd64").matches(&p("linux/amd64/v3")));
        assert_eq!(p("linux/x86_64").architecture, "amd64");
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        let host = Platform::host();
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
        assert!(host.matches(&host));
    }

    #[test]
    fn index_selects_by_platform() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D1}","size":10,"platform":{{"os":"linux","architecture":"amd64"}}}},
            {{"mediaType":"{OCI_MANIFEST}","digest":"{D2}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let (mt, doc) = Document::parse(body.as_bytes(), None).unwrap();
        assert_eq!(mt, OCI_INDEX);
        let Document::Index(index) = doc else {
            panic!("not an index")
        };
        assert_eq!(
            index.select(&p("linux/amd64")).unwrap().digest.to_string(),
            D1
        );
        assert_eq!(
            index
                .select(&p("linux/arm64/v8"))
                .unwrap()
                .digest
                .to_string(),
            D2
        );
        assert!(index.select(&p("linux/s390x")).is_none());
    }

    #[test]
    fn manifests_docker_and_oci_and_refusals() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{D1}","size":3}},"layers":[{{"mediaType":"y","digest":"{D2}","size":4}}]}}"#
        );
        let (mt, doc) = Document::parse(body.as_bytes(), None).unwrap();
        assert_eq!(mt, DOCKER_MANIFEST);
        assert!(matches!(doc, Document::Manifest(ref m) if m.layers.len() == 1));
        // No mediaType in the body: the content type decides.
        let body =
            format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":3}},"layers":[]}}"#);
        assert_eq!(
            Document::parse(body.as_bytes(), Some(OCI_MANIFEST))
                .unwrap()
                .0,
            OCI_MANIFEST
        );
        assert!(Document::parse(br#"{"schemaVersion":1}"#, None).is_err());
        assert!(Document::parse(b"not json", None).is_err());
        let bad = r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":3},"layers":[]}"#;
        assert!(Document::parse(bad.as_bytes(), Some(OCI_MANIFEST)).is_err());
        let negative = format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D1}","size":-1}}}}"#);
        assert!(Document::parse(negative.as_bytes(), None).is_err());
        let huge = vec![b' '; (MAX_DOCUMENT_SIZE + 1) as usize];
        assert!(matches!(
            Document::parse(&huge, None),
            Err(DocumentError::TooLarge { .. })
        ));
    }

    #[test]
    fn configs_parse_with_typed_diff_ids() {
        let cfg: ImageConfig = serde_json::from_str(&format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","User":"1:2"}},"rootfs":{{"type":"layers","diff_ids":["{D1}"]}},"history":[]}}"#
        ))
        .unwrap();
        let c = cfg.config.clone().unwrap();
        assert_eq!(c.cmd.unwrap(), vec!["sh"]);
        assert_eq!(c.working_dir.as_deref(), Some("/w"));
        assert_eq!(cfg.rootfs.diff_ids[0].to_string(), D1);
        assert_eq!(cfg.platform(), p("linux/amd64"));
        let bad = r#"{"rootfs":{"diff_ids":["sha256:x"]}}"#;
        assert!(serde_json::from_str::<ImageConfig>(bad).is_err());
    }

    #[test]
    fn chain_ids_follow_containerd() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let c = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(c[0], a);
        assert_eq!(c[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn process_args_follow_dockers_rules() {
        let image = ExecConfig {
            entrypoint: Some(strings(&["/entry"])),
            cmd: Some(strings(&["serve", "-v"])),
            ..Default::default()
        };
        assert_eq!(
            image.process_args(None, &[]),
            strings(&["/entry", "serve", "-v"])
        );
        assert_eq!(
            image.process_args(None, &strings(&["x"])),
            strings(&["/entry", "x"])
        );
        // A new entrypoint drops the image's CMD; an empty one leaves none.
        let sh = strings(&["sh"]);
        assert_eq!(image.process_args(Some(&sh), &[]), sh);
        assert_eq!(
            image.process_args(Some(&[]), &strings(&["ls"])),
            strings(&["ls"])
        );
    }

    #[test]
    fn env_merges_by_key_in_place_and_defaults_path() {
        let merged = merge_env(
            &strings(&["A=1", "B=2", "C"]),
            &strings(&["B=3", "C=4", "D=5"]),
        );
        assert_eq!(merged, strings(&["A=1", "B=3", "C=4", "D=5"]));
        let none = ExecConfig::default();
        assert_eq!(
            none.process_env(&strings(&["X=1"])),
            strings(&[DEFAULT_PATH, "X=1"])
        );
        let own = ExecConfig {
            env: Some(strings(&["HOME=/root"])),
            ..Default::default()
        };
        assert_eq!(own.process_env(&[]), strings(&[DEFAULT_PATH, "HOME=/root"]));
        let path = strings(&["PATH=/bin"]);
        assert_eq!(
            own.process_env(&path),
            strings(&["HOME=/root", "PATH=/bin"])
        );
    }
}

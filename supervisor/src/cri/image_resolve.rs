//! Finding a CRI image in `k8s.io`: by reference (normalised the way the
//! kubelet's short names are: `busybox` is `docker.io/library/busybox:latest`),
//! by image id (the config digest, or a unique prefix of its hex) or by
//! repo digest; then reading its manifest (the host platform's, from an
//! index) and config.

use berth_api::oci::{self, Document, Platform};
use berth_api::{Digest, ErrorKind};
use tonic::Status;

use super::helpers::fail;
use super::{Cri, NAMESPACE};
use crate::store::images::Image;

/// An image as the CRI sees it.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    /// Every record naming the same image (its tags and digests).
    pub records: Vec<Image>,
    /// The config digest: the CRI's image id.
    pub id: String,
    /// The manifest digest.
    pub manifest: Digest,
    /// The config.
    pub config: oci::ImageConfig,
    /// The top chain id (the committed snapshot it unpacks to).
    pub chain_id: String,
    /// Compressed size of config and layers.
    pub size: u64,
}

/// The repository of an image name: without its digest and tag
/// (`host:5000/a/b:1` → `host:5000/a/b`).
pub(super) fn repo_of(name: &str) -> &str {
    let name = name.split('@').next().unwrap_or(name);
    let last = name.rfind('/').map(|i| i + 1).unwrap_or(0);
    match name[last..].rfind(':') {
        Some(i) => &name[..last + i],
        None => name,
    }
}

/// `busybox` → `docker.io/library/busybox:latest`, `a/b:1` →
/// `docker.io/a/b:1`; full references are left alone.
pub(super) fn normalize(reference: &str) -> String {
    let (name, suffix) = match reference.find('@') {
        Some(i) => (&reference[..i], &reference[i..]),
        None => (reference, ""),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_host =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_host {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if suffix.is_empty() && !last.contains(':') {
        full.push_str(":latest");
    }
    full + suffix
}

impl Cri {
    async fn doc(&self, digest: &Digest) -> Result<Vec<u8>, Status> {
        crate::images::unpack::read_doc(&self.inner.deps.content, NAMESPACE, digest)
            .await
            .map_err(|e| fail(e.kind(), e))
    }

    /// The manifest digest, config digest and config of the image record.
    async fn read_image(
        &self,
        img: &Image,
    ) -> Result<(Digest, Digest, oci::ImageConfig, u64), Status> {
        let bad = |e: String| {
            fail(
                ErrorKind::FailedPrecondition,
                format!("image {}: {e}", img.name),
            )
        };
        let mut digest: Digest = img.target.digest.parse().map_err(|e| bad(format!("{e}")))?;
        let mut media = img.target.media_type.clone();
        for _ in 0..2 {
            let bytes = self.doc(&digest).await?;
            let (_, doc) = Document::parse(&bytes, Some(&media)).map_err(|e| bad(e.to_string()))?;
            match doc {
                Document::Index(ix) => {
                    let d = ix
                        .select(&Platform::host())
                        .ok_or_else(|| bad("no manifest for this platform".into()))?;
                    digest = d.digest.clone();
                    media = d.media_type.clone();
                }
                Document::Manifest(m) => {
                    let cfg: oci::ImageConfig =
                        serde_json::from_slice(&self.doc(&m.config.digest).await?)
                            .map_err(|e| bad(format!("config: {e}")))?;
                    let size = m.config.size.max(0) as u64
                        + m.layers.iter().map(|l| l.size.max(0) as u64).sum::<u64>();
                    return Ok((digest, m.config.digest.clone(), cfg, size));
                }
            }
        }
        Err(bad("nested indexes".into()))
    }

    /// The image `reference` (a name, an id or an id prefix), or `None`.
    pub(super) async fn resolve_image(&self, reference: &str) -> Result<Option<Resolved>, Status> {
        if reference.is_empty() {
            return Err(Status::invalid_argument("image: required"));
        }
        let images = &self.inner.deps.images;
        let all = images.list(NAMESPACE, &[]).map_err(|e| fail(e.kind(), e))?;
        let wanted = normalize(reference);
        let by_name = all
            .iter()
            .find(|i| i.name == wanted || i.name == reference)
            .or_else(|| {
                // A repo digest (`repo@sha256:…`) of an image recorded by tag.
                let (repo, digest) = wanted.split_once('@')?;
                all.iter()
                    .find(|i| repo_of(&i.name) == repo && i.target.digest == *digest)
            })
            .cloned();
        let (first, config_id) = match by_name {
            Some(img) => {
                let (_, cfg_digest, _, _) = self.read_image(&img).await?;
                (img, cfg_digest.to_string())
            }
            None => {
                // An image id: the config digest, with or without its
                // algorithm, or a unique prefix of the hex.
                let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
                if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Ok(None);
                }
                let mut hit = None;
                for img in &all {
                    let Ok((_, cfg, _, _)) = self.read_image(img).await else {
                        continue;
                    };
                    if cfg
                        .to_string()
                        .trim_start_matches("sha256:")
                        .starts_with(hex)
                    {
                        hit = Some((img.clone(), cfg.to_string()));
                        break;
                    }
                }
                match hit {
                    Some(h) => h,
                    None => return Ok(None),
                }
            }
        };
        let (manifest, cfg_digest, config, size) = self.read_image(&first).await?;
        let mut records = Vec::new();
        for img in &all {
            if img.target.digest == first.target.digest {
                records.push(img.clone());
            } else if let Ok((_, c, _, _)) = self.read_image(img).await {
                if c.to_string() == config_id {
                    records.push(img.clone());
                }
            }
        }
        let chain_id = oci::chain_ids(&config.rootfs.diff_ids)
            .last()
            .map(|d| d.to_string())
            .unwrap_or_default();
        Ok(Some(Resolved {
            records,
            id: cfg_digest.to_string(),
            manifest,
            config,
            chain_id,
            size,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{normalize, repo_of};

    #[test]
    fn repositories_of_names() {
        assert_eq!(repo_of("host:5000/a/b:1"), "host:5000/a/b");
        assert_eq!(repo_of("host:5000/a/b"), "host:5000/a/b");
        assert_eq!(repo_of("docker.io/a/b@sha256:00"), "docker.io/a/b");
        assert_eq!(repo_of("docker.io/a/b:1@sha256:00"), "docker.io/a/b");
    }

    #[test]
    fn short_names_are_docker_hub_ones() {
        assert_eq!(normalize("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(normalize("a/b"), "docker.io/a/b:latest");
        assert_eq!(normalize("127.0.0.1:5000/p:3"), "127.0.0.1:5000/p:3");
        assert_eq!(normalize("localhost/x"), "localhost/x:latest");
        assert_eq!(
            normalize("registry.k8s.io/pause@sha256:ab"),
            "registry.k8s.io/pause@sha256:ab"
        );
    }
}

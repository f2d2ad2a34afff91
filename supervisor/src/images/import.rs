//! Server-side import of an OCI image layout tar or a `docker save` tar:
//! blobs into the content store (digests verified), image records named as
//! `ctr images import` names them, then unpack into snapshots.
//!
//! Everything the import writes is held by a lease of its own (expiring
//! after a day, in case berthd dies midway) until the image records exist;
//! then the lease goes and the images hold what they need. A failed import
//! drops its lease, so a collection removes every partial blob/snapshot.

use std::io::Read;
use std::time::{Duration, SystemTime};

use berth_api::oci::{self, Descriptor, Index, Manifest, Platform};
use berth_api::Digest;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::archive::{self, Contents};
use super::service::{self, Images};
use super::unpack::{self, read_doc, Unpacker};
use crate::content::ContentStore;
use crate::gc::Gc;
use crate::store::images::Target;
use crate::store::labels::Labels;
use crate::store::{self, leases, Store};

/// What an import needs.
#[derive(Clone)]
pub struct Deps {
    /// The import's own lease.
    pub store: Store,
    /// Where the blobs go.
    pub content: ContentStore,
    /// Collects what a failed import leaves, once its lease is gone.
    pub gc: Gc,
    /// Records the imported images.
    pub images: Images,
    /// Unpacks them.
    pub unpacker: Unpacker,
}

/// How to import.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// the platform to keep and unpack (None: the host's)
    pub platform: Option<Platform>,
    /// keep every platform (unpack still only the requested/host one)
    pub all_platforms: bool,
    /// snapshotter to unpack into ("" = default)
    pub snapshotter: String,
    /// prefix for names that are only a tag (`org.opencontainers.image.ref.name`)
    pub name_prefix: String,
    /// skip unpacking
    pub no_unpack: bool,
}

/// Progress reported while importing.
#[derive(Debug, Clone)]
pub enum Progress {
    /// bytes of one archive entry written so far
    Blob {
        /// the archive path
        name: String,
        /// bytes written
        offset: u64,
        /// its size
        total: u64,
    },
    /// a phase started (`reading`, `unpacking NAME`, ...)
    State(String),
}

/// Why an import failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// the archive is malformed or incomplete
    #[error("{0}")]
    Invalid(String),
    /// reading the archive failed
    #[error(transparent)]
    Archive(#[from] archive::Error),
    /// unpacking failed
    #[error(transparent)]
    Unpack(#[from] unpack::Error),
    /// metadata failed
    #[error(transparent)]
    Store(#[from] store::Error),
    /// recording an image failed
    #[error(transparent)]
    Images(#[from] service::Error),
    /// content store failed
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// a blocking task died
    #[error("import task failed: {0}")]
    Join(String),
}

impl Error {
    /// The kind of failure: a malformed archive or a hostile layer is the
    /// caller's InvalidArgument.
    pub fn kind(&self) -> berth_api::ErrorKind {
        match self {
            Error::Invalid(_) => berth_api::ErrorKind::InvalidArgument,
            Error::Archive(e) => e.kind(),
            Error::Unpack(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Images(e) => e.kind(),
            Error::Content(e) => e.kind(),
            Error::Join(_) => berth_api::ErrorKind::Internal,
        }
    }
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    /// path of the config file in the archive
    config: String,
    /// tags, e.g. `busybox:latest`
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    /// paths of the layer tars, bottom first
    layers: Vec<String>,
}

struct Sender(mpsc::Sender<Progress>, u64);

impl archive::Progress for Sender {
    fn blob(&mut self, what: &str, offset: u64, total: u64) {
        // Report about every 8 MiB and at the end of each entry.
        if offset == total || offset >= self.1 + (8 << 20) || offset < self.1 {
            self.1 = offset;
            let _ = self.0.blocking_send(Progress::Blob {
                name: what.to_string(),
                offset,
                total,
            });
        }
    }
}

/// The id prefix of an import's lease; berthd deletes leftovers at
/// start-up (an import never outlives the daemon that ran it).
pub const LEASE_PREFIX: &str = "berth-import-";

/// Imports the archive read from `reader` into `ns`; returns the image
/// names created or updated.
pub async fn import(
    deps: &Deps,
    ns: &str,
    reader: impl Read + Send + 'static,
    opts: Options,
    progress: mpsc::Sender<Progress>,
) -> Result<Vec<String>, Error> {
    let lease_id = format!("{LEASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let labels = leases::expiring_at(SystemTime::now() + Duration::from_secs(24 * 3600));
    leases::create(&deps.store, ns, &lease_id, labels).await?;
    let result = run(deps, ns, &lease_id, reader, &opts, &progress).await;
    if let Err(e) = leases::delete(&deps.store, ns, &lease_id).await {
        tracing::warn!(lease = %lease_id, error = %e, "import lease not deleted");
    }
    deps.gc.schedule();
    result
}

async fn run(
    deps: &Deps,
    ns: &str,
    lease: &str,
    reader: impl Read + Send + 'static,
    opts: &Options,
    progress: &mpsc::Sender<Progress>,
) -> Result<Vec<String>, Error> {
    let started = std::time::Instant::now();
    let _ = progress.send(Progress::State("reading".into())).await;
    let (cs, ns2, rt) = (
        deps.content.with_lease(Some(lease.to_string())),
        ns.to_string(),
        tokio::runtime::Handle::current(),
    );
    let tx = progress.clone();
    let contents = tokio::task::spawn_blocking(move || {
        let mut p = Sender(tx, 0);
        archive::read(&cs, &rt, &ns2, reader, &mut p)
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))??;
    tracing::info!(namespace = %ns, blobs = contents.blobs.len() + contents.spooled.len(), elapsed_ms = started.elapsed().as_millis() as u64, "import: archive read");

    let named: Vec<(String, Descriptor)> = if let Some(idx) = contents.small.get("index.json") {
        oci_images(&contents, idx, &opts.name_prefix)?
    } else if let Some(m) = contents.small.get("manifest.json") {
        docker_images(deps, ns, lease, &contents, m).await?
    } else {
        return Err(Error::Invalid(
            "archive: neither index.json (OCI layout) nor manifest.json (docker save) found".into(),
        ));
    };
    if named.is_empty() {
        return Err(Error::Invalid("archive: no named image in it".into()));
    }
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    // Every image is checked (sizes, layer counts, platforms) before any
    // layer is unpacked.
    let mut resolved = Vec::new();
    for (name, target) in &named {
        check_size(deps, ns, &format!("image {name}"), target)?;
        let d = target.digest.clone();
        let manifests =
            resolve(deps, ns, &d, &target.media_type, &want, opts.all_platforms).await?;
        if manifests.is_empty() {
            return Err(Error::Invalid(format!(
                "image {name}: no manifest for platform {}/{}",
                want.os, want.architecture
            )));
        }
        resolved.push((name, manifests));
    }
    let mut names = Vec::new();
    for (name, manifests) in resolved {
        if opts.no_unpack {
            continue;
        }
        for (m, plat) in manifests {
            if plat.as_ref().is_some_and(|p| !want.matches(p)) {
                continue;
            }
            let _ = progress
                .send(Progress::State(format!("unpacking {name} ({m})")))
                .await;
            deps.unpacker
                .unpack(ns, lease, &m, &opts.snapshotter)
                .await?;
            tracing::info!(namespace = %ns, image = %name, manifest = %m, elapsed_ms = started.elapsed().as_millis() as u64, "import: unpacked");
        }
    }
    // Images appear only once everything they need is in place (the lease
    // held it all so far), so a failed import leaves no image behind.
    for (name, target) in &named {
        let target = Target {
            media_type: target.media_type.clone(),
            digest: target.digest.to_string(),
            size: target.size,
            annotations: target.annotations.clone(),
        };
        deps.images.save(ns, name, target, Labels::new()).await?;
        names.push(name.clone());
    }
    let _ = progress.send(Progress::State("done".into())).await;
    Ok(names)
}

/// Image names of an OCI layout's index.json entries, as ctr names them.
fn oci_images(
    contents: &Contents,
    idx: &[u8],
    prefix: &str,
) -> Result<Vec<(String, Descriptor)>, Error> {
    let index: Index =
        serde_json::from_slice(idx).map_err(|e| Error::Invalid(format!("index.json: {e}")))?;
    let mut out = Vec::new();
    for m in index.manifests {
        let d = m.digest.clone();
        if !contents.blobs.contains_key(&d) {
            return Err(Error::Invalid(format!(
                "index.json names {d}, absent from the archive"
            )));
        }
        let name = match (
            m.annotations.get(oci::ANNOTATION_IMAGE_NAME),
            m.annotations.get(oci::ANNOTATION_REF_NAME),
        ) {
            (Some(n), _) if !n.is_empty() => n.clone(),
            (_, Some(r)) if !r.is_empty() => {
                if prefix.is_empty() {
                    let day = berth_api::lease::format_rfc3339(SystemTime::now());
                    format!("import-{}:{r}", &day[..10])
                } else {
                    format!("{prefix}:{r}")
                }
            }
            _ => continue,
        };
        out.push((name, m));
    }
    Ok(out)
}

fn sniff_layer_type(magic: &[u8; 4]) -> &'static str {
    match magic {
        [0x1f, 0x8b, ..] => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        [0x28, 0xb5, 0x2f, 0xfd] => "application/vnd.docker.image.rootfs.diff.tar.zstd",
        _ => "application/vnd.docker.image.rootfs.diff.tar",
    }
}

/// Builds (and stores) a Docker schema 2 manifest per manifest.json entry.
async fn docker_images(
    deps: &Deps,
    ns: &str,
    lease: &str,
    contents: &Contents,
    manifest_json: &[u8],
) -> Result<Vec<(String, Descriptor)>, Error> {
    let entries: Vec<DockerEntry> = serde_json::from_slice(manifest_json)
        .map_err(|e| Error::Invalid(format!("manifest.json: {e}")))?;
    let mut out = Vec::new();
    for e in entries {
        let cfg_path = contents.resolve(&e.config);
        let cfg = contents
            .small
            .get(cfg_path)
            .ok_or_else(|| Error::Invalid(format!("manifest.json: config {cfg_path} missing")))?;
        let cfg_desc = store_small(deps, ns, lease, cfg, oci::DOCKER_CONFIG).await?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = contents.resolve(l);
            let desc = if let Some(s) = contents.spooled.get(p) {
                Descriptor::new(sniff_layer_type(&s.magic), s.digest.clone(), s.size as i64)
            } else if let Some(b) = contents.small.get(p) {
                let mut magic = [0u8; 4];
                magic.iter_mut().zip(b.iter()).for_each(|(m, v)| *m = *v);
                store_small(deps, ns, lease, b, sniff_layer_type(&magic)).await?
            } else if let Some(d) = p
                .strip_prefix("blobs/")
                .and_then(|r| r.split_once('/'))
                .and_then(|(a, h)| format!("{a}:{h}").parse::<Digest>().ok())
                .filter(|d| contents.blobs.contains_key(d))
            {
                let size = contents.blobs[&d] as i64;
                Descriptor::new("application/vnd.docker.image.rootfs.diff.tar", d, size)
            } else {
                return Err(Error::Invalid(format!("manifest.json: layer {p} missing")));
            };
            layers.push(desc);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: oci::DOCKER_MANIFEST.into(),
            config: cfg_desc,
            layers,
            annotations: Default::default(),
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        let desc = store_small(deps, ns, lease, &bytes, oci::DOCKER_MANIFEST).await?;
        for t in e.repo_tags.unwrap_or_default() {
            out.push((normalise_docker_ref(&t), desc.clone()));
        }
    }
    Ok(out)
}

/// Stores a small document (held by `lease`) and returns its descriptor.
async fn store_small(
    deps: &Deps,
    ns: &str,
    lease: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<Descriptor, Error> {
    let d = Digest::of(bytes);
    let cs = deps.content.with_lease(Some(lease.to_string()));
    cs.lease_digest(ns, &d).await?;
    cs.ingest_from_reader(
        ns,
        std::io::Cursor::new(bytes.to_vec()),
        &d,
        Some(bytes.len() as u64),
        Labels::new(),
    )
    .await?;
    Ok(Descriptor::new(media_type, d, bytes.len() as i64))
}

/// Checks that `desc` (named by `what` in the error) gives its blob's
/// true size: a descriptor that lies about it (a 2^62-byte "manifest")
/// is the archive's fault, InvalidArgument, and would otherwise reach
/// image records and every client that trusts a descriptor's size.
fn check_size(deps: &Deps, ns: &str, what: &str, desc: &Descriptor) -> Result<(), Error> {
    let d = &desc.digest;
    let info = deps
        .content
        .info(ns, d)
        .map_err(|_| Error::Invalid(format!("{what}: {d} absent from the archive")))?;
    if u64::try_from(desc.size).ok() != Some(info.size) {
        return Err(Error::Invalid(format!(
            "{what}: descriptor of {d} gives {} bytes, the blob has {}",
            desc.size, info.size
        )));
    }
    Ok(())
}

/// Walks `target` to its image manifests, labelling parents with their
/// children (`containerd.io/gc.ref.content.*`) so collection keeps them.
/// Returns the manifests to keep with their platforms (None when the target
/// is a manifest itself).
async fn resolve(
    deps: &Deps,
    ns: &str,
    target: &Digest,
    media_type: &str,
    want: &Platform,
    all: bool,
) -> Result<Vec<(Digest, Option<Platform>)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(target.clone(), media_type.to_string(), None::<Platform>)];
    while let Some((d, mt, plat)) = stack.pop() {
        let doc = read_doc(&deps.content, ns, &d).await?;
        let probe: serde_json::Value =
            serde_json::from_slice(&doc).map_err(|e| Error::Invalid(format!("{d}: {e}")))?;
        let mt = if mt.is_empty() {
            probe
                .get("mediaType")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        } else {
            mt
        };
        let is_index =
            oci::is_index(&mt) || (!oci::is_manifest(&mt) && probe.get("manifests").is_some());
        if is_index {
            let idx: Index = serde_json::from_value(probe)
                .map_err(|e| Error::Invalid(format!("index {d}: {e}")))?;
            for (i, m) in idx.manifests.iter().enumerate() {
                let keep = all || m.platform.as_ref().is_none_or(|p| want.matches(p));
                if !keep {
                    continue;
                }
                let md = m.digest.clone();
                if deps.content.info(ns, &md).is_err() {
                    continue; // not in the archive: another platform
                }
                check_size(deps, ns, &format!("index {d}"), m)?;
                deps.unpacker
                    .set_label(
                        ns,
                        &d,
                        &format!("containerd.io/gc.ref.content.m.{i}"),
                        &md.to_string(),
                    )
                    .await?;
                stack.push((md, m.media_type.clone(), m.platform.clone()));
            }
        } else {
            let m: Manifest = serde_json::from_value(probe)
                .map_err(|e| Error::Invalid(format!("manifest {d}: {e}")))?;
            unpack::check_layer_count(&format!("manifest {d}"), m.layers.len())
                .map_err(Error::Invalid)?;
            for l in &m.layers {
                check_size(deps, ns, &format!("manifest {d}: layer"), l)?;
            }
            let cd = &m.config.digest;
            check_size(deps, ns, &format!("manifest {d}: config"), &m.config)?;
            let u = &deps.unpacker;
            u.set_label(
                ns,
                &d,
                "containerd.io/gc.ref.content.config",
                &cd.to_string(),
            )
            .await?;
            for (i, l) in m.layers.iter().enumerate() {
                let key = format!("containerd.io/gc.ref.content.l.{i}");
                u.set_label(ns, &d, &key, &l.digest.to_string()).await?;
            }
            out.push((d, plat));
        }
    }
    Ok(out)
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
}

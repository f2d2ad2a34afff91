//! Server-side import of an OCI image layout tar or a `docker save` tar:
//! blobs into the content store (digests verified), image records named as
//! `ctr images import` names them, then unpack into snapshots.
//!
//! Everything the import writes is held by a lease of its own (expiring
//! after a day, in case berthd dies midway) until the image records exist;
//! then the lease goes and the images hold what they need. A failed import
//! drops its lease, so a collection removes every partial blob/snapshot.

use std::collections::BTreeMap;
use std::io::Read;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_api::Digest;
use tokio::sync::mpsc;

use super::archive::{self, Contents};
use super::oci::{self, Descriptor, DockerEntry, Index, Manifest, Platform};
use super::unpack::{self, read_doc, set_label};
use crate::services::Context;
use crate::store::images::{self as records, Image, Target};
use crate::store::labels::Labels;
use crate::store::{self, leases};

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
    /// content store failed
    #[error(transparent)]
    Content(#[from] crate::content::Error),
    /// a blocking task died
    #[error("import task failed: {0}")]
    Join(String),
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

/// Imports the archive read from `reader` into `ns`; returns the image
/// names created or updated.
pub async fn import(
    ctx: &Context,
    ns: &str,
    reader: impl Read + Send + 'static,
    opts: Options,
    progress: mpsc::Sender<Progress>,
) -> Result<Vec<String>, Error> {
    let lease_id = format!("berth-import-{}", uuid::Uuid::new_v4().simple());
    let expire = format_rfc3339(SystemTime::now() + Duration::from_secs(24 * 3600));
    let labels = Labels::from([(leases::EXPIRE_LABEL.to_string(), expire)]);
    leases::create(&ctx.store, ns, &lease_id, labels).await?;
    let result = run(ctx, ns, &lease_id, reader, &opts, &progress).await;
    if let Err(e) = leases::delete(&ctx.store, ns, &lease_id).await {
        tracing::warn!(lease = %lease_id, error = %e, "import lease not deleted");
    }
    ctx.gc.schedule();
    result
}

async fn run(
    ctx: &Context,
    ns: &str,
    lease: &str,
    reader: impl Read + Send + 'static,
    opts: &Options,
    progress: &mpsc::Sender<Progress>,
) -> Result<Vec<String>, Error> {
    let started = std::time::Instant::now();
    let _ = progress.send(Progress::State("reading".into())).await;
    let (c2, ns2, l2, rt) = (
        ctx.clone(),
        ns.to_string(),
        lease.to_string(),
        tokio::runtime::Handle::current(),
    );
    let tx = progress.clone();
    let contents = tokio::task::spawn_blocking(move || {
        let mut p = Sender(tx, 0);
        archive::read(&c2, &rt, &ns2, &l2, reader, &mut p)
    })
    .await
    .map_err(|e| Error::Join(e.to_string()))??;
    tracing::info!(namespace = %ns, blobs = contents.blobs.len() + contents.spooled.len(), elapsed_ms = started.elapsed().as_millis() as u64, "import: archive read");

    let named: Vec<(String, Descriptor)> = if let Some(idx) = contents.small.get("index.json") {
        oci_images(&contents, idx, &opts.name_prefix)?
    } else if let Some(m) = contents.small.get("manifest.json") {
        docker_images(ctx, ns, lease, &contents, m).await?
    } else {
        return Err(Error::Invalid(
            "archive: neither index.json (OCI layout) nor manifest.json (docker save) found".into(),
        ));
    };
    if named.is_empty() {
        return Err(Error::Invalid("archive: no named image in it".into()));
    }
    let want = opts.platform.clone().unwrap_or_else(Platform::host);
    let mut names = Vec::new();
    for (name, target) in &named {
        let d = unpack::digest("target digest", &target.digest)?;
        let manifests = resolve(ctx, ns, &d, &target.media_type, &want, opts.all_platforms).await?;
        if manifests.is_empty() {
            return Err(Error::Invalid(format!(
                "image {name}: no manifest for platform {}/{}",
                want.os, want.architecture
            )));
        }
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
            unpack::unpack(ctx, ns, lease, &m, &opts.snapshotter).await?;
            tracing::info!(namespace = %ns, image = %name, manifest = %m, elapsed_ms = started.elapsed().as_millis() as u64, "import: unpacked");
        }
    }
    // Images appear only once everything they need is in place (the lease
    // held it all so far), so a failed import leaves no image behind.
    for (name, target) in &named {
        save_image(ctx, ns, name, target).await?;
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
        let d = unpack::digest("index.json manifest digest", &m.digest)?;
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
                    let day = format_rfc3339(SystemTime::now());
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
    ctx: &Context,
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
        let cfg_desc = store_small(ctx, ns, lease, cfg, oci::MT_DOCKER_CONFIG).await?;
        let mut layers = Vec::new();
        for l in &e.layers {
            let p = contents.resolve(l);
            let desc = if let Some(s) = contents.spooled.get(p) {
                Descriptor {
                    media_type: sniff_layer_type(&s.magic).into(),
                    digest: s.digest.to_string(),
                    size: s.size as i64,
                    ..Default::default()
                }
            } else if let Some(b) = contents.small.get(p) {
                let mut magic = [0u8; 4];
                magic.iter_mut().zip(b.iter()).for_each(|(m, v)| *m = *v);
                store_small(ctx, ns, lease, b, sniff_layer_type(&magic)).await?
            } else if let Some(d) = p
                .strip_prefix("blobs/")
                .and_then(|r| r.split_once('/'))
                .and_then(|(a, h)| format!("{a}:{h}").parse::<Digest>().ok())
                .filter(|d| contents.blobs.contains_key(d))
            {
                Descriptor {
                    media_type: "application/vnd.docker.image.rootfs.diff.tar".into(),
                    size: contents.blobs[&d] as i64,
                    digest: d.to_string(),
                    ..Default::default()
                }
            } else {
                return Err(Error::Invalid(format!("manifest.json: layer {p} missing")));
            };
            layers.push(desc);
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: oci::MT_DOCKER_MANIFEST.into(),
            config: cfg_desc,
            layers,
        };
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| Error::Invalid(format!("manifest: {e}")))?;
        let desc = store_small(ctx, ns, lease, &bytes, oci::MT_DOCKER_MANIFEST).await?;
        for t in e.repo_tags.unwrap_or_default() {
            out.push((oci::normalise_docker_ref(&t), desc.clone()));
        }
    }
    Ok(out)
}

/// Stores a small document (held by `lease`) and returns its descriptor.
async fn store_small(
    ctx: &Context,
    ns: &str,
    lease: &str,
    bytes: &[u8],
    media_type: &str,
) -> Result<Descriptor, Error> {
    let d = Digest::of(bytes);
    {
        let _hold = ctx.gc.hold().await;
        let r = leases::Resource {
            id: d.to_string(),
            kind: "content".into(),
        };
        leases::add_resource(&ctx.store, ns, lease, r).await?;
    }
    let cs = ctx.content.with_lease(Some(lease.to_string()));
    cs.ingest_from_reader(
        ns,
        std::io::Cursor::new(bytes.to_vec()),
        &d,
        Some(bytes.len() as u64),
        Labels::new(),
    )
    .await?;
    Ok(Descriptor {
        media_type: media_type.into(),
        digest: d.to_string(),
        size: bytes.len() as i64,
        ..Default::default()
    })
}

/// Walks `target` to its image manifests, labelling parents with their
/// children (`containerd.io/gc.ref.content.*`) so collection keeps them.
/// Returns the manifests to keep with their platforms (None when the target
/// is a manifest itself).
async fn resolve(
    ctx: &Context,
    ns: &str,
    target: &Digest,
    media_type: &str,
    want: &Platform,
    all: bool,
) -> Result<Vec<(Digest, Option<Platform>)>, Error> {
    let mut out = Vec::new();
    let mut stack = vec![(target.clone(), media_type.to_string(), None::<Platform>)];
    while let Some((d, mt, plat)) = stack.pop() {
        let doc = read_doc(&ctx.content, ns, &d).await?;
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
                let md = unpack::digest("index manifest digest", &m.digest)?;
                if ctx.content.info(ns, &md).is_err() {
                    continue; // not in the archive: another platform
                }
                set_label(
                    ctx,
                    ns,
                    &d,
                    &format!("containerd.io/gc.ref.content.m.{i}"),
                    &m.digest,
                )
                .await?;
                stack.push((md, m.media_type.clone(), m.platform.clone()));
            }
        } else {
            let m: Manifest = serde_json::from_value(probe)
                .map_err(|e| Error::Invalid(format!("manifest {d}: {e}")))?;
            for l in &m.layers {
                let ld = unpack::digest("layer digest", &l.digest)?;
                ctx.content.info(ns, &ld).map_err(|_| {
                    Error::Invalid(format!("manifest {d}: layer {ld} absent from the archive"))
                })?;
            }
            let cd = unpack::digest("config digest", &m.config.digest)?;
            ctx.content.info(ns, &cd).map_err(|_| {
                Error::Invalid(format!("manifest {d}: config {cd} absent from the archive"))
            })?;
            set_label(
                ctx,
                ns,
                &d,
                "containerd.io/gc.ref.content.config",
                &m.config.digest,
            )
            .await?;
            for (i, l) in m.layers.iter().enumerate() {
                set_label(
                    ctx,
                    ns,
                    &d,
                    &format!("containerd.io/gc.ref.content.l.{i}"),
                    &l.digest,
                )
                .await?;
            }
            out.push((d, plat));
        }
    }
    Ok(out)
}

/// Points image `name` at `target` (creating it if needed), under a GC guard.
async fn save_image(ctx: &Context, ns: &str, name: &str, target: &Descriptor) -> Result<(), Error> {
    let img = Image {
        name: name.to_string(),
        labels: Labels::new(),
        target: Target {
            media_type: target.media_type.clone(),
            digest: target.digest.clone(),
            size: target.size,
            annotations: target
                .annotations
                .clone()
                .into_iter()
                .collect::<BTreeMap<_, _>>(),
        },
        created_at: UNIX_EPOCH,
        updated_at: UNIX_EPOCH,
    };
    let _hold = ctx.gc.hold().await;
    match records::update(&ctx.store, ns, img.clone(), &["target".into()]).await {
        Ok(i) => super::events::updated(ctx, ns, &i).await,
        Err(store::Error::NotFound { .. }) => {
            let i = records::create(&ctx.store, ns, img).await?;
            super::events::created(ctx, ns, &i).await;
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// Formats a time as RFC 3339 in UTC (`2024-01-02T03:04:05Z`).
pub fn format_rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip() {
        for secs in [0u64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            let s = format_rfc3339(t);
            assert_eq!(crate::gc::parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(
            format_rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
            "2023-11-14T22:13:20Z"
        );
    }
}

//! Commit: a new image from a container's filesystem. The changes of its
//! rootfs snapshot against its parent become one new layer (gzip or zstd,
//! written by the Diff service's code into the content store); the base
//! image's config gains that layer's diff ID, a history entry and the
//! `--change`s; a new manifest lists the base's layers plus the new one;
//! an image record points at it. Everything is written under a lease, so a
//! collection running meanwhile keeps it, and the lease goes once the
//! image record roots it. A running container is paused during the diff
//! (unless asked not to), so the layer is one consistent state.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::time::{Duration, SystemTime};

use berth_api::oci::{
    Descriptor, Document, Manifest, Platform, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_MANIFEST,
};
use berth_api::Digest;
use serde_json::{json, Value};

use super::changes::{self, Change};
use super::model::Status;
use super::{image, names, Engine, Error, Result};
use crate::images::unpack::read_doc;
use crate::snapshots::NewSnapshot;
use crate::store::images::{Image, Target};
use crate::store::labels::Labels;

/// Leases holding a commit's blobs until its image record exists.
pub const COMMIT_LEASE_PREFIX: &str = "berth.commit.";

/// A commit as the adapter asks for it.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The container: name, ID or ID prefix.
    pub container: String,
    /// The new image's reference (short names expanded); empty: the
    /// image is named by its manifest digest.
    pub reference: String,
    /// The history entry's comment.
    pub message: String,
    /// The image's author.
    pub author: String,
    /// Dockerfile instructions applied to the config (`CMD ["x"]`).
    pub changes: Vec<String>,
    /// Pause a running container during the diff.
    pub pause: bool,
    /// `gzip` (default) or `zstd`.
    pub compression: String,
}

/// What a commit made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// The image record's name.
    pub image: String,
    /// The manifest's digest.
    pub manifest: String,
    /// The config's digest.
    pub config: String,
    /// The new layer's digest.
    pub layer: String,
    /// Its diff ID.
    pub diff_id: String,
    /// Its compressed size.
    pub layer_size: u64,
}

impl Engine {
    /// Commits container `req.container` of `ns`; see the module doc.
    pub async fn commit(&self, ns: &str, req: CommitRequest) -> Result<Committed> {
        let media_type = match req.compression.as_str() {
            "" | "gzip" => OCI_LAYER_GZIP,
            "zstd" => OCI_LAYER_ZSTD,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "compression {other:?}: gzip or zstd"
                )))
            }
        };
        let parsed: Vec<Change> = req
            .changes
            .iter()
            .map(|c| changes::parse(c))
            .collect::<Result<_>>()?;
        let slot = self.find(ns, &req.container)?;
        let _op = slot.op.lock().await;
        let rec = slot.record();
        let deps = self.deps().clone();
        let (base, mut config) = self.base_of(ns, &rec.image_digest).await?;

        let lease = format!("{COMMIT_LEASE_PREFIX}{}", names::new_id());
        let mut labels = Labels::new();
        labels.insert(
            berth_api::lease::EXPIRE_LABEL.to_string(),
            berth_api::lease::format_rfc3339(SystemTime::now() + Duration::from_secs(3600)),
        );
        deps.leases.create(ns, &lease, labels).await?;
        let result = async {
            let info = deps.snapshots.stat(ns, &rec.snapshotter, &rec.id).await?;
            let parent = info.parent.unwrap_or_default();
            let lower = if parent.is_empty() {
                Vec::new()
            } else {
                deps.snapshots
                    .view(
                        ns,
                        Some(&lease),
                        NewSnapshot {
                            snapshotter: rec.snapshotter.clone(),
                            key: format!("{lease}.parent"),
                            parent,
                            labels: HashMap::new(),
                        },
                    )
                    .await?
            };
            let upper = deps.snapshots.mounts(ns, &rec.snapshotter, &rec.id).await?;
            let pause = req.pause && slot.record().state.status == Status::Running;
            if pause {
                deps.tasks.pause(ns, &rec.id).await?;
            }
            let started = std::time::Instant::now();
            let stored = self
                .differ()
                .diff(ns, Some(lease.clone()), lower, upper, media_type, BTreeMap::new())
                .await;
            if pause {
                if let Err(e) = deps.tasks.resume(ns, &rec.id).await {
                    tracing::warn!(namespace = ns, id = %rec.id, error = %e, "resuming after commit");
                }
            }
            let stored = stored.map_err(|e| match e.kind() {
                berth_api::ErrorKind::Internal => Error::Internal(format!("commit diff: {e}")),
                _ => Error::FailedPrecondition(format!("commit diff: {e}")),
            })?;
            tracing::info!(namespace = ns, id = %rec.id, layer = %stored.digest, size = stored.size, elapsed = ?started.elapsed(), "commit: layer written");

            // The config: the new layer, a history entry, the changes.
            let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
            let obj = config
                .as_object_mut()
                .ok_or_else(|| Error::InvalidArgument("base image config is not an object".into()))?;
            obj.insert("created".into(), json!(now));
            if !req.author.is_empty() {
                obj.insert("author".into(), json!(req.author));
            }
            let rootfs = obj.entry("rootfs").or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
            rootfs["type"] = json!("layers");
            match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
                Some(ids) => ids.push(json!(stored.diff_id.to_string())),
                None => rootfs["diff_ids"] = json!([stored.diff_id.to_string()]),
            }
            let mut entry = json!({"created": now, "created_by": format!("berthctl commit {}", rec.name)});
            if !req.author.is_empty() {
                entry["author"] = json!(req.author);
            }
            if !req.message.is_empty() {
                entry["comment"] = json!(req.message);
            }
            match obj.get_mut("history").and_then(Value::as_array_mut) {
                Some(h) => h.push(entry),
                None => {
                    obj.insert("history".into(), json!([entry]));
                }
            }
            let exec = obj.entry("config").or_insert_with(|| json!({}));
            if !exec.is_object() {
                *exec = json!({});
            }
            changes::apply(exec.as_object_mut().expect("an object"), &parsed);
            let cfg_bytes = serde_json::to_vec(&config)
                .map_err(|e| Error::Internal(format!("encode config: {e}")))?;
            let cfg_desc = Descriptor::new(OCI_CONFIG, Digest::of(&cfg_bytes), cfg_bytes.len() as i64);

            // The manifest: the base's layers and the new one.
            let mut layers = base.layers.clone();
            layers.push(Descriptor::new(media_type, stored.digest.clone(), stored.size as i64));
            let manifest = Manifest {
                schema_version: 2,
                media_type: OCI_MANIFEST.into(),
                config: cfg_desc.clone(),
                layers,
                annotations: BTreeMap::new(),
            };
            let m_bytes = serde_json::to_vec(&manifest)
                .map_err(|e| Error::Internal(format!("encode manifest: {e}")))?;
            let m_digest = Digest::of(&m_bytes);
            let mut m_labels = Labels::new();
            m_labels.insert("containerd.io/gc.ref.content.config".into(), cfg_desc.digest.to_string());
            for (i, l) in manifest.layers.iter().enumerate() {
                m_labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), l.digest.to_string());
            }
            let content = deps.content.with_lease(Some(lease.clone()));
            content
                .ingest_from_reader(ns, Cursor::new(cfg_bytes.clone()), &cfg_desc.digest, Some(cfg_bytes.len() as u64), Labels::new())
                .await
                .map_err(|e| Error::Internal(format!("store config: {e}")))?;
            content
                .ingest_from_reader(ns, Cursor::new(m_bytes.clone()), &m_digest, Some(m_bytes.len() as u64), m_labels)
                .await
                .map_err(|e| Error::Internal(format!("store manifest: {e}")))?;

            // The image record.
            let name = if req.reference.is_empty() {
                m_digest.to_string()
            } else {
                image::normalise_reference(&req.reference)
            };
            let now = SystemTime::now();
            let img = Image {
                name: name.clone(),
                labels: Labels::new(),
                target: Target {
                    media_type: OCI_MANIFEST.into(),
                    digest: m_digest.to_string(),
                    size: m_bytes.len() as i64,
                    annotations: BTreeMap::new(),
                },
                created_at: now,
                updated_at: now,
            };
            match deps.images.get(ns, &name) {
                Ok(_) => {
                    deps.images.update(ns, img, &["target".to_string()]).await?;
                }
                Err(e) if e.kind() == berth_api::ErrorKind::NotFound => {
                    deps.images.create(ns, img).await?;
                }
                Err(e) => return Err(e.into()),
            }
            tracing::info!(namespace = ns, id = %rec.id, image = %name, manifest = %m_digest, "container committed");
            Ok(Committed {
                image: name,
                manifest: m_digest.to_string(),
                config: cfg_desc.digest.to_string(),
                layer: stored.digest.to_string(),
                diff_id: stored.diff_id.to_string(),
                layer_size: stored.size,
            })
        }
        .await;
        if let Err(e) = deps.leases.delete(ns, &lease, false).await {
            tracing::warn!(namespace = ns, lease, error = %e, "deleting the commit's lease");
        }
        result
    }

    /// The base image's manifest and config (raw JSON, so nothing of it is
    /// lost), from the digest the container was created from.
    async fn base_of(&self, ns: &str, target: &str) -> Result<(Manifest, Value)> {
        let content = &self.deps().content;
        let target: Digest = target
            .parse()
            .map_err(|e| Error::InvalidArgument(format!("container's image digest: {e}")))?;
        let doc = read_doc(content, ns, &target).await?;
        let bad = |e: berth_api::oci::DocumentError| {
            Error::FailedPrecondition(format!("container's image {target}: {e}"))
        };
        let manifest = match Document::parse(&doc, None).map_err(bad)?.1 {
            Document::Manifest(m) => m,
            Document::Index(idx) => {
                let d = idx.select(&Platform::host()).ok_or_else(|| {
                    Error::NotFound(format!(
                        "container's image {target}: no manifest for this platform"
                    ))
                })?;
                let mdoc = read_doc(content, ns, &d.digest).await?;
                match Document::parse(&mdoc, None).map_err(bad)?.1 {
                    Document::Manifest(m) => m,
                    Document::Index(_) => {
                        return Err(Error::FailedPrecondition(format!(
                            "container's image {target}: nested index"
                        )))
                    }
                }
            }
        };
        let cfg = read_doc(content, ns, &manifest.config.digest).await?;
        let value: Value = serde_json::from_slice(&cfg).map_err(|e| {
            Error::FailedPrecondition(format!(
                "container's image config {}: {e}",
                manifest.config.digest
            ))
        })?;
        Ok((manifest, value))
    }
}

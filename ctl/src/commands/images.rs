//! `berthctl images ls|rm|tag|inspect|label` (import, export, pull and push
//! live in `images_transfer.rs`).

use std::collections::BTreeMap;

use berth_api::oci::{Descriptor, ImageConfig, Platform};
use berth_api::services::images::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::labels::{label_paths, parse_labels, wire_labels};
use crate::output::{human_size, labels_cell, rfc3339, sorted_labels, Row};
use crate::resolve;
use crate::workflows::images::get;

/// Image commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List images
    #[command(visible_alias = "list")]
    Ls {
        /// print names only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `name~=busybox` (several: any matches)
        filters: Vec<String>,
    },
    /// Remove images (their content and snapshots go at the next GC)
    #[command(visible_aliases = ["remove", "delete", "del"])]
    Rm {
        /// image names
        #[arg(required = true)]
        names: Vec<String>,
        /// wait for garbage collection to finish
        #[arg(long)]
        sync: bool,
    },
    /// Give an image more names
    Tag {
        /// existing image name
        source: String,
        /// new names
        #[arg(required = true)]
        targets: Vec<String>,
        /// replace images that already have a target name
        #[arg(long)]
        force: bool,
    },
    /// Show an image: record, platforms, manifest, config
    Inspect {
        /// image name
        name: String,
        /// platform to resolve (default: this machine's)
        #[arg(long)]
        platform: Option<String>,
    },
    /// Set labels on an image (`key=` removes one)
    Label {
        /// image name
        name: String,
        /// labels as key=value
        #[arg(required = true)]
        labels: Vec<String>,
    },
    /// Import images from an OCI layout or docker-save tar (server-side)
    Import(super::images_transfer::ImportArgs),
    /// Export images as an OCI layout tar (server-side)
    Export(super::images_transfer::ExportArgs),
    /// Pull an image from a registry (server-side, with progress)
    Pull(super::images_registry::PullArgs),
    /// Push an image to a registry (server-side, with progress)
    Push(super::images_registry::PushArgs),
}

/// One image, as listed.
#[derive(Debug, Serialize)]
pub struct ImageRow {
    /// image name (reference)
    pub name: String,
    /// the target's media type
    pub media_type: String,
    /// the target's digest
    pub digest: String,
    /// bytes this machine's platform occupies (manifest, config, layers);
    /// null when its content is missing
    pub size: Option<i64>,
    /// platforms offered
    pub platforms: Vec<String>,
    /// labels
    pub labels: BTreeMap<String, String>,
    /// RFC 3339
    pub created_at: Option<String>,
    /// RFC 3339
    pub updated_at: Option<String>,
}

impl Row for ImageRow {
    fn headers() -> &'static [&'static str] {
        &["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.name.clone(),
            self.media_type.clone(),
            self.digest.clone(),
            self.size.map(human_size).unwrap_or_else(|| "-".into()),
            if self.platforms.is_empty() {
                "-".into()
            } else {
                self.platforms.join(",")
            },
            labels_cell(&self.labels),
        ]
    }
}

/// Describes an image record, reading its content for size and platforms
/// (missing content shows as unknown rather than failing the listing).
async fn image_row(ctx: &Ctx, img: pb::Image) -> ImageRow {
    let (mut platforms, mut size) = (Vec::new(), None);
    if let Ok(target) = resolve::descriptor(img.target.as_ref()) {
        if let Ok(p) = resolve::platforms(&ctx.client, &target).await {
            platforms = p.iter().map(Platform::to_string).collect();
        }
        size = resolve::resolve(&ctx.client, &target, &Platform::host())
            .await
            .ok()
            .map(|r| r.size());
    }
    let wire = img.target.unwrap_or_default();
    ImageRow {
        name: img.name,
        media_type: wire.media_type,
        digest: wire.digest,
        size,
        platforms,
        labels: sorted_labels(img.labels),
        created_at: rfc3339(img.created_at.as_ref()),
        updated_at: rfc3339(img.updated_at.as_ref()),
    }
}

/// Runs an image command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let mut c = ctx.client.images();
    match cmd {
        Cmd::Ls { quiet, filters } => {
            let mut imgs = c
                .list(pb::ListImagesRequest { filters })
                .await
                .context("list images")?
                .into_inner()
                .images;
            imgs.sort_by(|a, b| a.name.cmp(&b.name));
            if quiet && !ctx.out.json() {
                return ctx.out.lines(imgs.iter().map(|i| &i.name));
            }
            let mut rows = Vec::with_capacity(imgs.len());
            for img in imgs {
                rows.push(image_row(ctx, img).await);
            }
            ctx.out.list(&rows)
        }
        Cmd::Rm { names, sync } => {
            for_each(ctx, &names, |name| {
                let mut c = c.clone();
                let name = name.clone();
                async move {
                    c.delete(pb::DeleteImageRequest {
                        name: name.clone(),
                        sync,
                    })
                    .await
                    .with_context(|| format!("remove image {name:?}"))?;
                    Ok(Done::named("name", &name))
                }
            })
            .await
        }
        Cmd::Tag {
            source,
            targets,
            force,
        } => {
            let src = get(&ctx.client, &source).await?;
            for_each(ctx, &targets, |t| {
                let mut c = c.clone();
                let img = pb::Image {
                    name: t.clone(),
                    labels: src.labels.clone(),
                    target: src.target.clone(),
                    created_at: None,
                    updated_at: None,
                };
                async move {
                    let name = img.name.clone();
                    let created = c
                        .create(pb::CreateImageRequest {
                            image: Some(img.clone()),
                        })
                        .await;
                    match created {
                        Err(s) if s.code() == tonic::Code::AlreadyExists && force => {
                            c.update(pb::UpdateImageRequest {
                                image: Some(img),
                                update_mask: Some(prost_types::FieldMask {
                                    paths: vec!["target".into(), "labels".into()],
                                }),
                            })
                            .await
                            .with_context(|| format!("retag image {name:?}"))?;
                        }
                        other => {
                            other.with_context(|| format!("tag image {name:?}"))?;
                        }
                    }
                    Ok(Done::named("name", &name))
                }
            })
            .await
        }
        Cmd::Import(args) => super::images_transfer::import(ctx, args).await,
        Cmd::Export(args) => super::images_transfer::export(ctx, args).await,
        Cmd::Pull(args) => super::images_registry::pull(ctx, args).await,
        Cmd::Push(args) => super::images_registry::push(ctx, args).await,
        Cmd::Inspect { name, platform } => inspect(ctx, &name, platform.as_deref()).await,
        Cmd::Label { name, labels } => {
            let labels = parse_labels(&labels)?;
            let img = c
                .update(pb::UpdateImageRequest {
                    image: Some(pb::Image {
                        name: name.clone(),
                        labels: wire_labels(&labels),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: label_paths(&labels),
                    }),
                })
                .await
                .with_context(|| format!("label image {name:?}"))?
                .into_inner()
                .image
                .unwrap_or_default();
            let row = image_row(ctx, img).await;
            ctx.out.object(&row, |r| format!("{}\n", r.name))
        }
    }
}

/// `images inspect` output. Descriptors are shown with snake_case fields
/// like every other listing; `image_config` is the image's OCI config
/// document as stored (its field names are the OCI spec's).
#[derive(Debug, Serialize)]
struct Inspected {
    name: String,
    target: DescriptorRow,
    labels: BTreeMap<String, String>,
    created_at: Option<String>,
    updated_at: Option<String>,
    platforms: Vec<String>,
    platform: String,
    manifest: DescriptorRow,
    config: DescriptorRow,
    layers: Vec<DescriptorRow>,
    size: i64,
    chain_id: Option<String>,
    image_config: ImageConfig,
}

/// A content descriptor in berthctl's JSON.
#[derive(Debug, Serialize)]
struct DescriptorRow {
    media_type: String,
    digest: String,
    size: i64,
    /// os/arch[/variant], for an index entry
    platform: Option<String>,
}

impl From<&Descriptor> for DescriptorRow {
    fn from(d: &Descriptor) -> Self {
        Self {
            media_type: d.media_type.clone(),
            digest: d.digest.to_string(),
            size: d.size,
            platform: d.platform.as_ref().map(Platform::to_string),
        }
    }
}

async fn inspect(ctx: &Ctx, name: &str, platform: Option<&str>) -> Result<()> {
    let img = get(&ctx.client, name).await?;
    let want = match platform {
        Some(p) => Platform::parse(p)?,
        None => Platform::host(),
    };
    let target = resolve::descriptor(img.target.as_ref())?;
    let platforms = resolve::platforms(&ctx.client, &target).await?;
    let r = resolve::resolve(&ctx.client, &target, &want).await?;
    let v = Inspected {
        name: img.name,
        labels: sorted_labels(img.labels),
        created_at: rfc3339(img.created_at.as_ref()),
        updated_at: rfc3339(img.updated_at.as_ref()),
        platforms: platforms.iter().map(Platform::to_string).collect(),
        platform: r.config.platform().to_string(),
        size: r.size(),
        chain_id: r.chain_id(),
        manifest: DescriptorRow::from(&r.manifest_desc),
        config: DescriptorRow::from(&r.manifest.config),
        layers: r.manifest.layers.iter().map(DescriptorRow::from).collect(),
        image_config: r.config.clone(),
        target: DescriptorRow::from(&target),
    };
    ctx.out.object(&v, |v| {
        let mut s = String::new();
        s.push_str(&format!("Name:       {}\n", v.name));
        s.push_str(&format!(
            "Target:     {} ({})\n",
            v.target.digest, v.target.media_type
        ));
        s.push_str(&format!("Platforms:  {}\n", v.platforms.join(", ")));
        s.push_str(&format!("Platform:   {}\n", v.platform));
        s.push_str(&format!("Manifest:   {}\n", v.manifest.digest));
        s.push_str(&format!("Config:     {}\n", v.config.digest));
        s.push_str(&format!("Size:       {}\n", human_size(v.size)));
        s.push_str(&format!(
            "Snapshot:   {}\n",
            v.chain_id.as_deref().unwrap_or("-")
        ));
        s.push_str(&format!("Labels:     {}\n", labels_cell(&v.labels)));
        if let Some(c) = &v.image_config.config {
            if let Some(e) = &c.entrypoint {
                s.push_str(&format!("Entrypoint: {e:?}\n"));
            }
            if let Some(cmd) = &c.cmd {
                s.push_str(&format!("Cmd:        {cmd:?}\n"));
            }
            if let Some(w) = c.working_dir.as_deref().filter(|w| !w.is_empty()) {
                s.push_str(&format!("WorkingDir: {w}\n"));
            }
            for e in c.env.iter().flatten() {
                s.push_str(&format!("Env:        {e}\n"));
            }
        }
        s.push_str("Layers:\n");
        let rows: Vec<Vec<String>> = v
            .layers
            .iter()
            .map(|l| vec![l.digest.clone(), human_size(l.size), l.media_type.clone()])
            .collect();
        for line in
            crate::output::render_table(&["  DIGEST", "SIZE", "MEDIA TYPE"], &rows_indented(rows))
                .lines()
        {
            s.push_str(line);
            s.push('\n');
        }
        s
    })
}

fn rows_indented(rows: Vec<Vec<String>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|mut r| {
            if let Some(first) = r.first_mut() {
                *first = format!("  {first}");
            }
            r
        })
        .collect()
}

//! `berthctl containers ls|info|rm|create|run`: containerd's records, ctr-like.

use std::collections::BTreeMap;

use berth_api::services::containers::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::output::{labels_cell, rfc3339, sorted_labels, Row};
use crate::workflows::containers::{get, remove, spec_json};

/// Container commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List containers
    #[command(visible_alias = "list")]
    Ls {
        /// print ids only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `image==busybox` (several: any matches)
        filters: Vec<String>,
    },
    /// Show a container record, spec included, as JSON
    Info {
        /// container id
        id: String,
    },
    /// Remove containers and their snapshots (their tasks must be gone)
    #[command(visible_aliases = ["remove", "delete", "del"])]
    Rm {
        /// container ids
        #[arg(required = true)]
        ids: Vec<String>,
        /// keep the container's snapshot
        #[arg(long)]
        keep_snapshot: bool,
    },
    /// Create a container from an image without starting it
    Create(Box<super::run::RunArgs>),
    /// Create a container from an image with the given ID and run its task
    /// (ctr's `run IMAGE ID`; the Docker-shaped one is `berthctl run`)
    Run(Box<super::run::RunCmd>),
}

/// One container, as listed (and, with its spec, as `info` shows it).
#[derive(Debug, Serialize)]
pub struct ContainerRow {
    /// id
    pub id: String,
    /// image name
    pub image: String,
    /// runtime
    pub runtime: RuntimeInfo,
    /// snapshotter
    pub snapshotter: String,
    /// snapshot key
    pub snapshot_key: String,
    /// labels
    pub labels: BTreeMap<String, String>,
    /// RFC 3339
    pub created_at: Option<String>,
    /// RFC 3339
    pub updated_at: Option<String>,
}

/// A container's runtime: its name and the type of its options, if any.
#[derive(Debug, Serialize)]
pub struct RuntimeInfo {
    /// e.g. `io.containerd.runc.v2`
    pub name: String,
    /// type URL of the runtime options (e.g. `containerd.runc.v1.Options`)
    pub options_type: Option<String>,
}

/// `containers info`: the listed fields plus the OCI spec.
#[derive(Debug, Serialize)]
struct ContainerInfo {
    #[serde(flatten)]
    row: ContainerRow,
    spec: serde_json::Value,
}

impl Row for ContainerRow {
    fn headers() -> &'static [&'static str] {
        &["CONTAINER", "IMAGE", "RUNTIME", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            if self.image.is_empty() {
                "-".into()
            } else {
                self.image.clone()
            },
            self.runtime.name.clone(),
            labels_cell(&self.labels),
        ]
    }
}

fn row(c: pb::Container) -> ContainerRow {
    let runtime = c.runtime.unwrap_or_default();
    ContainerRow {
        runtime: RuntimeInfo {
            name: runtime.name,
            options_type: runtime.options.map(|o| o.type_url),
        },
        created_at: rfc3339(c.created_at.as_ref()),
        updated_at: rfc3339(c.updated_at.as_ref()),
        id: c.id,
        image: c.image,
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        labels: sorted_labels(c.labels),
    }
}

/// Runs a container command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<std::process::ExitCode> {
    match cmd {
        Cmd::Run(cmd) => return super::run::run(ctx, *cmd).await,
        Cmd::Ls { quiet, filters } => {
            let mut list = ctx
                .client
                .containers()
                .list(pb::ListContainersRequest { filters })
                .await
                .context("list containers")?
                .into_inner()
                .containers;
            list.sort_by(|a, b| a.id.cmp(&b.id));
            if quiet && !ctx.out.json() {
                ctx.out.lines(list.iter().map(|c| &c.id))?;
            } else {
                let rows: Vec<ContainerRow> = list.into_iter().map(row).collect();
                ctx.out.list(&rows)?;
            }
        }
        Cmd::Info { id } => {
            let c = get(&ctx.client, &id).await?;
            let spec = spec_json(&c)?;
            ctx.out.json_value(&ContainerInfo { row: row(c), spec })?;
        }
        Cmd::Rm { ids, keep_snapshot } => {
            for_each(ctx, &ids, |id| {
                let id = id.clone();
                async move {
                    remove(&ctx.client, &id, keep_snapshot).await?;
                    Ok(Done::named("id", &id))
                }
            })
            .await?;
        }
        Cmd::Create(args) => {
            crate::workflows::create::create(&ctx.client, &args.options(false)?).await?;
            if !ctx.out.json() {
                crate::output::write_stdout(&format!("{}\n", args.id))?;
            } else {
                ctx.out.json_value(&serde_json::json!({"id": args.id}))?;
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

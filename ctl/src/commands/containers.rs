//! `berthctl containers ls|info|rm|create`.

use std::collections::BTreeMap;

use berth_api::services::containers::v1 as pb;
use berth_api::services::snapshots::v1 as spb;
use serde::Serialize;

use super::{for_each, Ctx};
use crate::error::{Error, Result, RpcContext};
use crate::output::{labels_cell, rfc3339, sorted_labels, Row};

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
}

/// One container, as listed.
#[derive(Debug, Serialize)]
pub struct ContainerRow {
    /// id
    pub id: String,
    /// image name
    pub image: String,
    /// runtime name
    pub runtime: String,
    /// snapshotter
    pub snapshotter: String,
    /// snapshot key
    pub snapshot_key: String,
    /// labels
    pub labels: BTreeMap<String, String>,
    /// RFC 3339
    pub created_at: Option<String>,
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
            self.runtime.clone(),
            labels_cell(&self.labels),
        ]
    }
}

fn row(c: pb::Container) -> ContainerRow {
    ContainerRow {
        runtime: c.runtime.map(|r| r.name).unwrap_or_default(),
        created_at: rfc3339(c.created_at.as_ref()),
        id: c.id,
        image: c.image,
        snapshotter: c.snapshotter,
        snapshot_key: c.snapshot_key,
        labels: sorted_labels(c.labels),
    }
}

/// Gets one container record.
pub async fn get(ctx: &Ctx, id: &str) -> Result<pb::Container> {
    ctx.client
        .containers()
        .get(pb::GetContainerRequest { id: id.into() })
        .await
        .with_context(|| format!("get container {id:?}"))?
        .into_inner()
        .container
        .ok_or_else(|| Error::Protocol(format!("get container {id:?}: empty reply")))
}

/// The container's OCI spec as JSON.
pub fn spec_json(c: &pb::Container) -> Result<serde_json::Value> {
    match &c.spec {
        Some(any) => serde_json::from_slice(&any.value)
            .map_err(|e| Error::Protocol(format!("container {:?}: spec is not JSON: {e}", c.id))),
        None => Ok(serde_json::Value::Null),
    }
}

/// Removes a container record, then its snapshot and fifos.
pub async fn remove(ctx: &Ctx, id: &str, keep_snapshot: bool) -> Result<()> {
    let c = get(ctx, id).await?;
    ctx.client
        .containers()
        .delete(pb::DeleteContainerRequest { id: id.into() })
        .await
        .with_context(|| format!("remove container {id:?}"))?;
    if !keep_snapshot && !c.snapshot_key.is_empty() {
        let r = ctx
            .client
            .snapshots()
            .remove(spb::RemoveSnapshotRequest {
                snapshotter: c.snapshotter.clone(),
                key: c.snapshot_key.clone(),
            })
            .await;
        match r {
            Err(s) if s.code() != tonic::Code::NotFound => {
                return Err(Error::Rpc {
                    what: format!("remove snapshot {:?} of container {id:?}", c.snapshot_key),
                    status: s,
                })
            }
            _ => {}
        }
    }
    let _ = ctx
        .client
        .leases()
        .delete(berth_api::services::leases::v1::DeleteRequest {
            id: super::run::container_lease(id),
            sync: false,
        })
        .await;
    crate::stdio::remove_fifos(ctx.client.namespace(), id);
    Ok(())
}

/// Runs a container command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<std::process::ExitCode> {
    match cmd {
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
            let c = get(ctx, &id).await?;
            let spec = spec_json(&c)?;
            let runtime = c.runtime.clone().unwrap_or_default();
            let v = serde_json::json!({
                "id": c.id,
                "image": c.image,
                "runtime": {"name": runtime.name, "options_type": runtime.options.map(|o| o.type_url)},
                "snapshotter": c.snapshotter,
                "snapshot_key": c.snapshot_key,
                "labels": sorted_labels(c.labels.clone()),
                "created_at": rfc3339(c.created_at.as_ref()),
                "updated_at": rfc3339(c.updated_at.as_ref()),
                "spec": spec,
            });
            ctx.out.json_value(&v)?;
        }
        Cmd::Rm { ids, keep_snapshot } => {
            for_each(&ids, |id| {
                let id = id.clone();
                async move {
                    remove(ctx, &id, keep_snapshot).await?;
                    if !ctx.out.json() {
                        crate::output::write_stdout(&format!("{id}\n"))?;
                    }
                    Ok(())
                }
            })
            .await?;
        }
        Cmd::Create(args) => {
            super::run::create(ctx, &args).await?;
            if !ctx.out.json() {
                crate::output::write_stdout(&format!("{}\n", args.id))?;
            } else {
                ctx.out.json_value(&serde_json::json!({"id": args.id}))?;
            }
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

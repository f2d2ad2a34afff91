//! `berthctl volume create|ls|inspect|rm|prune`: berthd's volumes
//! (Docker's local driver).

use berth_api::berth_volumes::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::output::{rfc3339, Row};

/// Volume commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create a volume (an existing name is returned as it is)
    Create {
        /// driver: local
        #[arg(short = 'd', long, default_value = "local")]
        driver: String,
        /// a label KEY=VAL (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
        /// its name (default: 64 generated hex digits)
        name: Option<String>,
    },
    /// List volumes
    #[command(visible_alias = "list")]
    Ls {
        /// names only
        #[arg(short, long)]
        quiet: bool,
        /// name=, label=KEY[=VAL], dangling=true|false (repeatable)
        #[arg(short = 'f', long = "filter")]
        filters: Vec<String>,
    },
    /// Show volumes as JSON, with the containers using them
    Inspect {
        /// names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes and their data (refused while a container uses one)
    #[command(visible_alias = "remove")]
    Rm {
        /// names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every volume no container uses
    Prune {
        /// label=KEY[=VAL] (repeatable)
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
}

/// A volume as listed.
#[derive(Debug, Serialize)]
struct VolumeRow {
    name: String,
    driver: String,
    mountpoint: String,
    labels: std::collections::BTreeMap<String, String>,
    anonymous: bool,
    created_at: Option<String>,
    containers: Vec<UserRow>,
}

#[derive(Debug, Serialize)]
struct UserRow {
    id: String,
    name: String,
    namespace: String,
}

impl Row for VolumeRow {
    fn headers() -> &'static [&'static str] {
        &["DRIVER", "VOLUME NAME", "CONTAINERS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.driver.clone(),
            self.name.clone(),
            self.containers.len().to_string(),
        ]
    }
}

fn row(v: pb::Volume) -> VolumeRow {
    VolumeRow {
        created_at: rfc3339(v.created_at.as_ref()),
        containers: v
            .users
            .into_iter()
            .map(|u| UserRow {
                id: u.container_id,
                name: u.container_name,
                namespace: u.namespace,
            })
            .collect(),
        labels: v.labels.into_iter().collect(),
        name: v.name,
        driver: v.driver,
        mountpoint: v.mountpoint,
        anonymous: v.anonymous,
    }
}

/// Runs a volume command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Create {
            driver,
            labels,
            name,
        } => {
            let name = name.unwrap_or_default();
            let v = ctx
                .client
                .volumes()
                .create(pb::CreateRequest {
                    name: name.clone(),
                    driver,
                    labels: labels
                        .iter()
                        .map(|l| {
                            let (k, v) = l.split_once('=').unwrap_or((l, ""));
                            (k.to_string(), v.to_string())
                        })
                        .collect(),
                })
                .await
                .with_context(|| format!("create volume {name:?}"))?
                .into_inner()
                .volume
                .unwrap_or_default();
            let r = row(v);
            ctx.out.object(&r, |r| format!("{}\n", r.name))
        }
        Cmd::Ls { quiet, filters } => {
            let list = ctx
                .client
                .volumes()
                .list(pb::ListRequest { filters })
                .await
                .context("list volumes")?
                .into_inner()
                .volumes;
            if quiet {
                return ctx.out.lines(list.iter().map(|v| v.name.clone()));
            }
            let rows: Vec<VolumeRow> = list.into_iter().map(row).collect();
            ctx.out.list(&rows)
        }
        Cmd::Inspect { names } => {
            let mut rows = Vec::new();
            for name in &names {
                let v = ctx
                    .client
                    .volumes()
                    .inspect(pb::InspectRequest { name: name.clone() })
                    .await
                    .with_context(|| format!("inspect volume {name:?}"))?
                    .into_inner()
                    .volume
                    .unwrap_or_default();
                rows.push(row(v));
            }
            ctx.out.json_value(&rows)
        }
        Cmd::Rm { names } => {
            for_each(ctx, &names, |name| {
                let name = name.clone();
                async move {
                    ctx.client
                        .volumes()
                        .remove(pb::RemoveRequest { name: name.clone() })
                        .await
                        .with_context(|| format!("remove volume {name:?}"))?;
                    Ok(Done::named("volume", &name))
                }
            })
            .await
        }
        Cmd::Prune { filters } => {
            let removed = ctx
                .client
                .volumes()
                .prune(pb::PruneRequest { filters })
                .await
                .context("prune volumes")?
                .into_inner()
                .removed;
            ctx.out.lines(removed)
        }
    }
}

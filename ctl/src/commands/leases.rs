//! `berthctl leases ls|create|rm`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use berth_api::services::leases::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Error, Result, RpcContext};
use crate::labels::{parse_labels, wire_labels};
use crate::output::{labels_cell, rfc3339, sorted_labels, Row};

/// Lease commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List leases
    #[command(visible_alias = "list")]
    Ls {
        /// print ids only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `id==x` (several: any matches)
        filters: Vec<String>,
    },
    /// Create a lease; prints its id
    Create {
        /// lease id (the daemon picks one when absent)
        #[arg(long)]
        id: Option<String>,
        /// expire after this long, e.g. `30m`, `24h` (no expiry when absent)
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// labels as key=value
        labels: Vec<String>,
    },
    /// Remove leases
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// lease ids
        #[arg(required = true)]
        ids: Vec<String>,
        /// wait for garbage collection to finish
        #[arg(long)]
        sync: bool,
    },
}

/// One lease, as listed.
#[derive(Debug, Serialize)]
pub struct LeaseRow {
    /// lease id
    pub id: String,
    /// creation time, RFC 3339
    pub created_at: Option<String>,
    /// labels (the expiry is `containerd.io/gc.expire`)
    pub labels: BTreeMap<String, String>,
}

impl Row for LeaseRow {
    fn headers() -> &'static [&'static str] {
        &["ID", "CREATED AT", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.clone(),
            self.created_at.clone().unwrap_or_else(|| "-".into()),
            labels_cell(&self.labels),
        ]
    }
}

fn row(l: pb::Lease) -> LeaseRow {
    LeaseRow {
        id: l.id,
        created_at: rfc3339(l.created_at.as_ref()),
        labels: sorted_labels(l.labels),
    }
}

/// Runs a lease command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let mut c = ctx.client.leases();
    match cmd {
        Cmd::Ls { quiet, filters } => {
            let resp = c
                .list(pb::ListRequest { filters })
                .await
                .context("list leases")?
                .into_inner();
            let mut rows: Vec<LeaseRow> = resp.leases.into_iter().map(row).collect();
            rows.sort_by(|a, b| a.id.cmp(&b.id));
            if quiet && !ctx.out.json() {
                return ctx.out.lines(rows.iter().map(|r| &r.id));
            }
            ctx.out.list(&rows)
        }
        Cmd::Create {
            id,
            expires,
            labels,
        } => {
            let mut labels = parse_labels(&labels)?;
            if let Some(d) = expires {
                let at = SystemTime::now()
                    .checked_add(d)
                    .ok_or_else(|| Error::Input(format!("--expires {d:?}: too far ahead")))?;
                labels.insert(
                    berth_api::lease::EXPIRE_LABEL.into(),
                    berth_api::lease::format_rfc3339(at),
                );
            }
            let what = match &id {
                Some(id) => format!("create lease {id:?}"),
                None => "create lease".into(),
            };
            let resp = c
                .create(pb::CreateRequest {
                    id: id.unwrap_or_default(),
                    labels: wire_labels(&labels),
                })
                .await
                .context(what)?
                .into_inner();
            let row = row(resp.lease.unwrap_or_default());
            ctx.out.object(&row, |r| format!("{}\n", r.id))
        }
        Cmd::Rm { ids, sync } => {
            for_each(ctx, &ids, |id| {
                let mut c = c.clone();
                let id = id.clone();
                async move {
                    c.delete(pb::DeleteRequest {
                        id: id.clone(),
                        sync,
                    })
                    .await
                    .with_context(|| format!("remove lease {id:?}"))?;
                    Ok(Done::named("id", &id))
                }
            })
            .await
        }
    }
}

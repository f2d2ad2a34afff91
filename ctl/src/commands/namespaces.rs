//! `berthctl namespaces ls|create|rm|label`.

use std::collections::BTreeMap;

use berth_api::services::namespaces::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::labels::{label_paths, parse_labels, wire_labels};
use crate::output::{labels_cell, sorted_labels, Row};

/// Namespace commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// List namespaces
    #[command(visible_alias = "list")]
    Ls {
        /// print names only
        #[arg(short, long)]
        quiet: bool,
        /// containerd filters, e.g. `labels."team"==a` (several: any matches)
        filters: Vec<String>,
    },
    /// Create a namespace with optional labels
    Create {
        /// namespace name
        name: String,
        /// labels as key=value
        labels: Vec<String>,
    },
    /// Remove namespaces (each must be empty)
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// namespace names
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set labels on a namespace (`key=` removes one)
    Label {
        /// namespace name
        name: String,
        /// labels as key=value
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// One namespace, as listed.
#[derive(Debug, Serialize)]
pub struct NamespaceRow {
    /// name
    pub name: String,
    /// labels
    pub labels: BTreeMap<String, String>,
}

impl Row for NamespaceRow {
    fn headers() -> &'static [&'static str] {
        &["NAME", "LABELS"]
    }
    fn cells(&self) -> Vec<String> {
        vec![self.name.clone(), labels_cell(&self.labels)]
    }
}

fn row(ns: pb::Namespace) -> NamespaceRow {
    NamespaceRow {
        name: ns.name,
        labels: sorted_labels(ns.labels),
    }
}

/// Runs a namespace command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let mut c = ctx.client.namespaces();
    match cmd {
        Cmd::Ls { quiet, filters } => {
            // The wire carries one filter string; `,` means and, so
            // alternatives are asked one by one and merged.
            let filters = if filters.is_empty() {
                vec![String::new()]
            } else {
                filters
            };
            let mut all = BTreeMap::new();
            for filter in filters {
                let resp = c
                    .list(pb::ListNamespacesRequest {
                        filter: filter.clone(),
                    })
                    .await
                    .context("list namespaces")?
                    .into_inner();
                for ns in resp.namespaces {
                    all.insert(ns.name.clone(), row(ns));
                }
            }
            let rows: Vec<NamespaceRow> = all.into_values().collect();
            if quiet && !ctx.out.json() {
                return ctx.out.lines(rows.iter().map(|r| &r.name));
            }
            ctx.out.list(&rows)
        }
        Cmd::Create { name, labels } => {
            let labels = parse_labels(&labels)?;
            let resp = c
                .create(pb::CreateNamespaceRequest {
                    namespace: Some(pb::Namespace {
                        name: name.clone(),
                        labels: wire_labels(&labels),
                    }),
                })
                .await
                .with_context(|| format!("create namespace {name:?}"))?
                .into_inner();
            print_one(ctx, resp.namespace)
        }
        Cmd::Rm { names } => {
            for_each(ctx, &names, |name| {
                let mut c = c.clone();
                let name = name.clone();
                async move {
                    c.delete(pb::DeleteNamespaceRequest { name: name.clone() })
                        .await
                        .with_context(|| format!("remove namespace {name:?}"))?;
                    Ok(Done::named("name", &name))
                }
            })
            .await
        }
        Cmd::Label { name, labels } => {
            let labels = parse_labels(&labels)?;
            let resp = c
                .update(pb::UpdateNamespaceRequest {
                    namespace: Some(pb::Namespace {
                        name: name.clone(),
                        labels: wire_labels(&labels),
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: label_paths(&labels),
                    }),
                })
                .await
                .with_context(|| format!("label namespace {name:?}"))?
                .into_inner();
            print_one(ctx, resp.namespace)
        }
    }
}

/// Prints a created or updated namespace: its name, or its JSON object.
fn print_one(ctx: &Ctx, ns: Option<pb::Namespace>) -> Result<()> {
    let row = row(ns.unwrap_or_default());
    ctx.out.object(&row, |r| format!("{}\n", r.name))
}

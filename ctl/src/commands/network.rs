//! `berthctl network create|ls|inspect|rm|prune|connect|disconnect`: berthd's own networks
//! (Docker's bridge driver over CNI).

use berth_api::berth_networks::v1 as pb;
use serde::Serialize;

use super::{for_each, Ctx, Done};
use crate::error::{Result, RpcContext};
use crate::output::{rfc3339, Row};

/// Network commands.
#[derive(Debug, clap::Subcommand)]
pub enum Cmd {
    /// Create a bridge network
    Create {
        /// its subnet (default: a free /24 of berthd's pool)
        #[arg(long)]
        subnet: Option<String>,
        /// its gateway (default: the subnet's first address)
        #[arg(long)]
        gateway: Option<String>,
        /// the bridge device (default: berth-<id>)
        #[arg(long)]
        bridge: Option<String>,
        /// driver: bridge
        #[arg(short = 'd', long, default_value = "bridge")]
        driver: String,
        /// no masquerading of traffic leaving the subnet
        #[arg(long)]
        internal: bool,
        /// a label KEY=VAL (repeatable)
        #[arg(long = "label")]
        labels: Vec<String>,
        /// the network's name
        name: String,
    },
    /// List networks
    #[command(visible_alias = "list")]
    Ls {
        /// names only
        #[arg(short, long)]
        quiet: bool,
        /// name=, id=, driver=, label=KEY[=VAL] (repeatable)
        #[arg(short = 'f', long = "filter")]
        filters: Vec<String>,
    },
    /// Show networks as JSON, with the containers on them
    Inspect {
        /// names or ID prefixes
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container is on one)
    #[command(visible_alias = "remove")]
    Rm {
        /// names or ID prefixes
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every user network no container is on
    Prune,
    /// Connect a container to a network (at once when it runs)
    Connect {
        /// the network
        network: String,
        /// the container: name, ID or ID prefix
        container: String,
    },
    /// Disconnect a container from a network
    Disconnect {
        /// the network
        network: String,
        /// the container: name, ID or ID prefix
        container: String,
    },
}

/// A network as listed.
#[derive(Debug, Serialize)]
struct NetworkRow {
    id: String,
    name: String,
    driver: String,
    subnet: String,
    gateway: String,
    bridge: String,
    created_at: Option<String>,
    containers: Vec<EndpointRow>,
}

#[derive(Debug, Serialize)]
struct EndpointRow {
    id: String,
    name: String,
    namespace: String,
    ip: String,
    ifname: String,
}

impl Row for NetworkRow {
    fn headers() -> &'static [&'static str] {
        &["NETWORK ID", "NAME", "DRIVER", "SUBNET"]
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.id.chars().take(12).collect(),
            self.name.clone(),
            self.driver.clone(),
            self.subnet.clone(),
        ]
    }
}

fn row(n: pb::Network) -> NetworkRow {
    NetworkRow {
        created_at: rfc3339(n.created_at.as_ref()),
        containers: n
            .endpoints
            .into_iter()
            .map(|e| EndpointRow {
                id: e.container_id,
                name: e.container_name,
                namespace: e.namespace,
                ip: e.ip,
                ifname: e.ifname,
            })
            .collect(),
        id: n.id,
        name: n.name,
        driver: n.driver,
        subnet: n.subnet,
        gateway: n.gateway,
        bridge: n.bridge,
    }
}

/// Runs a network command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::Create {
            subnet,
            gateway,
            bridge,
            driver,
            internal,
            labels,
            name,
        } => {
            let n = ctx
                .client
                .networks()
                .create(pb::CreateRequest {
                    name: name.clone(),
                    driver,
                    subnet: subnet.unwrap_or_default(),
                    gateway: gateway.unwrap_or_default(),
                    bridge: bridge.unwrap_or_default(),
                    labels: labels
                        .iter()
                        .map(|l| {
                            let (k, v) = l.split_once('=').unwrap_or((l, ""));
                            (k.to_string(), v.to_string())
                        })
                        .collect(),
                    internal,
                })
                .await
                .with_context(|| format!("create network {name:?}"))?
                .into_inner()
                .network
                .unwrap_or_default();
            let r = row(n);
            ctx.out.object(&r, |r| format!("{}\n", r.id))
        }
        Cmd::Ls { quiet, filters } => {
            let list = ctx
                .client
                .networks()
                .list(pb::ListRequest { filters })
                .await
                .context("list networks")?
                .into_inner()
                .networks;
            if quiet {
                return ctx.out.lines(list.iter().map(|n| n.name.clone()));
            }
            let rows: Vec<NetworkRow> = list.into_iter().map(row).collect();
            ctx.out.list(&rows)
        }
        Cmd::Inspect { names } => {
            let mut rows = Vec::new();
            for name in &names {
                let n = ctx
                    .client
                    .networks()
                    .inspect(pb::InspectRequest { name: name.clone() })
                    .await
                    .with_context(|| format!("inspect network {name:?}"))?
                    .into_inner()
                    .network
                    .unwrap_or_default();
                rows.push(row(n));
            }
            ctx.out.json_value(&rows)
        }
        Cmd::Rm { names } => {
            for_each(ctx, &names, |name| {
                let name = name.clone();
                async move {
                    ctx.client
                        .networks()
                        .remove(pb::RemoveRequest { name: name.clone() })
                        .await
                        .with_context(|| format!("remove network {name:?}"))?;
                    Ok(Done::named("network", &name))
                }
            })
            .await
        }
        Cmd::Connect { network, container } => {
            let r = ctx
                .client
                .networks()
                .connect_container(pb::ConnectRequest {
                    network: network.clone(),
                    container: container.clone(),
                    aliases: vec![],
                })
                .await
                .with_context(|| format!("connect {container:?} to network {network:?}"))?
                .into_inner();
            ctx.out.object(
                &serde_json::json!({"network": network, "container": container, "ip": r.ip}),
                |_| {
                    if r.ip.is_empty() {
                        String::new()
                    } else {
                        format!("{}\n", r.ip)
                    }
                },
            )
        }
        Cmd::Disconnect { network, container } => {
            ctx.client
                .networks()
                .disconnect_container(pb::DisconnectRequest {
                    network: network.clone(),
                    container: container.clone(),
                    force: false,
                })
                .await
                .with_context(|| format!("disconnect {container:?} from network {network:?}"))?;
            Ok(())
        }
        Cmd::Prune => {
            let removed = ctx
                .client
                .networks()
                .prune(pb::PruneRequest::default())
                .await
                .context("prune networks")?
                .into_inner()
                .removed;
            ctx.out.lines(removed)
        }
    }
}

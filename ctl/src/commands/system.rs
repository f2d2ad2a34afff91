//! `system prune`: what Docker's removes, from berthd's services: every
//! stopped container (`berth.containers.v1` Prune), every network no
//! container uses (`berth.networks.v1` Prune), then a synchronous garbage
//! collection, which removes what no image references any more (the
//! blobs and snapshots of images whose tags moved or were removed: the
//! containerd model's "dangling images"). Prints what went and the space
//! the collection gave back.

use std::io::{BufRead, IsTerminal, Write};

use berth_api::berth_containers::v1 as cpb;
use berth_api::berth_networks::v1 as npb;
use berth_api::services::content::v1 as ctpb;
use serde::Serialize;

use super::Ctx;
use crate::error::{Error, Result, RpcContext};
use crate::output::{human_size, write_stdout};

/// `system` commands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Cmd {
    /// Remove stopped containers, unused networks and unreferenced image data
    Prune {
        /// do not ask for confirmation
        #[arg(short = 'f', long)]
        force: bool,
    },
}

/// What `system prune` removed.
#[derive(Debug, Serialize)]
struct Pruned {
    containers: Vec<String>,
    networks: Vec<String>,
    /// blobs the collection removed
    blobs: usize,
    /// their bytes
    reclaimed: i64,
}

/// Every blob's digest and size.
async fn blobs(ctx: &Ctx) -> Result<Vec<(String, i64)>> {
    let mut s = ctx
        .client
        .content()
        .list(ctpb::ListContentRequest { filters: vec![] })
        .await
        .context("list content")?
        .into_inner();
    let mut all = Vec::new();
    while let Some(batch) = s.message().await.context("list content")? {
        all.extend(batch.info.into_iter().map(|i| (i.digest, i.size)));
    }
    Ok(all)
}

fn confirmed() -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Input(
            "system prune: stdin is not a terminal to confirm on; pass -f".into(),
        ));
    }
    eprint!(
        "This removes every stopped container, every network no container uses, \
         and image data no image references.\nAre you sure you want to continue? [y/N] "
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .map_err(|e| Error::io("read the answer", e))?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// Runs a `system` command.
pub async fn run(ctx: &Ctx, cmd: Cmd) -> Result<()> {
    let Cmd::Prune { force } = cmd;
    if !force && !confirmed()? {
        return Ok(());
    }
    // Listed first: what a removal below lets berthd's own collection
    // take counts too.
    let before = blobs(ctx).await?;
    let containers = ctx
        .client
        .engine()
        .prune(cpb::PruneRequest::default())
        .await
        .context("prune containers")?
        .into_inner()
        .removed;
    let networks = ctx
        .client
        .networks()
        .prune(npb::PruneRequest::default())
        .await
        .context("prune networks")?
        .into_inner()
        .removed;
    super::content::gc(ctx).await?;
    let after: std::collections::HashSet<String> =
        blobs(ctx).await?.into_iter().map(|(d, _)| d).collect();
    let gone: Vec<&(String, i64)> = before.iter().filter(|(d, _)| !after.contains(d)).collect();
    let p = Pruned {
        containers,
        networks,
        blobs: gone.len(),
        reclaimed: gone.iter().map(|(_, s)| *s).sum(),
    };
    if ctx.out.json() {
        return ctx.out.json_value(&p);
    }
    let mut s = String::new();
    if !p.containers.is_empty() {
        s.push_str("Deleted Containers:\n");
        for c in &p.containers {
            s.push_str(c);
            s.push('\n');
        }
        s.push('\n');
    }
    if !p.networks.is_empty() {
        s.push_str("Deleted Networks:\n");
        for n in &p.networks {
            s.push_str(n);
            s.push('\n');
        }
        s.push('\n');
    }
    if p.blobs > 0 {
        s.push_str(&format!(
            "Deleted Images: {} unreferenced blobs\n\n",
            p.blobs
        ));
    }
    s.push_str(&format!(
        "Total reclaimed space: {}\n",
        human_size(p.reclaimed)
    ));
    write_stdout(&s)
}

//! Command-line grammar: global flags and the command groups. Each group's
//! own arguments live beside its code in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{
    containers, content, events, images, leases, namespaces, run, snapshots, tasks,
};
use crate::output::Format;

/// berthctl: the admin CLI for berthd (containerd v1 API over a unix socket).
#[derive(Debug, Parser)]
#[command(name = "berthctl", version, about, propagate_version = true)]
pub struct Cli {
    /// berthd's gRPC socket
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = "/run/berth/berthd.sock"
    )]
    pub address: PathBuf,
    /// namespace of every call
    #[arg(
        short = 'n',
        long,
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = berth_api::namespace::DEFAULT
    )]
    pub namespace: String,
    /// output format: aligned tables for people, JSON for scripts
    #[arg(short = 'o', long, global = true, value_enum, default_value = "table")]
    pub output: Format,
    /// what to do
    #[command(subcommand)]
    pub command: Command,
}

/// The command groups.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print client and server versions
    Version,
    /// Manage namespaces
    #[command(subcommand, visible_alias = "ns")]
    Namespaces(namespaces::Cmd),
    /// Manage blobs in the content store
    #[command(subcommand)]
    Content(content::Cmd),
    /// Manage leases (they protect resources from garbage collection)
    #[command(subcommand)]
    Leases(leases::Cmd),
    /// Manage images
    #[command(subcommand, visible_alias = "image")]
    Images(images::Cmd),
    /// Manage snapshots
    #[command(visible_alias = "snapshot")]
    Snapshots(snapshots::Args),
    /// Create a container from an image and run it
    Run(Box<run::RunCmd>),
    /// Manage containers
    #[command(subcommand, visible_alias = "container")]
    Containers(containers::Cmd),
    /// Manage tasks (a container's running processes)
    #[command(subcommand, visible_alias = "task")]
    Tasks(tasks::Cmd),
    /// Follow the daemon's events
    Events(events::Args),
}

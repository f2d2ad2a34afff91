//! Command-line grammar: global flags and the command groups. Each group's
//! own arguments live beside its code in `commands/`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{
    containers, content, engine, engine_run, events, files, images, leases, namespaces, network,
    snapshots, system, tasks, volume,
};
use crate::output::Format;

/// `--version`: the crate version, the commit and the build date.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_COMMIT"),
    ", built ",
    env!("BERTH_BUILD_DATE"),
    ")"
);

/// The admin CLI for berthd, Berth's container supervisor (containerd v1 API over a unix socket).
#[derive(Debug, Parser)]
#[command(name = "berthctl", version = LONG_VERSION, about, propagate_version = true)]
pub struct Cli {
    /// berthd's gRPC socket: a path or unix://PATH
    #[arg(
        long,
        global = true,
        env = "BERTH_ADDRESS",
        default_value = "/run/berth/berthd.sock",
        value_parser = parse_address
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
    /// Run a command in a new container (Docker's shape: run [OPTIONS] IMAGE [COMMAND...])
    Run(Box<engine_run::RunArgs>),
    /// Create a new container without starting it (Docker's shape)
    Create(Box<engine_run::CreateArgs>),
    /// Start stopped containers (a new task on the same container)
    Start {
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop running containers (the stop signal, then SIGKILL after -t)
    Stop(engine::StopArgs),
    /// Restart containers
    Restart(engine::StopArgs),
    /// Send a signal to containers' main processes
    Kill {
        /// the signal, by name or number
        #[arg(short = 's', long, default_value = "SIGKILL")]
        signal: String,
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers (-f: also running ones)
    Rm {
        /// kill a running container first
        #[arg(short = 'f', long)]
        force: bool,
        /// anonymous volumes too
        #[arg(short = 'v', long)]
        volumes: bool,
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Wait for containers to stop; print their exit codes
    Wait {
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers (Docker's shape; `containers ls` lists containerd's records)
    Ps(engine::PsArgs),
    /// Print a container's output
    Logs(engine::LogsArgs),
    /// Attach to a container's output and stdin (detach: Ctrl-P Ctrl-Q)
    Attach(engine_run::AttachArgs),
    /// Run a command in a running container (exits with its exit code)
    Exec(engine_run::ExecArgs),
    /// Freeze every process of containers
    Pause {
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw paused containers
    Unpause {
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Show a container's processes
    Top {
        /// name, ID or ID prefix
        container: String,
    },
    /// Show containers' resource use (CPU, memory, network, block I/O)
    Stats {
        /// one sample, then exit
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// names, IDs or ID prefixes (default: every running one)
        containers: Vec<String>,
    },
    /// Remove every stopped container (Docker's `container prune`)
    Prune {
        /// label=KEY[=VAL], until=DURATION (repeatable)
        #[arg(long = "filter")]
        filters: Vec<String>,
    },
    /// Show containers' configuration and state as JSON
    Inspect {
        /// a Go-template subset over each document ('{{.State.Status}}',
        /// '{{json .Config}}', '{{index .Config.Labels "k"}}'), one line each
        #[arg(short = 'f', long)]
        format: Option<String>,
        /// names, IDs or ID prefixes
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List a container's published ports (or the host side of one)
    Port {
        /// name, ID or ID prefix
        container: String,
        /// PORT[/PROTO]: only this container port
        port: Option<String>,
    },
    /// Manage berthd's networks
    #[command(subcommand)]
    Network(network::Cmd),
    /// Create an image from a container's changes
    Commit(files::CommitArgs),
    /// List the paths a container added (A), changed (C) or deleted (D)
    Diff {
        /// name, ID or ID prefix
        container: String,
    },
    /// Copy between a container and the host: NAME:/PATH DEST, SRC NAME:/PATH ('-': a tar stream)
    Cp {
        /// NAME:/PATH, a host path, or - (a tar on stdin)
        src: String,
        /// NAME:/PATH, a host path, or - (a tar on stdout)
        dst: String,
    },
    /// Manage berthd's volumes
    #[command(subcommand)]
    Volume(volume::Cmd),
    /// Docker's system commands: prune
    #[command(subcommand)]
    System(system::Cmd),
    /// Manage containers
    #[command(subcommand, visible_alias = "container")]
    Containers(containers::Cmd),
    /// Manage tasks (a container's running processes)
    #[command(subcommand, visible_alias = "task")]
    Tasks(tasks::Cmd),
    /// Follow the daemon's events
    Events(events::Args),
    /// Print a shell completion script (bash: `source <(berthctl completion bash)`)
    Completion {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Write berthctl's man pages (berthctl.1, berthctl-GROUP.1, ...) into DIR
    #[command(hide = true)]
    Man {
        /// where to write the pages
        dir: PathBuf,
    },
}

/// berthd's address as ctr takes it: a socket path, or `unix://PATH`.
pub fn parse_address(s: &str) -> Result<PathBuf, String> {
    let path = match s.split_once("://") {
        None => s,
        Some(("unix", path)) => path,
        Some((scheme, _)) => {
            return Err(format!(
                "{scheme}:// addresses are not supported: berthd listens on a unix socket (a path or unix://PATH)"
            ))
        }
    };
    if path.is_empty() {
        return Err("empty socket path".into());
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_ctr_takes_them() {
        assert_eq!(
            parse_address("/run/b.sock").unwrap(),
            PathBuf::from("/run/b.sock")
        );
        assert_eq!(
            parse_address("unix:///run/b.sock").unwrap(),
            PathBuf::from("/run/b.sock")
        );
        assert!(parse_address("tcp://127.0.0.1:1")
            .unwrap_err()
            .contains("tcp://"));
        assert!(parse_address("unix://").is_err());
    }

    #[test]
    fn the_grammar_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}

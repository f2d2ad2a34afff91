//! berthctl: the admin CLI for berthd. A tonic client over the containerd
//! v1 API on berthd's unix socket; every call carries the namespace in the
//! `containerd-namespace` metadata key.
//!
//! Layout, arrows pointing down: `cli` (global flags, command groups) →
//! `commands/` (one module per group: flags in, output out) →
//! `workflows/` (the container workflow the commands share: create,
//! start, exec, attach, remove; plain options, no printing) → `spec`,
//! `resolve` (images in the content store, over berth-api's OCI model), `rootfs`, `ingest` (resumable blob writes) → `client`
//! (connection and typed service clients), `stdio`, `labels`, `output`
//! (tables and JSON), `template` (`--format`) → `error`, `tty`, `progress` (bars on stderr when it
//! is a terminal).

pub mod cli;
pub mod client;
pub mod commands;
pub mod error;
pub mod ingest;
pub mod labels;
pub mod output;
pub mod progress;
pub mod resolve;
pub mod rootfs;
pub mod spec;
pub mod stdio;
pub mod template;
pub mod tty;
pub mod workflows;

use std::process::ExitCode;

pub use cli::{Cli, Command};
pub use error::{Error, Result};

/// Exit status for a failed command (a command line that does not parse
/// exits 2, as clap does).
pub const EXIT_FAILURE: u8 = 1;

/// Runs a parsed command line; returns the process exit status.
pub async fn run(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Completion { shell } => {
            commands::docs::completion(<Cli as clap::CommandFactory>::command(), *shell)?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Man { dir } => {
            let pages = commands::docs::man_pages(<Cli as clap::CommandFactory>::command(), dir)?;
            output::Printer::new(cli.output)
                .lines(pages.iter().map(|p| p.display().to_string()))?;
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    let client = client::Client::connect(&cli.address, &cli.namespace).await?;
    let ctx = commands::Ctx {
        client,
        out: output::Printer::new(cli.output),
    };
    match cli.command {
        Command::Version => commands::version::run(&ctx).await?,
        Command::Namespaces(cmd) => commands::namespaces::run(&ctx, cmd).await?,
        Command::Content(cmd) => commands::content::run(&ctx, cmd).await?,
        Command::Leases(cmd) => commands::leases::run(&ctx, cmd).await?,
        Command::Images(cmd) => commands::images::run(&ctx, cmd).await?,
        Command::Snapshots(args) => commands::snapshots::run(&ctx, args).await?,
        Command::Run(args) => return commands::engine_run::run(&ctx, *args).await,
        Command::Create(args) => commands::engine_run::create(&ctx, *args).await?,
        Command::Start { containers } => commands::engine::start(&ctx, containers).await?,
        Command::Stop(a) => commands::engine::stop(&ctx, a).await?,
        Command::Restart(a) => commands::engine::restart(&ctx, a).await?,
        Command::Kill { signal, containers } => {
            commands::engine::kill(&ctx, signal, containers).await?
        }
        Command::Rm {
            force,
            volumes,
            containers,
        } => commands::engine::rm(&ctx, force, volumes, containers).await?,
        Command::Wait { containers } => commands::engine::wait(&ctx, containers).await?,
        Command::Ps(a) => commands::engine::run_ps(&ctx, a).await?,
        Command::Logs(a) => commands::engine::logs(&ctx, a).await?,
        Command::Attach(a) => return commands::engine_run::attach(&ctx, a).await,
        Command::Exec(a) => return commands::engine_run::exec(&ctx, a).await,
        Command::Pause { containers } => commands::engine::pause(&ctx, true, containers).await?,
        Command::Unpause { containers } => commands::engine::pause(&ctx, false, containers).await?,
        Command::Top { container } => commands::engine::top(&ctx, container).await?,
        Command::Stats {
            no_stream,
            containers,
        } => commands::engine::stats(&ctx, no_stream, containers).await?,
        Command::Prune { filters } => commands::engine::prune(&ctx, filters).await?,
        Command::Inspect { format, containers } => {
            commands::engine::inspect(&ctx, format.as_deref(), containers).await?
        }
        Command::Port { container, port } => {
            commands::engine::port(&ctx, container, port.as_deref()).await?
        }
        Command::Network(cmd) => commands::network::run(&ctx, cmd).await?,
        Command::Volume(cmd) => commands::volume::run(&ctx, cmd).await?,
        Command::Commit(a) => commands::files::commit(&ctx, a).await?,
        Command::Diff { container } => commands::files::diff(&ctx, container).await?,
        Command::Cp { src, dst } => commands::files::cp(&ctx, src, dst).await?,
        Command::System(cmd) => commands::system::run(&ctx, cmd).await?,
        Command::Containers(cmd) => return commands::containers::run(&ctx, cmd).await,
        Command::Tasks(cmd) => return commands::tasks::run(&ctx, cmd).await,
        Command::Events(args) => commands::events::run(&ctx, args).await?,
        Command::Completion { .. } | Command::Man { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

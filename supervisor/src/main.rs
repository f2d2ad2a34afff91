//! `berthd`: flags and config, logging, signals; the daemon itself lives in
//! the library.

use std::path::PathBuf;

use anyhow::Context as _;
use berth_supervisor::config::LogFormat;
use berth_supervisor::{observability, Config, Daemon};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Berth's container supervisor, serving containerd's v1 API.
#[derive(Parser)]
#[command(name = "berthd", version, about)]
struct Cli {
    /// Persistent root: blobs, metadata, snapshots.
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state: shim sockets, bundles, fifos.
    #[arg(long)]
    state: Option<PathBuf>,
    /// gRPC unix socket.
    #[arg(long)]
    address: Option<PathBuf>,
    /// Config file (TOML, same keys as the flags).
    #[arg(long, short = 'c')]
    config: Option<PathBuf>,
    /// Log level or tracing filter.
    #[arg(long)]
    log_level: Option<String>,
    /// Log format.
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the default configuration as TOML.
    Default,
}

fn main() {
    if let Err(e) = real_main() {
        eprintln!("berthd: {e:#}");
        std::process::exit(1);
    }
}

fn real_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Config {
        action: ConfigAction::Default,
    }) = cli.command
    {
        print!("{}", Config::default_toml());
        return Ok(());
    }
    let mut config = Config::load(cli.config.as_deref())?;
    if let Some(v) = cli.root {
        config.root = v;
    }
    if let Some(v) = cli.state {
        config.state = v;
    }
    if let Some(v) = cli.address {
        config.address = v;
    }
    if let Some(v) = cli.log_level {
        config.log_level = v;
    }
    if let Some(v) = cli.log_format {
        config.log_format = v;
    }
    observability::init(&config.log_level, config.log_format)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        Daemon::new(config)
            .run(shutdown)
            .await
            .map_err(anyhow::Error::from)
    })
}

async fn stop_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
    token.cancel();
}

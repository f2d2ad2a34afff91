//! `berthd`: flags and config, logging, signals; the daemon itself lives in
//! the library.
//!
//! Exit status: 0 after a clean stop; 1 when berthd fails while starting
//! or serving; 2 for a command line or a configuration it cannot use (clap's
//! usage errors, a config file that is missing, does not parse or holds a
//! value that cannot work). Every error is printed once, on one line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use berth_supervisor::config::{self, LogFormat};
use berth_supervisor::daemon::Daemon;
use berth_supervisor::systemd::Notifier;
use berth_supervisor::{observability, Config};
use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// `--version`: the crate version, the commit and the build date.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BERTH_COMMIT"),
    ", built ",
    env!("BERTH_BUILD_DATE"),
    ")"
);

/// Berth's container supervisor, serving containerd's v1 API.
#[derive(Parser)]
#[command(name = "berthd", version = LONG_VERSION, about)]
struct Cli {
    /// Config file (TOML; default /etc/berth/config.toml when it exists).
    /// Flags override its keys.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Option<Command>,
}

/// Every config key as a flag (`[grpc] uid` is `--grpc-uid`); a flag
/// given replaces the file's value (for lists and maps, the whole list).
#[derive(clap::Args, Default)]
struct Flags {
    /// Persistent root: blobs, metadata, snapshots [key: root].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state: shim sockets, bundles, fifos [key: state].
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// gRPC unix socket [key: address].
    #[arg(long, value_name = "SOCKET")]
    address: Option<PathBuf>,
    /// error, warn, info, debug or trace for berthd's own crates (the
    /// transport and storage crates stay at info), or a full tracing filter
    /// [key: log_level].
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format [key: log_format].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// Snapshotter used when a client names none [key: default_snapshotter].
    #[arg(long, value_name = "NAME")]
    default_snapshotter: Option<String>,
    /// OCI runtime used when a container names none: runc, crun or a path
    /// [key: runtime_binary].
    #[arg(long, value_name = "BINARY")]
    runtime_binary: Option<String>,
    /// Registry host[:port] reached over plain HTTP; repeatable
    /// [key: insecure_registries].
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Extra CA file for a registry host, HOST=FILE; repeatable
    /// [key: registry_ca_files].
    #[arg(long = "registry-ca", value_name = "HOST=FILE", value_parser = parse_registry_ca)]
    registry_ca_files: Vec<(String, PathBuf)>,
    /// Owner uid of the socket [key: grpc.uid].
    #[arg(long, value_name = "UID")]
    grpc_uid: Option<u32>,
    /// Owner gid of the socket; members of the group may call berthd
    /// [key: grpc.gid].
    #[arg(long, value_name = "GID")]
    grpc_gid: Option<u32>,
    /// Serve Prometheus metrics (/v1/metrics) and /healthz over HTTP on
    /// IP:PORT, e.g. 127.0.0.1:1338; empty: off [key: metrics_address].
    #[arg(long, value_name = "IP:PORT")]
    metrics_address: Option<String>,
    /// Directory of per-registry HOST/hosts.toml files (mirrors, plain
    /// HTTP, CAs) [key: registry_config_path].
    #[arg(long, value_name = "DIR")]
    registry_config_path: Option<PathBuf>,
}

fn parse_registry_ca(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((host, file)) if !host.is_empty() && !file.is_empty() => {
            Ok((host.to_string(), file.into()))
        }
        _ => Err("expected HOST=FILE".into()),
    }
}

impl Flags {
    /// Lays the flags given over `c`. Relative paths are taken from the
    /// current directory.
    fn apply(self, c: &mut Config) -> anyhow::Result<()> {
        let abs = |p: PathBuf| std::path::absolute(&p).with_context(|| p.display().to_string());
        if let Some(v) = self.root {
            c.root = abs(v)?;
        }
        if let Some(v) = self.state {
            c.state = abs(v)?;
        }
        if let Some(v) = self.address {
            c.address = abs(v)?;
        }
        if let Some(v) = self.log_level {
            c.log_level = v;
        }
        if let Some(v) = self.log_format {
            c.log_format = v;
        }
        if let Some(v) = self.default_snapshotter {
            c.default_snapshotter = v;
        }
        if let Some(v) = self.runtime_binary {
            c.runtime_binary = v;
        }
        if !self.insecure_registries.is_empty() {
            c.insecure_registries = self.insecure_registries;
        }
        if !self.registry_ca_files.is_empty() {
            c.registry_ca_files = self
                .registry_ca_files
                .into_iter()
                .collect::<BTreeMap<_, _>>();
        }
        if let Some(v) = self.grpc_uid {
            c.grpc.uid = v;
        }
        if let Some(v) = self.grpc_gid {
            c.grpc.gid = v;
        }
        if let Some(v) = self.metrics_address {
            c.metrics_address = v;
        }
        if let Some(v) = self.registry_config_path {
            c.registry_config_path = v;
        }
        Ok(())
    }
}

#[derive(Subcommand)]
enum Command {
    /// Configuration helpers.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Write the berthd(8) man page into DIR (for packaging).
    #[command(hide = true)]
    Man {
        /// where to write berthd.8
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the default configuration as TOML.
    Default,
    /// Check a config file without starting: every key known, every value
    /// usable. Prints "FILE: ok", or the first problem and exits 2.
    Check {
        /// the config file
        file: PathBuf,
    },
}

/// Why berthd stops with an error, and so its exit status.
enum Failure {
    /// The command line or the configuration cannot be used (exit 2).
    Config(String),
    /// Start-up or serving failed (exit 1).
    Run(anyhow::Error),
}

impl From<config::Error> for Failure {
    fn from(e: config::Error) -> Self {
        Self::Config(e.to_string())
    }
}

impl From<observability::Error> for Failure {
    fn from(e: observability::Error) -> Self {
        match e {
            observability::Error::Filter { .. } => Self::Config(e.to_string()),
            other => Self::Run(other.into()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::Run(e)
    }
}

fn main() -> ExitCode {
    // Usage errors print whole (with clap's hints) and exit 2.
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(msg)) => {
            eprintln!("berthd: {msg}");
            ExitCode::from(2)
        }
        Err(Failure::Run(e)) => {
            eprintln!("berthd: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

fn real_main(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Some(Command::Config {
            action: ConfigAction::Default,
        }) => {
            print!("{}", Config::default_toml());
            return Ok(());
        }
        Some(Command::Config {
            action: ConfigAction::Check { file },
        }) => {
            let config = Config::load(Some(&file))?;
            check(&config, Some(&file))?;
            println!("{}: ok", file.display());
            return Ok(());
        }
        Some(Command::Man { dir }) => {
            let page = write_man_page(&dir)
                .with_context(|| format!("writing the man page into {}", dir.display()))?;
            println!("{}", page.display());
            return Ok(());
        }
        None => {}
    }
    let mut config = Config::load(cli.config.as_deref())?;
    cli.flags.apply(&mut config)?;
    check(&config, cli.config.as_deref())?;
    // Before any thread: takes NOTIFY_SOCKET and the watchdog variables
    // out of the environment, so shims and runc never inherit them.
    let notifier = Notifier::from_env();
    observability::init(&config.log_level, config.log_format)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        Daemon::new(config)
            .notifier(notifier)
            .run(shutdown)
            .await
            .map_err(anyhow::Error::from)
    });
    // A blocking call stuck in the kernel or in a wedged library (a
    // write to a full disk) must not keep berthd from exiting: dropping
    // the runtime would wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result?;
    Ok(())
}

/// Everything a configuration must pass before berthd starts on it;
/// `file` names where the values came from.
fn check(config: &Config, file: Option<&Path>) -> Result<(), Failure> {
    config.validate().map_err(|e| match file {
        Some(f) => config::in_file(e, f),
        None => e,
    })?;
    observability::filter(&config.log_level)?;
    Ok(())
}

/// Writes `DIR/berthd.8`; returns its path.
fn write_man_page(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let man = clap_mangen::Man::new(Cli::command())
        .section("8")
        .date(env!("BERTH_BUILD_DATE"))
        .source(concat!("Berth ", env!("CARGO_PKG_VERSION")))
        .manual("System Administration");
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    let path = dir.join("berthd.8");
    std::fs::write(&path, buf)?;
    Ok(path)
}

/// An error and its causes on one line, each message once (a cause whose
/// text the line already holds is not repeated).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if out.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
    }
    out.replace('\n', " ")
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key `berthd config default` prints has a flag, so a key added
    /// to the config without one fails here.
    #[test]
    fn every_config_key_is_a_flag() {
        let doc: toml::Table = toml::from_str(&Config::default_toml()).unwrap();
        let mut keys = Vec::new();
        for (k, v) in &doc {
            match v {
                toml::Value::Table(t) if k != "registry_ca_files" => {
                    keys.extend(t.keys().map(|sub| format!("{k}.{sub}")))
                }
                _ => keys.push(k.clone()),
            }
        }
        let cmd = Cli::command();
        // The [cri] and [network] tables are file-only, as the README says.
        let readme = include_str!("../../README.md");
        for key in keys {
            if let Some(sub) = key
                .strip_prefix("cri.")
                .or_else(|| key.strip_prefix("network."))
            {
                assert!(
                    readme.contains(&format!("`{sub}`")),
                    "file-only key {key} is not named in the README"
                );
                continue;
            }
            // A flag's id is its field name: the key with `_` for `.`.
            let id = key.replace('.', "_");
            assert!(
                cmd.get_arguments().any(|a| a.get_id() == id.as_str()),
                "config key {key} has no flag"
            );
        }
    }

    #[test]
    fn flags_override_the_file() {
        let cli = Cli::try_parse_from([
            "berthd",
            "--root",
            "/r",
            "--insecure-registry",
            "a:5000",
            "--registry-ca",
            "b:443=/ca.pem",
            "--grpc-gid",
            "42",
        ])
        .unwrap();
        let mut c = Config::default();
        cli.flags.apply(&mut c).unwrap();
        assert_eq!(c.root, PathBuf::from("/r"));
        assert_eq!(c.insecure_registries, vec!["a:5000"]);
        assert_eq!(c.registry_ca_files["b:443"], PathBuf::from("/ca.pem"));
        assert_eq!((c.grpc.uid, c.grpc.gid), (0, 42));
        assert!(Cli::try_parse_from(["berthd", "--registry-ca", "nofile"]).is_err());
    }

    #[test]
    fn one_line_skips_repeated_causes() {
        let e = anyhow::Error::from(std::io::Error::other("disk gone"))
            .context("opening root: disk gone");
        assert_eq!(one_line(&e), "opening root: disk gone");
    }
}

//! `berth-shim start --namespace NS --id ID --bundle DIR --address SOCK
//! [--runtime runc] [--socket-dir DIR]` prints the shim's address and exits;
//! `serve` (hidden) is the long-lived shim it starts; `delete` cleans up
//! after a shim that died (runtime delete --force, unmount, socket).

use std::path::PathBuf;
use std::process::ExitCode;

use berth_shim::daemon::{self, Args};

const USAGE: &str = "usage: berth-shim start --namespace NS --id ID --bundle DIR --address BERTHD_SOCKET [--runtime BINARY] [--socket-dir DIR]
       berth-shim delete --namespace NS --id ID --bundle DIR [--runtime BINARY] [--socket-dir DIR]";

fn parse(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        runtime: "runc".into(),
        socket_dir: PathBuf::from("/run/berth/s"),
        ..Default::default()
    };
    while let Some(flag) = it.next() {
        let name = flag.trim_start_matches('-').to_string();
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (name, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{flag}: missing value"))
        };
        match name.as_str() {
            "namespace" => a.namespace = value()?,
            "id" => a.id = value()?,
            "bundle" => a.bundle = PathBuf::from(value()?),
            "address" => a.address = value()?,
            "runtime" => a.runtime = value()?,
            "socket-dir" => a.socket_dir = PathBuf::from(value()?),
            "socket" => a.socket = Some(PathBuf::from(value()?)),
            "listen-fd" => {
                let v = value()?;
                a.listen_fd = Some(v.parse().map_err(|_| format!("{flag}: not an fd: {v}"))?)
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let cmd = args.next().unwrap_or_default();
    let parsed = match cmd.as_str() {
        "start" | "serve" | "delete" => parse(args),
        "--version" | "version" => {
            println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => Err(USAGE.to_string()),
    };
    let args = match parsed {
        Ok(a) => a,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return ExitCode::from(2);
        }
    };
    let res = if cmd == "start" {
        daemon::start(&args).map(|address| println!("{address}"))
    } else if cmd == "delete" {
        daemon::delete(&args)
    } else {
        init_logging(&args);
        daemon::serve(&args)
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth-shim {cmd}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr (the bundle's shim.log); `BERTH_SHIM_LOG` filters.
fn init_logging(args: &Args) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BERTH_SHIM_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    tracing::info!(namespace = %args.namespace, id = %args.id, "berth-shim {}", env!("CARGO_PKG_VERSION"));
}

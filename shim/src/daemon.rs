//! `berth-shim start` (the short-lived launcher) and `berth-shim serve` (the
//! long-lived shim it re-executes, detached).
//!
//! `start` is idempotent: when a shim already answers on the bundle's
//! socket, its address is printed and nothing is started. Otherwise it
//! runs the same binary as `serve` in a new session with stdin on
//! `/dev/null`, stdout/stderr appended to `<bundle>/shim.log` and every
//! other inherited fd closed on exec but the socket, which `start` binds
//! and hands over listening (`--listen-fd`); writes `<bundle>/shim.pid` and
//! `<bundle>/address`; prints `unix://<socket>` and exits 0. berthd can
//! connect at once: its first call waits in the socket's backlog while the
//! shim starts, instead of `start` polling for it. The serve process is
//! then re-parented away from berthd.
//!
//! The socket is `<bundle>/shim.sock` when that fits in `sun_path`;
//! otherwise `<socket dir>/<hash of the bundle path>.sock`, the socket dir
//! defaulting to `/run/berth/s` (`--socket-dir`).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::bundle::{self, write_file, Bundle};
use crate::reaper::Reaper;
use crate::service::ShimService;
use crate::sys;
use crate::task::Task;

/// Flags shared by `start` and `serve`.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// containerd namespace
    pub namespace: String,
    /// container id
    pub id: String,
    /// bundle directory (absolute)
    pub bundle: PathBuf,
    /// berthd's address (recorded; the shim uses the pull model)
    pub address: String,
    /// default OCI runtime binary
    pub runtime: String,
    /// where long socket paths go
    pub socket_dir: PathBuf,
    /// serve only: the socket to bind
    pub socket: Option<PathBuf>,
    /// serve only: the socket already bound and listening, inherited
    pub listen_fd: Option<i32>,
}

/// `sun_path` is 108 bytes including the NUL.
const SUN_PATH_MAX: usize = 107;

/// The socket path for a bundle (see the module docs).
pub fn socket_path(bundle: &Path, socket_dir: &Path) -> PathBuf {
    let p = bundle.join("shim.sock");
    if p.as_os_str().len() <= SUN_PATH_MAX {
        return p;
    }
    // FNV-1a: stable, dependency-free.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bundle.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    socket_dir.join(format!("{h:016x}.sock"))
}

fn validate(args: &Args) -> Result<(), String> {
    berth_api::identifiers::validate("namespace", &args.namespace).map_err(|e| e.to_string())?;
    berth_api::identifiers::validate("id", &args.id).map_err(|e| e.to_string())?;
    if !args.bundle.is_absolute() {
        return Err(format!(
            "bundle: {} is not an absolute path",
            args.bundle.display()
        ));
    }
    if !args.bundle.is_dir() {
        return Err(format!(
            "bundle: {} is not a directory",
            args.bundle.display()
        ));
    }
    Ok(())
}

/// `berth-shim start`: see the module docs. Returns the address printed.
pub fn start(args: &Args) -> Result<String, String> {
    validate(args)?;
    let socket = socket_path(&args.bundle, &args.socket_dir);
    if let Some(dir) = socket.parent() {
        bundle::create_dirs(dir).map_err(|e| format!("socket dir {}: {e}", dir.display()))?;
    }
    let address = format!("unix://{}", socket.display());
    if UnixStream::connect(&socket).is_ok() {
        // A shim already serves this bundle: hand out its address rather
        // than unlinking its socket.
        return Ok(address);
    }
    let log_path = Bundle::new(&args.bundle).shim_log();
    let log =
        bundle::open_append(&log_path).map_err(|e| format!("open {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let _ = std::fs::remove_file(&socket);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| format!("bind {}: {e}", socket.display()))?;
    bundle::make_private(&socket).map_err(|e| format!("chmod {}: {e}", socket.display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg("--namespace")
        .arg(&args.namespace)
        .arg("--id")
        .arg(&args.id)
        .arg("--bundle")
        .arg(&args.bundle)
        .arg("--address")
        .arg(&args.address)
        .arg("--runtime")
        .arg(&args.runtime)
        .arg("--socket")
        .arg(&socket)
        .arg("--listen-fd")
        .arg(listener.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .current_dir(&args.bundle);
    sys::detach_on_exec(&mut cmd);
    sys::keep_fd_on_exec(&mut cmd, listener.as_raw_fd());
    let child = cmd.spawn().map_err(|e| {
        let _ = std::fs::remove_file(&socket);
        format!("spawn shim: {e}")
    })?;
    let pid = child.id();
    let write = |name: &str, data: &str| {
        let p = args.bundle.join(name);
        write_file(&p, data.as_bytes()).map_err(|e| format!("write {}: {e}", p.display()))
    };
    write("shim.pid", &pid.to_string())?;
    write("address", &address)?;
    Ok(address)
}

/// `berth-shim delete`: cleans up after a shim that is gone (berthd calls
/// it on recovery): `runtime delete --force`, unmount `<bundle>/rootfs`,
/// remove the shim's socket. The runtime recorded at create time
/// (`shim-runtime.json`) wins over `--runtime`. Idempotent.
pub fn delete(args: &Args) -> Result<(), String> {
    validate(args)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(async {
        let reaper = Arc::new(Reaper::default());
        reaper.start().map_err(|e| format!("sigchld: {e}"))?;
        let runtime =
            crate::runtime::Runtime::load(&args.bundle, reaper.clone()).unwrap_or_else(|| {
                crate::runtime::Runtime::new(&args.runtime, None, &args.bundle, reaper)
            });
        if let Err(e) = runtime.delete(&args.id, true).await {
            // Nothing to delete is fine; anything else is reported.
            let msg = e.to_string();
            if !msg.contains("does not exist")
                && !msg.contains("not found")
                && !msg.contains("No such file")
            {
                return Err(msg);
            }
        }
        Ok::<(), String>(())
    })?;
    berth_snapshotter::mount::unmount(&args.bundle.join("rootfs")).map_err(|e| e.to_string())?;
    let socket = socket_path(&args.bundle, &args.socket_dir);
    let _ = std::fs::remove_file(socket);
    Ok(())
}

/// `berth-shim serve`: becomes a child subreaper and serves berth.shim.v1
/// on a single-threaded runtime until the task is deleted (and its events
/// acknowledged) or Shutdown is called.
pub fn serve(args: &Args) -> Result<(), String> {
    validate(args)?;
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(|| socket_path(&args.bundle, &args.socket_dir));
    nix::sys::prctl::set_child_subreaper(true).map_err(|e| format!("subreaper: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let res = rt.block_on(async {
        let reaper = Arc::new(Reaper::default());
        reaper.start().map_err(|e| format!("sigchld: {e}"))?;
        let listener = match args.listen_fd {
            Some(fd) => sys::inherited_listener(fd)
                .and_then(UnixListener::from_std)
                .map_err(|e| format!("inherited socket (fd {fd}): {e}"))?,
            None => {
                let _ = std::fs::remove_file(&socket);
                let l = UnixListener::bind(&socket)
                    .map_err(|e| format!("bind {}: {e}", socket.display()))?;
                bundle::make_private(&socket)
                    .map_err(|e| format!("chmod {}: {e}", socket.display()))?;
                l
            }
        };
        let task = Task::new(
            &args.namespace,
            &args.id,
            &args.bundle,
            &args.runtime,
            reaper,
        );
        tracing::info!(pid = std::process::id(), socket = %socket.display(), "shim serving");
        let mut exit = task.exit_signal();
        let mut exit2 = task.exit_signal();
        let server = tonic::transport::Server::builder()
            .add_service(berth_api::shim::v1::shim_server::ShimServer::new(
                ShimService::new(task),
            ))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = exit.wait_for(|x| *x).await;
            });
        tokio::select! {
            r = server => r.map_err(|e| format!("serve: {e}")),
            _ = async {
                let _ = exit2.wait_for(|x| *x).await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            } => Ok(()),
        }
    });
    let _ = std::fs::remove_file(&socket);
    let _ = std::io::stderr().flush();
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_bundles_get_a_short_socket() {
        let dir = Path::new("/run/berth/s");
        assert_eq!(
            socket_path(Path::new("/run/berth/b/ns/c1"), dir),
            Path::new("/run/berth/b/ns/c1/shim.sock")
        );
        let long = PathBuf::from(format!("/run/berth/{}", "x".repeat(120)));
        let s = socket_path(&long, dir);
        assert!(
            s.starts_with(dir) && s.as_os_str().len() <= SUN_PATH_MAX,
            "{}",
            s.display()
        );
        assert_eq!(s, socket_path(&long, dir), "stable");
    }
}

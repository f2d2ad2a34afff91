//! Launching berth-shim and talking to it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_api::shim::v1::shim_client::ShimClient;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::Error;

/// A connected shim client (cheap to clone; calls multiplex on one
/// connection).
pub type Client = ShimClient<Channel>;

/// berth-shim: next to our own executable, else on PATH.
pub fn shim_binary() -> PathBuf {
    if let Ok(exe) = std::env::current_exe() {
        if let Some(dir) = exe.parent() {
            let p = dir.join("berth-shim");
            if p.exists() {
                return p;
            }
        }
    }
    PathBuf::from("berth-shim")
}

/// Resolves a runtime binary name or path; None when it is nowhere.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// What `berth-shim start` needs.
pub struct LaunchArgs<'a> {
    /// namespace
    pub namespace: &'a str,
    /// container id
    pub id: &'a str,
    /// bundle directory
    pub bundle: &'a Path,
    /// berthd's socket
    pub address: &'a Path,
    /// the OCI runtime binary
    pub runtime: &'a str,
    /// where sockets too long for the bundle go
    pub socket_dir: &'a Path,
}

/// Runs `berth-shim start …`, which daemonises the shim and prints its
/// address; returns that address (`unix://…`).
pub async fn launch(a: &LaunchArgs<'_>) -> Result<String, Error> {
    let bin = shim_binary();
    let out = tokio::process::Command::new(&bin)
        .arg("start")
        .arg("--namespace")
        .arg(a.namespace)
        .arg("--id")
        .arg(a.id)
        .arg("--bundle")
        .arg(a.bundle)
        .arg("--address")
        .arg(a.address)
        .arg("--runtime")
        .arg(a.runtime)
        .arg("--socket-dir")
        .arg(a.socket_dir)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| Error::Launch(format!("running {}: {e}", bin.display())))?;
    if !out.status.success() {
        return Err(Error::Launch(format!(
            "{} start exited with {}: {}",
            bin.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !address.starts_with("unix://") {
        return Err(Error::Launch(format!(
            "berth-shim printed {address:?}, not a unix:// address"
        )));
    }
    Ok(address)
}

/// Connects to a shim's `unix://` address.
pub async fn connect(address: &str) -> Result<Client, Error> {
    let path = PathBuf::from(
        address
            .strip_prefix("unix://")
            .ok_or_else(|| Error::Launch(format!("shim address {address:?} is not unix://")))?,
    );
    let channel = Endpoint::from_static("http://[::]:0")
        .connect_timeout(Duration::from_secs(5))
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        }))
        .await
        .map_err(|e| Error::Launch(format!("connecting to shim at {address}: {e}")))?;
    Ok(ShimClient::new(channel))
}

/// A client that never connects, for tasks whose shim is dead (every
/// call fails with Unavailable).
pub fn connect_dead() -> Client {
    let channel = Endpoint::from_static("http://[::]:0").connect_with_connector_lazy(
        tower::service_fn(|_: Uri| async {
            Err::<TokioIo<tokio::net::UnixStream>, _>(std::io::Error::other("the shim is dead"))
        }),
    );
    ShimClient::new(channel)
}

/// Whether `pid` is a live (non-zombie) process.
pub fn pid_alive(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the last ')' (the command name may hold one).
    match stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.trim_start().chars().next())
    {
        Some('Z') | Some('X') | None => false,
        Some(_) => true,
    }
}

/// Reads `<bundle>/shim.pid`.
pub fn read_shim_pid(bundle: &Path) -> Option<u32> {
    std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SIGKILLs a shim we launched (only after a failed Create or a shim that
/// will not exit after Delete), then waits briefly for it to go.
pub async fn kill(pid: u32) {
    if pid == 0 || !pid_alive(pid) {
        return;
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    for _ in 0..100 {
        if !pid_alive(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits up to `limit` for `pid` to exit; true when it did.
pub async fn wait_gone(pid: u32, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while pid_alive(pid) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_and_lookup() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(0));
        assert!(!pid_alive(u32::MAX - 1));
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-berth").is_none());
        assert!(find_binary("/nonexistent/runc").is_none());
    }
}

//! The seam to berth-shim: launching it, connecting to it, and turning
//! its answers into the domain's types ([`Process`], [`Error`]). Only this
//! file knows the shim speaks gRPC; the rest of `tasks` sees a [`Client`]
//! whose calls end in [`outcome`].

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_api::shim::v1 as sp;
use berth_api::shim::v1::shim_client::ShimClient;
use berth_api::ErrorKind;
use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint, Uri};

use super::error::Error;
use super::process::{Exit, Process, ProcessInfo, Status};

/// A connected shim client (cheap to clone; calls multiplex on one
/// connection).
pub(super) type Client = ShimClient<Channel>;

/// What a shim call answers.
pub(super) type Reply<T> = Result<tonic::Response<T>, tonic::Status>;

/// A shim call that failed: what the shim said, and whether the
/// connection itself broke (the shim may be gone).
#[derive(Debug)]
pub(super) struct Failure {
    /// the transport failed or the call was cut off
    pub(super) broken: bool,
    /// the shim's code as a kind
    pub(super) kind: ErrorKind,
    /// its message
    pub(super) message: String,
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        Error::Shim {
            kind: f.kind,
            message: f.message,
        }
    }
}

/// The answer of a shim call, or why it failed.
pub(super) fn outcome<T>(reply: Reply<T>) -> Result<T, Failure> {
    reply.map(tonic::Response::into_inner).map_err(|e| {
        use std::error::Error as _;
        Failure {
            broken: e.source().is_some()
                || matches!(e.code(), tonic::Code::Unavailable | tonic::Code::Cancelled),
            kind: ErrorKind::from_code(e.code()),
            message: e.message().to_string(),
        }
    })
}

/// A status as the shim reports it (containerd's task status numbers).
fn status(s: i32) -> Status {
    use berth_api::task_types::Status as W;
    match W::try_from(s) {
        Ok(W::Created) => Status::Created,
        Ok(W::Running) => Status::Running,
        Ok(W::Paused) => Status::Paused,
        Ok(W::Pausing) => Status::Pausing,
        Ok(W::Stopped) => Status::Stopped,
        _ => Status::Unknown,
    }
}

/// A time the shim sent; None when absent or before the epoch.
pub(super) fn time(t: Option<prost_types::Timestamp>) -> Option<SystemTime> {
    t.and_then(|t| SystemTime::try_from(t).ok())
}

/// An exit the shim reported (now when it sent no time).
pub(super) fn exit(status: u32, at: Option<prost_types::Timestamp>) -> Exit {
    Exit {
        status,
        at: time(at).unwrap_or_else(SystemTime::now),
    }
}

/// A process of `container_id` as the shim reports it.
pub(super) fn process(container_id: &str, s: sp::StateResponse) -> Process {
    Process {
        container_id: container_id.to_string(),
        exec_id: s.exec_id,
        pid: s.pid,
        status: status(s.status),
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        exit_status: s.exit_status,
        exited_at: time(s.exited_at),
    }
}

/// Rootfs mounts as the shim takes them.
pub(super) fn wire_mounts(mounts: Vec<berth_snapshotter::Mount>) -> Vec<berth_api::types::Mount> {
    mounts
        .into_iter()
        .map(|m| berth_api::types::Mount {
            r#type: m.kind,
            source: m.source,
            target: m.target,
            options: m.options,
        })
        .collect()
}

/// The processes `ps` lists, as the shim reports them.
pub(super) fn process_infos(r: sp::PidsResponse) -> Vec<ProcessInfo> {
    r.processes
        .into_iter()
        .map(|p| ProcessInfo {
            pid: p.pid,
            info: p.info,
        })
        .collect()
}

/// berth-shim: next to our own executable, else on PATH.
pub(super) fn shim_binary() -> PathBuf {
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

/// What `berth-shim start` needs.
pub(super) struct LaunchArgs<'a> {
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
pub(super) async fn launch(a: &LaunchArgs<'_>) -> Result<String, Error> {
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
pub(super) async fn connect(address: &str) -> Result<Client, Error> {
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
pub(super) fn connect_dead() -> Client {
    let channel = Endpoint::from_static("http://[::]:0").connect_with_connector_lazy(
        tower::service_fn(|_: Uri| async {
            Err::<TokioIo<tokio::net::UnixStream>, _>(std::io::Error::other("the shim is dead"))
        }),
    );
    ShimClient::new(channel)
}

/// Whether `pid` is a live (non-zombie) process.
pub(super) fn pid_alive(pid: u32) -> bool {
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
pub(super) fn read_shim_pid(bundle: &Path) -> Option<u32> {
    std::fs::read_to_string(bundle.join("shim.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// SIGKILLs a shim we launched (only after a failed Create or a shim that
/// will not exit after Delete), then waits briefly for it to go.
pub(super) async fn kill(pid: u32) {
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
pub(super) async fn wait_gone(pid: u32, limit: Duration) -> bool {
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
    }

    #[test]
    fn statuses_and_failures_become_domain_values() {
        use berth_api::task_types::Status as W;
        assert_eq!(status(W::Created as i32), Status::Created);
        assert_eq!(status(W::Paused as i32), Status::Paused);
        assert_eq!(status(W::Stopped as i32), Status::Stopped);
        assert_eq!(status(99), Status::Unknown);
        let f = outcome::<()>(Err(tonic::Status::failed_precondition("not running"))).unwrap_err();
        assert!(!f.broken);
        assert_eq!(f.kind, ErrorKind::FailedPrecondition);
        let e = Error::from(f);
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        assert_eq!(e.to_string(), "not running");
        assert!(
            outcome::<()>(Err(tonic::Status::unavailable("gone")))
                .unwrap_err()
                .broken
        );
    }
}

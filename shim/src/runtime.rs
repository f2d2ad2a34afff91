//! Drives an OCI runtime through its command line: `runc` by default, `crun`
//! or any runc-compatible binary. Global flags: `--root` (when the client's
//! runc options set one), `--log <bundle>/log.json --log-format json` so
//! errors of `create`/`exec` (whose stdio belongs to the container) can be
//! read back. cgroups are managed by the cgroupfs driver (no systemd here).
//!
//! Every invocation is spawned through the [`Reaper`], never waited on by
//! std or tokio.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;

use crate::reaper::Reaper;
use crate::sys;

/// What went wrong running the runtime.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// the binary could not be started
    #[error("runtime binary {binary:?}: {source}")]
    Spawn {
        /// the binary
        binary: String,
        /// why
        source: std::io::Error,
    },
    /// the runtime ran and failed
    #[error("{binary} {op} failed (exit status {status}): {message}")]
    Failed {
        /// the binary
        binary: String,
        /// the subcommand
        op: &'static str,
        /// its exit status
        status: u32,
        /// its error output
        message: String,
    },
    /// the runtime does not know the container (any more): it was never
    /// created, or deleted behind the shim's back (`runc delete --force`)
    #[error("{binary} {op}: the container does not exist: {message}")]
    Gone {
        /// the binary
        binary: String,
        /// the subcommand
        op: &'static str,
        /// its error output
        message: String,
    },
    /// talking to the runtime's pipes failed
    #[error("{op}: {source}")]
    Io {
        /// the subcommand
        op: &'static str,
        /// why
        source: std::io::Error,
    },
}

/// `binary` as a path: itself when it has a `/`, else the first match on
/// PATH (as exec would find it).
fn resolve(binary: &str) -> Option<PathBuf> {
    if binary.contains('/') {
        return Some(PathBuf::from(binary));
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(binary))
        .find(|p| p.is_file())
}

/// Where [`Runtime::save`] records the runtime in the bundle.
pub const RUNTIME_FILE: &str = "shim-runtime.json";

/// The container's stdio as handed to `create`/`exec`.
pub struct ChildStdio {
    /// fd 0
    pub stdin: OwnedFd,
    /// fd 1
    pub stdout: OwnedFd,
    /// fd 2
    pub stderr: OwnedFd,
}

/// A runc-compatible runtime for one container.
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: String,
    root: Option<String>,
    log: PathBuf,
    private_cgroup_view: bool,
    /// crun: run it from a sealed copy (see [`Runtime::command`])
    sealed_exe: bool,
    reaper: Arc<Reaper>,
}

/// A runtime command line, and the sealed copy of the binary it executes
/// (when it runs from one), which must stay open until it is spawned.
struct Invocation {
    cmd: Command,
    _exe: Option<OwnedFd>,
}

impl Runtime {
    /// `binary` is a name looked up in PATH or a path; `root` is runc's
    /// `--root`. crun (by file name) runs in a private mount namespace,
    /// see [`sys::private_cgroup_view_on_exec`].
    pub fn new(binary: &str, root: Option<String>, bundle: &Path, reaper: Arc<Reaper>) -> Self {
        let base = Path::new(binary)
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(binary);
        let hybrid = Path::new("/sys/fs/cgroup/unified").exists();
        let log = crate::bundle::Bundle::new(bundle).runtime_log();
        // The runtime would create its log 0644; it appends to ours.
        if let Err(e) = crate::bundle::open_append(&log) {
            tracing::debug!(log = %log.display(), error = %e, "runtime log not created");
        }
        Self {
            binary: binary.to_string(),
            root,
            log,
            private_cgroup_view: base == "crun" && hybrid,
            sealed_exe: base == "crun",
            reaper,
        }
    }

    /// The binary as configured.
    pub fn binary(&self) -> &str {
        &self.binary
    }

    /// Records binary and root in `<bundle>/shim-runtime.json` (berthd owns `runtime.json`), so that
    /// `berth-shim delete` can clean up after a shim that died.
    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let v = serde_json::json!({ "binary": self.binary, "root": self.root });
        crate::bundle::write_file(&bundle.join(RUNTIME_FILE), v.to_string().as_bytes())
    }

    /// The runtime recorded by [`Runtime::save`], if any.
    pub fn load(bundle: &Path, reaper: Arc<Reaper>) -> Option<Self> {
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join(RUNTIME_FILE)).ok()?).ok()?;
        let binary = v.get("binary")?.as_str()?;
        let root = v.get("root").and_then(|r| r.as_str()).map(str::to_string);
        Some(Self::new(binary, root, bundle, reaper))
    }

    /// The runtime's command line. crun protects the host binary from a
    /// container (CVE-2019-5736) by copying itself and re-executing on every
    /// call, about 2 ms here, unless it already runs from a sealed memfd;
    /// so it is given one: a sealed copy made for the call (a read of a few
    /// hundred KiB), executed through `/proc/self/fd`. The protection is the
    /// same. Where the copy cannot be made, crun runs from its path.
    fn command(&self, args: &[&str]) -> Invocation {
        let exe = if self.sealed_exe {
            resolve(&self.binary).and_then(|p| match sys::sealed_copy(&p) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    tracing::debug!(binary = %p.display(), error = %e, "no sealed copy; running from the path");
                    None
                }
            })
        } else {
            None
        };
        let mut cmd = match &exe {
            Some(fd) => {
                let mut c = Command::new(format!("/proc/self/fd/{}", fd.as_raw_fd()));
                c.arg0(&self.binary);
                c
            }
            None => Command::new(&self.binary),
        };
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        cmd.arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        cmd.args(args);
        if self.private_cgroup_view {
            sys::private_cgroup_view_on_exec(&mut cmd);
        }
        Invocation { cmd, _exe: exe }
    }

    /// `create --bundle B --pid-file P [--console-socket S] ID` with the
    /// container's stdio.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<(), RuntimeError> {
        let mut inv = self.command(&["create", "--bundle"]);
        inv.cmd.arg(bundle).arg("--pid-file").arg(pid_file);
        if let Some(c) = console {
            inv.cmd.arg("--console-socket").arg(c);
        }
        inv.cmd.arg(id);
        self.run_with_stdio("create", inv, stdio).await
    }

    /// `exec --detach --process F --pid-file P [--console-socket S] ID`.
    pub async fn exec(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<(), RuntimeError> {
        let mut inv = self.command(&["exec", "--detach", "--process"]);
        inv.cmd.arg(process_file).arg("--pid-file").arg(pid_file);
        if let Some(c) = console {
            inv.cmd.arg("--console-socket").arg(c);
        }
        inv.cmd.arg(id);
        self.run_with_stdio("exec", inv, stdio).await
    }

    /// `start ID`
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", &["start", id], None).await.map(drop)
    }

    /// `kill [--all] ID SIGNAL`
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run("kill", &args, None).await.map(drop)
    }

    /// `delete [--force] ID`
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let args: &[&str] = if force {
            &["delete", "--force", id]
        } else {
            &["delete", id]
        };
        self.run("delete", args, None).await.map(drop)
    }

    /// `pause ID`
    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("pause", &["pause", id], None).await.map(drop)
    }

    /// `resume ID`
    pub async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("resume", &["resume", id], None).await.map(drop)
    }

    /// `ps --format json ID`: the container's pids.
    pub async fn ps(&self, id: &str) -> Result<Vec<u32>, RuntimeError> {
        let out = self
            .run("ps", &["ps", "--format", "json", id], None)
            .await?;
        let text = String::from_utf8_lossy(&out);
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(trimmed).map_err(|e| RuntimeError::Failed {
            binary: self.binary.clone(),
            op: "ps",
            status: 0,
            message: format!("unparsable output {trimmed:?}: {e}"),
        })
    }

    /// `update --resources - ID` with an OCI LinuxResources JSON on stdin.
    pub async fn update(&self, id: &str, resources: &[u8]) -> Result<(), RuntimeError> {
        self.run(
            "update",
            &["update", "--resources", "-", id],
            Some(resources),
        )
        .await
        .map(drop)
    }

    /// Runs a command whose stdout/stderr the shim captures; returns stdout.
    async fn run(
        &self,
        op: &'static str,
        args: &[&str],
        input: Option<&[u8]>,
    ) -> Result<Vec<u8>, RuntimeError> {
        let io = |source| RuntimeError::Io { op, source };
        let mut inv = self.command(args);
        let (out_r, out_w) = std::io::pipe().map_err(io)?;
        let (err_r, err_w) = std::io::pipe().map_err(io)?;
        let (in_r, in_w) = std::io::pipe().map_err(io)?;
        inv.cmd.stdout(out_w).stderr(err_w);
        if input.is_some() {
            inv.cmd.stdin(in_r);
        } else {
            inv.cmd.stdin(Stdio::null());
            drop(in_r);
        }
        let (child, exited) = self.spawn(&mut inv.cmd)?;
        drop(inv); // closes our copies of the child's pipe ends
        drop(child);
        if let Some(data) = input {
            let mut w = pipe::Sender::from_owned_fd(OwnedFd::from(in_w)).map_err(io)?;
            // A runtime that fails before reading its input closes the pipe:
            // its exit status and message tell more than EPIPE.
            let _ = w.write_all(data).await;
        } else {
            drop(in_w);
        }
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut out_r = pipe::Receiver::from_owned_fd(OwnedFd::from(out_r)).map_err(io)?;
        let mut err_r = pipe::Receiver::from_owned_fd(OwnedFd::from(err_r)).map_err(io)?;
        let (a, b) = tokio::join!(out_r.read_to_end(&mut out), err_r.read_to_end(&mut err));
        a.map_err(io)?;
        b.map_err(io)?;
        let exit = exited
            .await
            .map_err(|_| io(std::io::Error::other("child lost")))?;
        if exit.status != 0 {
            let mut message = String::from_utf8_lossy(&err).trim().to_string();
            if message.is_empty() {
                message = self.last_logged_error().unwrap_or_default();
            }
            return Err(self.failed(op, exit.status, message));
        }
        Ok(out)
    }

    /// Runs create/exec, whose stdio is the container's: the error comes
    /// from the json log.
    async fn run_with_stdio(
        &self,
        op: &'static str,
        mut inv: Invocation,
        stdio: ChildStdio,
    ) -> Result<(), RuntimeError> {
        inv.cmd
            .stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let (child, exited) = self.spawn(&mut inv.cmd)?;
        drop(inv);
        drop(child);
        let exit = exited.await.map_err(|_| RuntimeError::Io {
            op,
            source: std::io::Error::other("child lost"),
        })?;
        if exit.status != 0 {
            let message = self
                .last_logged_error()
                .unwrap_or_else(|| "no error logged".into());
            return Err(self.failed(op, exit.status, message));
        }
        Ok(())
    }

    fn spawn(
        &self,
        cmd: &mut Command,
    ) -> Result<
        (
            std::process::Child,
            tokio::sync::oneshot::Receiver<crate::reaper::Exit>,
        ),
        RuntimeError,
    > {
        self.reaper
            .spawn(cmd)
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.clone(),
                source,
            })
    }

    fn failed(&self, op: &'static str, status: u32, message: String) -> RuntimeError {
        if says_gone(&message) {
            return RuntimeError::Gone {
                binary: self.binary.clone(),
                op,
                message,
            };
        }
        RuntimeError::Failed {
            binary: self.binary.clone(),
            op,
            status,
            message,
        }
    }

    /// The message of the last error-level line of the json log.
    fn last_logged_error(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let level = v.get("level")?.as_str()?;
            if level != "error" && level != "fatal" {
                return None;
            }
            v.get("msg").and_then(|m| m.as_str()).map(str::to_string)
        })
    }
}

/// Whether a runtime's error says the container has no state: runc's
/// "container does not exist"; crun cannot open the container's `status`
/// file or state directory.
fn says_gone(message: &str) -> bool {
    message.contains("container does not exist")
        || (message.contains("No such file or directory")
            && (message.contains("/status`") || message.contains("cannot open directory")))
}

/// Reads a pid file written by the runtime.
pub fn read_pid_file(path: &Path) -> std::io::Result<u32> {
    let text = std::fs::read_to_string(path)?;
    text.trim().parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "pid file {}: {:?} is not a pid",
                path.display(),
                text.trim()
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn with_reaper() -> Arc<Reaper> {
        let r = Arc::new(Reaper::default());
        r.start().unwrap();
        r
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failures_and_outputs_of_the_cli() {
        let _one = crate::reaper::TEST_LOCK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let reaper = with_reaper().await;
        let ok = Runtime::new("/bin/true", None, dir.path(), reaper.clone());
        ok.start("c1").await.unwrap();
        assert_eq!(ok.ps("c1").await.unwrap(), Vec::<u32>::new());
        ok.update("c1", b"{}").await.unwrap();

        let bad = Runtime::new(
            "/bin/false",
            Some("/tmp/root".into()),
            dir.path(),
            reaper.clone(),
        );
        match bad.kill("c1", 9, true).await {
            Err(RuntimeError::Failed {
                op: "kill",
                status: 1,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        let missing = Runtime::new("/nonexistent/runc", None, dir.path(), reaper);
        match missing.pause("c1").await {
            Err(RuntimeError::Spawn { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn crun_runs_from_a_sealed_copy() {
        let _one = crate::reaper::TEST_LOCK.lock().await;
        let dir = tempfile::tempdir().unwrap();
        let reaper = with_reaper().await;
        // A stand-in named crun (true ignores its arguments).
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let crun = bin.join("crun");
        std::fs::copy("/bin/true", &crun).unwrap();
        let rt = Runtime::new(crun.to_str().unwrap(), None, dir.path(), reaper.clone());
        let inv = rt.command(&["start", "c1"]);
        let program = inv.cmd.get_program().to_string_lossy().into_owned();
        assert!(program.starts_with("/proc/self/fd/"), "{program}");
        drop(inv);
        rt.start("c1").await.unwrap();

        // Not an ELF file: no copy, the path itself is run.
        std::fs::write(&crun, "#!/bin/sh\nexit 0\n").unwrap();
        let inv = rt.command(&["start", "c1"]);
        assert_eq!(inv.cmd.get_program(), crun.as_os_str());
        // Other runtimes run from their path.
        let runc = Runtime::new("/bin/true", None, dir.path(), reaper);
        assert_eq!(runc.command(&[]).cmd.get_program(), "/bin/true");
    }

    #[test]
    fn logged_error_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let r = Runtime::new("runc", None, dir.path(), Arc::new(Reaper::default()));
        std::fs::write(
            dir.path().join("log.json"),
            "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"boom\"}\n{\"level\":\"info\",\"msg\":\"i\"}\n",
        )
        .unwrap();
        assert_eq!(r.last_logged_error().as_deref(), Some("boom"));
    }

    #[test]
    fn a_container_gone_is_recognised() {
        for gone in [
            "container does not exist",
            "exec failed: container does not exist",
            "error opening file `/run/crun/c1/status`: No such file or directory",
            "cannot open directory '/run/crun/c1': No such file or directory",
        ] {
            assert!(says_gone(gone), "{gone}");
        }
        for other in [
            "container not running",
            "exec failed: unable to start container process: exec: \"/x\": stat /x: no such file or directory",
            "open /etc/x: No such file or directory",
        ] {
            assert!(!says_gone(other), "{other}");
        }
    }
}

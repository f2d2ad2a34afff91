//! A task's stdio as containerd clients wire it: named fifos the shim
//! opens, created in a private directory per process, and copied to and
//! from our own stdio by threads (opening a fifo blocks until the other
//! side opens it, which happens when the task is created).
//!
//! Fifos live under `$BERTH_FIFO_DIR` (default `/run/berthctl/fifo` as
//! root, else a directory in the temp dir), in `<namespace>/<id>[/<exec>]`.
//! A detached task keeps them so `tasks attach` can reopen them; `tasks rm`
//! and `containers rm` remove them.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Root of all fifo directories.
pub fn fifo_root() -> PathBuf {
    if let Some(d) = std::env::var_os("BERTH_FIFO_DIR") {
        return d.into();
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/berthctl/fifo");
    }
    std::env::temp_dir().join(format!("berthctl-fifo-{}", nix::unistd::geteuid()))
}

/// The fifo directory of a container's process.
pub fn fifo_dir(namespace: &str, id: &str, exec_id: Option<&str>) -> PathBuf {
    let d = fifo_root().join(namespace).join(id);
    match exec_id {
        Some(e) => d.join(e),
        None => d,
    }
}

/// Removes a container's fifo directory (all its processes'); quiet when
/// there is none.
pub fn remove_fifos(namespace: &str, id: &str) {
    let _ = std::fs::remove_dir_all(fifo_dir(namespace, id, None));
}

/// One process's fifos; the directory is removed on drop unless kept.
pub struct Fifos {
    dir: PathBuf,
    /// stdin fifo
    pub stdin: Option<PathBuf>,
    /// stdout fifo
    pub stdout: PathBuf,
    /// stderr fifo (none with a terminal: the pty carries both)
    pub stderr: Option<PathBuf>,
    keep: bool,
}

impl Fifos {
    /// Creates fresh fifos in `dir` (mode 0700), replacing stale ones.
    pub fn create(dir: PathBuf, stdin: bool, tty: bool) -> Result<Self> {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| Error::io(format!("create fifo dir {}", dir.display()), e))?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        let make = |name: &str| -> Result<PathBuf> {
            let p = dir.join(name);
            nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(
                |e| {
                    Error::io(
                        format!("create fifo {}", p.display()),
                        std::io::Error::from(e),
                    )
                },
            )?;
            Ok(p)
        };
        Ok(Self {
            stdin: if stdin { Some(make("stdin")?) } else { None },
            stdout: make("stdout")?,
            stderr: if tty { None } else { Some(make("stderr")?) },
            dir,
            keep: false,
        })
    }

    /// Keeps the fifos after drop (detached tasks, for `tasks attach`).
    pub fn keep(&mut self) {
        self.keep = true;
    }

    /// The three paths as the API wants them (empty for none).
    pub fn wire(&self) -> (String, String, String) {
        let s = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        (
            s(&self.stdin),
            self.stdout.display().to_string(),
            s(&self.stderr),
        )
    }
}

impl Drop for Fifos {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Copy threads between our stdio and a process's fifos.
pub struct Attached {
    outputs: Vec<oneshot::Receiver<()>>,
    /// fires once when our stdin reached its end and its fifo was closed
    pub stdin_closed: mpsc::Receiver<()>,
}

impl Attached {
    /// Starts copying. Empty paths are skipped.
    pub fn start(stdin: &str, stdout: &str, stderr: &str) -> Self {
        let mut outputs = Vec::new();
        if !stdout.is_empty() {
            outputs.push(copy_out(PathBuf::from(stdout), false));
        }
        if !stderr.is_empty() {
            outputs.push(copy_out(PathBuf::from(stderr), true));
        }
        let (tx, rx) = mpsc::channel(1);
        if !stdin.is_empty() {
            let path = PathBuf::from(stdin);
            std::thread::spawn(move || {
                if copy_in(&path).is_ok() {
                    let _ = tx.blocking_send(());
                }
            });
        }
        Self {
            outputs,
            stdin_closed: rx,
        }
    }

    /// Waits (at most `limit`) for the output fifos to reach their end, so
    /// output written just before the exit is not lost.
    pub async fn drain(self, limit: std::time::Duration) {
        let all = futures::future::join_all(self.outputs);
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// Opens an output fifo for reading now, on the caller's thread: the copy
/// thread may be scheduled late on a loaded machine, and a fifo whose
/// last holder (the shim, at Delete) closed it before any reader opened it
/// takes its buffered output with it. Opening non-blocking never waits for
/// a writer (the shim holds one from Create on); reads then block again.
fn open_output(path: &Path) -> Option<std::fs::File> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let flags = OFlag::from_bits_truncate(fcntl(f.as_raw_fd(), FcntlArg::F_GETFL).ok()?);
    fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).ok()?;
    Some(f)
}

fn copy_out(path: PathBuf, stderr: bool) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let file = open_output(&path);
    std::thread::spawn(move || {
        if let Some(mut f) = file {
            let mut buf = vec![0u8; 32 << 10];
            loop {
                let n = match f.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                    Ok(n) => n,
                };
                let ok = if stderr {
                    let mut e = std::io::stderr().lock();
                    e.write_all(&buf[..n]).and_then(|()| e.flush())
                } else {
                    let mut o = std::io::stdout().lock();
                    o.write_all(&buf[..n]).and_then(|()| o.flush())
                };
                if ok.is_err() {
                    break;
                }
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Copies our stdin into the fifo until our stdin ends, then closes it.
fn copy_in(path: &Path) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    let mut buf = vec![0u8; 32 << 10];
    let mut stdin = std::io::stdin();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        if f.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    drop(f);
    Ok(())
}

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
///
/// Output fifos are opened `O_RDWR` on the caller's thread before the
/// process starts: that never blocks, and it keeps the pipe (and whatever
/// the process wrote into it) alive however late a copy thread is
/// scheduled and however early the shim closes its end — a pipe whose last
/// holder closes takes its buffered bytes with it. Holding a write end
/// ourselves means the fifo never reports EOF, so the end is ours to call:
/// [`Attached::drain`], once the process is gone, makes each thread copy
/// what is buffered and stop.
pub struct Attached {
    outputs: Vec<Output>,
    /// fires once when our stdin reached its end and its fifo was closed
    pub stdin_closed: mpsc::Receiver<()>,
}

/// One output copy thread: dropping `stop` tells it the writers are gone.
struct Output {
    stop: std::io::PipeWriter,
    done: oneshot::Receiver<()>,
}

impl Attached {
    /// Starts copying. Empty paths are skipped.
    pub fn start(stdin: &str, stdout: &str, stderr: &str) -> Self {
        let mut outputs = Vec::new();
        for (path, is_stderr) in [(stdout, false), (stderr, true)] {
            if let Some(o) = (!path.is_empty())
                .then(|| copy_out(Path::new(path), is_stderr))
                .flatten()
            {
                outputs.push(o);
            }
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

    /// Once the process has exited (everything it wrote is in the fifos):
    /// copies what is buffered and stops, waiting at most `limit` (our own
    /// stdout may be slow).
    pub async fn drain(self, limit: std::time::Duration) {
        let all = futures::future::join_all(self.outputs.into_iter().map(|o| {
            drop(o.stop);
            o.done
        }));
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// Opens output fifo `path` and copies it to our stdout or stderr in a
/// thread until told to stop; None when the fifo cannot be opened.
fn copy_out(path: &Path, stderr: bool) -> Option<Output> {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let (stop_rx, stop) = std::io::pipe().ok()?;
    let (tx, done) = oneshot::channel();
    std::thread::spawn(move || {
        let _ = copy_until_stopped(fifo, &stop_rx, stderr);
        let _ = tx.send(());
    });
    Some(Output { stop, done })
}

/// Copies while waiting on both the fifo and the stop pipe; once stopped,
/// copies what the fifo still holds.
fn copy_until_stopped(
    mut fifo: std::fs::File,
    stop: &std::io::PipeReader,
    stderr: bool,
) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut buf = vec![0u8; 32 << 10];
    let emit = |b: &[u8]| -> std::io::Result<()> {
        if stderr {
            let mut e = std::io::stderr().lock();
            e.write_all(b).and_then(|()| e.flush())
        } else {
            let mut o = std::io::stdout().lock();
            o.write_all(b).and_then(|()| o.flush())
        }
    };
    loop {
        let mut fds = [
            PollFd::new(fifo.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(_) => {}
        }
        let stopped = fds[1].any().unwrap_or(true);
        // Read until the fifo is empty (EAGAIN): after a stop that is all.
        loop {
            match fifo.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => emit(&buf[..n])?,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if stopped {
            return Ok(());
        }
    }
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

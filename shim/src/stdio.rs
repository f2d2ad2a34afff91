//! A process's stdio, as containerd clients describe it: each of
//! stdin/stdout/stderr is empty (`/dev/null`), a fifo path (or `fifo://`),
//! `file:///path` (stdout and stderr appended to one file) or
//! `binary:///path?k=v` (a logging binary receiving stdout on fd 3, stderr on
//! fd 4 and signalling readiness by closing fd 5, with `CONTAINER_ID` and
//! `CONTAINER_NAMESPACE` in its environment).
//!
//! Output fifos are opened `O_RDWR`, which never blocks on Linux whether or
//! not a reader is there yet, and handed to the runtime as the container's
//! own stdout/stderr: output reaches the fifo even while berthd (or ctr) is
//! away, and the fifo cannot break with EPIPE because the container holds a
//! reader too. The stdin fifo is opened read-only and non-blocking (which
//! also never blocks) and copied into a pipe by a task, so `CloseIO` can
//! close the container's stdin independently of the client.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::attach::{AttachPoint, Taps};
use crate::console::Console;
use crate::logfile::{self, LogOptions, LogWriter, SharedLog, Stream};
use crate::reaper::{Exit, Reaper};
use crate::runtime::ChildStdio;
use crate::sys;

/// Why a process's stdio could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StdioError {
    /// a path could not be opened
    #[error("{field}: open {path}: {source}")]
    Open {
        /// stdin, stdout or stderr
        field: &'static str,
        /// the path
        path: String,
        /// why
        source: std::io::Error,
    },
    /// an unsupported URI scheme or malformed URI
    #[error("{field}: unsupported stdio uri {uri:?}")]
    Uri {
        /// stdin, stdout or stderr
        field: &'static str,
        /// the value
        uri: String,
    },
    /// the logging binary failed
    #[error("logging binary {path}: {message}")]
    Logger {
        /// the binary
        path: String,
        /// what happened
        message: String,
    },
    /// pipes or fds
    #[error("stdio: {0}")]
    Io(#[from] std::io::Error),
}

/// The stdio a client asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// stdin fifo, or empty
    pub stdin: String,
    /// stdout fifo or URI, or empty
    pub stdout: String,
    /// stderr fifo or URI, or empty
    pub stderr: String,
    /// whether the process has a terminal
    pub terminal: bool,
    /// a log file the shim writes the output to (stdout and stderr are
    /// then empty)
    pub log: Option<LogOptions>,
    /// the shim keeps the process's stdin open for attachers (stdin is
    /// then empty; needs `log`)
    pub open_stdin: bool,
    /// with `open_stdin`: the first attach whose stdin ends closes it
    pub stdin_once: bool,
}

enum Target {
    Null,
    Fifo(PathBuf),
    File(PathBuf),
    Binary { path: PathBuf, args: Vec<String> },
}

fn parse(field: &'static str, value: &str) -> Result<Target, StdioError> {
    if value.is_empty() {
        return Ok(Target::Null);
    }
    let bad = || StdioError::Uri {
        field,
        uri: value.to_string(),
    };
    let Some((scheme, rest)) = value.split_once("://") else {
        return Ok(Target::Fifo(PathBuf::from(value)));
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = percent_decode(path).ok_or_else(bad)?;
    if !path.starts_with('/') {
        return Err(bad());
    }
    match scheme {
        "fifo" => Ok(Target::Fifo(path.into())),
        "file" => Ok(Target::File(path.into())),
        "binary" => {
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(percent_decode(k).ok_or_else(bad)?);
                if pair.contains('=') {
                    args.push(percent_decode(v).ok_or_else(bad)?);
                }
            }
            Ok(Target::Binary {
                path: path.into(),
                args,
            })
        }
        _ => Err(bad()),
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The shim's side of one process's io. Dropping it stops the copy tasks.
#[derive(Default)]
pub struct ProcessIo {
    stdin_close: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
    logger: Option<(u32, oneshot::Receiver<Exit>)>,
    console: Option<Arc<Console>>,
    output_done: Option<oneshot::Receiver<()>>,
    log: Option<SharedLog>,
    attach: Option<Arc<AttachPoint>>,
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        if let Some(a) = &self.attach {
            a.taps.end();
        }
    }
}

impl ProcessIo {
    /// Closes the process's stdin once what the client wrote so far is
    /// copied.
    pub fn close_stdin(&mut self) {
        if let Some(tx) = self.stdin_close.take() {
            let _ = tx.send(());
        }
        if let Some(a) = &self.attach {
            a.close_stdin();
        }
    }

    /// Where attachers join the process; None when the shim does not
    /// copy its output itself (no log file).
    pub fn attach_point(&self) -> Option<&Arc<AttachPoint>> {
        self.attach.as_ref()
    }

    /// Resizes the process's terminal; false when it has none.
    pub fn resize(&self, width: u32, height: u32) -> std::io::Result<bool> {
        let Some(c) = &self.console else {
            return Ok(false);
        };
        sys::set_winsize(
            c.fd(),
            width.min(u16::MAX as u32) as u16,
            height.min(u16::MAX as u32) as u16,
        )?;
        Ok(true)
    }

    /// Reopens the log file the shim writes; None when there is none.
    pub fn reopen_log(&self) -> Option<std::io::Result<()>> {
        let log = self.log.as_ref()?;
        Some(log.lock().unwrap_or_else(|p| p.into_inner()).reopen())
    }

    /// Resolves when all output the shim copies has been written (a
    /// terminal's output, and what goes to a log file).
    pub fn take_output_done(&mut self) -> Option<oneshot::Receiver<()>> {
        self.output_done.take()
    }

    /// Stops the copy tasks and waits (up to 2 s, then SIGKILL) for a
    /// logging binary to finish.
    pub async fn shutdown(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(a) = &self.attach {
            a.taps.end();
        }
        if let Some((pid, exited)) = self.logger.take() {
            let mut exited = exited;
            if tokio::time::timeout(Duration::from_secs(2), &mut exited)
                .await
                .is_err()
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = exited.await;
            }
        }
    }
}

/// The container side (given to the runtime) and the shim side of a
/// process's stdio.
pub struct Prepared {
    /// fds for `runc create`/`exec`
    pub child: ChildStdio,
    /// what the shim keeps
    pub io: ProcessIo,
}

fn dev_null() -> std::io::Result<OwnedFd> {
    Ok(OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?
        .into())
}

/// Stdio for a process without a terminal.
pub async fn prepare(
    paths: &StdioPaths,
    id: &str,
    namespace: &str,
    reaper: &Reaper,
) -> Result<Prepared, StdioError> {
    let mut io = ProcessIo::default();
    let mut kept_stdin: Option<pipe::Sender> = None;
    let stdin = match parse("stdin", &paths.stdin)? {
        Target::Null if paths.open_stdin => {
            let (r, w) = std::io::pipe()?;
            kept_stdin = Some(pipe::Sender::from_owned_fd(OwnedFd::from(w))?);
            OwnedFd::from(r)
        }
        Target::Null => dev_null()?,
        Target::Fifo(p) => {
            let fifo = open_stdin_fifo(&p)?;
            let (r, w) = std::io::pipe()?;
            let w = pipe::Sender::from_owned_fd(OwnedFd::from(w))?;
            let (tx, rx) = oneshot::channel();
            io.stdin_close = Some(tx);
            io.tasks.push(tokio::spawn(copy_stdin(fifo, w, rx)));
            OwnedFd::from(r)
        }
        _ => {
            return Err(StdioError::Uri {
                field: "stdin",
                uri: paths.stdin.clone(),
            })
        }
    };
    let (stdout, stderr) = match (&paths.log, parse("stdout", &paths.stdout)?) {
        (Some(opts), _) => {
            let taps = Arc::new(Taps::default());
            let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> =
                kept_stdin.map(|w| Box::new(w) as _);
            io.attach = Some(AttachPoint::new(
                taps.clone(),
                stdin,
                paths.stdin_once,
                false,
            ));
            start_log(opts, &mut io, taps)?
        }
        (None, Target::Binary { path, args }) => {
            let (out, err, pid, exited) = start_logger(&path, &args, id, namespace, reaper).await?;
            io.logger = Some((pid, exited));
            (out, err)
        }
        (None, Target::File(path)) => {
            let f = open_log_file(&path)?;
            let f2 = f.try_clone()?;
            (OwnedFd::from(f), OwnedFd::from(f2))
        }
        (None, out) => {
            let stdout = open_output(out, "stdout", &paths.stdout)?;
            let stderr = if !paths.stderr.is_empty() && paths.stderr == paths.stdout {
                stdout.try_clone()?
            } else {
                open_output(parse("stderr", &paths.stderr)?, "stderr", &paths.stderr)?
            };
            (stdout, stderr)
        }
    };
    Ok(Prepared {
        child: ChildStdio {
            stdin,
            stdout,
            stderr,
        },
        io,
    })
}

/// Stdio for a process with a terminal: the runtime gets `/dev/null`; the
/// shim copies the stdin fifo into the pty master and the master into the
/// stdout fifo.
pub fn attach_console(console: Console, paths: &StdioPaths) -> Result<ProcessIo, StdioError> {
    let console = Arc::new(console);
    let mut io = ProcessIo::default();
    io.console = Some(console.clone());
    if let Target::Fifo(p) = parse("stdin", &paths.stdin)? {
        let fifo = open_stdin_fifo(&p)?;
        let (tx, rx) = oneshot::channel();
        io.stdin_close = Some(tx);
        io.tasks
            .push(tokio::spawn(copy_stdin(fifo, console.writer(), rx)));
    }
    if let Some(opts) = &paths.log {
        let log = open_log(opts)?;
        io.log = Some(log.clone());
        let taps = Arc::new(Taps::default());
        let stdin: Option<Box<dyn AsyncWrite + Send + Unpin>> =
            paths.open_stdin.then(|| Box::new(console.writer()) as _);
        io.attach = Some(AttachPoint::new(
            taps.clone(),
            stdin,
            paths.stdin_once,
            true,
        ));
        let (done_tx, done_rx) = oneshot::channel();
        io.output_done = Some(done_rx);
        let reader = console.reader();
        io.tasks.push(tokio::spawn(async move {
            logfile::pump_reader(reader, Stream::Stdout, log, taps).await;
            let _ = done_tx.send(());
        }));
        return Ok(io);
    }
    let out: Option<Box<dyn AsyncWrite + Send + Unpin>> = match parse("stdout", &paths.stdout)? {
        Target::Null => None,
        Target::Fifo(p) => Some(Box::new(
            pipe::OpenOptions::new()
                .read_write(true)
                .open_sender(&p)
                .map_err(|source| open_err("stdout", &p, source))?,
        )),
        Target::File(p) => Some(Box::new(tokio::fs::File::from_std(open_log_file(&p)?))),
        Target::Binary { .. } => {
            return Err(StdioError::Uri {
                field: "stdout",
                uri: paths.stdout.clone(),
            })
        }
    };
    let (done_tx, done_rx) = oneshot::channel();
    io.output_done = Some(done_rx);
    let reader = console.reader();
    io.tasks.push(tokio::spawn(async move {
        copy_output(reader, out).await;
        let _ = done_tx.send(());
    }));
    Ok(io)
}

/// How much a log pipe holds while the shim is busy (the kernel's
/// default is 64 KiB); pages are only used when filled.
const LOG_PIPE_SIZE: i32 = 1 << 20;

fn open_log(opts: &LogOptions) -> Result<SharedLog, StdioError> {
    LogWriter::open(opts.clone())
        .map(|w| Arc::new(std::sync::Mutex::new(w)))
        .map_err(|source| open_err("log", &opts.path, source))
}

/// Pipes for the container's stdout and stderr, drained into the log by a
/// task of the shim; returns their write ends.
fn start_log(
    opts: &LogOptions,
    io: &mut ProcessIo,
    taps: Arc<Taps>,
) -> Result<(OwnedFd, OwnedFd), StdioError> {
    let log = open_log(opts)?;
    let (out_r, out_w) = std::io::pipe()?;
    let (err_r, err_w) = std::io::pipe()?;
    for w in [&out_w, &err_w] {
        // Best effort: a smaller pipe only means the container may wait
        // for the shim a little sooner.
        let _ = nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(LOG_PIPE_SIZE),
        );
    }
    let out_r = pipe::Receiver::from_owned_fd(OwnedFd::from(out_r))?;
    let err_r = pipe::Receiver::from_owned_fd(OwnedFd::from(err_r))?;
    let (done_tx, done_rx) = oneshot::channel();
    io.output_done = Some(done_rx);
    io.log = Some(log.clone());
    io.tasks.push(tokio::spawn(async move {
        logfile::pump_pipes(out_r, err_r, log, taps).await;
        let _ = done_tx.send(());
    }));
    Ok((out_w.into(), err_w.into()))
}

fn open_err(field: &'static str, path: &Path, source: std::io::Error) -> StdioError {
    StdioError::Open {
        field,
        path: path.display().to_string(),
        source,
    }
}

fn open_stdin_fifo(path: &Path) -> Result<pipe::Receiver, StdioError> {
    pipe::OpenOptions::new()
        .open_receiver(path)
        .map_err(|source| open_err("stdin", path, source))
}

fn open_output(target: Target, field: &'static str, raw: &str) -> Result<OwnedFd, StdioError> {
    match target {
        Target::Null => Ok(dev_null()?),
        Target::Fifo(p) => {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&p)
                .map_err(|source| open_err(field, &p, source))?;
            Ok(f.into())
        }
        Target::File(p) => Ok(open_log_file(&p)?.into()),
        Target::Binary { .. } => Err(StdioError::Uri {
            field,
            uri: raw.to_string(),
        }),
    }
}

/// A `file://` log: appended to, created 0600 (missing parents 0700).
fn open_log_file(path: &Path) -> Result<File, StdioError> {
    crate::bundle::open_append(path).map_err(|source| open_err("stdout", path, source))
}

/// Copies the stdin fifo to `dst` until the client closes it (EOF) or
/// `close` fires; in the latter case what is already in the fifo is still
/// copied. `dst` is dropped (closed) at the end.
async fn copy_stdin<W: AsyncWrite + Unpin>(
    mut fifo: pipe::Receiver,
    mut dst: W,
    mut close: oneshot::Receiver<()>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = tokio::select! {
            r = fifo.read(&mut buf) => match r { Ok(0) | Err(_) => break, Ok(n) => n },
            _ = &mut close => {
                // Drain what is buffered without waiting for more.
                while let Ok(n) = fifo.try_read(&mut buf) {
                    if n == 0 || dst.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                break;
            }
        };
        if dst.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = dst.shutdown().await;
}

async fn copy_output<R: AsyncRead + Unpin>(
    mut src: R,
    mut dst: Option<Box<dyn AsyncWrite + Send + Unpin>>,
) {
    let mut buf = vec![0u8; 8192];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => break, // EIO once every slave fd is closed
            Ok(n) => n,
        };
        if let Some(d) = dst.as_mut() {
            if d.write_all(&buf[..n]).await.is_err() {
                dst = None;
            }
        }
    }
}

/// Starts a logging binary, containerd style; returns the container's
/// stdout and stderr (write ends) and the logger's pid and exit.
async fn start_logger(
    path: &Path,
    args: &[String],
    id: &str,
    namespace: &str,
    reaper: &Reaper,
) -> Result<(OwnedFd, OwnedFd, u32, oneshot::Receiver<Exit>), StdioError> {
    let logger_err = |message: String| StdioError::Logger {
        path: path.display().to_string(),
        message,
    };
    let (out_r, out_w) = std::io::pipe()?;
    let (err_r, err_w) = std::io::pipe()?;
    let (ready_r, ready_w) = std::io::pipe()?;
    let mut cmd = std::process::Command::new(path);
    cmd.args(args)
        .env_clear()
        .env("CONTAINER_ID", id)
        .env("CONTAINER_NAMESPACE", namespace)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    sys::map_fds_on_exec(
        &mut cmd,
        vec![out_r.as_raw_fd(), err_r.as_raw_fd(), ready_w.as_raw_fd()],
    );
    let (child, exited) = reaper
        .spawn(&mut cmd)
        .map_err(|e| logger_err(e.to_string()))?;
    let pid = child.id();
    drop((cmd, child, out_r, err_r, ready_w));
    let mut ready = pipe::Receiver::from_owned_fd(OwnedFd::from(ready_r))?;
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(10), ready.read(&mut b)).await {
        Ok(_) => {}
        Err(_) => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            return Err(logger_err("not ready after 10s".into()));
        }
    }
    Ok((out_w.into(), err_w.into(), pid, exited))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        assert!(matches!(parse("stdout", "").unwrap(), Target::Null));
        assert!(
            matches!(parse("stdout", "/run/x/fifo").unwrap(), Target::Fifo(p) if p == Path::new("/run/x/fifo"))
        );
        assert!(
            matches!(parse("stdout", "file:///var/log/a%20b.log").unwrap(), Target::File(p) if p == Path::new("/var/log/a b.log"))
        );
        match parse("stdout", "binary:///usr/bin/logger?id=x&flag").unwrap() {
            Target::Binary { path, args } => {
                assert_eq!(path, Path::new("/usr/bin/logger"));
                assert_eq!(args, ["id", "x", "flag"]);
            }
            _ => panic!("not binary"),
        }
        assert!(parse("stdout", "tcp://x").is_err());
        assert!(parse("stdout", "file://relative").is_err());
    }
}

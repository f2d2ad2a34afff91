//! Log files the shim writes itself: the container's stdout and stderr
//! (a terminal's output as stdout) in the kubelet's CRI format or Docker's
//! json-file format, instead of fifos that somebody must read.
//!
//! The container writes into pipes; one task per process reads both (a
//! shared 32 KiB buffer), cuts lines and appends formatted entries to the
//! file. The container never waits for a reader: the shim drains the pipes
//! as fast as the file takes the bytes, on the shim's own thread (page
//! cache writes, as conmon does; no thread per container). Entries carry
//! the time their bytes were read, one timestamp per read. A write error
//! (disk full) drops what could not be written, logs it once, and goes on.
//!
//! json-file rotation: before an entry would take the file past
//! `max_size`, the file is renamed to `PATH.1` (older ones shift up, the
//! oldest beyond `max_files` is replaced) and a new `PATH` is started; an
//! entry never spans two files. A restarted container appends to its log.
//! CRI logs are rotated by the kubelet, which then asks for a reopen.

pub mod format;

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::unix::pipe;

use crate::attach::Taps;
use format::{encode, timestamp, Splitter};
pub use format::{Format, Stream, MAX_LINE};

/// Read buffer of a process's log task (shared by stdout and stderr).
const READ_BUF: usize = 32 * 1024;
/// Formatted output is written once this much is ready.
const FLUSH_AT: usize = 32 * 1024;

/// A log file as Create asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// absolute path of the file
    pub path: PathBuf,
    /// the file's format
    pub format: Format,
    /// json-file: rotate before the file passes this many bytes (0: never)
    pub max_size: u64,
    /// json-file: files kept, `PATH`, `PATH.1`, ...; 0 or 1: `PATH` alone
    pub max_files: u32,
}

/// The open file, its size and its rotation.
struct LogFile {
    opts: LogOptions,
    file: Option<File>,
    size: u64,
    /// a write failed and was logged; quiet until one succeeds
    failing: bool,
}

impl LogFile {
    fn open(opts: LogOptions) -> std::io::Result<Self> {
        let mut f = Self {
            opts,
            file: None,
            size: 0,
            failing: false,
        };
        f.reopen()?;
        Ok(f)
    }

    fn reopen(&mut self) -> std::io::Result<()> {
        self.file = None;
        let file = crate::bundle::open_append(&self.opts.path)?;
        self.size = file.metadata()?.size();
        self.file = Some(file);
        Ok(())
    }

    fn rotates(&self) -> bool {
        self.opts.format == Format::JsonFile && self.opts.max_size > 0
    }

    fn write(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let res = match self.file.as_mut() {
            Some(f) => f.write_all(data),
            None => self.reopen().and_then(|()| match self.file.as_mut() {
                Some(f) => f.write_all(data),
                None => Ok(()),
            }),
        };
        match res {
            Ok(()) => {
                self.size += data.len() as u64;
                self.failing = false;
            }
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::warn!(path = %self.opts.path.display(), error = %e, "log write failed; output dropped");
            }
            Err(_) => {}
        }
    }

    /// `PATH.N-1` -> `PATH.N` ... `PATH` -> `PATH.1`, then a new `PATH`;
    /// with fewer than two files `PATH` is emptied instead.
    fn rotate(&mut self) {
        let path = self.opts.path.clone();
        let numbered = |n: u32| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let res = if self.opts.max_files < 2 {
            match self.file.as_ref() {
                Some(f) => f.set_len(0),
                None => Ok(()),
            }
        } else {
            for n in (1..self.opts.max_files - 1).rev() {
                let _ = std::fs::rename(numbered(n), numbered(n + 1));
            }
            std::fs::rename(&path, numbered(1)).and_then(|()| self.reopen())
        };
        match res {
            Ok(()) => self.size = 0,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "log rotation failed");
                // Keep appending rather than rotating on every entry.
                self.size = 0;
            }
        }
    }
}

/// One process's log: the file, a line splitter per stream, the output
/// being formatted.
pub struct LogWriter {
    file: LogFile,
    stdout: Splitter,
    stderr: Splitter,
    out: Vec<u8>,
}

impl LogWriter {
    /// Opens (creates, appends to) the file.
    pub fn open(opts: LogOptions) -> std::io::Result<Self> {
        Ok(Self {
            file: LogFile::open(opts)?,
            stdout: Splitter::default(),
            stderr: Splitter::default(),
            out: Vec::new(),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.file.opts.path
    }

    /// Appends the entries `data` completes, read from `stream` at `now`.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: SystemTime) {
        self.entries(stream, now, |s, emit| s.feed(data, emit));
    }

    /// The stream ended: its unfinished line becomes a partial entry.
    pub fn finish(&mut self, stream: Stream, now: SystemTime) {
        self.entries(stream, now, |s, emit| s.finish(emit));
    }

    /// Closes the file and opens its path again (after the kubelet moved
    /// it away).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file.reopen()
    }

    fn entries(
        &mut self,
        stream: Stream,
        now: SystemTime,
        run: impl FnOnce(&mut Splitter, &mut dyn FnMut(&[u8], format::End)),
    ) {
        let time = timestamp(now);
        let Self {
            file,
            stdout,
            stderr,
            out,
        } = self;
        let splitter = match stream {
            Stream::Stdout => stdout,
            Stream::Stderr => stderr,
        };
        let format = file.opts.format;
        let mut emit = |text: &[u8], end| {
            let start = out.len();
            encode(format, out, &time, stream, text, end);
            if file.rotates()
                && file.size + out.len() as u64 > file.opts.max_size
                && file.size + start as u64 > 0
            {
                file.write(&out[..start]);
                out.drain(..start);
                file.rotate();
            }
            if out.len() >= FLUSH_AT {
                file.write(out);
                out.clear();
            }
        };
        run(splitter, &mut emit);
        file.write(out);
        out.clear();
        if out.capacity() > 2 * FLUSH_AT {
            *out = Vec::new();
        }
    }
}

/// A log shared by the process's copy task and ReopenLog.
pub type SharedLog = Arc<Mutex<LogWriter>>;

fn with_log(log: &SharedLog, f: impl FnOnce(&mut LogWriter)) {
    f(&mut log.lock().unwrap_or_else(|p| p.into_inner()));
}

/// Copies a process's stdout and stderr pipes into its log (and to its
/// attachers) until both end; then the taps end.
pub async fn pump_pipes(
    stdout: pipe::Receiver,
    stderr: pipe::Receiver,
    log: SharedLog,
    taps: Arc<Taps>,
) {
    let mut buf = vec![0u8; READ_BUF];
    let mut open = [Some(stdout), Some(stderr)];
    let streams = [Stream::Stdout, Stream::Stderr];
    while open.iter().any(Option::is_some) {
        let ready = tokio::select! {
            r = ready(&open[0]) => (0, r),
            r = ready(&open[1]) => (1, r),
        };
        let (i, readable) = ready;
        let res = match (&open[i], readable) {
            (Some(p), Ok(())) => p.try_read(&mut buf),
            (_, Err(e)) => Err(e),
            (None, Ok(())) => continue,
        };
        match res {
            Ok(0) => {}
            Ok(n) => {
                with_log(&log, |l| l.write(streams[i], &buf[..n], SystemTime::now()));
                taps.send(streams[i], &buf[..n]);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => {}
        }
        // End of the stream (or an error reading it).
        open[i] = None;
        with_log(&log, |l| l.finish(streams[i], SystemTime::now()));
    }
    taps.end();
}

/// Resolves when the pipe is readable; never when it is closed.
async fn ready(p: &Option<pipe::Receiver>) -> std::io::Result<()> {
    match p {
        Some(p) => p.readable().await,
        None => std::future::pending().await,
    }
}

/// Copies a reader (a terminal's output) into the log as `stream`. A
/// terminal is interactive: what a read leaves of an unfinished line (a
/// shell's prompt) is written at once as a partial entry, so a client
/// following the log sees it without waiting for a newline.
pub async fn pump_reader<R: AsyncRead + Unpin>(
    mut src: R,
    stream: Stream,
    log: SharedLog,
    taps: Arc<Taps>,
) {
    let mut buf = vec![0u8; READ_BUF];
    loop {
        match src.read(&mut buf).await {
            Ok(0) | Err(_) => break, // EIO once every slave fd is closed
            Ok(n) => {
                with_log(&log, |l| {
                    let now = SystemTime::now();
                    l.write(stream, &buf[..n], now);
                    l.finish(stream, now);
                });
                taps.send(stream, &buf[..n]);
            }
        }
    }
    with_log(&log, |l| l.finish(stream, SystemTime::now()));
    taps.end();
}

#[cfg(test)]
mod tests;

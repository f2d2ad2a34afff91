//! Terminals: runc's `--console-socket` hands the shim the pty master over a
//! unix socket (SCM_RIGHTS); the shim then copies between it and the
//! client's fifos and resizes it on request.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::UnixListener;

use crate::sys;

/// A pty master, non-blocking, registered with the runtime.
pub struct Console {
    fd: AsyncFd<File>,
}

impl Console {
    fn new(master: OwnedFd) -> std::io::Result<Self> {
        let flags = OFlag::from_bits_truncate(fcntl(master.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            master.as_raw_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        Ok(Self {
            fd: sys::async_fd(File::from(master))?,
        })
    }

    /// The master fd (for ioctls).
    pub fn fd(&self) -> &File {
        self.fd.get_ref()
    }

    /// Reads the terminal's output.
    pub fn reader(self: &Arc<Self>) -> ConsoleReader {
        ConsoleReader(self.clone())
    }

    /// Writes the terminal's input.
    pub fn writer(self: &Arc<Self>) -> ConsoleWriter {
        ConsoleWriter(self.clone())
    }
}

/// See [`Console::reader`].
pub struct ConsoleReader(Arc<Console>);
/// See [`Console::writer`].
pub struct ConsoleWriter(Arc<Console>);

impl AsyncRead for ConsoleReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        loop {
            let mut guard = ready!(self.0.fd.poll_read_ready(cx))?;
            let unfilled = buf.initialize_unfilled();
            match guard.try_io(|f| f.get_ref().read(unfilled)) {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for ConsoleWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        loop {
            let mut guard = ready!(self.0.fd.poll_write_ready(cx))?;
            match guard.try_io(|f| f.get_ref().write(data)) {
                Ok(r) => return Poll::Ready(r),
                Err(_would_block) => continue,
            }
        }
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A listening console socket; removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

impl ConsoleSocket {
    /// Binds `<dir>/<name>.sock`, or a short path under the temp dir when
    /// that would not fit in `sun_path` (108 bytes); mode 0600.
    pub fn bind(dir: &Path, name: &str) -> std::io::Result<Self> {
        let mut path = dir.join(format!("{name}.sock"));
        if path.as_os_str().len() >= 100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            path = std::env::temp_dir().join(format!("berth-pty-{}-{n}.sock", std::process::id()));
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        let sock = Self { listener, path };
        crate::bundle::make_private(&sock.path)?;
        Ok(sock)
    }

    /// The path to give the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts the runtime's connection and takes the pty master from it.
    /// Call after the runtime's create/exec succeeded (the fd is already
    /// queued then).
    pub async fn receive(&self) -> std::io::Result<Console> {
        let fut = async {
            let (stream, _) = self.listener.accept().await?;
            loop {
                stream.readable().await?;
                match stream.try_io(Interest::READABLE, || sys::recv_fd(stream.as_raw_fd())) {
                    Ok(Some(fd)) => return Console::new(fd),
                    Ok(None) => {
                        return Err(std::io::Error::other("console socket: no fd received"))
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .map_err(|_| std::io::Error::other("console socket: timed out waiting for the pty"))?
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[tokio::test(flavor = "current_thread")]
    async fn console_sockets_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("x".repeat(100));
        std::fs::create_dir(&long).unwrap();
        for d in [dir.path(), long.as_path()] {
            let sock = ConsoleSocket::bind(d, "console").unwrap();
            let mode = std::fs::metadata(sock.path()).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", sock.path().display());
            let path = sock.path().to_path_buf();
            drop(sock);
            assert!(!path.exists(), "removed on drop");
        }
    }
}

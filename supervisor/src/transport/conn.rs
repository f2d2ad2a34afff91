//! One accepted connection, as tonic reads it: the client's bytes pass
//! through a frame reader that times out a missing HTTP/2 preface and hands
//! header blocks to [`HeaderRewriter`]. Writes go straight to the socket.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tonic::transport::server::Connected;

use super::authority::{HeaderRewriter, Verdict};

/// What every HTTP/2 connection starts with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Largest frame passed whole to the rewriter; longer frames (never a
/// header frame h2 would take: its limit is 16 KiB) stream through, as do
/// all frames that are not part of a header block.
const MAX_WHOLE_FRAME: usize = 64 << 10;

/// Where the reader is in the client's byte stream.
enum State {
    /// reading the 24-byte preface (so many bytes seen)
    Preface(usize),
    /// reading a 9-byte frame header
    Header,
    /// collecting a whole frame of this total size (header included)
    Frame(usize),
    /// passing the rest of a frame through: so many bytes left
    Through(usize),
}

/// An accepted unix connection with the checks described in
/// [`crate::transport`].
pub struct Conn {
    io: UnixStream,
    state: State,
    /// deadline for the preface; None once it arrived
    preface_timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// bytes read from the socket, not yet parsed
    inbuf: Vec<u8>,
    /// bytes ready for tonic
    out: Vec<u8>,
    out_at: usize,
    rewriter: HeaderRewriter,
    eof: bool,
}

impl Conn {
    pub(crate) fn new(io: UnixStream, preface_timeout: Duration) -> Self {
        Self {
            io,
            state: State::Preface(0),
            preface_timer: Some(Box::pin(tokio::time::sleep(preface_timeout))),
            inbuf: Vec::with_capacity(16 << 10),
            out: Vec::with_capacity(16 << 10),
            out_at: 0,
            rewriter: HeaderRewriter::new(),
            eof: false,
        }
    }

    /// Moves what can be decided from `inbuf` to `out`.
    fn parse(&mut self) -> io::Result<()> {
        loop {
            match self.state {
                State::Preface(seen) => {
                    let want = PREFACE.len() - seen;
                    let n = want.min(self.inbuf.len());
                    if self.inbuf[..n] != PREFACE[seen..seen + n] {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "not an HTTP/2 connection preface",
                        ));
                    }
                    self.out.extend(self.inbuf.drain(..n));
                    if n < want {
                        self.state = State::Preface(seen + n);
                        return Ok(());
                    }
                    self.preface_timer = None;
                    self.state = State::Header;
                }
                State::Header => {
                    if self.inbuf.len() < 9 {
                        return Ok(());
                    }
                    let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]])
                        as usize;
                    let kind = self.inbuf[3];
                    self.state = if !self.rewriter.wants(kind) {
                        self.out.extend(self.inbuf.drain(..9));
                        State::Through(len)
                    } else if len + 9 <= MAX_WHOLE_FRAME {
                        State::Frame(len + 9)
                    } else {
                        // Never a header frame h2 would read: pass it on.
                        let held = self.rewriter.abandon();
                        self.out.extend_from_slice(&held);
                        self.out.extend(self.inbuf.drain(..9));
                        State::Through(len)
                    };
                }
                State::Frame(total) => {
                    if self.inbuf.len() < total {
                        return Ok(());
                    }
                    let frame: Vec<u8> = self.inbuf.drain(..total).collect();
                    if let Verdict::Forward(bytes) = self.rewriter.frame(frame) {
                        self.out.extend_from_slice(&bytes);
                    }
                    self.state = State::Header;
                }
                State::Through(left) => {
                    let n = left.min(self.inbuf.len());
                    self.out.extend(self.inbuf.drain(..n));
                    self.state = if n == left {
                        State::Header
                    } else {
                        State::Through(left - n)
                    };
                    if n < left {
                        return Ok(());
                    }
                }
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.out_at < this.out.len() {
                let n = (this.out.len() - this.out_at).min(buf.remaining());
                buf.put_slice(&this.out[this.out_at..this.out_at + n]);
                this.out_at += n;
                if this.out_at == this.out.len() {
                    this.out.clear();
                    this.out_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                // Whatever was held back (a partial frame) is h2's to judge.
                if !this.inbuf.is_empty() {
                    this.out.append(&mut this.inbuf);
                    continue;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(timer) = this.preface_timer.as_mut() {
                if timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 preface within the timeout",
                    )));
                }
            }
            let mut chunk = [0u8; 16 << 10];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.io).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    let got = rb.filled();
                    if got.is_empty() {
                        this.eof = true;
                        continue;
                    }
                    this.inbuf.extend_from_slice(got);
                    this.parse()?;
                }
            }
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl Connected for Conn {
    type ConnectInfo = <UnixStream as Connected>::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

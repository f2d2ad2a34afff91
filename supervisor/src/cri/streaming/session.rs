//! A server-side SPDY/3.1 connection over an upgraded HTTP connection:
//! the peer opens streams (SYN_STREAM), each is answered at once
//! (SYN_REPLY) and handed to the session's owner with its headers and a
//! channel of the bytes the peer sends on it.
//!
//! One task reads frames, one writes them (the only owner of the header
//! compressor). A frame the codec refuses ends the session with GOAWAY
//! (protocol error); nothing else of berthd is affected. Flow control is
//! not enforced in either direction, as Kubernetes' spdystream does not.

use std::collections::HashMap;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Codec, Frame, Headers};

/// Largest DATA frame sent.
const CHUNK: usize = 32 << 10;
/// Frames queued to the writer before senders wait.
const OUT_QUEUE: usize = 64;
/// Data frames queued per stream before the reader waits.
const IN_QUEUE: usize = 16;

enum Out {
    Frame(Frame),
    /// Write what is queued, then shut the connection's write side.
    Close,
}

/// Sends frames on the session; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Out>,
}

impl Writer {
    async fn frame(&self, f: Frame) -> bool {
        self.tx.send(Out::Frame(f)).await.is_ok()
    }
}

/// A stream the peer opened.
pub struct Stream {
    /// The stream id.
    pub id: u32,
    /// Its SYN_STREAM headers.
    pub headers: Headers,
    /// What the peer sends on it; ends at the peer's FIN or reset.
    pub data: mpsc::Receiver<Vec<u8>>,
    writer: Writer,
    /// The peer opened it with FIN/UNIDIRECTIONAL: nothing comes or goes.
    pub closed_by_peer: bool,
}

impl Stream {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        spdy::header(&self.headers, name)
    }

    /// A handle that sends on this stream.
    pub fn sender(&self) -> StreamWriter {
        StreamWriter {
            id: self.id,
            writer: self.writer.clone(),
        }
    }
}

/// Sends on one stream.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    writer: Writer,
}

impl StreamWriter {
    /// Sends `bytes` (split into frames); false once the session is gone.
    pub async fn send(&self, bytes: &[u8]) -> bool {
        for chunk in bytes.chunks(CHUNK) {
            let f = Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk.to_vec(),
            };
            if !self.writer.frame(f).await {
                return false;
            }
        }
        true
    }

    /// Ends this side of the stream (an empty DATA frame with FIN).
    pub async fn finish(&self) {
        let _ = self
            .writer
            .frame(Frame::Data {
                stream_id: self.id,
                flags: spdy::FLAG_FIN,
                data: Vec::new(),
            })
            .await;
    }

    /// Resets the stream.
    pub async fn reset(&self, status: u32) {
        let _ = self
            .writer
            .frame(Frame::RstStream {
                stream_id: self.id,
                status,
            })
            .await;
    }
}

/// A running session.
pub struct Session {
    /// Streams as the peer opens them; ends when the connection does.
    pub incoming: mpsc::Receiver<Stream>,
    writer: Writer,
    reader: tokio::task::JoinHandle<()>,
    write_task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Starts serving SPDY on `io` (already upgraded).
    pub fn start<T>(io: T) -> Self
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(OUT_QUEUE);
        let writer = Writer { tx: out_tx };
        let (in_tx, incoming) = mpsc::channel(64);
        let write_task = tokio::spawn(write_loop(wr, out_rx));
        let reader = tokio::spawn(read_loop(rd, writer.clone(), in_tx));
        Self {
            incoming,
            writer,
            reader,
            write_task,
        }
    }

    /// Ends the session: frames already queued are written, then the
    /// connection is closed.
    pub async fn close(mut self) {
        let _ = self.writer.tx.send(Out::Close).await;
        let wait = &mut self.write_task;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), wait).await;
        self.reader.abort();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn write_loop<W: AsyncWrite>(wr: W, mut rx: mpsc::Receiver<Out>) {
    tokio::pin!(wr);
    let mut codec = Codec::new();
    let mut buf = Vec::new();
    while let Some(out) = rx.recv().await {
        let mut close = false;
        let mut next = Some(out);
        // Batch what is queued into one write.
        while let Some(o) = next.take() {
            match o {
                Out::Frame(f) => {
                    if let Err(e) = codec.encode(&f, &mut buf) {
                        tracing::debug!(error = %e, "spdy: encoding a frame");
                        return;
                    }
                }
                Out::Close => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 256 << 10 {
                next = rx.try_recv().ok();
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        buf.clear();
        if close {
            let _ = wr.shutdown().await;
            return;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead>(rd: R, writer: Writer, incoming: mpsc::Sender<Stream>) {
    tokio::pin!(rd);
    let mut codec = Codec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
    let mut streams: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut last_id = 0u32;
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        let frame = match codec.decode(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    continue;
                }
            },
            Err(e) => {
                tracing::debug!(error = %e, "spdy: refusing the peer's frames");
                let _ = writer
                    .frame(Frame::GoAway {
                        last_good: last_id,
                        status: 1,
                    })
                    .await;
                let _ = writer.tx.send(Out::Close).await;
                return;
            }
        };
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if stream_id <= last_id || stream_id % 2 == 0 {
                    let _ = writer
                        .frame(Frame::RstStream {
                            stream_id,
                            status: spdy::rst::PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_id = stream_id;
                let (tx, rx) = mpsc::channel(IN_QUEUE);
                let fin = flags & (spdy::FLAG_FIN | spdy::FLAG_UNIDIRECTIONAL) != 0;
                if flags & spdy::FLAG_FIN == 0 {
                    streams.insert(stream_id, tx);
                }
                let _ = writer
                    .frame(Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: Vec::new(),
                    })
                    .await;
                let s = Stream {
                    id: stream_id,
                    headers,
                    data: rx,
                    writer: writer.clone(),
                    closed_by_peer: fin,
                };
                if incoming.send(s).await.is_err() {
                    let _ = writer
                        .frame(Frame::RstStream {
                            stream_id,
                            status: spdy::rst::REFUSED_STREAM,
                        })
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                if let Some(tx) = streams.get(&stream_id) {
                    if !data.is_empty() && tx.send(data).await.is_err() {
                        streams.remove(&stream_id);
                    }
                }
                if flags & spdy::FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } => {
                if flags & spdy::FLAG_FIN != 0 {
                    streams.remove(&stream_id);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                streams.remove(&stream_id);
            }
            Frame::Ping { id } => {
                // Echo the peer's pings (odd ids from a client).
                if id % 2 == 1 {
                    let _ = writer.frame(Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. } | Frame::Settings { .. } | Frame::WindowUpdate { .. } => {}
        }
    }
}

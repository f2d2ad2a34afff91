//! Attach: more readers of a process's output and more writers of its
//! stdin, beside the log file the shim writes (CRI Attach).
//!
//! The task that copies a process's output into its log also hands each
//! read to the process's [`Taps`]: every attacher has a bounded queue
//! that is offered the bytes without waiting. A full queue drops that
//! read for that attacher only (the process and the log never wait for
//! an attacher); a queue whose reader is gone is forgotten. When the
//! output ends the taps end, and so does every attach.
//!
//! Stdin: a process created with `open_stdin` gets a pipe (or, with a
//! terminal, the terminal's input) the shim keeps open; attachers write
//! into it one write at a time. With `stdin_once` (and no terminal, as
//! the kubelet and containerd have it) the first attach whose stdin ends
//! closes the process's stdin; otherwise an attach whose stdin ends is
//! over (detached), and the process keeps running.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use crate::logfile::format::Stream;

/// Reads queued per attacher before further output is dropped for it.
const QUEUE: usize = 64;

/// A piece of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// stdout or stderr
    pub stream: Stream,
    /// the bytes, as read
    pub data: Vec<u8>,
}

struct Tap {
    id: u64,
    stdout: bool,
    stderr: bool,
    tx: mpsc::Sender<Chunk>,
}

#[derive(Default)]
struct TapList {
    next: u64,
    taps: Vec<Tap>,
}

/// The attachers of one process's output.
pub struct Taps {
    list: Mutex<TapList>,
    ended: watch::Sender<bool>,
}

impl Default for Taps {
    fn default() -> Self {
        Self {
            list: Mutex::default(),
            ended: watch::channel(false).0,
        }
    }
}

impl Taps {
    fn lock(&self) -> std::sync::MutexGuard<'_, TapList> {
        self.list.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new attacher of the streams named; None once the output ended.
    fn subscribe(&self, stdout: bool, stderr: bool) -> Option<(u64, mpsc::Receiver<Chunk>)> {
        let mut l = self.lock();
        if *self.ended.borrow() {
            return None;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        l.next += 1;
        let id = l.next;
        l.taps.push(Tap {
            id,
            stdout,
            stderr,
            tx,
        });
        Some((id, rx))
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().taps.retain(|t| t.id != id);
    }

    /// Offers `data` read from `stream` to every attacher; never waits.
    pub fn send(&self, stream: Stream, data: &[u8]) {
        let mut l = self.lock();
        if l.taps.is_empty() {
            return;
        }
        l.taps.retain(|t| {
            let wanted = match stream {
                Stream::Stdout => t.stdout,
                Stream::Stderr => t.stderr,
            };
            if !wanted {
                return !t.tx.is_closed();
            }
            let chunk = Chunk {
                stream,
                data: data.to_vec(),
            };
            !matches!(
                t.tx.try_send(chunk),
                Err(mpsc::error::TrySendError::Closed(_))
            )
        });
    }

    /// The output ended: every attach ends, no new one starts.
    pub fn end(&self) {
        let mut l = self.lock();
        self.ended.send_replace(true);
        l.taps.clear();
    }

    /// Number of attachers (tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().taps.len()
    }
}

type Input = Box<dyn AsyncWrite + Send + Unpin>;

/// Resolves once the output ended.
async fn until_ended(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|e| *e).await.map(|_| ());
}

/// Where attachers join a process: its output taps and the stdin the
/// shim holds open for it (when created with `open_stdin`).
pub struct AttachPoint {
    /// the output's attachers
    pub taps: Arc<Taps>,
    stdin: tokio::sync::Mutex<Option<Input>>,
    stdin_once: bool,
    terminal: bool,
}

/// What an attach asks for.
#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    /// write to the process's stdin
    pub stdin: bool,
    /// receive stdout (a terminal's output)
    pub stdout: bool,
    /// receive stderr
    pub stderr: bool,
}

/// The output ended before the attach: nothing to join.
#[derive(Debug, thiserror::Error)]
#[error("the process's output has ended")]
pub struct Ended;

impl AttachPoint {
    /// An attach point over `taps`, with the process's stdin when the
    /// shim keeps one open.
    pub fn new(
        taps: Arc<Taps>,
        stdin: Option<Input>,
        stdin_once: bool,
        terminal: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            taps,
            stdin: tokio::sync::Mutex::new(stdin),
            stdin_once,
            terminal,
        })
    }

    /// Closes the process's stdin (CloseIO, or stdin_once).
    pub fn close_stdin(self: &Arc<Self>) {
        let me = self.clone();
        tokio::spawn(async move {
            if let Some(mut w) = me.stdin.lock().await.take() {
                let _ = w.shutdown().await;
            }
        });
    }

    /// Joins the process: `stdin` carries what the attacher writes (its
    /// end is the attach's stdin ending); the answer carries the output
    /// and ends when the attach is over. Dropping the answer detaches.
    pub fn attach(
        self: &Arc<Self>,
        want: Want,
        mut stdin: mpsc::Receiver<Vec<u8>>,
    ) -> Result<mpsc::Receiver<Chunk>, Ended> {
        let (id, rx) = self.taps.subscribe(want.stdout, want.stderr).ok_or(Ended)?;
        // Watches the attacher's side; the tap's sender lives in the
        // taps only, so the output ends when the tap is removed.
        let watch_tx = {
            let l = self.taps.lock();
            l.taps.iter().find(|t| t.id == id).map(|t| t.tx.clone())
        };
        let Some(watch_tx) = watch_tx else {
            return Err(Ended);
        };
        let me = self.clone();
        let once = want.stdin && self.stdin_once && !self.terminal;
        tokio::spawn(async move {
            let mut ended = me.taps.ended.subscribe();
            let detached = watch_tx.closed();
            tokio::pin!(detached);
            // Phase 1: the attacher's stdin is open.
            let mut gone = false;
            loop {
                tokio::select! {
                    d = stdin.recv() => match d {
                        Some(d) if want.stdin => me.write(&d).await,
                        Some(_) => {}
                        None => break,
                    },
                    _ = &mut detached => { gone = true; break }
                    _ = until_ended(&mut ended) => { gone = true; break }
                }
            }
            if once {
                me.close_stdin();
                if !gone {
                    // Phase 2: output only, until detach or its end.
                    tokio::select! {
                        _ = &mut detached => {}
                        _ = until_ended(&mut ended) => {}
                    }
                }
            }
            me.taps.unsubscribe(id);
        });
        Ok(rx)
    }

    async fn write(&self, data: &[u8]) {
        let mut g = self.stdin.lock().await;
        if let Some(w) = g.as_mut() {
            if w.write_all(data).await.is_err() {
                *g = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn point(once: bool) -> (Arc<AttachPoint>, tokio::net::unix::pipe::Receiver) {
        let (w, r) = tokio::net::unix::pipe::pipe().unwrap();
        (
            AttachPoint::new(Arc::new(Taps::default()), Some(Box::new(w)), once, false),
            r,
        )
    }

    #[tokio::test(flavor = "current_thread")]
    async fn output_reaches_attachers_of_their_streams_and_ends_with_it() {
        let (p, _r) = point(false);
        let (_in_a, in_rx) = mpsc::channel(1);
        let mut a = p
            .attach(
                Want {
                    stdout: true,
                    ..Default::default()
                },
                in_rx,
            )
            .unwrap();
        let (_in_b, in_rx) = mpsc::channel(1);
        let mut b = p
            .attach(
                Want {
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                },
                in_rx,
            )
            .unwrap();
        p.taps.send(Stream::Stdout, b"out");
        p.taps.send(Stream::Stderr, b"err");
        assert_eq!(a.recv().await.unwrap().data, b"out");
        assert_eq!(b.recv().await.unwrap().data, b"out");
        let e = b.recv().await.unwrap();
        assert_eq!((e.stream, e.data.as_slice()), (Stream::Stderr, &b"err"[..]));
        p.taps.end();
        assert!(a.recv().await.is_none());
        assert!(b.recv().await.is_none());
        let (_t, in_rx) = mpsc::channel(1);
        assert!(p.attach(Want::default(), in_rx).is_err(), "after the end");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_attacher_loses_output_but_nobody_waits() {
        let (p, _r) = point(false);
        let (_in, in_rx) = mpsc::channel(1);
        let mut a = p
            .attach(
                Want {
                    stdout: true,
                    ..Default::default()
                },
                in_rx,
            )
            .unwrap();
        for _ in 0..QUEUE * 2 {
            p.taps.send(Stream::Stdout, b"x");
        }
        let mut n = 0;
        while a.try_recv().is_ok() {
            n += 1;
        }
        assert_eq!(n, QUEUE);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn stdin_end_detaches_or_closes_stdin_once() {
        // Without stdin_once: the attach ends, stdin stays open.
        let (p, mut r) = point(false);
        let (in_tx, in_rx) = mpsc::channel(1);
        let mut a = p
            .attach(
                Want {
                    stdin: true,
                    stdout: true,
                    ..Default::default()
                },
                in_rx,
            )
            .unwrap();
        in_tx.send(b"hi\n".to_vec()).await.unwrap();
        let mut buf = [0u8; 3];
        r.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hi\n");
        drop(in_tx);
        assert!(a.recv().await.is_none(), "detached");
        assert_eq!(p.taps.len(), 0);
        assert!(p.stdin.lock().await.is_some(), "stdin still open");

        // With stdin_once: stdin closes, output keeps flowing.
        let (p, mut r) = point(true);
        let (in_tx, in_rx) = mpsc::channel(1);
        let mut a = p
            .attach(
                Want {
                    stdin: true,
                    stdout: true,
                    ..Default::default()
                },
                in_rx,
            )
            .unwrap();
        in_tx.send(b"x".to_vec()).await.unwrap();
        drop(in_tx);
        let mut all = Vec::new();
        r.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"x", "the process sees EOF");
        p.taps.send(Stream::Stdout, b"still");
        assert_eq!(a.recv().await.unwrap().data, b"still");
        drop(a);
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while p.taps.len() > 0 {
                p.taps.send(Stream::Stdout, b"");
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("a dropped attach is forgotten");
    }
}

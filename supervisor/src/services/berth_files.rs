//! berth.containers.v1.ContainerFiles over the engine: commit, diff and
//! cp (tar streams carried as chunks). Decode, one call, encode; the
//! chunk plumbing between gRPC streams and the engine's blocking readers
//! and writers is here.

use std::io::{Read, Write};
use std::pin::Pin;

use berth_api::berth_containers::v1 as pb;
use futures::{Stream, StreamExt};
use pb::container_files_server::ContainerFiles;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::namespace;
use crate::engine::{CommitRequest, Engine};

/// Bytes per chunk of a tar stream.
const CHUNK: usize = 256 << 10;

/// The ContainerFiles service.
pub struct FilesService {
    engine: Engine,
}

impl FilesService {
    /// Serves `engine`'s files.
    pub fn new(engine: Engine) -> Self {
        Self { engine }
    }
}

/// A writer sending full chunks down a channel (from a blocking thread).
struct ChunkWriter {
    tx: mpsc::Sender<Result<pb::CopyChunk, Status>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(pb::CopyChunk { data }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// A reader over the data messages of a CopyTo stream.
struct ChunkReader {
    rx: mpsc::Receiver<Result<Vec<u8>, Status>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => {
                    self.cur = b;
                    self.pos = 0;
                }
                Some(Err(s)) => {
                    return Err(std::io::Error::other(format!(
                        "client stream: {}",
                        s.message()
                    )))
                }
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::CopyChunk, Status>> + Send>>;

#[tonic::async_trait]
impl ContainerFiles for FilesService {
    async fn commit(
        &self,
        req: Request<pb::CommitRequest>,
    ) -> Result<Response<pb::CommitResponse>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let c = self
            .engine
            .commit(
                &ns,
                CommitRequest {
                    container: r.container,
                    reference: r.reference,
                    message: r.message,
                    author: r.author,
                    changes: r.changes,
                    pause: r.pause,
                    compression: r.compression,
                },
            )
            .await?;
        Ok(Response::new(pb::CommitResponse {
            image: c.image,
            manifest_digest: c.manifest,
            config_digest: c.config,
            layer_digest: c.layer,
            diff_id: c.diff_id,
            layer_size: c.layer_size,
        }))
    }

    async fn diff(
        &self,
        req: Request<pb::DiffRequest>,
    ) -> Result<Response<pb::DiffResponse>, Status> {
        let ns = namespace(&req)?;
        let changes = self
            .engine
            .fs_diff(&ns, &req.into_inner().container)
            .await?;
        Ok(Response::new(pb::DiffResponse {
            changes: changes
                .into_iter()
                .map(|c| pb::Change {
                    kind: c.kind.to_string(),
                    path: c.path,
                })
                .collect(),
        }))
    }

    type CopyFromStream = ChunkStream;

    async fn copy_from(
        &self,
        req: Request<pb::CopyFromRequest>,
    ) -> Result<Response<Self::CopyFromStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let engine = self.engine.clone();
        tokio::spawn(async move {
            let w = ChunkWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            if let Err(e) = engine.copy_from(&ns, &r.container, &r.path, w).await {
                let _ = tx.send(Err(e.into())).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn copy_to(
        &self,
        req: Request<Streaming<pb::CopyToRequest>>,
    ) -> Result<Response<pb::CopyToResponse>, Status> {
        let ns = namespace(&req)?;
        let mut stream = req.into_inner();
        let start = match stream.next().await {
            Some(Ok(pb::CopyToRequest {
                msg: Some(pb::copy_to_request::Msg::Start(s)),
            })) => s,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::invalid_argument(
                    "copy to: the first message must name the container and path",
                ))
            }
        };
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            while let Some(m) = stream.next().await {
                let item = match m {
                    Ok(pb::CopyToRequest {
                        msg: Some(pb::copy_to_request::Msg::Data(d)),
                    }) => Ok(d),
                    Ok(_) => Err(Status::invalid_argument(
                        "copy to: only data after the start",
                    )),
                    Err(e) => Err(e),
                };
                let stop = item.is_err();
                if tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let reader = ChunkReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        let entries = self
            .engine
            .copy_to(&ns, &start.container, &start.path, reader)
            .await?;
        Ok(Response::new(pb::CopyToResponse { entries }))
    }
}

//! berth.images.v1.Transfer: server-side import and export of image
//! archives, so a thin client moves the bytes only once.

use std::io::Read;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use berth_api::berth_images::v1 as pb;
use futures::Stream;
use pb::transfer_server::Transfer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use berth_api::oci::Platform;

use super::namespace;
use crate::images::import::{self, Progress};
use crate::images::Archives;

/// The Transfer service.
pub struct TransferService {
    archives: Archives,
}

impl TransferService {
    /// Serves imports and exports through `archives`.
    pub fn new(archives: Archives) -> Self {
        Self { archives }
    }
}

/// A blocking reader over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<std::io::Result<Vec<u8>>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.buf.len() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.buf = b;
                    self.pos = 0;
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A writer sending chunks to a channel (blocking).
struct ChannelWriter(mpsc::Sender<Result<pb::ExportChunk, Status>>);

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0
            .blocking_send(Ok(pb::ExportChunk { data: b.to_vec() }))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[allow(clippy::result_large_err)]
fn platform(s: &str) -> Result<Option<Platform>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    Platform::parse(s)
        .map(Some)
        .map_err(|e| Status::invalid_argument(e.to_string()))
}

type Out<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl Transfer for TransferService {
    type ImportStream = Out<pb::ImportProgress>;
    type ExportStream = Out<pb::ExportChunk>;

    #[tracing::instrument(skip_all)]
    async fn import(
        &self,
        req: Request<Streaming<pb::ImportRequest>>,
    ) -> Result<Response<Self::ImportStream>, Status> {
        let ns = namespace(&req)?;
        let mut inbound = req.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("import: no options message"))?;
        let Some(pb::import_request::Msg::Options(o)) = first.msg else {
            return Err(Status::invalid_argument(
                "import: the first message must carry the options",
            ));
        };
        if !o.snapshotter.is_empty() {
            self.archives.check_snapshotter(&o.snapshotter)?;
        }
        let opts = import::Options {
            platform: platform(&o.platform)?,
            all_platforms: o.all_platforms,
            snapshotter: o.snapshotter,
            name_prefix: o.name_prefix,
            no_unpack: o.no_unpack,
        };
        let received = Arc::new(AtomicU64::new(0));
        let (chunk_tx, chunk_rx) = mpsc::channel(16);
        let rec = received.clone();
        tokio::spawn(async move {
            loop {
                let item = match inbound.message().await {
                    Ok(Some(pb::ImportRequest {
                        msg: Some(pb::import_request::Msg::Chunk(b)),
                    })) => {
                        rec.fetch_add(b.len() as u64, Ordering::Relaxed);
                        Ok(b)
                    }
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(e) => Err(std::io::Error::other(format!("client stream: {e}"))),
                };
                let stop = item.is_err();
                if chunk_tx.send(item).await.is_err() || stop {
                    break;
                }
            }
        });
        let reader = ChannelReader {
            rx: chunk_rx,
            buf: Vec::new(),
            pos: 0,
        };
        let (ptx, mut prx) = mpsc::channel::<Progress>(64);
        let (out_tx, out_rx) = mpsc::channel(64);
        let archives = self.archives.clone();
        tokio::spawn(async move {
            let run = archives.import(&ns, reader, opts, ptx);
            tokio::pin!(run);
            let to_wire = |p: Progress, received: u64| {
                let received = i64::try_from(received).unwrap_or(i64::MAX);
                match p {
                    Progress::Blob {
                        name,
                        offset,
                        total,
                    } => pb::ImportProgress {
                        state: "reading".into(),
                        received,
                        blob: Some(pb::BlobProgress {
                            name,
                            offset: offset as i64,
                            total: total as i64,
                        }),
                        images: vec![],
                    },
                    Progress::State(s) => pb::ImportProgress {
                        state: s,
                        received,
                        ..Default::default()
                    },
                }
            };
            let result = loop {
                tokio::select! {
                    biased;
                    Some(p) = prx.recv() => {
                        let _ = out_tx.send(Ok(to_wire(p, received.load(Ordering::Relaxed)))).await;
                    }
                    r = &mut run => break r,
                }
            };
            while let Ok(p) = prx.try_recv() {
                let _ = out_tx
                    .send(Ok(to_wire(p, received.load(Ordering::Relaxed))))
                    .await;
            }
            let last = match result {
                Ok(images) => Ok(pb::ImportProgress {
                    state: "done".into(),
                    received: received.load(Ordering::Relaxed) as i64,
                    blob: None,
                    images,
                }),
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "import failed");
                    Err(Status::from(e))
                }
            };
            let _ = out_tx.send(last).await;
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    #[tracing::instrument(skip_all)]
    async fn export(
        &self,
        req: Request<pb::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.names.is_empty() {
            return Err(Status::invalid_argument("names: at least one image"));
        }
        let want = if r.all_platforms {
            None
        } else {
            Some(platform(&r.platform)?.unwrap_or_else(Platform::host))
        };
        self.archives.check(&ns, &r.names)?;
        let (tx, rx) = mpsc::channel(16);
        let archives = self.archives.clone();
        tokio::spawn(async move {
            let w = std::io::BufWriter::with_capacity(1 << 20, ChannelWriter(tx.clone()));
            if let Err(e) = archives.export(&ns, &r.names, want, w).await {
                let _ = tx.send(Err(Status::from(e))).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

//! containerd.services.content.v1.Content over [`ContentStore`].
//!
//! Write follows containerd's content service: the first message names the
//! ref and opens (or resumes) the ingest; every message gets one reply
//! carrying the current offset; WRITE at a non-zero offset must match the
//! ingest's offset (OutOfRange otherwise) and WRITE at offset 0 on a
//! non-empty ingest starts it over; COMMIT verifies and stores, and ends
//! the stream. Calls carrying `containerd-lease` add what they write to
//! that lease.

use std::os::unix::fs::FileExt;
use std::pin::Pin;

use berth_api::services::content::v1 as pb;
use berth_api::Digest;
use futures::Stream;
use pb::content_server::Content;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::{convert, lease_of, namespace};
use crate::content::{ContentStore, Info, IngestStatus, Writer};

/// Size of each Read reply.
const READ_CHUNK: usize = 1 << 20;

/// List replies carry this many infos each.
const LIST_BATCH: usize = 100;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Content service.
pub struct ContentService {
    content: ContentStore,
}

impl ContentService {
    /// Serves `content`.
    pub fn new(content: ContentStore) -> Self {
        Self { content }
    }

    /// The store, bound to the call's lease if it carries one.
    fn store_for<T>(&self, req: &Request<T>) -> ContentStore {
        self.content.with_lease(lease_of(req))
    }
}

/// Parses a digest field; InvalidArgument naming the field.
#[allow(clippy::result_large_err)]
fn digest(field: &str, s: &str) -> Result<Digest, Status> {
    s.parse()
        .map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

/// Parses an optional digest field (empty: none).
#[allow(clippy::result_large_err)]
fn opt_digest(field: &str, s: &str) -> Result<Option<Digest>, Status> {
    if s.is_empty() {
        Ok(None)
    } else {
        digest(field, s).map(Some)
    }
}

fn to_wire(i: &Info) -> pb::Info {
    pb::Info {
        digest: i.digest.to_string(),
        size: i.size as i64,
        created_at: Some(i.created_at.into()),
        updated_at: Some(i.updated_at.into()),
        labels: convert::wire_labels(&i.labels),
    }
}

fn status_to_wire(s: &IngestStatus) -> pb::Status {
    pb::Status {
        started_at: Some(s.started_at.into()),
        updated_at: Some(s.updated_at.into()),
        r#ref: s.reference.clone(),
        offset: s.offset as i64,
        total: s.total as i64,
        expected: s
            .expected
            .as_ref()
            .map(|d| d.to_string())
            .unwrap_or_default(),
    }
}

/// A non-negative wire integer; InvalidArgument naming the field.
#[allow(clippy::result_large_err)]
fn unsigned(field: &str, v: i64) -> Result<u64, Status> {
    u64::try_from(v).map_err(|_| Status::invalid_argument(format!("{field}: must not be negative")))
}

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        let ns = namespace(&req)?;
        let d = digest("digest", &req.get_ref().digest)?;
        let info = self.content.info(&ns, &d)?;
        Ok(Response::new(pb::InfoResponse {
            info: Some(to_wire(&info)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update(
        &self,
        req: Request<pb::UpdateRequest>,
    ) -> Result<Response<pb::UpdateResponse>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let wire = req.info.unwrap_or_default();
        let d = digest("info.digest", &wire.digest)?;
        let now = std::time::SystemTime::now();
        let info = Info {
            digest: d,
            size: 0,
            created_at: now,
            updated_at: now,
            labels: convert::labels(wire.labels),
        };
        let paths = convert::mask_paths(req.update_mask);
        let info = self.content.update(&ns, info, &paths).await?;
        Ok(Response::new(pb::UpdateResponse {
            info: Some(to_wire(&info)),
        }))
    }

    type ListStream = BoxStream<pb::ListContentResponse>;

    async fn list(
        &self,
        req: Request<pb::ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let ns = namespace(&req)?;
        let all = self.content.list_matching(&ns, &req.get_ref().filters)?;
        let infos: Vec<pb::Info> = all.iter().map(to_wire).collect();
        let batches: Vec<Result<pb::ListContentResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|c| Ok(pb::ListContentResponse { info: c.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(futures::stream::iter(batches))))
    }

    #[tracing::instrument(skip_all, fields(digest = %req.get_ref().digest))]
    async fn delete(&self, req: Request<pb::DeleteContentRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let d = digest("digest", &req.get_ref().digest)?;
        self.store_for(&req).delete(&ns, &d).await?;
        tracing::debug!(namespace = %ns, digest = %d, "content deleted");
        Ok(Response::new(()))
    }

    type ReadStream = BoxStream<pb::ReadContentResponse>;

    async fn read(
        &self,
        req: Request<pb::ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.get_ref();
        let d = digest("digest", &r.digest)?;
        let info = self.content.info(&ns, &d)?;
        // As containerd: a negative offset reads from the start; a size of
        // zero or past the end reads to the end.
        let offset = r.offset.max(0) as u64;
        if offset > info.size {
            return Err(Status::out_of_range(format!(
                "read past object length {} bytes",
                info.size
            )));
        }
        let want = r.size;
        let end = if want <= 0 || offset.saturating_add(want as u64) > info.size {
            info.size
        } else {
            offset + want as u64
        };
        // One blocking call opens the blob and reads the first chunk: most
        // clients (ctr's ReaderAt) ask for one small range per call.
        let cs = self.content.clone();
        let first_len = (end - offset).min(READ_CHUNK as u64) as usize;
        let open_and_read = move || {
            let file = cs.open_blob(&ns, &d)?;
            let data = read_chunk(&file, offset, first_len)
                .map_err(|e| Status::internal(format!("reading blob: {e}")))?;
            Ok::<_, Status>((file, data))
        };
        let (file, first) = blocking_small(open_and_read).await?;
        if first.len() < first_len {
            return Err(Status::data_loss("blob is shorter than its record"));
        }
        let mut pos = offset + first.len() as u64;
        let first = pb::ReadContentResponse {
            offset: offset as i64,
            data: first,
        };
        if pos >= end {
            let once: Vec<Result<_, Status>> = if first.data.is_empty() {
                vec![]
            } else {
                vec![Ok(first)]
            };
            return Ok(Response::new(Box::pin(futures::stream::iter(once))));
        }
        let file = std::sync::Arc::new(file);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            while pos < end {
                let len = (end - pos).min(READ_CHUNK as u64) as usize;
                let f = file.clone();
                let chunk = tokio::task::spawn_blocking(move || read_chunk(&f, pos, len)).await;
                let msg = match chunk {
                    Ok(Ok(data)) if !data.is_empty() => {
                        let n = data.len() as u64;
                        let m = pb::ReadContentResponse {
                            offset: pos as i64,
                            data,
                        };
                        pos += n;
                        Ok(m)
                    }
                    Ok(Ok(_)) => Err(Status::data_loss("blob is shorter than its record")),
                    Ok(Err(e)) => Err(Status::internal(format!("reading blob: {e}"))),
                    Err(e) => Err(Status::internal(e.to_string())),
                };
                let stop = msg.is_err();
                if tx.send(msg).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn status(
        &self,
        req: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let ns = namespace(&req)?;
        let st = self.content.status(&ns, &req.get_ref().r#ref).await?;
        Ok(Response::new(pb::StatusResponse {
            status: Some(status_to_wire(&st)),
        }))
    }

    async fn list_statuses(
        &self,
        req: Request<pb::ListStatusesRequest>,
    ) -> Result<Response<pb::ListStatusesResponse>, Status> {
        let ns = namespace(&req)?;
        let list = self
            .content
            .list_statuses(&ns, &req.get_ref().filters)
            .await?;
        Ok(Response::new(pb::ListStatusesResponse {
            statuses: list.iter().map(status_to_wire).collect(),
        }))
    }

    type WriteStream = BoxStream<pb::WriteContentResponse>;

    async fn write(
        &self,
        req: Request<Streaming<pb::WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let ns = namespace(&req)?;
        let cs = self.store_for(&req);
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(2);
        tokio::spawn(async move {
            let result = write_session(&cs, &ns, &mut inbound, &tx).await;
            if let Err(status) = result {
                if status.code() != tonic::Code::AlreadyExists {
                    tracing::debug!(namespace = %ns, error = %status.message(), "content write failed");
                }
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    #[tracing::instrument(skip_all, fields(r#ref = %req.get_ref().r#ref))]
    async fn abort(&self, req: Request<pb::AbortRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let reference = req.get_ref().r#ref.clone();
        self.store_for(&req).abort(&ns, &reference).await?;
        Ok(Response::new(()))
    }
}

/// Runs a short blocking step (an open and one pread) without a thread
/// hand-off when the runtime allows it (`block_in_place` keeps this task on
/// its thread and moves the others away), else on the blocking pool. Small
/// reads are latency-bound: ctr reads 32 KiB per call.
async fn blocking_small<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        tokio::task::block_in_place(f)
    } else {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| Status::internal(e.to_string()))?
    }
}

/// Reads up to `len` bytes at `pos` (fewer only at end of file).
fn read_chunk(f: &std::fs::File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        match f.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

type Replies = mpsc::Sender<Result<pb::WriteContentResponse, Status>>;

/// One Write stream, as containerd's content service runs it.
async fn write_session(
    cs: &ContentStore,
    ns: &str,
    inbound: &mut Streaming<pb::WriteContentRequest>,
    tx: &Replies,
) -> Result<(), Status> {
    let Some(mut req) = inbound.message().await? else {
        return Ok(());
    };
    if req.r#ref.is_empty() {
        return Err(Status::invalid_argument(
            "ref: first message must have a reference",
        ));
    }
    crate::content::validate_ref(&req.r#ref)?;
    let reference = req.r#ref.clone();
    let mut total = unsigned("total", req.total)?;
    let mut expected = opt_digest("expected", &req.expected)?;
    let mut slot: Option<Writer> = Some(cs.writer(ns, &reference, total, expected.clone()).await?);
    // The stream's work; the writer is closed after it unless it was
    // committed or the ingest aborted.
    let result: Result<(), Status> = async {
        loop {
            let w = slot
                .as_mut()
                .ok_or_else(|| Status::internal("ingest writer already closed"))?;
            let action = pb::WriteAction::try_from(req.action)
                .map_err(|_| Status::invalid_argument(format!("action: unknown {}", req.action)))?;
            let mut msg = pb::WriteContentResponse {
                action: req.action,
                offset: w.offset() as i64,
                ..Default::default()
            };
            if let Some(d) = opt_digest("expected", &req.expected)? {
                if cs.lease_if_present(ns, &d).await? {
                    drop(slot.take());
                    let _ = cs.abort(ns, &reference).await;
                    return Err(Status::already_exists(format!(
                        "blob with expected digest {d} exists"
                    )));
                }
                expected = Some(d);
            }
            let req_total = unsigned("total", req.total)?;
            if req_total > 0 {
                total = req_total;
                w.set_total(total);
            }
            match action {
                pb::WriteAction::Stat => {
                    let st = w.status();
                    msg.digest = w.digest().to_string();
                    msg.started_at = Some(st.started_at.into());
                    msg.updated_at = Some(st.updated_at.into());
                    msg.total = total as i64;
                }
                pb::WriteAction::Write | pb::WriteAction::Commit => {
                    let off = unsigned("offset", req.offset)?;
                    if off > 0 && off != w.offset() {
                        return Err(Status::out_of_range(format!(
                            "write @{off} must occur at current offset {}",
                            w.offset()
                        )));
                    }
                    if off == 0 && w.offset() > 0 {
                        w.truncate().await?;
                        msg.offset = 0;
                    }
                    if !req.data.is_empty() {
                        let data = std::mem::take(&mut req.data);
                        w.write(data).await?;
                        msg.offset = w.offset() as i64;
                    }
                    if action == pb::WriteAction::Commit {
                        let labels = convert::labels(std::mem::take(&mut req.labels));
                        let size = (total > 0).then_some(total);
                        let w = slot
                            .take()
                            .ok_or_else(|| Status::internal("ingest writer already closed"))?;
                        let info = w.commit(size, expected.as_ref(), labels).await?;
                        msg.digest = info.digest.to_string();
                        msg.offset = info.size as i64;
                        let _ = tx.send(Ok(msg)).await;
                        return Ok(());
                    }
                    msg.digest = w.digest().to_string();
                }
            }
            if tx.send(Ok(msg)).await.is_err() {
                return Ok(());
            }
            match inbound.message().await? {
                Some(next) => req = next,
                None => return Ok(()),
            }
        }
    }
    .await;
    if let Some(w) = slot {
        w.close().await;
    }
    result
}

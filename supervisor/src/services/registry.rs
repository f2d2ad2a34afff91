//! berth.images.v1.Registry: server-side pull and push with streamed
//! progress. Decodes the request, starts (or joins) the transfer, and
//! forwards progress snapshots (at most every 100 ms) until it ends.

use std::pin::Pin;
use std::time::Duration;

use berth_api::images::v1 as pb;
use futures::Stream;
use pb::registry_server::Registry;
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use berth_api::oci::Platform;

use super::namespace;
use crate::registry::inflight::Transfers;
use crate::registry::{self, push, BlobKind, BlobState, Credentials, Phase, Progress};

/// Least time between two progress messages.
const TICK: Duration = Duration::from_millis(100);

/// The Registry service.
pub struct RegistryService {
    transfers: Transfers,
}

impl RegistryService {
    /// Serves pulls and pushes through `transfers`.
    pub fn new(transfers: Transfers) -> Self {
        Self { transfers }
    }
}

type ProgressStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

pub(super) fn credentials(c: Option<pb::RegistryCredentials>) -> Credentials {
    let c = c.unwrap_or_default();
    Credentials {
        username: c.username,
        password: c.password,
        token: c.token,
    }
}

fn state(p: Phase) -> pb::TransferState {
    match p {
        Phase::Resolving => pb::TransferState::Resolving,
        Phase::Transferring => pb::TransferState::Transferring,
        Phase::Unpacking => pb::TransferState::Unpacking,
        Phase::Done | Phase::Failed => pb::TransferState::Done,
    }
}

fn blobs(p: &Progress) -> Vec<pb::RegistryBlob> {
    p.blobs
        .iter()
        .map(|b| pb::RegistryBlob {
            digest: b.digest.clone(),
            media_type: b.media_type.clone(),
            kind: match b.kind {
                BlobKind::Index => "index",
                BlobKind::Manifest => "manifest",
                BlobKind::Config => "config",
                BlobKind::Layer => "layer",
            }
            .into(),
            state: match b.state {
                BlobState::Waiting => pb::BlobState::Waiting,
                BlobState::Transferring => pb::BlobState::Active,
                BlobState::Exists => pb::BlobState::Exists,
                BlobState::Done => pb::BlobState::Complete,
                BlobState::Unpacking => pb::BlobState::BlobUnpacking,
                BlobState::Unpacked => pb::BlobState::Unpacked,
                BlobState::Failed => pb::BlobState::Failed,
            } as i32,
            offset: b.offset as i64,
            total: b.total as i64,
            resumed_from: b.resumed_from as i64,
        })
        .collect()
}

fn result(p: &Progress) -> Option<pb::TransferResult> {
    p.finished.as_ref().map(|f| pb::TransferResult {
        name: f.name.clone(),
        digest: f.digest.clone(),
        media_type: f.media_type.clone(),
        size: f.size as i64,
        manifest_digest: f.manifest_digest.clone(),
        platform: f.platform.clone(),
        chain_id: f.chain_id.clone(),
    })
}

/// A pull's progress as the wire carries it (also in a container
/// create's stream).
pub(super) fn pull_progress(p: &Progress, joined: bool) -> pb::PullProgress {
    let (done, total) = p.totals();
    pb::PullProgress {
        state: state(p.phase) as i32,
        blobs: blobs(p),
        bytes_done: done as i64,
        bytes_total: total as i64,
        joined,
        result: result(p),
    }
}

/// Turns a progress channel into a gRPC stream: a snapshot on every
/// change (rate limited), ending after Done, or with the error's status.
fn follow<T: Send + 'static>(
    mut rx: watch::Receiver<Progress>,
    encode: impl Fn(&Progress) -> T + Send + 'static,
) -> ProgressStream<T> {
    let s = async_stream(move |tx| async move {
        loop {
            let snap = rx.borrow_and_update().clone();
            if let Some(e) = &snap.error {
                let _ = tx.send(Err(Status::from(e.as_ref()))).await;
                return;
            }
            if tx.send(Ok(encode(&snap))).await.is_err() {
                return; // the caller went away; the transfer goes on
            }
            if snap.is_terminal() {
                return;
            }
            tokio::time::sleep(TICK).await;
            if rx.changed().await.is_err() {
                // The sender is gone: its last state is final.
                let last = rx.borrow().clone();
                if let Some(e) = &last.error {
                    let _ = tx.send(Err(Status::from(e.as_ref()))).await;
                } else if last.is_terminal() {
                    let _ = tx.send(Ok(encode(&last))).await;
                } else {
                    let _ = tx
                        .send(Err(Status::internal("transfer ended without a result")))
                        .await;
                }
                return;
            }
        }
    });
    Box::pin(s)
}

/// A stream fed by a task through a small channel.
fn async_stream<T, F, Fut>(f: F) -> impl Stream<Item = T>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(f(tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// A request's platform; empty: the daemon's own.
#[allow(clippy::result_large_err)]
fn platform(s: &str) -> Result<Platform, Status> {
    if s.is_empty() {
        return Ok(Platform::host());
    }
    Platform::parse(s).map_err(|e| Status::from(&registry::Error::InvalidArgument(e.to_string())))
}

#[tonic::async_trait]
impl Registry for RegistryService {
    type PullStream = ProgressStream<pb::PullProgress>;
    type PushStream = ProgressStream<pb::PushProgress>;

    async fn pull(
        &self,
        req: Request<pb::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.reference.is_empty() {
            return Err(Status::invalid_argument("reference: required"));
        }
        let request = registry::pull::Request {
            reference: r.reference,
            platform: platform(&r.platform)?,
            credentials: credentials(r.credentials),
            plain_http: r.plain_http,
            snapshotter: r.snapshotter,
            unpack: !r.skip_unpack,
            labels: r.labels.into_iter().collect(),
        };
        let (rx, joined) = self.transfers.pull(&ns, request);
        Ok(Response::new(follow(rx, move |p| pull_progress(p, joined))))
    }

    async fn push(
        &self,
        req: Request<pb::PushRequest>,
    ) -> Result<Response<Self::PushStream>, Status> {
        let ns = namespace(&req)?;
        let r = req.into_inner();
        if r.image.is_empty() {
            return Err(Status::invalid_argument("image: required"));
        }
        let request = push::Request {
            image: r.image,
            reference: r.reference,
            platform: match r.platform.as_str() {
                "" => None,
                p => Some(platform(p)?),
            },
            credentials: credentials(r.credentials),
            plain_http: r.plain_http,
        };
        let rx = self.transfers.push(&ns, request);
        Ok(Response::new(follow(rx, |p| {
            let (done, total) = p.totals();
            pb::PushProgress {
                state: state(p.phase) as i32,
                blobs: blobs(p),
                bytes_done: done as i64,
                bytes_total: total as i64,
                result: result(p),
            }
        })))
    }
}

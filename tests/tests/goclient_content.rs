//! Issue 11, items 6 and 7: resuming a content ingest the way containerd's
//! Go client does (its remote writer: a Write stream per writer, Stat for
//! Status(), CloseSend for Close()), against a real berthd.
//!
//! Pinned containerd 1.6 behaviours (content/local/store.go and the
//! client's content testsuite, checkResumeWriter):
//! - a writer reopened on a ref reports the first writer's StartedAt and,
//!   as UpdatedAt, the time of the last write before the close (containerd
//!   records it in the ingest's `updatedat` when a writer closes);
//! - taking a ref's lock is retried about ten times with a random back-off
//!   below 2^try ms before it answers Unavailable (`ref ... locked`), so a
//!   writer opened right after the previous one closed never fails; one
//!   opened while another stays open still gets Unavailable.

mod goclient_support;

use std::time::{Duration, Instant};

use berth_api::services::content::v1 as pb;
use berth_tests::Berthd;
use goclient_support::{channel, ns_req, ready, rt};
use pb::content_client::ContentClient;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Code;

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// One Write stream: the Go client's remote writer.
struct Writer {
    tx: mpsc::Sender<pb::WriteContentRequest>,
    rx: tonic::Streaming<pb::WriteContentResponse>,
}

impl Writer {
    async fn open(c: &mut ContentClient<Channel>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let rx = c
            .write(ns_req("default", ReceiverStream::new(rx)))
            .await
            .expect("write stream")
            .into_inner();
        Self { tx, rx }
    }

    async fn call(
        &mut self,
        m: pb::WriteContentRequest,
    ) -> Result<pb::WriteContentResponse, tonic::Status> {
        // A send error means the server ended the stream; its status
        // follows on the receiving side.
        let _ = self.tx.send(m).await;
        match self.rx.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(tonic::Status::unknown("stream ended")),
            Err(s) => Err(s),
        }
    }

    /// Close(): CloseSend, without waiting for the server.
    fn close(self) {
        drop(self);
    }
}

fn stat(r: &str, total: usize, expected: &str) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Stat as i32,
        r#ref: r.into(),
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

fn write(r: &str, offset: usize, data: &[u8]) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Write as i32,
        r#ref: r.into(),
        offset: offset as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn commit(r: &str, offset: usize, total: usize, expected: &str) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Commit as i32,
        r#ref: r.into(),
        offset: offset as i64,
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

async fn content_client(d: &Berthd) -> ContentClient<Channel> {
    ContentClient::new(channel(&d.address()).await)
}

#[test]
fn reopening_a_ref_right_after_close_never_sees_unavailable() {
    if !ready("reopening_a_ref_right_after_close_never_sees_unavailable") {
        return;
    }
    let d = Berthd::start();
    rt().block_on(async {
        let mut c = content_client(&d).await;
        let chunk = [7u8; 1000];
        let rounds = 40;
        let all = chunk.repeat(rounds);
        let dg = sha(&all);
        for i in 0..rounds {
            // Open, write one chunk, close without waiting: the next open
            // races the server's release of this writer.
            let mut w = Writer::open(&mut c).await;
            let r = w
                .call(write("racy", i * chunk.len(), &chunk))
                .await
                .unwrap_or_else(|s| panic!("round {i}: {:?} {}", s.code(), s.message()));
            assert_eq!(r.offset as usize, (i + 1) * chunk.len());
            w.close();
        }
        let mut w = Writer::open(&mut c).await;
        let r = w
            .call(commit("racy", all.len(), all.len(), &dg))
            .await
            .unwrap();
        assert_eq!(r.digest, dg);

        // A writer that stays open still holds the ref: after the retries
        // the second one is refused with Unavailable.
        let mut held = Writer::open(&mut c).await;
        held.call(write("held", 0, b"x")).await.unwrap();
        let began = Instant::now();
        let mut other = Writer::open(&mut c).await;
        let err = other.call(stat("held", 0, "")).await.unwrap_err();
        assert_eq!(err.code(), Code::Unavailable, "{}", err.message());
        assert!(err.message().contains("held"), "{}", err.message());
        // Retried before giving up (the back-off is random; ten tries
        // take at least a few milliseconds).
        assert!(began.elapsed() >= Duration::from_millis(5));
        held.close();
    });
}

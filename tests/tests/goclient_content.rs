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

use std::time::{Duration, Instant, SystemTime};

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

fn time(ts: Option<prost_types::Timestamp>) -> SystemTime {
    let ts = ts.expect("timestamp set");
    SystemTime::UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32)
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
fn resumed_writer_reports_the_last_write_as_updated_at() {
    if !ready("resumed_writer_reports_the_last_write_as_updated_at") {
        return;
    }
    let d = Berthd::start();
    rt().block_on(async {
        let mut c = content_client(&d).await;
        let data: Vec<u8> = (0..256u32).map(|i| (i * 31 % 251) as u8).collect();
        let dg = sha(&data);
        let (first, second) = data.split_at(128);

        let pre_start = SystemTime::now();
        let mut w1 = Writer::open(&mut c).await;
        let s = w1.call(stat("cb", 256, &dg)).await.unwrap();
        let post_start = SystemTime::now();
        let started = time(s.started_at);
        assert!(pre_start <= started && started <= post_start);

        let pre_write = SystemTime::now();
        let r = w1.call(write("cb", 0, first)).await.unwrap();
        assert_eq!(r.offset, 128);
        let post_write = SystemTime::now();
        let s1 = w1.call(stat("cb", 256, &dg)).await.unwrap();
        let updated = time(s1.updated_at);
        assert!(
            pre_write <= updated && updated <= post_write,
            "the first writer's UpdatedAt is its write"
        );
        w1.close();
        // Long enough for a clock that only ticks with the file system's
        // timestamps to tell the write from the reopen.
        tokio::time::sleep(Duration::from_millis(30)).await;

        // Reopened at once, as checkResumeWriter does: no Unavailable, the
        // status consistent with the version before the close.
        let mut w2 = Writer::open(&mut c).await;
        let s2 = w2
            .call(stat("cb", 256, &dg))
            .await
            .expect("reopen after close");
        assert_eq!(s2.offset, 128);
        assert_eq!(s2.total, 256);
        assert_eq!(time(s2.started_at), started, "StartedAt is the first start");
        assert_eq!(
            time(s2.updated_at),
            updated,
            "UpdatedAt is the last write before the close"
        );
        let st = c
            .status(ns_req("default", pb::StatusRequest { r#ref: "cb".into() }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(time(st.started_at), started);
        assert_eq!(time(st.updated_at), updated);

        let pre_write = SystemTime::now();
        w2.call(write("cb", 128, second)).await.unwrap();
        let post_write = SystemTime::now();
        let s3 = w2.call(stat("cb", 256, &dg)).await.unwrap();
        let updated2 = time(s3.updated_at);
        assert!(pre_write <= updated2 && updated2 <= post_write);
        assert_eq!(time(s3.started_at), started);
        let r = w2.call(commit("cb", 256, 256, &dg)).await.unwrap();
        assert_eq!(r.digest, dg);
    });
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

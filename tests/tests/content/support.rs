//! What the content tests share: deterministic data, a small gRPC client
//! for the Content service (Write streams, reads), the store's dirs on
//! disk and `ctr` with a file on stdin.

// The test files' prelude: each does `use super::support::*`.
pub(crate) use std::collections::BTreeMap;
pub(crate) use std::fs::File;
pub(crate) use std::path::{Path, PathBuf};
pub(crate) use std::process::{Command, Stdio};
pub(crate) use std::sync::{Arc, Mutex};
pub(crate) use std::time::Duration;

pub(crate) use berth_api::services::content::v1 as pb;
pub(crate) use berth_api::services::leases::v1 as lpb;
pub(crate) use berth_tests::{check, requires, Berthd};
pub(crate) use pb::content_client::ContentClient;
pub(crate) use sha2::{Digest as _, Sha256};
pub(crate) use tokio::sync::mpsc;
pub(crate) use tokio_stream::wrappers::ReceiverStream;
pub(crate) use tonic::transport::Channel;
pub(crate) use tonic::{Code, Request};

pub(crate) const NS: &str = "default";

pub(crate) fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
pub(crate) fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub(crate) async fn channel(sock: &Path) -> Channel {
    berth_tests::grpc::channel(sock).await
}

pub(crate) async fn client(sock: &Path) -> ContentClient<Channel> {
    ContentClient::new(channel(sock).await)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

pub(crate) fn req<T>(msg: T) -> Request<T> {
    berth_tests::grpc::request(msg, NS, None)
}

/// An open Write stream.
pub(crate) struct WriteStream {
    pub(crate) tx: mpsc::Sender<pb::WriteContentRequest>,
    pub(crate) rx: tonic::Streaming<pb::WriteContentResponse>,
}

impl WriteStream {
    pub(crate) async fn open(c: &mut ContentClient<Channel>, lease: Option<&str>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let r = berth_tests::grpc::request(ReceiverStream::new(rx), NS, lease);
        let rx = c.write(r).await.expect("write stream").into_inner();
        Self { tx, rx }
    }

    pub(crate) async fn call(
        &mut self,
        m: pb::WriteContentRequest,
    ) -> Result<pb::WriteContentResponse, tonic::Status> {
        if self.tx.send(m).await.is_err() {
            // The server ended the stream: its status follows.
        }
        match self.rx.message().await {
            Ok(Some(r)) => Ok(r),
            Ok(None) => Err(tonic::Status::unknown("stream ended")),
            Err(s) => Err(s),
        }
    }
}

pub(crate) fn stat(r: &str, total: usize, expected: &str) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Stat as i32,
        r#ref: r.into(),
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

pub(crate) fn write(offset: usize, data: &[u8]) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Write as i32,
        offset: offset as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

pub(crate) fn commit(offset: usize, total: usize, expected: &str) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Commit as i32,
        offset: offset as i64,
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

/// Opens a writer on `r`, retrying while the previous one still holds it
/// (as containerd's OpenWriter does on Unavailable).
pub(crate) async fn open_retry(
    c: &mut ContentClient<Channel>,
    r: &str,
    total: usize,
    expected: &str,
) -> (WriteStream, pb::WriteContentResponse) {
    for _ in 0..200 {
        let mut w = WriteStream::open(c, None).await;
        match w.call(stat(r, total, expected)).await {
            Ok(resp) => return (w, resp),
            Err(s) if s.code() == Code::Unavailable => {
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(s) => panic!("stat {r}: {s}"),
        }
    }
    panic!("ref {r} stayed locked");
}

pub(crate) async fn read_all(
    c: &mut ContentClient<Channel>,
    digest: &str,
    offset: i64,
    size: i64,
) -> Vec<u8> {
    let mut s = c
        .read(req(pb::ReadContentRequest {
            digest: digest.into(),
            offset,
            size,
        }))
        .await
        .expect("read")
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = s.message().await.expect("read chunk") {
        assert_eq!(m.offset, offset + out.len() as i64);
        out.extend_from_slice(&m.data);
    }
    out
}

pub(crate) fn blob_dir(d: &Berthd) -> PathBuf {
    d.root().join("content/blobs/sha256")
}

pub(crate) fn ingest_dir(d: &Berthd) -> PathBuf {
    d.root().join("content/ingest")
}

pub(crate) fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Every blob file holds exactly the bytes its name says.
pub(crate) fn assert_blobs_verified(d: &Berthd) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(blob_dir(d)).unwrap() {
        let e = e.unwrap();
        let data = std::fs::read(e.path()).unwrap();
        assert_eq!(
            sha(&data),
            format!("sha256:{}", e.file_name().to_string_lossy()),
            "blob {} holds wrong bytes",
            e.path().display()
        );
        n += 1;
    }
    n
}

pub(crate) fn ctr_with_stdin(d: &Berthd, args: &[&str], input: &Path) -> std::process::Output {
    Command::new("ctr")
        .arg("--address")
        .arg(d.address())
        .args(args)
        .stdin(File::open(input).unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run ctr")
}

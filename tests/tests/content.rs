//! Issue 2, Content: the content service of a real berthd, through Debian's
//! `ctr` and through a small gRPC client of our own (for what ctr cannot
//! do: interrupt a write, resume it, abort, kill the daemon mid-write).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_api::services::content::v1 as pb;
use berth_api::services::leases::v1 as lpb;
use berth_tests::{check, requires, Berthd};
use pb::content_client::ContentClient;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Request};

const NS: &str = "default";

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// Deterministic pseudo-random bytes (xorshift), distinct per seed.
fn bytes(seed: u64, len: usize) -> Vec<u8> {
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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn channel(sock: &Path) -> Channel {
    berth_tests::grpc::channel(sock).await
}

async fn client(sock: &Path) -> ContentClient<Channel> {
    ContentClient::new(channel(sock).await)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

fn req<T>(msg: T) -> Request<T> {
    berth_tests::grpc::request(msg, NS, None)
}

/// An open Write stream.
struct WriteStream {
    tx: mpsc::Sender<pb::WriteContentRequest>,
    rx: tonic::Streaming<pb::WriteContentResponse>,
}

impl WriteStream {
    async fn open(c: &mut ContentClient<Channel>, lease: Option<&str>) -> Self {
        let (tx, rx) = mpsc::channel(4);
        let r = berth_tests::grpc::request(ReceiverStream::new(rx), NS, lease);
        let rx = c.write(r).await.expect("write stream").into_inner();
        Self { tx, rx }
    }

    async fn call(
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

fn stat(r: &str, total: usize, expected: &str) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Stat as i32,
        r#ref: r.into(),
        total: total as i64,
        expected: expected.into(),
        ..Default::default()
    }
}

fn write(offset: usize, data: &[u8]) -> pb::WriteContentRequest {
    pb::WriteContentRequest {
        action: pb::WriteAction::Write as i32,
        offset: offset as i64,
        data: data.to_vec(),
        ..Default::default()
    }
}

fn commit(offset: usize, total: usize, expected: &str) -> pb::WriteContentRequest {
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
async fn open_retry(
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

async fn read_all(c: &mut ContentClient<Channel>, digest: &str, offset: i64, size: i64) -> Vec<u8> {
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

fn blob_dir(d: &Berthd) -> PathBuf {
    d.root().join("content/blobs/sha256")
}

fn ingest_dir(d: &Berthd) -> PathBuf {
    d.root().join("content/ingest")
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}

/// Every blob file holds exactly the bytes its name says.
fn assert_blobs_verified(d: &Berthd) -> usize {
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

fn ctr_with_stdin(d: &Berthd, args: &[&str], input: &Path) -> std::process::Output {
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

#[test]
fn ctr_ingest_ls_get_label_rm_64mib() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let data = bytes(1, 64 << 20);
    let digest = sha(&data);
    let input = d.dir().join("blob.in");
    std::fs::write(&input, &data).unwrap();
    let size = data.len().to_string();
    let out = ctr_with_stdin(
        &d,
        &[
            "content",
            "ingest",
            "--expected-digest",
            &digest,
            "--expected-size",
            &size,
            "big-ref",
        ],
        &input,
    );
    check(out, "ctr content ingest");
    let ls = d.ctr_ok(&["content", "ls"]);
    let line = ls
        .lines()
        .find(|l| l.starts_with(&digest))
        .unwrap_or_else(|| panic!("{digest} not listed: {ls}"));
    assert!(line.contains("67.11MB"), "{line}");
    let info = rt().block_on(async {
        let mut c = client(&d.address()).await;
        c.info(req(pb::InfoRequest {
            digest: digest.clone(),
        }))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap()
    });
    assert_eq!(info.size, 64 << 20);

    let got = Command::new("ctr")
        .arg("--address")
        .arg(d.address())
        .args(["content", "get", &digest])
        .output()
        .unwrap();
    assert!(got.status.success());
    assert!(got.stdout == data, "ctr content get returned other bytes");

    let labels = d.ctr_ok(&["content", "label", &digest, "team=a", "x=1"]);
    assert!(
        labels.contains("team=a") && labels.contains("x=1"),
        "{labels}"
    );
    d.ctr_ok(&["content", "label", &digest, "x="]);
    let ls = d.ctr_ok(&["content", "ls"]);
    assert!(ls.contains("team=a") && !ls.contains("x=1"), "{ls}");
    let q = d.ctr_ok(&["content", "ls", "-q", "labels.team==a"]);
    assert_eq!(q.trim(), digest);
    assert!(d
        .ctr_ok(&["content", "ls", "-q", "labels.team==b"])
        .trim()
        .is_empty());

    // Ingesting the same digest again: AlreadyExists, which ctr takes as success.
    let out = ctr_with_stdin(
        &d,
        &["content", "ingest", "--expected-digest", &digest, "again"],
        &input,
    );
    check(out, "ctr content ingest (again)");
    assert_eq!(count(&ingest_dir(&d)), 0);

    d.ctr_ok(&["content", "rm", &digest]);
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
    assert_eq!(count(&blob_dir(&d)), 0, "blob removed with its last record");
    let out = d.ctr(&["content", "get", &digest]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not found"));
}

#[test]
fn interrupted_write_resumes_from_status_offset() {
    let d = Berthd::start();
    let data = bytes(2, 5 << 20);
    let digest = sha(&data);
    let half = 2 << 20;
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        {
            let mut w = WriteStream::open(&mut c, None).await;
            let st = w.call(stat("resume", data.len(), &digest)).await.unwrap();
            assert_eq!(st.offset, 0);
            let mut off = 0;
            while off < half {
                let r = w
                    .call(write(off, &data[off..off + (1 << 20)]))
                    .await
                    .unwrap();
                off += 1 << 20;
                assert_eq!(r.offset, off as i64);
            }
            // A second writer on the same ref is refused while this one lives.
            let mut other = WriteStream::open(&mut c, None).await;
            let err = other.call(stat("resume", 0, "")).await.unwrap_err();
            assert_eq!(err.code(), Code::Unavailable, "{err}");
            assert!(err.message().contains("locked"), "{err}");
            // The client goes away without committing.
        }
        drop(c);
        let mut c = client(&d.address()).await;
        let st = c
            .status(req(pb::StatusRequest {
                r#ref: "resume".into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .status
            .unwrap();
        assert_eq!(st.offset, half as i64);
        assert_eq!(st.total, data.len() as i64);
        assert_eq!(st.expected, digest);

        let (mut w, resp) = open_retry(&mut c, "resume", data.len(), &digest).await;
        assert_eq!(resp.offset, half as i64);
        assert_eq!(resp.digest, sha(&data[..half]), "re-hashed on resume");
        // Writing at another offset is refused...
        let err = w.call(write(half + 1, b"x")).await.unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err}");
        // ...and leaves the ingest as it was.
        let (mut w, resp) = open_retry(&mut c, "resume", 0, "").await;
        let mut off = resp.offset as usize;
        assert_eq!(off, half);
        while off < data.len() {
            let end = (off + (1 << 20)).min(data.len());
            w.call(write(off, &data[off..end])).await.unwrap();
            off = end;
        }
        let done = w.call(commit(off, data.len(), &digest)).await.unwrap();
        assert_eq!(done.digest, digest);
        assert_eq!(done.offset, data.len() as i64);

        assert_eq!(read_all(&mut c, &digest, 0, 0).await, data);
        let part = read_all(&mut c, &digest, 1000, 3 << 20).await;
        assert_eq!(part, &data[1000..1000 + (3 << 20)]);
        let tail = read_all(&mut c, &digest, data.len() as i64 - 10, 1 << 30).await;
        assert_eq!(tail, &data[data.len() - 10..]);
        let err = c
            .read(req(pb::ReadContentRequest {
                digest: digest.clone(),
                offset: data.len() as i64 + 1,
                size: 0,
            }))
            .await;
        let err = match err {
            Err(e) => e,
            Ok(s) => s.into_inner().message().await.unwrap_err(),
        };
        assert_eq!(err.code(), Code::OutOfRange);
        let active = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner();
        assert!(active.statuses.is_empty(), "{active:?}");
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert_eq!(assert_blobs_verified(&d), 1);
}

#[test]
fn wrong_expected_digest_is_refused_and_abortable() {
    requires(&["ctr"]);
    let d = Berthd::start();
    let data = bytes(3, 1 << 20);
    let wrong = sha(b"something else");
    let input = d.dir().join("blob.in");
    std::fs::write(&input, &data).unwrap();
    let out = ctr_with_stdin(
        &d,
        &[
            "content",
            "ingest",
            "--expected-digest",
            &wrong,
            "wrong-ref",
        ],
        &input,
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("failed precondition") && err.contains("unexpected commit digest"),
        "{err}"
    );
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
    assert_eq!(count(&blob_dir(&d)), 0, "nothing stored");
    let active = d.ctr_ok(&["content", "active"]);
    assert!(active.contains("wrong-ref"), "{active}");
    let filtered = d.ctr_ok(&["content", "active", "ref==other"]);
    assert!(!filtered.contains("wrong-ref"), "{filtered}");

    rt().block_on(async {
        let mut c = client(&d.address()).await;
        c.abort(req(pb::AbortRequest {
            r#ref: "wrong-ref".into(),
        }))
        .await
        .unwrap();
        let again = c
            .abort(req(pb::AbortRequest {
                r#ref: "wrong-ref".into(),
            }))
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::NotFound);
        // Wrong size: refused the same way.
        let mut w = WriteStream::open(&mut c, None).await;
        w.call(stat("short", 0, "")).await.unwrap();
        w.call(write(0, b"abc")).await.unwrap();
        let err = w.call(commit(3, 4, "")).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("unexpected commit size"), "{err}");
        c.abort(req(pb::AbortRequest {
            r#ref: "short".into(),
        }))
        .await
        .unwrap();
    });
    assert!(!d.ctr_ok(&["content", "active"]).contains("wrong-ref"));
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert_eq!(count(&blob_dir(&d)), 0);
}

#[test]
fn kill9_during_100_concurrent_writes() {
    let mut d = Berthd::start();
    let sock = d.address();
    let acked: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let rt = rt();
    let handles: Vec<_> = (0..100u64)
        .map(|i| {
            let (sock, acked) = (sock.clone(), acked.clone());
            rt.spawn(async move {
                // Sizes from 64 KiB to ~3 MiB, so commits spread over time.
                let data = bytes(1000 + i, (64 << 10) + ((i as usize * 31) << 10));
                let digest = sha(&data);
                let mut c = client(&sock).await;
                let mut w = WriteStream::open(&mut c, None).await;
                let r = format!("conc-{i}");
                w.call(stat(&r, data.len(), &digest)).await?;
                let mut off = 0;
                for chunk in data.chunks(256 << 10) {
                    w.call(write(off, chunk)).await?;
                    off += chunk.len();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let done = w.call(commit(off, data.len(), &digest)).await?;
                assert_eq!(done.digest, digest);
                acked.lock().unwrap().insert(digest, data.len());
                Ok::<_, tonic::Status>(())
            })
        })
        .collect();
    // Kill once some, but not all, writes are acknowledged.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 20 {
        assert!(std::time::Instant::now() < deadline, "writes too slow");
        std::thread::sleep(Duration::from_millis(2));
    }
    d.kill9();
    let results: Vec<_> = rt.block_on(async {
        let mut v = Vec::new();
        for h in handles {
            v.push(h.await.unwrap());
        }
        v
    });
    let failed = results.iter().filter(|r| r.is_err()).count();
    let acked = acked.lock().unwrap().clone();
    eprintln!("{} acknowledged, {failed} cut off by kill -9", acked.len());
    assert!(failed > 0, "the kill came too late to test anything");

    d.restart();
    // No blob holds wrong bytes, and every acknowledged one is there.
    let files = assert_blobs_verified(&d);
    assert!(files >= acked.len());
    rt.block_on(async {
        let mut c = client(&d.address()).await;
        for (digest, size) in &acked {
            let info = c
                .info(req(pb::InfoRequest {
                    digest: digest.clone(),
                }))
                .await
                .unwrap_or_else(|e| panic!("acknowledged {digest} lost: {e}"))
                .into_inner()
                .info
                .unwrap();
            assert_eq!(info.size, *size as i64);
            assert_eq!(sha(&read_all(&mut c, digest, 0, 0).await), *digest);
        }
        let left = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .statuses;
        assert!(!left.is_empty(), "interrupted writes leave ingests");
        for s in &left {
            assert!(s.r#ref.starts_with("conc-"), "{s:?}");
            c.abort(req(pb::AbortRequest {
                r#ref: s.r#ref.clone(),
            }))
            .await
            .unwrap();
        }
        let left = c
            .list_statuses(req(pb::ListStatusesRequest { filters: vec![] }))
            .await
            .unwrap()
            .into_inner()
            .statuses;
        assert!(left.is_empty());
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
}

#[test]
fn bad_refs_and_digests_create_nothing() {
    let d = Berthd::start();
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        let unknown = sha(b"never written");
        for bad in ["", "sha256:xyz", "md5:abc", "nocolon"] {
            let e = c
                .info(req(pb::InfoRequest { digest: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
            assert!(e.message().contains("digest"), "{e}");
            let e = c
                .delete(req(pb::DeleteContentRequest { digest: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {e}");
        }
        let e = c
            .info(req(pb::InfoRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .delete(req(pb::DeleteContentRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .read(req(pb::ReadContentRequest {
                digest: unknown.clone(),
                offset: 0,
                size: 0,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        let e = c
            .update(req(pb::UpdateRequest {
                info: Some(pb::Info {
                    digest: unknown.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        for r in ["nope", "a/../b"] {
            let e = c
                .status(req(pb::StatusRequest { r#ref: r.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound);
            let e = c
                .abort(req(pb::AbortRequest { r#ref: r.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::NotFound);
        }
        let long = "r".repeat(2000);
        for bad in ["", "a\0b", long.as_str()] {
            let mut w = WriteStream::open(&mut c, None).await;
            let e = w.call(stat(bad, 0, "")).await.unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{bad:?}: {e}");
            assert!(e.message().contains("ref"), "{e}");
            let e = c
                .status(req(pb::StatusRequest { r#ref: bad.into() }))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        }
        let mut w = WriteStream::open(&mut c, None).await;
        let e = w.call(stat("ok-ref", 0, "sha256:short")).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert!(e.message().contains("expected"), "{e}");
        let e = c
            .list(req(pb::ListContentRequest {
                filters: vec!["labels.\"unterminated".into()],
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // No namespace at all.
        let e = c
            .info(Request::new(pb::InfoRequest {
                digest: unknown.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        let ns = d.ctr_ok(&["namespaces", "ls", "-q"]);
        assert!(ns.trim().is_empty(), "no namespace created: {ns}");
        assert_eq!(count(&ingest_dir(&d)), 0);
        // Bad labels at commit: refused, nothing stored.
        let mut w = WriteStream::open(&mut c, None).await;
        w.call(stat("labels", 0, "")).await.unwrap();
        let mut m = commit(0, 0, "");
        m.data = b"x".to_vec();
        m.labels.insert(String::new(), "v".into());
        let e = w.call(m).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        c.abort(req(pb::AbortRequest {
            r#ref: "labels".into(),
        }))
        .await
        .unwrap();
    });
    assert_eq!(count(&blob_dir(&d)), 0);
    assert_eq!(count(&ingest_dir(&d)), 0);
    assert!(d.ctr_ok(&["content", "ls", "-q"]).trim().is_empty());
}

#[test]
fn leased_write_holds_content() {
    let d = Berthd::start();
    rt().block_on(async {
        let ch = channel(&d.address()).await;
        let mut leases = lpb::leases_client::LeasesClient::new(ch.clone());
        leases
            .create(req(lpb::CreateRequest {
                id: "hold".into(),
                labels: Default::default(),
            }))
            .await
            .unwrap();
        let mut c = client(&d.address()).await;
        let data = b"leased bytes".to_vec();
        let digest = sha(&data);
        let mut w = WriteStream::open(&mut c, Some("hold")).await;
        w.call(stat("leased", data.len(), &digest)).await.unwrap();
        let during = leases
            .list_resources(req(lpb::ListResourcesRequest { id: "hold".into() }))
            .await
            .unwrap()
            .into_inner()
            .resources;
        assert!(
            during
                .iter()
                .any(|r| r.r#type == "ingests" && r.id == "leased"),
            "{during:?}"
        );
        w.call(write(0, &data)).await.unwrap();
        w.call(commit(data.len(), data.len(), &digest))
            .await
            .unwrap();
        let after = leases
            .list_resources(req(lpb::ListResourcesRequest { id: "hold".into() }))
            .await
            .unwrap()
            .into_inner()
            .resources;
        assert!(
            after
                .iter()
                .any(|r| r.r#type == "content" && r.id == digest),
            "{after:?}"
        );
        assert!(!after.iter().any(|r| r.r#type == "ingests"), "{after:?}");
        // A lease that does not exist: refused before anything is written.
        let mut w = WriteStream::open(&mut c, Some("ghost")).await;
        let e = w.call(stat("ghost-ref", 0, "")).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e}");
    });
    assert_eq!(count(&ingest_dir(&d)), 0);
}

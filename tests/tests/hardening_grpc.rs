//! Hardening (issue 19) of the gRPC server against a real berthd: any
//! `:authority` on the unix socket (item 7), 16 MiB messages both ways with
//! ResourceExhausted above (item 8), and connections that never send the
//! HTTP/2 preface are closed, and a Snapshots call must name its
//! snapshotter (item 13).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_api::services::containers::v1::containers_client::ContainersClient;
use berth_api::services::containers::v1::{
    container::Runtime, Container, CreateContainerRequest, ListContainersRequest,
};
use berth_api::services::version::v1::VersionResponse;
use berth_tests::grpc::channel;
use berth_tests::Berthd;
use prost::Message;

const VERSION_PATH: &[u8] = b"/containerd.services.version.v1.Version/Version";

// ---- a raw HTTP/2 client, enough to send grpc-core's headers ----

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// HPACK string without Huffman coding (lengths below 127 only).
fn hstr(out: &mut Vec<u8>, s: &[u8]) {
    assert!(s.len() < 127);
    out.push(s.len() as u8);
    out.extend_from_slice(s);
}

/// The headers grpc-core sends for `unix:///PATH`: `:authority` is the
/// percent-encoded path, indexed into the dynamic table, as is `:path`.
fn first_request_block(authority: &[u8]) -> Vec<u8> {
    let mut b = vec![0x83, 0x86]; // :method POST, :scheme http
    b.push(0x40 | 4); // :path, incremental indexing
    hstr(&mut b, VERSION_PATH);
    b.push(0x40 | 1); // :authority, incremental indexing
    hstr(&mut b, authority);
    b.push(0x0f); // content-type (static 31), without indexing
    b.push(31 - 15);
    hstr(&mut b, b"application/grpc");
    b.push(0x00); // te: trailers, new name
    hstr(&mut b, b"te");
    hstr(&mut b, b"trailers");
    b
}

/// The second request refers to both dynamic entries (62: authority, the
/// newest; 63: path).
fn second_request_block() -> Vec<u8> {
    let mut b = vec![0x83, 0x86, 0x80 | 63, 0x80 | 62];
    b.push(0x0f);
    b.push(31 - 15);
    hstr(&mut b, b"application/grpc");
    b.push(0x00);
    hstr(&mut b, b"te");
    hstr(&mut b, b"trailers");
    b
}

struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

fn read_frame(s: &mut UnixStream) -> std::io::Result<Frame> {
    let mut h = [0u8; 9];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    Ok(Frame {
        kind: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// Calls Version on `stream` and returns the version berthd reports; panics
/// on a stream reset.
fn call_version(s: &mut UnixStream, stream: u32, block: &[u8]) -> String {
    s.write_all(&frame(0x1, 0x4, stream, block)).unwrap(); // HEADERS, END_HEADERS
    s.write_all(&frame(0x0, 0x1, stream, &[0, 0, 0, 0, 0]))
        .unwrap(); // empty message
    let mut data = Vec::new();
    loop {
        let f = read_frame(s).expect("berthd answers");
        match f.kind {
            0x3 if f.stream == stream => panic!(
                "stream {stream} reset by berthd (RST_STREAM {:?})",
                f.payload
            ),
            0x4 if f.flags & 0x1 == 0 => s.write_all(&frame(0x4, 0x1, 0, &[])).unwrap(),
            0x0 if f.stream == stream => {
                data.extend_from_slice(&f.payload);
                if f.flags & 0x1 != 0 {
                    break;
                }
            }
            0x1 if f.stream == stream && f.flags & 0x1 != 0 => break, // trailers
            0x7 => panic!("GOAWAY from berthd: {:?}", f.payload),
            _ => {}
        }
    }
    assert!(data.len() >= 5, "a gRPC message on stream {stream}");
    let msg = VersionResponse::decode(&data[5..]).expect("a VersionResponse");
    msg.version
}

fn percent_encoded(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for b in path.as_os_str().as_encoded_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(b) {
            out.push(*b);
        } else {
            out.extend_from_slice(format!("%{b:02X}").as_bytes());
        }
    }
    out
}

#[test]
fn grpc_core_authority_is_accepted() {
    let d = Berthd::start();
    let mut s = UnixStream::connect(d.address()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    s.write_all(&frame(0x4, 0, 0, &[])).unwrap(); // SETTINGS
    let authority = percent_encoded(&d.address());
    assert!(authority.contains(&b'%'), "the path is percent-encoded");
    let v1 = call_version(&mut s, 1, &first_request_block(&authority));
    assert!(!v1.is_empty(), "a version");
    // The same connection keeps working with indexed headers.
    let v2 = call_version(&mut s, 3, &second_request_block());
    assert_eq!(v1, v2);
    // And a third request with an empty authority.
    let v3 = call_version(&mut s, 5, &first_request_block(b""));
    assert_eq!(v1, v3);
}

#[test]
fn silent_connections_are_closed() {
    let d = Berthd::start();
    let mut s = UnixStream::connect(d.address()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {} // the server's SETTINGS
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "a connection without a preface is still open after 90 s"
        );
    }
    // A well-behaved client is not affected.
    let out = d.ctr(&["version"]);
    assert!(out.status.success(), "ctr version after the timeout");
}

// ---- message sizes through tonic ----

fn container(id: &str, spec_bytes: usize) -> Container {
    let spec = format!(
        "{{\"ociVersion\":\"1.0.2\",\"annotations\":{{\"big\":\"{}\"}}}}",
        "x".repeat(spec_bytes)
    );
    Container {
        id: id.into(),
        runtime: Some(Runtime {
            name: "io.containerd.runc.v2".into(),
            options: None,
        }),
        spec: Some(prost_types::Any {
            type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
            value: spec.into_bytes(),
        }),
        ..Default::default()
    }
}

fn with_ns<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", "default".parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_up_to_16_mib_and_resource_exhausted_above() {
    let d = Berthd::start();
    let mut c = ContainersClient::new(channel(&d.address()).await)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    // 5 MiB and 10 MiB specs: accepted, as containerd does.
    for (id, size) in [("five", 5 << 20), ("ten", 10 << 20)] {
        c.create(with_ns(CreateContainerRequest {
            container: Some(container(id, size)),
        }))
        .await
        .unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    // 17 MiB: ResourceExhausted, not OutOfRange.
    let err = c
        .create(with_ns(CreateContainerRequest {
            container: Some(container("big", 17 << 20)),
        }))
        .await
        .expect_err("over 16 MiB");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    // A reply over 16 MiB (two containers of 5 and 10 MiB plus ...): the
    // list of 15 MiB fits, one more pushes it over.
    let list = c
        .list(with_ns(ListContainersRequest::default()))
        .await
        .expect("15 MiB list")
        .into_inner();
    assert_eq!(list.containers.len(), 2);
    c.create(with_ns(CreateContainerRequest {
        container: Some(container("two-more", 2 << 20)),
    }))
    .await
    .unwrap();
    let err = c
        .list(with_ns(ListContainersRequest::default()))
        .await
        .expect_err("a 17 MiB reply");
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
    // Nothing broke: the connection still serves.
    let one = c
        .get(with_ns(
            berth_api::services::containers::v1::GetContainerRequest { id: "five".into() },
        ))
        .await
        .expect("get after the refusals");
    assert_eq!(one.into_inner().container.unwrap().id, "five");
}

/// Item 13: a Snapshots call naming no snapshotter is InvalidArgument
/// "snapshotter argument missing", as containerd answers; berthctl names
/// overlayfs when given none, so its snapshot commands still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshotter_must_be_named() {
    use berth_api::services::snapshots::v1::snapshots_client::SnapshotsClient;
    use berth_api::services::snapshots::v1::{
        ListSnapshotsRequest, PrepareSnapshotRequest, StatSnapshotRequest,
    };
    let d = Berthd::start();
    let mut c = SnapshotsClient::new(channel(&d.address()).await);
    let missing = |e: tonic::Status| {
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert_eq!(e.message(), "snapshotter argument missing");
    };
    missing(
        c.stat(with_ns(StatSnapshotRequest {
            snapshotter: String::new(),
            key: "k".into(),
        }))
        .await
        .expect_err("stat without a snapshotter"),
    );
    missing(
        c.prepare(with_ns(PrepareSnapshotRequest {
            snapshotter: String::new(),
            key: "k".into(),
            ..Default::default()
        }))
        .await
        .expect_err("prepare without a snapshotter"),
    );
    missing(
        c.list(with_ns(ListSnapshotsRequest::default()))
            .await
            .expect_err("list without a snapshotter"),
    );
    // Named, the same calls answer as usual.
    let e = c
        .stat(with_ns(StatSnapshotRequest {
            snapshotter: "overlayfs".into(),
            key: "k".into(),
        }))
        .await
        .expect_err("no such snapshot");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let d2 = &d;
    let ls = tokio::task::block_in_place(|| d2.berthctl_ok(&["snapshots", "ls", "-q"]));
    assert_eq!(ls.trim(), "");
}

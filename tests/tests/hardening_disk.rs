//! Hardening (issue 19 item 1): a full disk. berthd's root and state live
//! on a 64 MiB tmpfs of their own; the disk is filled through ingest,
//! through a large container spec and from outside berthd. Every refused
//! write is ResourceExhausted with a message naming the shortage, reads
//! keep answering, nothing half-written is listed, every kind of write
//! works again as soon as space is freed (no restart), and SIGTERM stops
//! berthd within its drain time.

use std::io::Write as _;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_api::services::containers::v1::containers_client::ContainersClient;
use berth_api::services::containers::v1::{container::Runtime, Container, CreateContainerRequest};
use berth_tests::grpc::{channel, request};
use berth_tests::{requires_root, Berthd};

const MIB: u64 = 1 << 20;

fn free(dir: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(dir).unwrap();
    s.blocks_available() * s.fragment_size()
}

/// Appends to `path` until the filesystem holds only `leave` bytes free
/// (0: until the kernel says ENOSPC).
fn fill(path: &Path, leave: u64) {
    let dir = path.parent().unwrap();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    loop {
        let left = free(dir);
        if left <= leave {
            break;
        }
        let n = (left - leave).min(chunk.len() as u64) as usize;
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
    }
    let _ = f.sync_all();
}

/// `n` bytes no compressor or dedup shrinks.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `berthctl content put REF` with `data` on stdin.
fn put(d: &Berthd, reference: &str, data: &[u8]) -> std::process::Output {
    let mut c = d
        .berthctl_cmd(&["content", "put", reference])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let _ = stdin.write_all(data);
    drop(stdin);
    c.wait_with_output().unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

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

fn create_container(d: &Berthd, id: &str, spec_bytes: usize) -> Result<(), tonic::Status> {
    let rt = berth_tests::grpc::runtime();
    rt.block_on(async {
        let mut c =
            ContainersClient::new(channel(&d.address()).await).max_encoding_message_size(64 << 20);
        c.create(request(
            CreateContainerRequest {
                container: Some(container(id, spec_bytes)),
            },
            "default",
            None,
        ))
        .await
        .map(|_| ())
    })
}

/// Every kind of write a client makes, each one expected to succeed.
fn every_write_works(d: &Berthd, round: &str) {
    d.berthctl_ok(&["leases", "create", "--id", &format!("l-{round}")]);
    d.berthctl_ok(&["snapshots", "prepare", &format!("s-{round}")]);
    d.berthctl_ok(&["snapshots", "rm", &format!("s-{round}")]);
    d.berthctl_ok(&["namespaces", "create", &format!("ns-{round}")]);
    let o = put(d, &format!("blob-{round}"), &noise(20 << 20));
    assert!(o.status.success(), "{round}: ingest: {}", stderr(&o));
    create_container(d, &format!("c-{round}"), 3 << 20)
        .unwrap_or_else(|e| panic!("{round}: container create: {e}"));
    d.berthctl_ok(&["containers", "rm", &format!("c-{round}")]);
    d.berthctl_ok(&["content", "gc"]);
}

fn assert_disk_full(what: &str, err: &str) {
    assert!(err.contains("ResourceExhausted"), "{what}: {err}");
    assert!(
        err.contains("disk full") || err.contains("No space left"),
        "{what}: {err}"
    );
}

#[test]
#[ignore = "needs root"]
fn a_full_disk_refuses_writes_until_space_is_freed_and_never_wedges() {
    requires_root(&[]);
    let mut d = Berthd::start_on_tmpfs(64);
    let filler = d.data().join("filler");

    // About 14 MiB free: a 20 MiB ingest stops short, refused.
    fill(&filler, 14 * MIB);
    let o = put(&d, "too-big", &noise(20 << 20));
    assert!(!o.status.success());
    assert_disk_full("ingest", &stderr(&o));
    assert_eq!(d.berthctl_ok(&["content", "ls", "-q"]).trim(), "");
    // A spec larger than the room left: refused before the database.
    let e = create_container(&d, "big", 8 << 20).expect_err("an 8 MiB spec");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    assert!(e.message().contains("disk full"), "{e}");
    // Reads answer, small writes still fit in the headroom.
    d.berthctl_ok(&["containers", "ls"]);
    d.berthctl_ok(&["leases", "create", "--id", "small"]);

    // Filled to the last byte from outside berthd: each write refused
    // (not hung), reads answer.
    fill(&filler, 0);
    // Removals too (sled logs them): a failed log write would poison
    // the database for good, as would a snapshotter's.
    for args in [
        &["leases", "create", "--id", "full"][..],
        &["namespaces", "create", "full"][..],
        &["leases", "rm", "small"][..],
        &["snapshots", "prepare", "full-snap"][..],
    ] {
        let started = Instant::now();
        let err = d.berthctl_fails(args);
        assert_disk_full(&format!("{args:?}"), &err);
        assert!(started.elapsed() < Duration::from_secs(10), "{args:?} hung");
    }
    let o = put(&d, "full", b"a few bytes");
    assert_disk_full("ingest on a full disk", &stderr(&o));
    let e = create_container(&d, "full", 1 << 20).expect_err("1 MiB spec");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e}");
    d.berthctl_ok(&["namespaces", "ls"]);

    // Space freed: everything works again, without a restart, twice.
    std::fs::remove_file(&filler).unwrap();
    d.berthctl_ok(&["content", "active"]);
    every_write_works(&d, "after");
    every_write_works(&d, "again");
    let blobs = d.berthctl_ok(&["content", "ls", "-q"]);
    assert_eq!(
        blobs.lines().count(),
        0,
        "gc took the unleased blobs: {blobs}"
    );

    // Full again, with a refused write in flight: SIGTERM still stops
    // berthd within its drain (10 s) and the bounded final flush.
    fill(&filler, 0);
    let _ = d.berthctl(&["leases", "create", "--id", "last"]);
    let started = Instant::now();
    let status = d.stop();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(status.success(), "{status}: {}", d.log());
    // Its records are intact.
    std::fs::remove_file(&filler).unwrap();
    d.restart();
    let leases = d.berthctl_ok(&["leases", "ls", "-q"]);
    assert!(
        leases.contains("l-after") && leases.contains("small"),
        "{leases}"
    );
}

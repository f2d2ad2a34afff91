//! Issue 3: berth.images.v1.Transfer, server-side import and export,
//! against a real berthd.

mod images_support;

use berth_tests::{requires_root, Berthd};
use images_support::*;
use std::path::Path;

use berth_api::berth_images::v1 as pb;
use pb::transfer_client::TransferClient;
use tonic::transport::Channel;
use tonic::Request;

fn rt() -> tokio::runtime::Runtime {
    berth_tests::grpc::runtime()
}

async fn client(sock: &Path) -> TransferClient<Channel> {
    TransferClient::new(berth_tests::grpc::channel(sock).await)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20)
}

fn ns<T>(msg: T) -> Request<T> {
    berth_tests::grpc::request(msg, "default", None)
}

/// Streams `file` to Import; returns (progress messages, result).
fn import(
    d: &Berthd,
    file: &str,
    opts: pb::ImportOptions,
) -> (Vec<pb::ImportProgress>, Result<Vec<String>, tonic::Status>) {
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        let data = std::fs::read(file).unwrap();
        let mut msgs = vec![pb::ImportRequest {
            msg: Some(pb::import_request::Msg::Options(opts)),
        }];
        msgs.extend(data.chunks(1 << 20).map(|c| pb::ImportRequest {
            msg: Some(pb::import_request::Msg::Chunk(c.to_vec())),
        }));
        let mut seen = Vec::new();
        let mut stream = match c.import(ns(tokio_stream::iter(msgs))).await {
            Ok(s) => s.into_inner(),
            Err(e) => return (seen, Err(e)),
        };
        loop {
            match stream.message().await {
                Ok(Some(p)) => {
                    let last = !p.images.is_empty();
                    seen.push(p.clone());
                    if last {
                        return (seen, Ok(p.images));
                    }
                }
                Ok(None) => {
                    return (
                        seen,
                        Err(tonic::Status::unknown("stream ended without result")),
                    )
                }
                Err(e) => return (seen, Err(e)),
            }
        }
    })
}

/// [`import`] with default options, for the perf run.
fn import_pub(
    d: &Berthd,
    file: &str,
) -> (Vec<pb::ImportProgress>, Result<Vec<String>, tonic::Status>) {
    import(d, file, pb::ImportOptions::default())
}

#[test]
#[ignore = "needs root"]
fn server_side_import_unpacks_and_export_round_trips() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    let (progress, res) = import(
        &d,
        &archive("multilayer", "oci-zstd"),
        pb::ImportOptions::default(),
    );
    let names = res.expect("import");
    assert_eq!(
        names,
        vec!["docker.io/berthtest/multilayer:oci-zstd".to_string()]
    );
    assert!(
        progress.iter().any(|p| p.blob.is_some()),
        "per-blob progress"
    );
    assert!(
        progress.iter().any(|p| p.state.starts_with("unpacking")),
        "unpack state"
    );
    let size = std::fs::metadata(archive("multilayer", "oci-zstd"))
        .unwrap()
        .len() as i64;
    assert_eq!(progress.last().unwrap().received, size);
    // ctr sees the image as imported and unpacked: the chain is committed
    // and the config blob points at it.
    let chain = chain_ids("multilayer", "oci-zstd");
    let snaps = d.ctr_ok(&["snapshots", "ls"]);
    for c in &chain {
        assert!(snaps.contains(c.as_str()), "{c}: {snaps}");
    }
    let content = d.ctr_ok(&["content", "ls"]);
    assert!(
        content.contains(&format!(
            "containerd.io/gc.ref.snapshot.overlayfs={}",
            chain.last().unwrap()
        )),
        "{content}"
    );
    assert!(content.contains("containerd.io/uncompressed="), "{content}");
    d.ctr_ok(&["snapshots", "prepare", "root", chain.last().unwrap()]);
    let m = Mounted::new(&d, "overlayfs", "root");
    check_expectations(m.path());
    drop(m);
    d.ctr_ok(&["snapshots", "rm", "root"]);

    // Docker archive into the native snapshotter.
    let opts = pb::ImportOptions {
        snapshotter: "native".into(),
        ..Default::default()
    };
    let (_, res) = import(&d, &archive("multilayer", "docker-gzip"), opts);
    assert_eq!(
        res.expect("docker import"),
        vec!["docker.io/berthtest/multilayer:docker-gzip".to_string()]
    );
    let snaps = d.ctr_ok(&["snapshots", "--snapshotter", "native", "ls"]);
    assert!(snaps.contains(chain.last().unwrap().as_str()), "{snaps}");

    // Export the OCI image, import the tar with ctr into a fresh daemon.
    let tar = d.dir().join("export.tar");
    rt().block_on(async {
        let mut c = client(&d.address()).await;
        let req = pb::ExportRequest {
            names: vec!["docker.io/berthtest/multilayer:oci-zstd".into()],
            ..Default::default()
        };
        let mut s = c.export(ns(req)).await.expect("export").into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = s.message().await.expect("export stream") {
            out.extend_from_slice(&chunk.data);
        }
        std::fs::write(&tar, out).unwrap();
    });
    let d2 = Berthd::start();
    d2.ctr_ok(&["images", "import", &tar.to_string_lossy()]);
    let ls = d2.ctr_ok(&["images", "ls", "-q"]);
    assert!(
        ls.contains("docker.io/berthtest/multilayer:oci-zstd"),
        "{ls}"
    );
    assert!(d2
        .ctr_ok(&["snapshots", "ls"])
        .contains(chain.last().unwrap().as_str()));

    // Removing the images and collecting leaves nothing.
    d.ctr_ok(&[
        "images",
        "rm",
        "--sync",
        "docker.io/berthtest/multilayer:oci-zstd",
        "docker.io/berthtest/multilayer:docker-gzip",
    ]);
    assert!(blobs(&d).is_empty(), "{:?}", blobs(&d));
    assert!(snapshot_dirs(&d, "overlayfs").is_empty());
    assert!(snapshot_dirs(&d, "native").is_empty());
}

#[test]
#[ignore = "needs root"]
fn server_side_import_picks_platforms() {
    requires_root(&["ctr"]);
    let file = archive("multiplatform", "oci-gzip");
    // Default: the host platform (amd64) only, unpacked.
    let d = Berthd::start();
    let (_, res) = import(&d, &file, pb::ImportOptions::default());
    let names = res.expect("import");
    assert_eq!(names.len(), 1, "{names:?}");
    let ls = d.ctr_ok(&["images", "ls"]);
    assert!(ls.contains("linux/amd64"), "{ls}");
    assert_eq!(
        d.ctr_ok(&["snapshots", "ls"]).lines().count(),
        3,
        "two amd64 layers"
    );
    // An explicit platform: arm64 content is kept and unpacked instead.
    let d2 = Berthd::start();
    let opts = pb::ImportOptions {
        platform: "linux/arm64/v8".into(),
        ..Default::default()
    };
    import(&d2, &file, opts).1.expect("arm64 import");
    let snaps = d2.ctr_ok(&["snapshots", "ls"]);
    assert!(snaps.lines().count() >= 2, "{snaps}");
    // All platforms: everything stored, the host one unpacked; GC keeps it.
    let d3 = Berthd::start();
    let opts = pb::ImportOptions {
        all_platforms: true,
        ..Default::default()
    };
    import(&d3, &file, opts).1.expect("all platforms");
    let before = blobs(&d3).len();
    gc(&d3);
    assert_eq!(blobs(&d3).len(), before, "gc keeps every platform's blobs");
    assert!(
        before > blobs(&d).len(),
        "all platforms stores more than one"
    );
    let bad = pb::ImportOptions {
        platform: "linux/s390x".into(),
        ..Default::default()
    };
    assert_eq!(
        import(&d3, &file, bad).1.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

#[test]
#[ignore = "needs root"]
fn server_side_import_refuses_bad_layers_and_leaves_nothing() {
    requires_root(&["ctr"]);
    let d = Berthd::start();
    for case in [
        "digest-mismatch",
        "truncated-gzip",
        "truncated-zstd",
        "unknown-media-type",
        "diffid-mismatch",
        "dotdot",
        "hardlink-dotdot",
        "whiteout-escape",
        // Multi-layer: the upper layer is staged (written before its parent
        // is committed) and must still see, and refuse, what lies below.
        "whiteout-opaque-escape",
        "symlink-cross-layer",
    ] {
        let file = images().join(format!("hostile/{case}.tar"));
        let (_, res) = import(&d, &file.to_string_lossy(), pb::ImportOptions::default());
        let err = res.expect_err(case);
        assert!(
            matches!(
                err.code(),
                tonic::Code::InvalidArgument
                    | tonic::Code::FailedPrecondition
                    | tonic::Code::NotFound
            ),
            "{case}: {err:?}"
        );
        assert!(
            d.ctr_ok(&["images", "ls", "-q"]).trim().is_empty(),
            "{case}: image left"
        );
        gc(&d);
        assert_eq!(d.ctr_ok(&["snapshots", "ls"]).lines().count(), 1, "{case}");
        assert!(blobs(&d).is_empty(), "{case}: {:?}", blobs(&d));
        assert!(snapshot_dirs(&d, "overlayfs").is_empty(), "{case}");
    }
    // A garbage stream is InvalidArgument too.
    let junk = d.dir().join("junk.tar");
    std::fs::write(&junk, vec![7u8; 10_000]).unwrap();
    let (_, res) = import(&d, &junk.to_string_lossy(), pb::ImportOptions::default());
    assert_eq!(res.unwrap_err().code(), tonic::Code::InvalidArgument);
}

/// Throughput of a server-side import of `BERTH_PERF_ARCHIVE` (not a test:
/// `cargo test -p berth-tests --test images_transfer -- --ignored perf --nocapture`).
#[test]
#[ignore = "a measurement, not a test: set BERTH_PERF_ARCHIVE"]
fn perf_transfer_import() {
    let Some(file) = std::env::var_os("BERTH_PERF_ARCHIVE") else {
        eprintln!("set BERTH_PERF_ARCHIVE");
        return;
    };
    let file = file.to_string_lossy().into_owned();
    let size = std::fs::metadata(&file).unwrap().len() as f64;
    let d = Berthd::start();
    let t = std::time::Instant::now();
    let (_, res) = import_pub(&d, &file);
    res.expect("import");
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "transfer import: {:.1} MB in {s:.2}s = {:.1} MB/s (archive bytes)",
        size / 1e6,
        size / 1e6 / s
    );
    for l in d.log().lines().filter(|l| l.contains("import:")) {
        eprintln!("{l}");
    }
    let t = std::time::Instant::now();
    let d2 = Berthd::start();
    d2.ctr_ok(&["images", "import", &file]);
    let s = t.elapsed().as_secs_f64();
    eprintln!(
        "ctr import into berthd: {s:.2}s = {:.1} MB/s",
        size / 1e6 / s
    );
}

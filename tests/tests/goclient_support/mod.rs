//! Shared by the `goclient_*` tests (issue 11: containerd's Go client
//! against berthd): a gRPC channel to berthd's socket, the namespace
//! header, and a background `ctr events` reader.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_tests::{require_root, require_tool, Berthd};
use tonic::transport::{Channel, Endpoint};

/// Root and ctr present (a loud skip notice otherwise).
pub(crate) fn ready(test: &str) -> bool {
    require_root(test) && require_tool(test, "ctr")
}

/// A tokio runtime for the async clients.
pub(crate) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A gRPC channel over a unix socket.
pub(crate) async fn channel(sock: &Path) -> Channel {
    let sock = sock.to_path_buf();
    Endpoint::try_from("http://[::]:0")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_| {
            let sock = sock.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(sock).await?,
                ))
            }
        }))
        .await
        .expect("connect to berthd")
}

/// A request carrying containerd's namespace header, as the Go client
/// sends it.
pub(crate) fn ns_req<T>(ns: &str, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("containerd-namespace", ns.parse().unwrap());
    r
}

/// Polls `f` every 20 ms for up to 20 s; panics naming `what`.
pub(crate) fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A `containerd.events.X` payload in an Any, as containerd encodes it.
pub(crate) fn event_any<M: prost::Message>(name: &str, msg: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("containerd.events.{name}"),
        value: msg.encode_to_vec(),
    }
}

/// Publishes an event the way containerd's shims fall back to doing it:
/// `containerd publish` (a gRPC Events.Publish), the payload an encoded
/// Any on stdin.
pub(crate) fn containerd_publish(d: &Berthd, ns: &str, topic: &str, any: &prost_types::Any) {
    use std::io::Write as _;
    let mut child = Command::new("containerd")
        .arg("--address")
        .arg(d.address())
        .args(["publish", "--namespace", ns, "--topic", topic])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run containerd publish");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&prost::Message::encode_to_vec(any))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "containerd publish {topic} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ctr events FILTER...` in the background, its output in a file; killed
/// and reaped on drop.
pub(crate) struct CtrEvents {
    child: Child,
    out: PathBuf,
}

impl CtrEvents {
    /// Starts `ctr events` with `filters` (no readiness wait: callers
    /// probe with an event the filter lets through).
    pub(crate) fn start(d: &Berthd, name: &str, filters: &[&str]) -> Self {
        let out = d.dir().join(format!("ctr-events-{name}.txt"));
        let child = Command::new("ctr")
            .arg("--address")
            .arg(d.address())
            .arg("events")
            .args(filters)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .expect("ctr events");
        Self { child, out }
    }

    /// What it printed so far.
    pub(crate) fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for CtrEvents {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The busybox test image's reference, as `ctr images import` names it.
pub(crate) const BUSYBOX: &str = "docker.io/berthtest/busybox:oci-gzip";

/// Builds (once per target dir) the busybox test image archive; the same
/// directory the ctr tests use, so it is built once for both.
pub(crate) fn busybox_tar() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ctr-run-test-images");
    if !dir.join("images.json").exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-test-images");
        let st = Command::new("python3")
            .arg(script)
            .arg(&dir)
            .args(["--only", "busybox"])
            .status()
            .expect("run build-test-images");
        assert!(st.success(), "build-test-images failed");
    }
    dir.join("busybox/oci-gzip.tar")
}

/// berthd's log without the terminal colour codes.
pub(crate) fn plain_log(d: &Berthd) -> String {
    let log = d.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... m
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

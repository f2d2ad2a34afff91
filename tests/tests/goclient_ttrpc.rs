//! Issue 11, item 3: the ttrpc endpoint at `ADDRESS.ttrpc`, driven as
//! containerd's shims and clients drive it, against a real berthd.
//!
//! Pinned containerd 1.6 behaviours:
//! - a second socket, the gRPC address plus `.ttrpc`, mode 0660 like the
//!   gRPC one, serving ttrpc;
//! - `containerd.services.events.ttrpc.v1.Events/Forward` delivers the
//!   envelope (namespace, topic, timestamp, event) into the event bus, so a
//!   subscriber on the gRPC socket receives it; a malformed envelope is
//!   InvalidArgument;
//! - the socket goes away when the daemon stops and is back when it
//!   starts again; a client that lost its connection reconnects to the
//!   same address (containerd's ttrpcutil client re-dials on a closed
//!   connection) and its next Forward is delivered.

mod goclient_support;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use berth_api::events::TaskExit;
use berth_api::services::events::v1 as pb;
use berth_tests::Berthd;
use goclient_support::{channel, event_any, ns_req, ready, rt, ttrpc_address};
use prost::Message as _;

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";

/// A publisher as a shim holds one: one ttrpc client to the address,
/// re-dialled when its connection is gone.
struct Publisher {
    address: String,
    client: Option<ttrpc::asynchronous::Client>,
}

impl Publisher {
    fn new(path: &std::path::Path) -> Self {
        Self {
            address: format!("unix://{}", path.display()),
            client: None,
        }
    }

    async fn call(&mut self, payload: Vec<u8>) -> Result<(), ttrpc::Error> {
        if self.client.is_none() {
            self.client = Some(ttrpc::asynchronous::Client::connect(&self.address).await?);
        }
        let mut req = ttrpc::Request::new();
        req.set_service(SERVICE.into());
        req.set_method("Forward".into());
        req.set_payload(payload);
        req.set_timeout_nano(Duration::from_secs(5).as_nanos() as i64);
        let res = self.client.as_ref().unwrap().request(req).await;
        if res.is_err() {
            self.client = None;
        }
        res.map(|_| ())
    }

    /// Forward, reconnecting once when the connection was closed.
    async fn forward(&mut self, req: &pb::ForwardRequest) -> Result<(), ttrpc::Error> {
        match self.call(req.encode_to_vec()).await {
            Err(ttrpc::Error::RpcStatus(s)) => Err(ttrpc::Error::RpcStatus(s)),
            Err(_) => self.call(req.encode_to_vec()).await,
            ok => ok,
        }
    }
}

fn envelope(topic: &str, id: &str, at: prost_types::Timestamp) -> pb::ForwardRequest {
    pb::ForwardRequest {
        envelope: Some(pb::Envelope {
            timestamp: Some(at),
            namespace: "default".into(),
            topic: topic.into(),
            event: Some(event_any(
                "TaskExit",
                &TaskExit {
                    container_id: id.into(),
                    id: id.into(),
                    pid: 42,
                    exit_status: 7,
                    exited_at: None,
                },
            )),
        }),
    }
}

fn assert_socket_0660(path: &std::path::Path) {
    let meta = std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        path.display()
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

/// Subscribes on the gRPC socket (subscribed once this returns).
async fn subscribe(d: &Berthd) -> tonic::Streaming<pb::Envelope> {
    let mut c = pb::events_client::EventsClient::new(channel(&d.address()).await);
    c.subscribe(ns_req(
        "default",
        pb::SubscribeRequest {
            filters: vec![r#"topic~=|^/goclient/|"#.into()],
        },
    ))
    .await
    .expect("subscribe")
    .into_inner()
}

async fn next(sub: &mut tonic::Streaming<pb::Envelope>) -> pb::Envelope {
    tokio::time::timeout(Duration::from_secs(10), sub.message())
        .await
        .expect("an event within 10 s")
        .expect("the subscription stays up")
        .expect("an event")
}

#[test]
#[ignore = "needs root"]
fn ttrpc_forward_reaches_grpc_subscribers_and_survives_a_restart() {
    ready();
    let mut d = Berthd::start();
    let path = ttrpc_address(&d);
    assert_socket_0660(&path);
    let rt = rt();
    let mut publisher = Publisher::new(&path);
    let at = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_789,
    };

    rt.block_on(async {
        let mut sub = subscribe(&d).await;
        let sent = envelope("/goclient/forwarded", "via-ttrpc", at);
        publisher.forward(&sent).await.expect("Forward");
        let got = next(&mut sub).await;
        let want = sent.envelope.unwrap();
        assert_eq!(got.topic, want.topic);
        assert_eq!(got.namespace, want.namespace);
        assert_eq!(got.timestamp, want.timestamp, "the envelope's time is kept");
        assert_eq!(got.event, want.event);

        // Malformed envelopes: InvalidArgument, nothing delivered.
        for bad in [
            pb::ForwardRequest { envelope: None },
            envelope("no-leading-slash", "bad", at),
            pb::ForwardRequest {
                envelope: Some(pb::Envelope {
                    event: None,
                    ..envelope("/goclient/bad", "bad", at).envelope.unwrap()
                }),
            },
        ] {
            match publisher.forward(&bad).await {
                Err(ttrpc::Error::RpcStatus(s)) => {
                    assert_eq!(s.code(), ttrpc::Code::INVALID_ARGUMENT, "{}", s.message())
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        let last = envelope("/goclient/after-bad", "still-there", at);
        publisher
            .forward(&last)
            .await
            .expect("Forward after errors");
        assert_eq!(next(&mut sub).await.topic, "/goclient/after-bad");
    });

    // Stop: the socket goes away with the daemon.
    let status = d.stop();
    assert!(status.success(), "berthd exited with {status}");
    assert!(!path.exists(), "{} left behind", path.display());

    // Start again: the socket is back, and the same publisher reconnects.
    d.restart();
    assert_socket_0660(&path);
    rt.block_on(async {
        let mut sub = subscribe(&d).await;
        let again = envelope("/goclient/after-restart", "reconnected", at);
        publisher
            .forward(&again)
            .await
            .expect("Forward after the restart");
        let got = next(&mut sub).await;
        assert_eq!(got.topic, "/goclient/after-restart");
        assert_eq!(got.event, again.envelope.unwrap().event);
    });

    // A daemon killed with -9 leaves a stale socket: the next start
    // replaces it.
    d.kill9();
    assert!(path.exists());
    d.restart();
    assert_socket_0660(&path);
    rt.block_on(async {
        let mut sub = subscribe(&d).await;
        publisher
            .forward(&envelope("/goclient/after-kill", "again", at))
            .await
            .expect("Forward after kill -9 and restart");
        assert_eq!(next(&mut sub).await.topic, "/goclient/after-kill");
    });
}

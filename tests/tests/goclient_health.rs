//! Issue 11, item 1: `grpc.health.v1.Health` on berthd's socket, driven as
//! containerd's Go client drives it, against a real berthd.
//!
//! Pinned behaviours (containerd 1.6 serves grpc-go's health server; its
//! client's `IsServing` and start-up wait call Check for "" and treat
//! Unimplemented as "not up"):
//! - Check("") answers SERVING once berthd is ready (after recovery);
//! - an unknown service name is NotFound, as grpc-go's server answers;
//! - Watch("") yields SERVING, then NOT_SERVING as soon as SIGTERM begins
//!   the drain, and the stream ends, so a watcher never holds the drain:
//!   berthd still stops well within its 10 s drain bound.

mod goclient_support;

use std::time::{Duration, Instant};

use berth_tests::Berthd;
use goclient_support::{channel, ready, rt};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn overall() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

#[test]
#[ignore = "needs root"]
fn health_serving_after_start_and_not_serving_when_sigterm_drains() {
    ready();
    let mut d = Berthd::start();
    let ttrpc = goclient_support::ttrpc_address(&d);
    let sigterm_at = rt().block_on(async {
        let mut c = HealthClient::new(channel(&d.address()).await);
        let r = c.check(overall()).await.expect("Check is served");
        assert_eq!(r.into_inner().status(), ServingStatus::Serving);
        let err = c
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{}", err.message());

        let mut watch = c.watch(overall()).await.expect("Watch").into_inner();
        let first = watch.message().await.unwrap().expect("a first status");
        assert_eq!(first.status(), ServingStatus::Serving);

        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let sigterm_at = Instant::now();
        let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("Watch reports the drain within 5 s")
            .expect("a status, not an error")
            .expect("a status, not the end");
        assert_eq!(next.status(), ServingStatus::NotServing);
        // Then the stream ends (cleanly or with the connection).
        let end = tokio::time::timeout(Duration::from_secs(5), watch.message())
            .await
            .expect("the Watch stream ends with the drain");
        assert!(!matches!(end, Ok(Some(_))), "another status: {end:?}");
        sigterm_at
    });
    let status = d.stop();
    assert!(status.success(), "berthd exited with {status}");
    assert!(
        sigterm_at.elapsed() < Duration::from_secs(8),
        "the open Watch held the drain for {:?}",
        sigterm_at.elapsed()
    );
    assert!(!d.address().exists(), "gRPC socket left behind");
    assert!(!ttrpc.exists(), "ttrpc socket left behind");

    // After a restart: SERVING again.
    d.restart();
    rt().block_on(async {
        let mut c = HealthClient::new(channel(&d.address()).await);
        let r = c.check(overall()).await.unwrap();
        assert_eq!(r.into_inner().status(), ServingStatus::Serving);
    });
}

//! `grpc.health.v1.Health` on berthd's socket, as containerd serves it
//! (the `tonic-health` implementation).
//!
//! containerd's Go client asks Check for the empty service name in
//! `IsServing` and while it waits for the daemon at start-up, and treats
//! Unimplemented as "not up". The overall status (service `""`) is
//! NOT_SERVING until [`Health::serving`] (berthd calls it once recovery is
//! done and it serves), and NOT_SERVING again from [`Health::draining`]
//! (SIGTERM began the drain). Draining also ends every Watch stream right
//! after it delivered NOT_SERVING, so a watcher never holds the bounded
//! drain open.

use tonic_health::pb::health_server::{Health as HealthApi, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The overall status's service name.
const OVERALL: &str = "";

/// The status side of the health service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// A health service reporting NOT_SERVING, and the gRPC server to add
    /// to the router.
    pub async fn new() -> (Self, HealthServer<impl HealthApi>) {
        let (reporter, server) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(OVERALL, ServingStatus::NotServing)
            .await;
        (Self { reporter }, server)
    }

    /// berthd is ready: SERVING.
    pub async fn serving(&self) {
        self.reporter
            .set_service_status(OVERALL, ServingStatus::Serving)
            .await;
    }

    /// The drain began: NOT_SERVING to every watcher, then their streams
    /// end; Check keeps answering NOT_SERVING until the server stops.
    pub async fn draining(&mut self) {
        self.reporter
            .set_service_status(OVERALL, ServingStatus::NotServing)
            .await;
        // Dropping the status channel ends each Watch stream after it has
        // yielded the value above (a watch receiver sees a pending change
        // before it sees the channel closed).
        self.reporter.clear_service_status(OVERALL).await;
        self.reporter
            .set_service_status(OVERALL, ServingStatus::NotServing)
            .await;
    }
}

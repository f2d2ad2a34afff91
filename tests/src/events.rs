//! Knowing that an event subscriber a test started in the background
//! (`ctr events`, `berthctl events`) is live, and that it has printed
//! everything published so far. A fixed sleep does neither on a loaded
//! machine: the subscriber may connect late and miss the first events, or
//! the test may read its output before the last ones are printed.

use std::path::Path;
use std::time::{Duration, Instant};

use berth_api::events::TaskExit;
use berth_api::services::events::v1 as epb;
use prost::Message as _;

use crate::grpc::{channel, request, runtime};

/// The marker in every probe's payload (`container_id`).
pub const PROBE: &str = "berth-probe-";

/// Publishes probe events (a `TaskExit` whose container id starts with
/// [`PROBE`]) on `topic` in namespace `default` until `printed()` shows
/// one. Subscribers get a stream's events in order, so once a probe
/// published now is printed, so is everything published before it: call
/// it after starting the subscriber (it is live) and before reading its
/// output for the last time (it is complete). Pick a `topic` the
/// subscriber's filter lets through and the test's checks do not look
/// for. Panics after 30 s.
pub fn sync_subscriber(addr: &Path, topic: &str, printed: impl Fn() -> String) {
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    let started = Instant::now();
    for i in 0.. {
        let tag = format!("{PROBE}{}-{i}", started.elapsed().as_micros());
        rt.block_on(async {
            let mut c = epb::events_client::EventsClient::new(channel(addr).await);
            let exit = TaskExit {
                container_id: tag.clone(),
                id: tag.clone(),
                ..Default::default()
            };
            c.publish(request(
                epb::PublishRequest {
                    topic: topic.into(),
                    event: Some(prost_types::Any {
                        type_url: berth_api::type_urls::event("TaskExit"),
                        value: exit.encode_to_vec(),
                    }),
                },
                "default",
                None,
            ))
            .await
            .expect("publish a probe event");
        });
        let wait = Instant::now() + Duration::from_millis(500);
        while Instant::now() < wait {
            if printed().contains(&tag) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            Instant::now() < deadline,
            "the subscriber never printed a probe on {topic}:\n{}",
            printed()
        );
    }
}

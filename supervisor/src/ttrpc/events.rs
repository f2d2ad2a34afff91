//! `containerd.services.events.ttrpc.v1.Events/Forward`: an event a shim
//! (or any publisher) already put into an envelope, delivered into
//! berthd's event bus as the gRPC Events/Forward does: same topic and
//! namespace checks, the envelope's timestamp kept (now when absent).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::ttrpc::asynchronous::{MethodHandler, TtrpcContext};
use ::ttrpc::{get_status, Code};
use berth_api::services::events::v1::ForwardRequest;
use prost::Message as _;

use crate::events::{Envelope, Events};

/// The service's full name.
pub const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
/// Its one method.
pub const FORWARD: &str = "Forward";

/// The Forward handler over the bus.
pub struct Forward {
    bus: Events,
}

impl Forward {
    /// Forwards into `bus`.
    pub fn new(bus: Events) -> Self {
        Self { bus }
    }

    /// Decodes and publishes one request; the error is the status to
    /// answer.
    fn forward(&self, payload: &[u8]) -> Result<(), ::ttrpc::Status> {
        let invalid = |msg: String| get_status(Code::INVALID_ARGUMENT, msg);
        let req =
            ForwardRequest::decode(payload).map_err(|e| invalid(format!("ForwardRequest: {e}")))?;
        let env = req
            .envelope
            .ok_or_else(|| invalid("envelope: required".into()))?;
        let event = env
            .event
            .ok_or_else(|| invalid(crate::events::Error::MissingEvent.to_string()))?;
        let timestamp = env
            .timestamp
            .and_then(|t| {
                let secs = u64::try_from(t.seconds).ok()?;
                let nanos = u32::try_from(t.nanos).ok()?;
                UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
            })
            .unwrap_or_else(SystemTime::now);
        tracing::debug!(namespace = %env.namespace, topic = %env.topic, "ttrpc event forwarded");
        self.bus
            .forward(Envelope {
                timestamp,
                namespace: env.namespace,
                topic: env.topic,
                event,
            })
            .map_err(|e| invalid(e.to_string()))
    }
}

#[tonic::async_trait]
impl MethodHandler for Forward {
    async fn handler(
        &self,
        _ctx: TtrpcContext,
        req: ::ttrpc::Request,
    ) -> ::ttrpc::Result<::ttrpc::Response> {
        let status = match self.forward(&req.payload) {
            // google.protobuf.Empty: an empty payload.
            Ok(()) => get_status(Code::OK, ""),
            Err(status) => status,
        };
        let mut res = ::ttrpc::Response::new();
        res.set_status(status);
        Ok(res)
    }
}

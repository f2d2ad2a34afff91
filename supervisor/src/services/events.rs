//! containerd.services.events.v1.Events: Publish, Forward, Subscribe over
//! the in-process bus.

use std::pin::Pin;

use berth_api::services::events::v1 as pb;
use futures::Stream;
use pb::events_server::Events;
use tonic::{Request, Response, Status};

use super::{convert, namespace, Context};
use crate::events::{self, Envelope};

/// The Events service.
pub struct EventsService {
    ctx: Context,
}

impl EventsService {
    /// Serves the bus in `ctx`.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }
}

impl From<events::Error> for Status {
    fn from(e: events::Error) -> Self {
        Status::invalid_argument(e.to_string())
    }
}

fn to_wire(e: &Envelope) -> pb::Envelope {
    pb::Envelope {
        timestamp: Some(convert::timestamp(e.timestamp)),
        namespace: e.namespace.clone(),
        topic: e.topic.clone(),
        event: Some(e.event.clone()),
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let event = req.event.ok_or(events::Error::MissingEvent)?;
        self.ctx.events.forward(Envelope {
            timestamp: std::time::SystemTime::now(),
            namespace: ns,
            topic: req.topic,
            event,
        })?;
        Ok(Response::new(()))
    }

    async fn forward(&self, req: Request<pb::ForwardRequest>) -> Result<Response<()>, Status> {
        let env = req
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("envelope: required"))?;
        let event = env.event.ok_or(events::Error::MissingEvent)?;
        self.ctx.events.forward(Envelope {
            timestamp: convert::system_time(env.timestamp.as_ref())
                .unwrap_or_else(std::time::SystemTime::now),
            namespace: env.namespace,
            topic: env.topic,
            event,
        })?;
        Ok(Response::new(()))
    }

    type SubscribeStream = Pin<Box<dyn Stream<Item = Result<pb::Envelope, Status>> + Send>>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filter = super::parse_filters(&req.get_ref().filters)?;
        let sub = self.ctx.events.subscribe(filter);
        let stream = futures::stream::unfold(sub, |mut sub| async move {
            let env = sub.recv().await?;
            Some((Ok(to_wire(&env)), sub))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

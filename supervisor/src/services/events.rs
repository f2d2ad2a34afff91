//! containerd.services.events.v1.Events: Publish, Forward, Subscribe over
//! the in-process bus.

use std::pin::Pin;

use berth_api::services::events::v1 as pb;
use futures::Stream;
use pb::events_server::Events as Service;
use tonic::{Request, Response, Status};

use super::namespace;
use crate::events::{self, Envelope, Events};
use crate::filters::Filter;

/// The Events service.
pub struct EventsService {
    events: Events,
}

impl EventsService {
    /// Serves the bus `events`.
    pub fn new(events: Events) -> Self {
        Self { events }
    }
}

fn to_wire(e: &Envelope) -> pb::Envelope {
    pb::Envelope {
        timestamp: Some(e.timestamp.into()),
        namespace: e.namespace.clone(),
        topic: e.topic.clone(),
        event: Some(e.event.clone()),
    }
}

#[tonic::async_trait]
impl Service for EventsService {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<()>, Status> {
        let ns = namespace(&req)?;
        let req = req.into_inner();
        let event = req.event.ok_or(events::Error::MissingEvent)?;
        self.events.forward(Envelope {
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
        let timestamp = env
            .timestamp
            .and_then(|t| std::time::SystemTime::try_from(t).ok())
            .unwrap_or_else(std::time::SystemTime::now);
        self.events.forward(Envelope {
            timestamp,
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
        let filter = Filter::parse(&req.get_ref().filters)?;
        let sub = self.events.subscribe(filter);
        let stream = futures::stream::unfold(sub, |mut sub| async move {
            let env = sub.recv().await?;
            Some((Ok(to_wire(&env)), sub))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

//! The CRI's side of the domain event bus: a follower of the `k8s.io`
//! task events (start, exit, OOM) that marks OOM-killed containers and
//! turns starts and exits into CRI container events, and
//! GetContainerEvents, which streams those events (with the created and
//! deleted ones the CRI's own verbs raise) to every caller.
//!
//! Each event carries the pod's status and the statuses of the pod's
//! containers as they are once the change is made, as containerd's do.

use std::pin::Pin;

use berth_api::events::{self as ev, Event as _};
use k8s_cri::v1 as cri;
use prost::Message;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::helpers::now_ns;
use super::metadata::ContainerMetadata;
use super::sandbox_status::pod_status_of;
use super::{Cri, NAMESPACE};
use crate::events::Envelope;
use crate::filters::Filter;

/// How many CRI events a GetContainerEvents caller may fall behind
/// before it misses some (it is told in berthd's log).
pub(super) const EVENT_BUFFER: usize = 1024;

/// GetContainerEvents' stream.
pub(super) type EventStream =
    Pin<Box<dyn futures::Stream<Item = Result<cri::ContainerEventResponse, tonic::Status>> + Send>>;

/// The CRI events' channel.
pub(super) fn channel() -> broadcast::Sender<cri::ContainerEventResponse> {
    broadcast::channel(EVENT_BUFFER).0
}

impl Cri {
    /// Follows the domain event bus until `stop`. Subscribes at once, so
    /// the events of berthd's downtime (replayed to early subscribers)
    /// are seen too.
    pub fn spawn(&self, stop: CancellationToken) {
        let subscribe = |cri: &Cri| {
            let f = format!("namespace=={NAMESPACE:?},topic~=\"^/tasks/(start|exit|oom)$\"");
            let f = Filter::parse(&[f]).expect("the CRI's event filter parses");
            cri.inner.deps.events.subscribe(f)
        };
        let mut sub = subscribe(self);
        let cri = self.clone();
        tokio::spawn(async move {
            loop {
                let env = tokio::select! {
                    _ = stop.cancelled() => return,
                    env = sub.recv() => env,
                };
                match env {
                    Some(env) => cri.on_task_event(&env).await,
                    None => {
                        tracing::warn!("cri: event subscription dropped; subscribing again");
                        sub = subscribe(&cri);
                    }
                }
            }
        });
    }

    async fn on_task_event(&self, env: &Envelope) {
        let bytes = env.event.value.as_slice();
        match env.topic.as_str() {
            ev::TaskOom::TOPIC => {
                let Ok(e) = ev::TaskOom::decode(bytes) else {
                    return;
                };
                if self.inner.stores.containers.get(&e.container_id).is_err() {
                    return;
                }
                tracing::info!(id = e.container_id, "container hit its memory limit (OOM)");
                if let Err(err) = self
                    .update_container(&e.container_id, |c| c.oom_killed = true)
                    .await
                {
                    tracing::warn!(id = e.container_id, error = %err, "saving an OOM mark");
                }
            }
            ev::TaskStart::TOPIC => {
                if let Ok(e) = ev::TaskStart::decode(bytes) {
                    self.emit_for(
                        &e.container_id,
                        cri::ContainerEventType::ContainerStartedEvent,
                    );
                }
            }
            ev::TaskExit::TOPIC => {
                if let Ok(e) = ev::TaskExit::decode(bytes) {
                    if e.id == e.container_id {
                        self.emit_for(
                            &e.container_id,
                            cri::ContainerEventType::ContainerStoppedEvent,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    /// Sends event `kind` of container `id` if it is a CRI container.
    fn emit_for(&self, id: &str, kind: cri::ContainerEventType) {
        if let Ok(m) = self.inner.stores.containers.get(id) {
            if m.id == id {
                self.emit(&m, kind);
            }
        }
    }

    /// Sends event `kind` of container `m` to every GetContainerEvents
    /// caller, with its pod's status as it is now.
    pub(super) fn emit(&self, m: &ContainerMetadata, kind: cri::ContainerEventType) {
        let tx = &self.inner.events;
        if tx.receiver_count() == 0 {
            return;
        }
        let pod = self.inner.stores.sandboxes.get(&m.sandbox_id).ok();
        let event = cri::ContainerEventResponse {
            container_id: m.id.clone(),
            container_event_type: kind as i32,
            created_at: now_ns(),
            pod_sandbox_status: pod.map(|p| pod_status_of(&p)),
            containers_statuses: self.pod_container_statuses(&m.sandbox_id),
        };
        let _ = tx.send(event);
    }

    /// GetContainerEvents: every CRI event from now on, until the caller
    /// goes away.
    pub(super) fn container_events(&self) -> EventStream {
        let rx = self.inner.events.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(e) => return Some((Ok(e), rx)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a GetContainerEvents caller fell behind");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }))
    }
}

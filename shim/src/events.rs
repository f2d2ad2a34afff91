//! The shim's outgoing event queue (pull model).
//!
//! Events are numbered from 1 in publication order and kept in memory until
//! berthd acknowledges them with `AckEvents(upto)`. `Events(after)` streams
//! every queued event with a larger number, then new ones as they come.
//! So an event is never lost while the shim lives, never reordered, and
//! only an unacknowledged event can be delivered twice (on the next stream).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::SystemTime;

use berth_api::events::Event;
use berth_api::shim::v1::ShimEvent;
use tokio::sync::watch;

/// See the module docs.
pub struct EventQueue {
    namespace: String,
    inner: Mutex<Inner>,
    /// The last sequence number published.
    last: watch::Sender<u64>,
}

struct Inner {
    next: u64,
    queue: VecDeque<ShimEvent>,
}

impl EventQueue {
    /// An empty queue whose events carry `namespace`.
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            inner: Mutex::new(Inner {
                next: 1,
                queue: VecDeque::new(),
            }),
            last: watch::channel(0).0,
        }
    }

    /// Queues an event payload under its topic (berth-api's [`Event`]
    /// gives each its topic and type URL, one spelling with berthd's).
    pub fn publish<E: Event>(&self, msg: &E) {
        let topic = E::TOPIC;
        let mut inner = self.lock();
        let seq = inner.next;
        inner.next += 1;
        inner.queue.push_back(ShimEvent {
            seq,
            timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
            namespace: self.namespace.clone(),
            topic: topic.to_string(),
            event: Some(msg.to_any()),
        });
        drop(inner);
        tracing::debug!(seq, topic, "event queued");
        self.last.send_replace(seq);
    }

    /// Queued events with a sequence number above `after`, oldest first.
    pub fn after(&self, after: u64) -> Vec<ShimEvent> {
        self.lock()
            .queue
            .iter()
            .filter(|e| e.seq > after)
            .cloned()
            .collect()
    }

    /// Drops every event up to and including `upto`.
    pub fn ack(&self, upto: u64) {
        let mut inner = self.lock();
        while inner.queue.front().is_some_and(|e| e.seq <= upto) {
            inner.queue.pop_front();
        }
        drop(inner);
        // Wake anyone waiting for the queue to drain.
        self.last.send_modify(|_| {});
    }

    /// Number of unacknowledged events.
    pub fn pending(&self) -> usize {
        self.lock().queue.len()
    }

    /// Changes whenever an event is published or acknowledged.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.last.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_api::events::TaskStart;

    #[test]
    fn ordered_acked_and_resent() {
        let q = EventQueue::new("ns");
        for pid in 1..=3 {
            q.publish(&TaskStart {
                container_id: "c".into(),
                pid,
            });
        }
        let all = q.after(0);
        assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(
            all[0].event.as_ref().unwrap().type_url,
            "containerd.events.TaskStart"
        );
        assert_eq!(q.after(2).len(), 1);
        q.ack(2);
        assert_eq!(q.pending(), 1);
        // Unacked events come again on the next stream.
        assert_eq!(q.after(0)[0].seq, 3);
        q.publish(&TaskStart::default());
        assert_eq!(q.after(0).iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    }
}
